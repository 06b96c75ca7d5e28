// The REST client: JSON fetches with the API's error shape, and server reachability.

import { signal } from "@preact/signals";
import { forbiddenMessage, TOKEN_KEY, withAuth, wsProtocols } from "./lib/auth";
import type { ApiErrorBody } from "./lib/types";
import { download } from "./util";

/** True while the server cannot be reached; the status poller clears it. */
export const serverDown = signal(false);
/** Bumped when the server comes back, so views fetch again. */
export const reconnects = signal(0);

function storedToken(): string | null {
  try {
    return sessionStorage.getItem(TOKEN_KEY);
  } catch {
    return null;
  }
}

/** The bearer token (`up --auth tokens`), kept in sessionStorage only; null without one. */
export const token = signal<string | null>(storedToken());
/** True after the server answered 401: the sign-in screen shows instead of the views. */
export const needSignIn = signal(false);
/** Why the sign-in screen shows (a refused stored token), if there is more to say. */
export const signInReason = signal<string | null>(null);

/** Keeps `t` for this tab (sessionStorage), leaves the sign-in screen and loads the view again. */
export function signIn(t: string): void {
  try {
    sessionStorage.setItem(TOKEN_KEY, t);
  } catch {
    /* private mode: the token lives in memory for this page */
  }
  token.value = t;
  signInReason.value = null;
  needSignIn.value = false;
  reconnects.value++;
}

/** Forgets the token and shows the sign-in screen. */
export function signOut(): void {
  try {
    sessionStorage.removeItem(TOKEN_KEY);
  } catch {
    /* nothing kept */
  }
  token.value = null;
  signInReason.value = null;
  needSignIn.value = true;
}

/** A 401: the token (if any) is no longer good; ask for one. */
function unauthenticated(message: string): void {
  if (token.value) {
    try {
      sessionStorage.removeItem(TOKEN_KEY);
    } catch {
      /* nothing kept */
    }
    token.value = null;
    signInReason.value = `The server refused the token: ${message}`;
  }
  needSignIn.value = true;
}

/** `init` with `Authorization: Bearer <token>` when signed in. */
export function authInit(init: RequestInit = {}): RequestInit {
  return { ...init, headers: withAuth(init.headers, token.value) };
}

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
    r = await fetch(path, authInit(init));
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
    if (r.status === 401) unauthenticated(body.message);
    if (r.status === 403) body = { ...body, message: forbiddenMessage(body.message) };
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

/**
 * A WebSocket to a route of the API; the token travels as the `bearer.<token>` subprotocol
 * (beside `wiretrail`, which the server answers with), never in the URL.
 */
export function openSocket(path: string, params: Params): WebSocket {
  const protocols = wsProtocols(token.value);
  return protocols.length ? new WebSocket(wsUrl(path, params), protocols) : new WebSocket(wsUrl(path, params));
}

/** Downloads `path` with the token (fetch + blob + object URL: a plain link cannot send headers). */
export async function downloadFile(path: string, name: string, sig?: AbortSignal): Promise<void> {
  const r = await request(path, { signal: sig });
  download(await r.blob(), name);
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
    r = await fetch(`/api/v1/kfl/validate${qs({ q })}`, authInit({ signal: sig }));
  } catch (e) {
    if (!isAbort(e)) serverDown.value = true;
    throw e;
  }
  if (r.status >= 502 && r.status <= 504) {
    serverDown.value = true;
    throw new ApiError(r.status, { message: `server unreachable (HTTP ${r.status})` });
  }
  const j = await r.json().catch(() => ({}));
  if (r.status === 401 || r.status === 403) {
    const body: ApiErrorBody = typeof j.error === "object" && j.error ? j.error : { message: j.error ?? `HTTP ${r.status}` };
    if (r.status === 401) unauthenticated(body.message);
    throw new ApiError(r.status, r.status === 403 ? { ...body, message: forbiddenMessage(body.message) } : body);
  }
  if (r.ok && j.ok) return null;
  return (j.error ?? { message: `HTTP ${r.status}` }) as ApiErrorBody;
}

/**
 * Checks a token before keeping it: a read every role that may use the dashboard has
 * (`GET /api/v1/boundaries`). Null when it is good, else the message to show.
 */
export async function tryToken(t: string, sig?: AbortSignal): Promise<string | null> {
  let r: Response;
  try {
    r = await fetch("/api/v1/boundaries", { signal: sig, headers: withAuth({ Accept: "application/json" }, t) });
  } catch (e) {
    if (isAbort(e)) throw e;
    return `The server cannot be reached: ${String(e)}`;
  }
  if (r.ok) return null;
  const j = await r.json().catch(() => ({}));
  const msg: string = (typeof j?.error === "object" ? j.error?.message : j?.error) || `HTTP ${r.status}`;
  if (r.status === 403) return `This token's role may not read traffic: ${msg}`;
  return msg;
}
