import { useEffect } from "preact/hooks";
import { reconnects } from "../api";
import { EntryDetail } from "../components/EntryDetail";
import { cursor, EntryList, revealRow } from "../components/EntryList";
import { Histogram } from "../components/Histogram";
import { formatSpan, formatUs } from "../lib/time";
import type { Entry } from "../lib/types";
import { boundaries, navigate, nowUs, refreshNow, route, window_ } from "../state";
import { fmtInt } from "../util";
import { setWindow } from "../components/TimeBar";
import {
  count,
  droppedBatches,
  liveState,
  load,
  loadError,
  loading,
  rows,
  shownQuery,
  stopLive,
  unfilteredCount,
} from "./trafficData";

export function openEntry(e: Entry, i: number): void {
  cursor.value = i;
  navigate({ entry: e.id }, !!route.value.entry);
}

export function closeEntry(): void {
  if (route.value.entry) navigate({ entry: "" });
}

/** j/k: moves the cursor (and the open entry along with it). */
export function moveCursor(d: number): void {
  const list = rows.value;
  if (!list.length) return;
  const i = Math.max(0, Math.min(list.length - 1, cursor.value + d));
  cursor.value = i;
  revealRow(i);
  if (route.value.entry) navigate({ entry: list[i].id }, true);
}

export function openCursor(): void {
  const e = rows.value[cursor.value];
  if (e) openEntry(e, cursor.value);
}

function EmptyState() {
  const err = loadError.value;
  const q = shownQuery.value;
  const b = boundaries.value?.overall;
  const w = window_.value;
  if (loading.value && !rows.value.length) return <div class="empty" role="status">Loading entries…</div>;
  if (err && !rows.value.length)
    return (
      <div class="empty" role="status">
        <strong>Nothing shown: the query failed.</strong> {err.message}
        {err.suggestion ? ` — ${err.suggestion}` : ""}
      </div>
    );
  if (!w) return <div class="empty" role="status">Waiting for the window…</div>;
  if (route.value.live && !err)
    return (
      <div class="empty" role="status">
        <strong>Live: waiting for matching traffic…</strong> New entries appear here as ingest acknowledges them
        {b ? (
          <>
            {" "}
            (the newest stored entry is from <span class="mono">{b.newest}</span>).
          </>
        ) : (
          "."
        )}
      </div>
    );
  if (!b)
    return (
      <div class="empty" role="status">
        <strong>The store holds no entries yet.</strong> Import a capture:{" "}
        <code>wiretrail import --server http://HOST:8900 capture.pcap</code>, or start live capture.
      </div>
    );
  const inWindow = b.newest_us >= w.fromUs && b.oldest_us < w.toUs;
  if (!inWindow)
    return (
      <div class="empty" role="status">
        <strong>No data in this window.</strong> Stored data spans <span class="mono">{b.oldest}</span> →{" "}
        <span class="mono">{b.newest}</span> ({formatSpan(b.newest_us - b.oldest_us)}).{" "}
        <button class="btn small" onClick={() => setWindow({ fromUs: Math.floor(b.oldest_us / 1e6) * 1e6, toUs: Math.ceil((b.newest_us + 1) / 1e6) * 1e6 })}>
          Show all stored data
        </button>
      </div>
    );
  if (q && (q.kfl || q.nodes.length))
    return (
      <div class="empty" role="status">
        <strong>No entries match</strong> {q.kfl && <code>{q.kfl}</code>}
        {q.nodes.length ? ` on ${q.nodes.join(", ")}` : ""} in this window
        {unfilteredCount.value !== null ? ` — the window holds ${fmtInt(unfilteredCount.value)} entries without the filter.` : "."}{" "}
        <button class="btn small" onClick={() => navigate({ kfl: "", nodes: [] })}>
          Clear filter
        </button>
      </div>
    );
  return (
    <div class="empty" role="status">
      <strong>No entries in this window</strong> (data exists {b.oldest} → {b.newest}).
    </div>
  );
}

export function Traffic() {
  const r = route.value;
  const w = window_.value;
  // Live mode follows a moving window: the stream, not a reload, brings what is new.
  const win = r.live ? `${r.from}|${r.to}|${!!w}` : `${w?.fromUs}|${w?.toUs}`;
  const key = `${r.kfl}|${r.nodes.join(",")}|${win}|${r.live}|${reconnects.value}`;
  useEffect(() => {
    if (!w) return;
    cursor.value = 0;
    void load({ kfl: r.kfl, nodes: r.nodes, window: w, live: r.live });
  }, [key]);
  useEffect(() => () => stopLive(), []);
  // Live: the moving window's count and histogram follow every 10 s.
  useEffect(() => {
    if (!r.live) return;
    const t = setInterval(() => refreshNow(), 10_000);
    return () => clearInterval(t);
  }, [r.live]);
  void nowUs.value;

  const list = rows.value;
  const err = loadError.value;
  const c = count.value;
  return (
    <div class="traffic">
      <Histogram />
      <div class="list-head">
        <span>
          <strong aria-label="Matching entries" class="count mono">
            {c === null ? "…" : String(c)}
          </strong>{" "}
          <span class="muted">matching entries</span>
          {c !== null && c > list.length && <span class="muted small"> · {fmtInt(list.length)} loaded, scroll for more</span>}
        </span>
        {w && (
          <span class="muted small mono" title="the window">
            {formatUs(w.fromUs).replace("T", " ").slice(0, 23)} → {formatUs(w.toUs).replace("T", " ").slice(0, 23)} UTC
          </span>
        )}
        <span class="spacer" />
        {r.live && (
          <span class={`live-state ${liveState.value}`}>
            {liveState.value === "on" ? "● streaming" : liveState.value === "connecting" ? "connecting…" : liveState.value === "closed" ? "reconnecting…" : ""}
          </span>
        )}
        {r.live && droppedBatches.value > 0 && (
          <span class="dropped" role="status">
            dropped {droppedBatches.value} batch{droppedBatches.value === 1 ? "" : "es"}: the server skipped traffic this view could not keep up with
          </span>
        )}
        {err && list.length > 0 && (
          <span class="warn small" title={err.message}>
            showing the previous results
          </span>
        )}
        {loading.value && <span class="spinner" aria-hidden="true" />}
      </div>
      <div class={`split${r.entry ? " with-detail" : ""}`}>
        <div class="list-pane">
          {list.length > 0 ? <EntryList selectedId={r.entry} onOpen={openEntry} live={r.live} /> : <EmptyState />}
        </div>
        {r.entry && <EntryDetail id={r.entry} onClose={closeEntry} />}
      </div>
    </div>
  );
}
