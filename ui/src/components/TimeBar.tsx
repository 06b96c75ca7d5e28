import { useEffect, useState } from "preact/hooks";
import { getJson } from "../api";
import {
  formatLocal,
  formatSpan,
  formatUs,
  formatUsShort,
  parseTime,
  relativeRange,
  shiftWindow,
  zoomOut,
  type Window,
} from "../lib/time";
import { boundaries, navigate, nowUs, refreshNow, route, snapshots, window_ } from "../state";
import { apiWindow } from "../util";

const RANGES: [string, number][] = [
  ["5m", 300_000_000],
  ["15m", 900_000_000],
  ["1h", 3_600_000_000],
  ["24h", 86_400_000_000],
  ["7d", 604_800_000_000],
];

/** Sets an absolute window (leaves live mode). */
export function setWindow(w: Window, replace = false): void {
  navigate({ from: formatUsShort(Math.round(w.fromUs)), to: formatUsShort(Math.round(w.toUs)), live: false }, replace);
}

export function shift(dir: number): void {
  const w = window_.value;
  if (w) setWindow(shiftWindow(w, dir));
}

export function zoom(): void {
  const w = window_.value;
  if (w) setWindow(zoomOut(w));
}

export function lastRange(span: number): void {
  refreshNow();
  const r = relativeRange(span, Date.now() * 1000, boundaries.value?.overall?.newest_us);
  navigate({ ...r, live: false });
}

export function toggleLive(): void {
  const r = route.value;
  if (r.live) {
    // Freeze the moving window where it is.
    const w = window_.value;
    if (w) navigate({ live: false, from: formatUsShort(Math.floor(w.fromUs / 1e6) * 1e6), to: formatUsShort(Math.ceil(w.toUs / 1e6) * 1e6) });
    else navigate({ live: false });
  } else {
    refreshNow();
    navigate({ live: true, from: "-15m", to: "now" });
  }
}

function TimeInput({ label, value, other, which }: { label: string; value: string; other: string; which: "from" | "to" }) {
  const [draft, setDraft] = useState(value);
  const [bad, setBad] = useState(false);
  useEffect(() => {
    setDraft(value);
    setBad(false);
  }, [value]);
  const resolved = parseTime(draft, nowUs.value);
  function apply() {
    const now = Date.now() * 1000;
    const a = parseTime(draft, now);
    const b = parseTime(other, now);
    if (a === null || b === null) {
      setBad(true);
      return;
    }
    const [from, to] = which === "from" ? [a, b] : [b, a];
    if (from >= to) {
      setBad(true);
      return;
    }
    setBad(false);
    refreshNow();
    const live = route.value.live && which === "to" && draft.trim() === "now";
    navigate(which === "from" ? { from: draft.trim(), live: route.value.live && draft.trim().startsWith("-") } : { to: draft.trim(), live });
  }
  return (
    <label class="time-input">
      <span class="lbl">{label}</span>
      <input
        type="text"
        aria-label={label}
        class={bad ? "invalid mono" : "mono"}
        aria-invalid={bad ? "true" : "false"}
        value={draft}
        spellcheck={false}
        title="RFC 3339 (2026-11-25T03:12:44.269324Z), -15m, now or epoch ms; Enter applies"
        onInput={(e) => {
          setDraft(e.currentTarget.value);
          setBad(false);
        }}
        onKeyDown={(e) => {
          if (e.key === "Enter") {
            e.preventDefault();
            apply();
          } else if (e.key === "Escape") {
            setDraft(value);
            e.currentTarget.blur();
          }
        }}
        onBlur={() => {
          if (draft !== value && parseTime(draft, Date.now() * 1000) !== null) apply();
        }}
      />
      <span class="sub mono" title={resolved !== null ? `UTC ${formatUs(resolved)}\nlocal ${formatLocal(resolved)}` : ""}>
        {resolved !== null ? `local ${formatLocal(resolved, false)}` : "unreadable time"}
      </span>
    </label>
  );
}

