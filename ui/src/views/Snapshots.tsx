import { useEffect, useState } from "preact/hooks";
import { ApiError, downloadFile, getJson, sendJson } from "../api";
import { formatSpan, formatUs } from "../lib/time";
import type { Snapshot } from "../lib/types";
import { loadSnapshots, navigate, route, snapshots, window_ } from "../state";

const countCache = new Map<string, Promise<number | null>>();
function snapCount(s: Snapshot): Promise<number | null> {
  const k = `${s.name}|${s.created}`;
  let p = countCache.get(k);
  if (!p) {
    p = getJson<{ count: number }>("/api/v1/count", { kfl: s.kfl, from: s.from, to: s.to, nodes: s.nodes.join(",") })
      .then((c) => c.count)
      .catch(() => null);
    countCache.set(k, p);
  }
  return p;
}

function Count({ s }: { s: Snapshot }) {
  const [n, setN] = useState<number | null | undefined>(undefined);
  useEffect(() => {
    let live = true;
    void snapCount(s).then((v) => live && setN(v));
    return () => {
      live = false;
    };
  }, [s.name, s.created]);
  return <>{n === undefined ? "…" : n === null ? "—" : String(n)}</>;
}

/** `2026-11-25 03:13:34.643854 → 03:13:59.096286` (the date once when both ends share it). */
export function shortWindow(from: string, to: string): string {
  const f = from.replace("T", " ").replace(/Z$/, "");
  const t = to.replace("T", " ").replace(/Z$/, "");
  return f.slice(0, 10) === t.slice(0, 10) ? `${f} → ${t.slice(11)}` : `${f} → ${t}`;
}

function defaultName(): string {
  const d = new Date();
  const p = (n: number) => String(n).padStart(2, "0");
  return `investigation-${d.getFullYear()}${p(d.getMonth() + 1)}${p(d.getDate())}-${p(d.getHours())}${p(d.getMinutes())}`;
}

