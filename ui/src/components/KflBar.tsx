import { useEffect, useLayoutEffect, useRef, useState } from "preact/hooks";
import { getJson, isAbort, validateKfl, validatedAlready } from "../api";
import {
  applyCompletion,
  caretContext,
  charToUtf16,
  EXAMPLES,
  nameSuggestions,
  VALUE_TAGS,
  type CaretContext,
} from "../lib/kfl";
import type { ApiErrorBody } from "../lib/types";
import { navigate, route, window_ } from "../state";
import { apiWindow } from "../util";

const HISTORY_KEY = "wiretrail.kfl.history";

export function kflHistory(): string[] {
  try {
    const v = JSON.parse(localStorage.getItem(HISTORY_KEY) ?? "[]");
    return Array.isArray(v) ? v.filter((x) => typeof x === "string") : [];
  } catch {
    return [];
  }
}

function remember(q: string): void {
  if (!q.trim()) return;
  const h = [q, ...kflHistory().filter((x) => x !== q)].slice(0, 30);
  try {
    localStorage.setItem(HISTORY_KEY, JSON.stringify(h));
  } catch {
    /* private mode */
  }
}

/** Tag values for autocomplete, cached per window. */
const valueCache = new Map<string, Promise<string[]>>();
function tagValues(tag: string): Promise<string[]> {
  const w = apiWindow(window_.value);
  const key = `${tag}|${w.from}|${w.to}`;
  let p = valueCache.get(key);
  if (!p) {
    p = getJson<{ values: string[] }>(`/api/v1/values/${tag}`, w)
      .then((r) => r.values)
      .catch(() => []);
    valueCache.set(key, p);
  }
  return p;
}

/** Focus target of the `/` key. */
export const kflInputRef: { current: HTMLInputElement | null } = { current: null };

interface Suggestion {
  label: string;
  /** What replaces the token (names) or the value (values, quoted on insert). */
  value: string;
  hint?: string;
}