/** The whole stored range with the current window and pinned snapshot windows marked. */
function Overview() {
  const b = boundaries.value?.overall;
  const w = window_.value;
  if (!b || !w) return null;
  const lo = Math.min(b.oldest_us, w.fromUs);
  const hi = Math.max(b.newest_us, w.toUs);
  const span = Math.max(1, hi - lo);
  const x = (t: number) => `${(100 * (t - lo)) / span}%`;
  const wd = (a: number, z: number) => `${Math.max(0.4, (100 * (z - a)) / span)}%`;
  return (
    <div class="overview" aria-label="Stored data and pinned snapshots">
      <div class="ov-track">
        <div class="ov-data" style={{ left: x(b.oldest_us), width: wd(b.oldest_us, b.newest_us) }} title={`data ${b.oldest} → ${b.newest}`} />
        {snapshots.value.map((s) => (
          <button
            class="ov-pin"
            style={{ left: x(s.from_us), width: wd(s.from_us, s.to_us) }}
            title={`snapshot ${s.name}: ${s.from} → ${s.to} (pinned)`}
            aria-label={`Pinned snapshot ${s.name}`}
            onClick={() => setWindow({ fromUs: s.from_us, toUs: s.to_us })}
          />
        ))}
        <div class="ov-window" style={{ left: x(w.fromUs), width: wd(w.fromUs, w.toUs) }} />
      </div>
      <div class="ov-labels mono">
        <span>{formatUs(lo).slice(0, 19).replace("T", " ")}</span>
        <span>{formatUs(hi).slice(0, 19).replace("T", " ")} UTC</span>
      </div>
    </div>
  );
}

const nodeCache = new Map<string, Promise<string[]>>();

export function NodePicker() {
  const sel = route.value.nodes;
  const w = window_.value;
  const [vals, setVals] = useState<string[]>([]);
  const key = w ? `${w.fromUs}|${w.toUs}` : "";
  useEffect(() => {
    if (!w) return;
    let p = nodeCache.get(key);
    if (!p) {
      p = getJson<{ values: string[] }>("/api/v1/values/node", apiWindow(w))
        .then((r) => r.values)
        .catch(() => []);
      nodeCache.set(key, p);
    }
    let live = true;
    void p.then((v) => live && setVals(v));
    return () => {
      live = false;
    };
  }, [key]);
  const all = [...new Set([...vals, ...sel])].sort();
  const per = new Map((boundaries.value?.nodes ?? []).map((n) => [n.node, n]));
  function toggle(n: string) {
    const next = sel.includes(n) ? sel.filter((x) => x !== n) : [...sel, n];
    navigate({ nodes: next, entry: "" });
  }
  return (
    <div class="nodes" role="group" aria-label="Nodes">
      <span class="lbl">Nodes</span>
      {all.length === 0 && <span class="muted small">none in window</span>}
      {all.map((n) => {
        const b = per.get(n);
        const title = b ? `${n}: data ${b.oldest} → ${b.newest}` : `${n}: no data`;
        return (
          <label class={`chip${sel.includes(n) ? " on" : ""}`} title={title}>
            <input type="checkbox" checked={sel.includes(n)} onChange={() => toggle(n)} aria-label={n} />
            {n}
            {b && <span class="chip-sub mono">{formatSpan(b.newest_us - b.oldest_us)}</span>}
          </label>
        );
      })}
      {sel.length > 0 && (
        <button class="btn ghost small" onClick={() => navigate({ nodes: [], entry: "" })}>
          All nodes
        </button>
      )}
    </div>
  );
}

export function TimeBar({ nodes = true }: { nodes?: boolean }) {
  const r = route.value;
  const w = window_.value;
  return (
    <div class="timebar">
      <div class="tb-row">
        <TimeInput label="From" value={r.from} other={r.to || "now"} which="from" />
        <span class="arrow" aria-hidden="true">
          →
        </span>
        <TimeInput label="To" value={r.to} other={r.from || "-1h"} which="to" />
        <span class="span-badge mono" title="window length">
          {w ? formatSpan(w.toUs - w.fromUs) : "—"}
        </span>
        <div class="btn-group" role="group" aria-label="Relative ranges">
          {RANGES.map(([l, us]) => (
            <button class="btn small" onClick={() => lastRange(us)} title={`Last ${l} (of the newest data when it is older)`}>
              Last {l}
            </button>
          ))}
        </div>
        <div class="btn-group">
          <button class="btn small" aria-label="Shift back" title="Shift back ( [ )" onClick={() => shift(-1)}>
            ◀
          </button>
          <button class="btn small" aria-label="Shift forward" title="Shift forward ( ] )" onClick={() => shift(1)}>
            ▶
          </button>
          <button class="btn small" aria-label="Zoom out" title="Zoom out ( z )" onClick={zoom}>
            ⊖
          </button>
        </div>
        <button class={`btn small live${r.live ? " on" : ""}`} aria-pressed={r.live} onClick={toggleLive} title="Live: follow new traffic">
          <span class="dot" aria-hidden="true" />
          Live
        </button>
      </div>
      <div class="tb-row second">
        {nodes && <NodePicker />}
        <Overview />
      </div>
    </div>
  );
}