export function Snapshots() {
  const r = route.value;
  const w = window_.value;
  const [name, setName] = useState("");
  const [msg, setMsg] = useState<{ ok: boolean; text: string } | null>(null);
  const [busy, setBusy] = useState(false);
  useEffect(() => {
    void loadSnapshots();
  }, []);

  async function create(e?: Event) {
    e?.preventDefault();
    if (!w) return;
    const n = name.trim() || defaultName();
    setBusy(true);
    try {
      const s = await sendJson<Snapshot>("POST", "/api/v1/snapshots", {
        name: n,
        from: formatUs(w.fromUs),
        to: formatUs(w.toUs),
        kfl: r.kfl,
        nodes: r.nodes,
      });
      setMsg({ ok: true, text: `Created snapshot ${s.name}: ${s.from} → ${s.to}, pinned.` });
      setName("");
      await loadSnapshots();
    } catch (x) {
      setMsg({ ok: false, text: x instanceof ApiError ? x.body.message : String(x) });
    } finally {
      setBusy(false);
    }
  }

  async function remove(s: Snapshot) {
    try {
      await sendJson("DELETE", `/api/v1/snapshots/${encodeURIComponent(s.name)}`, undefined);
      setMsg({ ok: true, text: `Deleted snapshot ${s.name} (its window is no longer pinned).` });
      await loadSnapshots();
    } catch (x) {
      setMsg({ ok: false, text: x instanceof ApiError ? x.body.message : String(x) });
    }
  }

  // A plain link cannot send the token: fetch + blob + object URL (the href stays for the link role).
  async function save(e: MouseEvent, s: Snapshot, format: string, file: string) {
    e.preventDefault();
    try {
      await downloadFile(exp(s, format), file);
    } catch (x) {
      setMsg({ ok: false, text: x instanceof ApiError ? x.body.message : String(x) });
    }
  }

  const list = snapshots.value;
  const exp = (s: Snapshot, f: string) => `/api/v1/snapshots/${encodeURIComponent(s.name)}/export?format=${f}`;
  return (
    <div class="page snapshots">
      <form class="create-snap" onSubmit={create}>
        <h2>Create a snapshot of this view</h2>
        <p class="muted small">
          Pins the window (retention keeps it) and records the filter and nodes. Window{" "}
          <span class="mono">{w ? `${formatUs(w.fromUs)} → ${formatUs(w.toUs)}` : "—"}</span>
          {w && ` (${formatSpan(w.toUs - w.fromUs)})`}, KFL <span class="mono">{r.kfl || "(everything)"}</span>, nodes{" "}
          <span class="mono">{r.nodes.length ? r.nodes.join(", ") : "all"}</span>.
        </p>
        <div class="row-form">
          <input
            type="text"
            aria-label="Snapshot name"
            placeholder={defaultName()}
            value={name}
            pattern={"[A-Za-z0-9][A-Za-z0-9._\\-]*"}
            title="letters, digits, '.', '_' or '-', starting with a letter or digit"
            onInput={(e) => setName(e.currentTarget.value)}
          />
          <button class="btn primary" type="submit" disabled={busy || !w}>
            Create snapshot
          </button>
        </div>
        {msg && (
          <div role={msg.ok ? "status" : "alert"} class={msg.ok ? "ok-box" : "error-box"}>
            {msg.text}
          </div>
        )}
      </form>
      <table class="snaps" aria-label="Snapshots">
        <thead>
          <tr>
            <th scope="col">Name</th>
            <th scope="col">Window (UTC)</th>
            <th scope="col">Length</th>
            <th scope="col">KFL</th>
            <th scope="col">Nodes</th>
            <th scope="col" class="num">
              Entries
            </th>
            <th scope="col">Created</th>
            <th scope="col">Export</th>
            <th scope="col">
              <span class="sr-only">Actions</span>
            </th>
          </tr>
        </thead>
        <tbody>
          {list.map((s) => (
            <tr>
              <td class="mono">
                {s.name}{" "}
                <span class="tag pinned" title="pinned: retention keeps this window">
                  pinned
                </span>
                {s.imported && <span class="muted small"> (imported)</span>}
              </td>
              <td class="mono small" title={`${s.from} → ${s.to}`}>
                {shortWindow(s.from, s.to)}
              </td>
              <td class="mono">{formatSpan(s.to_us - s.from_us)}</td>
              <td class="mono small kfl-cell" title={s.kfl}>
                {s.kfl || <span class="muted">everything</span>}
              </td>
              <td class="mono small">{s.nodes.length ? s.nodes.join(", ") : <span class="muted">all</span>}</td>
              <td class="num mono">
                <Count s={s} />
              </td>
              <td class="mono small" title={s.created}>
                {s.created.slice(5, 16).replace("T", " ")}
              </td>
              <td class="links">
                <a href={exp(s, "bundle")} download={`${s.name}.tar`} onClick={(e) => void save(e, s, "bundle", `${s.name}.tar`)}>
                  Download bundle
                </a>
                <a href={exp(s, "har")} download={`${s.name}.har`} onClick={(e) => void save(e, s, "har", `${s.name}.har`)}>
                  HAR
                </a>
                <a href={exp(s, "pcap")} download={`${s.name}.pcap`} onClick={(e) => void save(e, s, "pcap", `${s.name}.pcap`)}>
                  PCAP
                </a>
              </td>
              <td>
                <span class="actions">
                <button
                  class="btn small"
                  onClick={() => navigate({ view: "traffic", from: s.from, to: s.to, kfl: s.kfl, nodes: s.nodes, entry: "", live: false })}
                  title="Open the snapshot's window and filter in Traffic"
                >
                  Open
                </button>
                <button class="btn small danger" onClick={() => void remove(s)}>
                  Delete
                </button>
                </span>
              </td>
            </tr>
          ))}
        </tbody>
      </table>
      {list.length === 0 && (
        <p class="empty" role="status">
          No snapshots yet. A snapshot pins a window so retention keeps it, and exports it as a verifiable bundle (Parquet + manifest), HAR and PCAP.
        </p>
      )}
    </div>
  );
}