export function KflBar({ placeholder }: { placeholder?: string }) {
  const applied = route.value.kfl;
  const [draft, setDraft] = useState(applied);
  const [error, setError] = useState<ApiErrorBody | null>(null);
  const [sugs, setSugs] = useState<Suggestion[]>([]);
  const [ctx, setCtx] = useState<CaretContext | null>(null);
  const [active, setActive] = useState(-1);
  const [help, setHelp] = useState(false);
  const [caretLeft, setCaretLeft] = useState<number | null>(null);
  const input = useRef<HTMLInputElement>(null);
  kflInputRef.current = input.current;
  /** Where the caret goes after a completion changed the text (set once the text is rendered). */
  const pendingCaret = useRef<number | null>(null);
  useLayoutEffect(() => {
    const el = input.current;
    if (el && pendingCaret.current !== null) {
      el.focus();
      el.setSelectionRange(pendingCaret.current, pendingCaret.current);
      pendingCaret.current = null;
    }
  }, [draft]);

  useEffect(() => {
    setDraft(applied);
  }, [applied]);

  // Esc or a click elsewhere closes the cheatsheet.
  useEffect(() => {
    if (!help) return;
    const key = (e: KeyboardEvent) => e.key === "Escape" && setHelp(false);
    const click = (e: MouseEvent) => {
      if (!(e.target as HTMLElement).closest?.(".cheatsheet, [aria-label='KFL cheatsheet']")) setHelp(false);
    };
    window.addEventListener("keydown", key);
    window.addEventListener("mousedown", click);
    return () => {
      window.removeEventListener("keydown", key);
      window.removeEventListener("mousedown", click);
    };
  }, [help]);

  // Validate as you type (debounced).
  useEffect(() => {
    const ac = new AbortController();
    const t = setTimeout(async () => {
      try {
        setError(await validateKfl(draft, ac.signal));
      } catch (e) {
        if (!isAbort(e)) setError(null);
      }
    }, 180);
    return () => {
      clearTimeout(t);
      ac.abort();
    };
  }, [draft]);

  // Where the caret goes under the text.
  useEffect(() => {
    const el = input.current;
    if (!el || !error || error.position === null || error.position === undefined) {
      setCaretLeft(null);
      return;
    }
    const idx = charToUtf16(draft, error.position);
    const cs = getComputedStyle(el);
    const c = document.createElement("canvas").getContext("2d");
    if (!c) return;
    c.font = `${cs.fontWeight} ${cs.fontSize} ${cs.fontFamily}`;
    const w = c.measureText(draft.slice(0, idx)).width;
    setCaretLeft(parseFloat(cs.paddingLeft) + parseFloat(cs.borderLeftWidth) + w - el.scrollLeft);
  }, [error, draft]);

  async function refreshSuggestions(text: string, caret: number) {
    const c = caretContext(text, caret);
    setCtx(c);
    setActive(-1);
    if (!text.trim()) {
      setSugs(kflHistory().slice(0, 10).map((h) => ({ label: h, value: h, hint: "history" })));
      return;
    }
    if (c.kind === "field" && c.prefix.length >= 1) {
      setSugs(nameSuggestions(c.prefix).map((s) => ({ label: s, value: s })));
    } else if (c.kind === "value" && c.field && VALUE_TAGS[c.field]) {
      const vals = await tagValues(VALUE_TAGS[c.field]);
      const p = c.prefix.toLowerCase();
      setSugs(
        vals
          .filter((v) => v.toLowerCase().includes(p))
          .slice(0, 12)
          .map((v) => ({ label: v, value: v, hint: VALUE_TAGS[c.field!] })),
      );
    } else setSugs([]);
  }

  function accept(s: Suggestion) {
    const el = input.current;
    if (!el) return;
    if (s.hint === "history") {
      setDraft(s.value);
      setSugs([]);
      return;
    }
    if (!ctx) return;
    const r = applyCompletion(draft, ctx, s.value);
    // Set the DOM value and caret now, so keys typed right after land at the caret.
    el.value = r.text;
    el.setSelectionRange(r.caret, r.caret);
    pendingCaret.current = r.caret;
    setDraft(r.text);
    setSugs([]);
  }

  async function apply(text = draft) {
    setSugs([]);
    const known = validatedAlready(text);
    if (known) {
      // Known to be wrong: say where, keep the screen as it is.
      setError(known);
      return;
    }
    // Valid or not asked yet: apply now (the views validate before they query, so a bad query
    // never replaces their results); the answer marks the error here.
    if (text !== route.value.kfl) navigate({ kfl: text, entry: "" });
    let err: ApiErrorBody | null = null;
    if (known === undefined) {
      try {
        err = await validateKfl(text);
      } catch {
        return; /* unreachable: the banner says so */
      }
    }
    setError(err);
    if (!err) remember(text);
  }

  function onKey(e: KeyboardEvent) {
    if (sugs.length && (e.key === "ArrowDown" || e.key === "ArrowUp")) {
      e.preventDefault();
      setActive((a) => (e.key === "ArrowDown" ? Math.min(sugs.length - 1, a + 1) : Math.max(-1, a - 1)));
      return;
    }
    if (sugs.length && e.key === "Tab" && !e.shiftKey) {
      e.preventDefault();
      accept(sugs[Math.max(0, active)]);
      return;
    }
    if (e.key === "Enter") {
      e.preventDefault();
      if (sugs.length && active >= 0) accept(sugs[active]);
      else void apply();
      return;
    }
    if (e.key === "Escape") {
      if (sugs.length) {
        e.stopPropagation();
        setSugs([]);
      } else input.current?.blur();
    }
  }

  const dirty = draft !== applied;
  return (
    <div class="kfl">
      <div class="kfl-field">
        <span class="kfl-prefix" aria-hidden="true">
          KFL
        </span>
        <div class="kfl-input-wrap">
          <input
            ref={input}
            type="text"
            class={`kfl-input${error ? " invalid" : ""}`}
            aria-label="KFL filter"
            aria-invalid={error ? "true" : "false"}
            aria-autocomplete="list"
            aria-controls="kfl-suggestions"
            spellcheck={false}
            autocomplete="off"
            placeholder={placeholder ?? 'e.g. http and response.status >= 500   ( / to focus, Enter applies )'}
            value={draft}
            onInput={(e) => {
              const el = e.currentTarget;
              setDraft(el.value);
              void refreshSuggestions(el.value, el.selectionStart ?? el.value.length);
            }}
            onFocus={(e) => {
              const el = e.currentTarget;
              if (!el.value) void refreshSuggestions("", 0);
            }}
            onBlur={() => setTimeout(() => setSugs([]), 150)}
            onKeyDown={onKey}
          />
          {caretLeft !== null && (
            <span class="kfl-caret" style={{ left: `${caretLeft}px` }} aria-hidden="true">
              ^
            </span>
          )}
          {sugs.length > 0 && (
            <ul class="suggest" id="kfl-suggestions" role="listbox" aria-label="Suggestions">
              {sugs.map((s, i) => (
                <li
                  role="option"
                  aria-selected={i === active}
                  class={i === active ? "active" : ""}
                  onMouseDown={(e) => {
                    e.preventDefault();
                    accept(s);
                  }}
                >
                  <span class="mono">{s.label}</span>
                  {s.hint && <span class="hint">{s.hint}</span>}
                </li>
              ))}
            </ul>
          )}
        </div>
        {dirty && !error && (
          <button class="btn primary small" onClick={() => void apply()} title="Apply the filter (Enter)">
            Apply
          </button>
        )}
        {draft && (
          <button
            class="btn ghost small"
            aria-label="Clear filter"
            title="Clear the filter"
            onClick={() => {
              setDraft("");
              void apply("");
            }}
          >
            ✕
          </button>
        )}
        <button class="btn ghost small" aria-expanded={help} aria-label="KFL cheatsheet" title="KFL cheatsheet" onClick={() => setHelp(!help)}>
          ?
        </button>
      </div>
      {error && (
        <div class="kfl-error" role="alert" data-position={error.position ?? ""}>
          <span class="mono">{error.message}</span>
          {error.position !== null && error.position !== undefined && (
            <span class="muted"> · at character {error.position}</span>
          )}
          {error.suggestion && (
            <span class="kfl-suggestion">
              {" "}
              · {error.suggestion}
            </span>
          )}
        </div>
      )}
      {help && (
        <div class="popover cheatsheet" role="dialog" aria-label="KFL cheatsheet">
          <div class="popover-head">
            <strong>KFL cheatsheet</strong>
            <button class="btn ghost small" aria-label="Close cheatsheet" onClick={() => setHelp(false)}>
              ✕
            </button>
          </div>
          <p class="muted">
            Operators <code>and or ! == != &lt; &gt; in</code>, regex <code>r"…"</code> (RE2, unanchored), helpers{" "}
            <code>.startsWith .endsWith .contains .matches .json()</code>. Click an example to use it.
          </p>
          <table class="examples">
            <tbody>
              {EXAMPLES.map(([q, what]) => (
                <tr
                  onClick={() => {
                    setDraft(q);
                    setHelp(false);
                    input.current?.focus();
                  }}
                >
                  <td class="mono">{q}</td>
                  <td class="muted">{what}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
    </div>
  );
}
