// The Traffic view's data: entry pages by cursor, the count, and the live tail.

import { signal } from "@preact/signals";
import { ApiError, getJson, isAbort, needSignIn, openSocket, validateKfl } from "../api";
import type { ApiErrorBody, EntriesPage, Entry } from "../lib/types";
import type { Window } from "../lib/time";
import { apiWindow } from "../util";

export interface Query {
  kfl: string;
  nodes: string[];
  window: Window;
  live: boolean;
}

export const rows = signal<Entry[]>([]);
export const nextCursor = signal<string | null>(null);
export const loading = signal(false);
export const loadError = signal<ApiErrorBody | null>(null);
export const count = signal<number | null>(null);
export const unfilteredCount = signal<number | null>(null);
/** Live tail: entries that arrived while the list was scrolled (shown by the "N new" pill). */
export const pending = signal<Entry[]>([]);
export const droppedBatches = signal(0);
export const liveState = signal<"off" | "connecting" | "on" | "closed">("off");
/** The query the rows belong to. */
export const shownQuery = signal<Query | null>(null);

const PAGE = 200;
let gen = 0;
let ac: AbortController | null = null;
let ws: WebSocket | null = null;
let wsRetry: ReturnType<typeof setTimeout> | null = null;
/** Set by the list: whether new live rows go straight to the top. */
export const atTop = signal(true);

function params(q: Query) {
  return { kfl: q.kfl, ...apiWindow(q.window), nodes: q.nodes.join(",") };
}

export function stopLive(): void {
  if (wsRetry) clearTimeout(wsRetry);
  wsRetry = null;
  if (ws) {
    ws.onclose = null;
    ws.onerror = null;
    ws.onmessage = null;
    ws.close();
  }
  ws = null;
  liveState.value = "off";
}

/** Loads the first page and the count for a query (keeps the old rows on a KFL error). */
/** Settles when the current load's first page is on screen (or failed). The count and the
 * histogram start after it: on 2 cores, three scans at once made the first rows wait for all. */
let firstPage: Promise<void> = Promise.resolve();
export function afterFirstPage(): Promise<void> {
  return firstPage;
}

export async function load(q: Query): Promise<void> {
  let pageDone: () => void = () => {};
  firstPage = new Promise<void>((r) => (pageDone = r));
  try {
    await loadPage(q, pageDone);
  } finally {
    pageDone();
  }
}

async function loadPage(q: Query, pageDone: () => void): Promise<void> {
  const my = ++gen;
  ac?.abort();
  ac = new AbortController();
  const sig = ac.signal;
  stopLive();
  loading.value = true;
  loadError.value = null;
  try {
    const bad = await validateKfl(q.kfl, sig);
    if (my !== gen) return;
    if (bad) {
      loadError.value = bad;
      loading.value = false;
      return;
    }
    const page = await getJson<EntriesPage>("/api/v1/entries", { ...params(q), limit: PAGE }, sig);
    if (my !== gen) return;
    rows.value = page.entries;
    atTop.value = true;
    nextCursor.value = page.next_cursor;
    pending.value = [];
    droppedBatches.value = 0;
    shownQuery.value = q;
    count.value = null;
    unfilteredCount.value = null;
    pageDone();
    await getJson<{ count: number }>("/api/v1/count", params(q), sig)
      .then((c) => {
        if (my === gen && shownQuery.value === q) count.value = c.count;
      })
      .catch(() => {});
    if (my !== gen) return;
    if (count.value === 0 && (q.kfl || q.nodes.length)) {
      getJson<{ count: number }>("/api/v1/count", apiWindow(q.window), sig)
        .then((c) => {
          if (my === gen) unfilteredCount.value = c.count;
        })
        .catch(() => {});
    }
    if (q.live) startLive(q, my);
  } catch (e) {
    if (isAbort(e) || my !== gen) return;
    loadError.value = e instanceof ApiError ? e.body : { message: String(e) };
  } finally {
    if (my === gen) loading.value = false;
  }
}

export async function loadMore(): Promise<void> {
  const q = shownQuery.value;
  const cur = nextCursor.value;
  if (!q || !cur || loading.value) return;
  const my = gen;
  loading.value = true;
  try {
    const page = await getJson<EntriesPage>("/api/v1/entries", { ...params(q), limit: PAGE, cursor: cur }, ac?.signal);
    if (my !== gen) return;
    const seen = new Set(rows.value.map((r) => r.id));
    rows.value = [...rows.value, ...page.entries.filter((e) => !seen.has(e.id))];
    nextCursor.value = page.next_cursor;
  } catch (e) {
    if (!isAbort(e) && my === gen) loadError.value = e instanceof ApiError ? e.body : { message: String(e) };
  } finally {
    if (my === gen) loading.value = false;
  }
}

/** Moves the entries that arrived while paused to the top. */
export function flushPending(): void {
  if (!pending.value.length) return;
  const seen = new Set(rows.value.map((r) => r.id));
  const fresh = pending.value.filter((e) => !seen.has(e.id));
  rows.value = [...fresh, ...rows.value];
  if (count.value !== null) count.value += fresh.length;
  pending.value = [];
}

function startLive(q: Query, my: number): void {
  stopLive();
  liveState.value = "connecting";
  const sock = openSocket("/api/v1/stream", { kfl: q.kfl, nodes: q.nodes.join(",") });
  ws = sock;
  let buf: Entry[] = [];
  let timer: ReturnType<typeof setTimeout> | null = null;
  const flushBuf = () => {
    timer = null;
    if (my !== gen || !buf.length) return;
    // Newest first, like the list.
    const incoming = buf.sort((a, b) => b.ts_us - a.ts_us);
    buf = [];
    if (atTop.value && !pending.value.length) {
      const seen = new Set(rows.value.map((r) => r.id));
      const fresh = incoming.filter((e) => !seen.has(e.id));
      rows.value = [...fresh, ...rows.value].slice(0, 100_000);
      if (count.value !== null) count.value += fresh.length;
    } else {
      pending.value = [...incoming, ...pending.value];
    }
  };
  sock.onopen = () => {
    if (my === gen) liveState.value = "on";
  };
  sock.onmessage = (ev) => {
    if (my !== gen) return;
    let m: { type: string; entry?: Entry; batches?: number; message?: string };
    try {
      m = JSON.parse(ev.data);
    } catch {
      return;
    }
    if (m.type === "entry" && m.entry) {
      buf.push(m.entry);
      if (!timer) timer = setTimeout(flushBuf, 100);
    } else if (m.type === "dropped") droppedBatches.value += m.batches ?? 0;
    else if (m.type === "error") loadError.value = { message: m.message ?? "live stream error" };
  };
  sock.onclose = () => {
    if (my !== gen || ws !== sock) return;
    liveState.value = "closed";
    // Reconnect while live mode is on.
    wsRetry = setTimeout(() => {
      if (my === gen && !needSignIn.value) startLive(q, my);
    }, 2000);
  };
}
