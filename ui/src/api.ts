// The REST client: JSON fetches with the API's error shape, and server reachability.

import { signal } from "@preact/signals";
import type { ApiErrorBody } from "./lib/types";

/** True while the server cannot be reached; the status poller clears it. */
export const serverDown = signal(false);
/** Bumped when the server comes back, so views fetch again. */
export const reconnects = signal(0);

export class ApiError extends Error {
  constructor(
    public status: number,
    public body: ApiErrorBody,
  ) {
    super(body.message);
  }
}

export function isAbort(e: unknown): boolean {
  return e instanceof DOMException && e.name === "AbortError";
}

export function isTimeout(e: unknown): boolean {
  return e instanceof DOMException && e.name === "TimeoutError";
}

type Params = Record<string, string | number | undefined | null>;

export function qs(params: Params): string {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== "") q.set(k, String(v));
  const s = q.toString();
  return s ? `?${s}` : "";
}

async function request(path: string, init: RequestInit): Promise<Response> {
  let r: Response;
  try {
    r = await fetch(path, init);
  } catch (e) {
    if (!isAbort(e) || isTimeout(e)) serverDown.value = true;
    throw e;
  }
  if (r.status === 502 || r.status === 503 || r.status === 504) {
    serverDown.value = true;
    throw new ApiError(r.status, { message: `server unreachable (HTTP ${r.status})` });
  }
  if (!r.ok) {
    let body: ApiErrorBody = { message: `HTTP ${r.status}` };
    try {
      const j = await r.json();
      if (j?.error) body = typeof j.error === "string" ? { message: j.error } : j.error;
    } catch {
      /* not JSON */
    }
    throw new ApiError(r.status, body);
  }
  return r;
}

export async function getJson<T>(path: string, params: Params = {}, sig?: AbortSignal): Promise<T> {
  const r = await request(path + qs(params), { signal: sig, headers: { Accept: "application/json" } });
  return (await r.json()) as T;
}

export async function sendJson<T>(method: string, path: string, body: unknown, sig?: AbortSignal): Promise<T> {
  const r = await request(path, {
    method,
    signal: sig,
    headers: { "Content-Type": "application/json", Accept: "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return (await r.json()) as T;
}

export async function postRaw(path: string, body: unknown, sig?: AbortSignal): Promise<Response> {
  return request(path, {
    method: "POST",
    signal: sig,
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body),
  });
}

export async function getText(path: string, sig?: AbortSignal): Promise<string> {
  const r = await request(path, { signal: sig });
  return r.text();
}

/** `ws://host/path?…` for a WebSocket route of the API. */
export function wsUrl(path: string, params: Params): string {
  const proto = location.protocol === "https:" ? "wss:" : "ws:";
  return `${proto}//${location.host}${path}${qs(params)}`;
}

const validated = new Map<string, ApiErrorBody | null>();

/** A remembered validation: null = valid, an error, or undefined = not asked yet. */
export function validatedAlready(q: string): ApiErrorBody | null | undefined {
  if (!q.trim()) return null;
  return validated.get(q);
}

/** Validates KFL; null when it is fine (answers are remembered: the grammar does not change). */
export async function validateKfl(q: string, sig?: AbortSignal): Promise<ApiErrorBody | null> {
  if (!q.trim()) return null;
  if (validated.has(q)) return validated.get(q)!;
  const v = await validateUncached(q, sig);
  if (validated.size > 500) validated.clear();
  validated.set(q, v);
  return v;
}

async function validateUncached(q: string, sig?: AbortSignal): Promise<ApiErrorBody | null> {
  let r: Response;
  try {
    r = await fetch(`/api/v1/kfl/validate${qs({ q })}`, { signal: sig });
  } catch (e) {
    if (!isAbort(e)) serverDown.value = true;
    throw e;
  }
  if (r.status >= 502 && r.status <= 504) {
    serverDown.value = true;
    throw new ApiError(r.status, { message: `server unreachable (HTTP ${r.status})` });
  }
  const j = await r.json().catch(() => ({}));
  if (r.ok && j.ok) return null;
  return (j.error ?? { message: `HTTP ${r.status}` }) as ApiErrorBody;
}
