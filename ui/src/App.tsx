import { useEffect, useState } from "preact/hooks";
import { needSignIn, signOut, token } from "./api";
import { KflBar, kflInputRef } from "./components/KflBar";
import { SignIn } from "./components/SignIn";
import { StatusCorner, UnreachableBanner } from "./components/StatusCorner";
import { shift, TimeBar, zoom } from "./components/TimeBar";
import { toUrl, type View } from "./lib/url";
import { navigate, route } from "./state";
import { ServiceMap } from "./views/ServiceMap";
import { Snapshots } from "./views/Snapshots";
import { Sql } from "./views/Sql";
import { closeEntry, moveCursor, openCursor, Traffic } from "./views/Traffic";

const VIEWS: [View, string][] = [
  ["traffic", "Traffic"],
  ["map", "Service map"],
  ["snapshots", "Snapshots"],
  ["sql", "SQL"],
];

const KEYS: [string, string][] = [
  ["/", "focus the KFL filter"],
  ["j / k", "next / previous entry"],
  ["Enter", "open the entry"],
  ["Esc", "close the entry (or this help)"],
  ["[ / ]", "shift the window back / forward"],
  ["z", "zoom out (twice the window)"],
  ["g t / g m / g s / g q", "go to Traffic / Service map / Snapshots / SQL"],
  ["?", "this list"],
];

function Logo() {
  return (
    <svg viewBox="0 0 32 32" width="20" height="20" aria-hidden="true">
      <rect width="32" height="32" rx="6" fill="#1f6feb" />
      <path d="M5 21h5l3-9 4 14 3-10 2 5h5" fill="none" stroke="white" stroke-width="2.6" stroke-linecap="round" stroke-linejoin="round" />
    </svg>
  );
}

function typing(t: EventTarget | null): boolean {
  const el = t as HTMLElement | null;
  if (!el) return false;
  return el.tagName === "INPUT" || el.tagName === "TEXTAREA" || el.tagName === "SELECT" || el.isContentEditable;
}

export function App() {
  const r = route.value;
  const [help, setHelp] = useState(false);

  useEffect(() => {
    let g = false;
    const onKey = (e: KeyboardEvent) => {
      if (needSignIn.value) return;
      if (e.ctrlKey || e.metaKey || e.altKey) return;
      if (e.key === "Escape") {
        if (help) setHelp(false);
        else if (!typing(e.target)) closeEntry();
        return;
      }
      if (typing(e.target)) return;
      if (g) {
        g = false;
        const v = ({ t: "traffic", m: "map", s: "snapshots", q: "sql" } as Record<string, View>)[e.key];
        if (v) navigate({ view: v });
        return;
      }
      const traffic = route.value.view === "traffic";
      switch (e.key) {
        case "/":
          e.preventDefault();
          (kflInputRef.current ?? (document.querySelector('[aria-label="KFL filter"]') as HTMLInputElement | null))?.focus();
          break;
        case "j":
          if (traffic) moveCursor(1);
          break;
        case "k":
          if (traffic) moveCursor(-1);
          break;
        case "Enter":
          if (traffic && (e.target as HTMLElement)?.tagName !== "BUTTON" && (e.target as HTMLElement)?.tagName !== "A") openCursor();
          break;
        case "[":
          shift(-1);
          break;
        case "]":
          shift(1);
          break;
        case "z":
          zoom();
          break;
        case "?":
          setHelp((h) => !h);
          break;
        case "g":
          g = true;
          setTimeout(() => (g = false), 1200);
          break;
      }
    };
    window.addEventListener("keydown", onKey);
    return () => window.removeEventListener("keydown", onKey);
  }, [help]);

  const withFilter = r.view === "traffic" || r.view === "map";
  if (needSignIn.value) {
    return (
      <div class="app">
        <header class="topbar">
          <span class="brand">
            <Logo />
            <span>wiretrail</span>
          </span>
        </header>
        <SignIn />
      </div>
    );
  }
  return (
    <div class="app">
      <header class="topbar">
        <a class="brand" href={toUrl({ ...r, view: "traffic" })} onClick={(e) => { e.preventDefault(); navigate({ view: "traffic" }); }} aria-label="wiretrail home">
          <Logo />
          <span>wiretrail</span>
        </a>
        <nav aria-label="Views">
          {VIEWS.map(([v, name]) => (
            <a
              href={toUrl({ ...r, view: v })}
              class={r.view === v ? "active" : ""}
              aria-current={r.view === v ? "page" : undefined}
              onClick={(e) => {
                if (e.ctrlKey || e.metaKey || e.shiftKey || e.button !== 0) return;
                e.preventDefault();
                navigate({ view: v });
              }}
            >
              {name}
            </a>
          ))}
        </nav>
        <span class="spacer" />
        <StatusCorner />
        {token.value && (
          <button class="btn small" onClick={() => signOut()} title="Forget the access token (this tab)">
            Sign out
          </button>
        )}
        <button class="btn ghost small" aria-label="Keyboard shortcuts" title="Keyboard shortcuts (?)" onClick={() => setHelp(!help)}>
          ⌨
        </button>
      </header>
      <UnreachableBanner />
      <div class="controls">
        {withFilter && <KflBar placeholder={r.view === "map" ? "scope the map with KFL, e.g. dst.namespace == \"shop\"" : undefined} />}
        {r.view !== "snapshots" || true ? <TimeBar nodes={r.view !== "sql"} /> : null}
      </div>
      <main class="main">
        {r.view === "traffic" && <Traffic />}
        {r.view === "map" && <ServiceMap />}
        {r.view === "snapshots" && <Snapshots />}
        {r.view === "sql" && <Sql />}
      </main>
      {help && (
        <div class="modal-backdrop" onClick={() => setHelp(false)}>
          <div class="modal" role="dialog" aria-label="Keyboard shortcuts" onClick={(e) => e.stopPropagation()}>
            <div class="popover-head">
              <strong>Keyboard shortcuts</strong>
              <button class="btn ghost small" aria-label="Close shortcuts" onClick={() => setHelp(false)}>
                ✕
              </button>
            </div>
            <table class="keys">
              <tbody>
                {KEYS.map(([k, d]) => (
                  <tr>
                    <td>
                      <kbd>{k}</kbd>
                    </td>
                    <td>{d}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
        </div>
      )}
    </div>
  );
}
