// App-wide state: the URL (route), the data's boundaries, the resolved window.

import { computed, effect, signal } from "@preact/signals";
import { ApiError, getJson, reconnects } from "./api";
import type { Boundaries, Snapshot } from "./lib/types";
import { defaultWindow, parseTime, type Window } from "./lib/time";
import { parseUrl, toUrl, type UrlState } from "./lib/url";

export const route = signal<UrlState>(parseUrl(location.pathname, location.search));

/** Changes the screen: a new history entry unless `replace`. */
export function navigate(patch: Partial<UrlState>, replace = false): void {
  const next = { ...route.value, ...patch };
  const url = toUrl(next);
  const cur = location.pathname + location.search;
  if (url !== cur) {
    if (replace) history.replaceState(null, "", url);
    else history.pushState(null, "", url);
  }
  route.value = next;
}

window.addEventListener("popstate", () => {
  route.value = parseUrl(location.pathname, location.search);
});

export const boundaries = signal<Boundaries | null>(null);
export const boundariesLoaded = signal(false);
export const version = signal<string>("");
/** Whether the server has `GET /api/v1/histogram` (from its OpenAPI document). */
export const hasHistogram = signal<boolean | null>(null);
export const snapshots = signal<Snapshot[]>([]);

/** "Now" for relative windows; bumped by refreshes and live mode. */
export const nowUs = signal(Date.now() * 1000);
export function refreshNow(): void {
  nowUs.value = Date.now() * 1000;
}

export async function loadBoundaries(): Promise<void> {
  try {
    boundaries.value = await getJson<Boundaries>("/api/v1/boundaries");
  } catch (e) {
    // Not signed in yet: no default window (it would land in the URL before the sign-in).
    if (e instanceof ApiError && e.status === 401) return;
    /* the banner says the server is unreachable */
  }
  boundariesLoaded.value = true;
}

export async function loadSnapshots(): Promise<void> {
  try {
    snapshots.value = (await getJson<{ snapshots: Snapshot[] }>("/api/v1/snapshots")).snapshots;
  } catch {
    /* shown by the banner */
  }
}

async function loadApiInfo(): Promise<void> {
  try {
    const doc = await getJson<{ info?: { version?: string }; paths?: Record<string, unknown> }>("/api/v1/openapi.json");
    version.value = doc.info?.version ?? "";
    hasHistogram.value = !!doc.paths?.["/api/v1/histogram"];
  } catch (e) {
    if (e instanceof ApiError && e.status === 401) return;
    hasHistogram.value = false;
  }
}

/** The window of the URL resolved to µs (null until the default is known or when unreadable). */
export const window_ = computed<Window | null>(() => {
  const r = route.value;
  if (!r.from && !r.to) return null;
  const now = nowUs.value;
  const from = parseTime(r.from || "-1h", now);
  const to = parseTime(r.to || "now", now);
  if (from === null || to === null || from >= to) return null;
  return { fromUs: from, toUs: to };
});

/** The compare window of the service map. */
export const compareWindow = computed<Window | null>(() => {
  const r = route.value;
  if (!r.cfrom || !r.cto) return null;
  const from = parseTime(r.cfrom, nowUs.value);
  const to = parseTime(r.cto, nowUs.value);
  if (from === null || to === null || from >= to) return null;
  return { fromUs: from, toUs: to };
});

export function start(): void {
  void loadApiInfo();
  void loadBoundaries();
  void loadSnapshots();
  // A URL without a window gets the default one (where the data is), written into the URL.
  effect(() => {
    const r = route.value;
    if (!boundariesLoaded.value || r.from || r.to) return;
    const d = r.live ? { from: "-15m", to: "now" } : defaultWindow(Date.now() * 1000, boundaries.value?.overall);
    navigate(d, true);
  });
  // After the server comes back, read its state again.
  let first = true;
  effect(() => {
    void reconnects.value;
    if (first) {
      first = false;
      return;
    }
    void loadApiInfo();
    void loadBoundaries();
    void loadSnapshots();
    refreshNow();
  });
  // Boundaries move with new data: refresh them now and then.
  setInterval(() => void loadBoundaries(), 30_000);
}
