import { signal } from "@preact/signals";
import { useEffect, useRef, useState } from "preact/hooks";
import type { Entry, Identity } from "../lib/types";
import { formatBytes, formatClockUs, formatLatency, formatLocal } from "../lib/time";
import { identityLabel, statusClass } from "../util";
import { atTop, flushPending, loadMore, loading, nextCursor, pending, rows } from "../views/trafficData";

export const ROW_H = 24;
const OVERSCAN = 12;

/** Index of the keyboard cursor row (j/k). */
export const cursor = signal(0);
export const listRef: { current: HTMLDivElement | null } = { current: null };

function ident(i: Identity): { label: string; ns: string; title: string } {
  const label = identityLabel(i);
  const addr = i.ip ? `${i.ip.includes(":") ? `[${i.ip}]` : i.ip}${i.port !== null && i.port !== undefined ? `:${i.port}` : ""}` : "";
  const parts = [
    addr,
    i.pod && `pod ${i.pod}`,
    i.service && `service ${i.service}`,
    i.workload && `workload ${i.workload}`,
    i.namespace && `namespace ${i.namespace}`,
    i.node && `node ${i.node}`,
  ].filter(Boolean);
  return { label, ns: i.namespace ?? "", title: parts.join("\n") };
}

function Row({ e, index, selected, isCursor, onOpen }: { e: Entry; index: number; selected: boolean; isCursor: boolean; onOpen: (e: Entry, i: number) => void }) {
  const s = ident(e.src);
  const d = ident(e.dst);
  return (
    <div
      role="row"
      aria-rowindex={index + 2}
      aria-selected={selected}
      data-id={e.id}
      class={`row${selected ? " selected" : ""}${isCursor ? " cursor" : ""}`}
      style={{ transform: `translateY(${index * ROW_H}px)` }}
      onClick={() => onOpen(e, index)}
    >
      <div role="gridcell" class="c-time mono" title={`${e.ts}\n${formatLocal(e.ts_us)}`}>
        {formatClockUs(e.ts_us)}
      </div>
      <div role="gridcell" class="c-proto">
        <span class={`badge p-${e.protocol ?? "x"}`}>{e.protocol ?? "?"}</span>
      </div>
      <div role="gridcell" class="c-peers" title={`${s.title}\n→\n${d.title}`}>
        <span class="peer">
          {s.label}
          {s.ns && <span class="ns">{s.ns}</span>}
        </span>
        <span class="to" aria-label="to">
          →
        </span>
        <span class="peer">
          {d.label}
          {d.ns && <span class="ns">{d.ns}</span>}
        </span>
      </div>
      <div role="gridcell" class="c-method mono">
        {e.method ?? ""}
      </div>
      <div role="gridcell" class="c-path mono" title={e.path ?? ""}>
        {e.path ?? ""}
      </div>
      <div role="gridcell" class={`c-status mono ${statusClass(e.protocol, e.status)}`} title={e.status_text ?? ""}>
        {e.status ?? "—"}
      </div>
      <div role="gridcell" class="c-lat mono">
        {formatLatency(e.elapsed_us)}
      </div>
      <div role="gridcell" class="c-size mono" title={`request ${e.request_size ?? "?"} B, response ${e.response_size ?? "?"} B`}>
        {formatBytes(e.request_size)} / {formatBytes(e.response_size)}
      </div>
      <div role="gridcell" class="c-node mono">
        {e.node ?? ""}
      </div>
    </div>
  );
}

export function EntryList({ selectedId, onOpen, live }: { selectedId: string; onOpen: (e: Entry, i: number) => void; live: boolean }) {
  const box = useRef<HTMLDivElement>(null);
  const [scrollTop, setScrollTop] = useState(0);
  const [height, setHeight] = useState(600);
  const list = rows.value;
  listRef.current = box.current;

  useEffect(() => {
    const el = box.current;
    if (!el) return;
    const ro = new ResizeObserver(() => setHeight(el.clientHeight));
    ro.observe(el);
    setHeight(el.clientHeight);
    return () => ro.disconnect();
  }, []);

  const first = Math.max(0, Math.floor(scrollTop / ROW_H) - OVERSCAN);
  const last = Math.min(list.length, Math.ceil((scrollTop + height) / ROW_H) + OVERSCAN);

  useEffect(() => {
    if (last >= list.length - 40 && nextCursor.value && !loading.value) void loadMore();
  }, [last, list.length, nextCursor.value, loading.value]);

  function onScroll(e: Event) {
    const el = e.currentTarget as HTMLDivElement;
    setScrollTop(el.scrollTop);
    const top = el.scrollTop < ROW_H / 2;
    atTop.value = top;
    if (top && pending.value.length) flushPending();
  }

  const n = pending.value.length;
  const cur = cursor.value;
  return (
    <div class="list-wrap">
      {live && n > 0 && (
        <div role="status" class="pill-wrap">
          <button
            class="pill"
            onClick={() => {
              flushPending();
              if (box.current) box.current.scrollTop = 0;
            }}
          >
            {n} new
          </button>
        </div>
      )}
      <div class="grid" role="grid" aria-label="Entries" aria-rowcount={list.length + 1} aria-readonly="true">
        <div class="row head" role="row" aria-rowindex={1}>
          <div role="columnheader" class="c-time">
            Time (UTC)
          </div>
          <div role="columnheader" class="c-proto">
            Proto
          </div>
          <div role="columnheader" class="c-peers">
            Source → Destination
          </div>
          <div role="columnheader" class="c-method">
            Method
          </div>
          <div role="columnheader" class="c-path">
            Path / summary
          </div>
          <div role="columnheader" class="c-status">
            Status
          </div>
          <div role="columnheader" class="c-lat">
            Latency
          </div>
          <div role="columnheader" class="c-size">
            Req / resp
          </div>
          <div role="columnheader" class="c-node">
            Node
          </div>
        </div>
        <div class="body" ref={box} onScroll={onScroll} role="rowgroup">
          <div class="spacer-rows" style={{ height: `${list.length * ROW_H + (nextCursor.value ? ROW_H : 0)}px` }}>
            {list.slice(first, last).map((e, k) => (
              <Row key={e.id} e={e} index={first + k} selected={e.id === selectedId} isCursor={first + k === cur} onOpen={onOpen} />
            ))}
            {nextCursor.value && (
              <div class="row loading-row" style={{ transform: `translateY(${list.length * ROW_H}px)` }} aria-hidden="true">
                loading more…
              </div>
            )}
          </div>
        </div>
      </div>
    </div>
  );
}

/** Scrolls the list so row i is visible. */
export function revealRow(i: number): void {
  const el = listRef.current;
  if (!el) return;
  const top = i * ROW_H;
  if (top < el.scrollTop) el.scrollTop = top;
  else if (top + ROW_H > el.scrollTop + el.clientHeight) el.scrollTop = top + ROW_H - el.clientHeight;
}
