// Token authentication (`wiretrail up --auth tokens`): the pure parts. The token lives in
// sessionStorage only (never the URL, never localStorage); see `../auth.ts` for the state.

/** The sessionStorage key of the bearer token. */
export const TOKEN_KEY = "wiretrail.token";
/** The subprotocol offered beside `bearer.<token>`; the server answers with it (the token is not echoed). */
export const WS_PROTOCOL = "wiretrail";
/** Prefix of the subprotocol entry that carries the token. */
export const WS_BEARER_PREFIX = "bearer.";

/** A token as typed or pasted: surrounding space and a pasted `Bearer ` scheme removed. */
export function normalizeToken(raw: string): string {
  let t = raw.trim();
  const m = /^bearer\s+(.+)$/i.exec(t);
  if (m) t = m[1].trim();
  return t;
}

/** The headers of a fetch: `init` plus `Authorization: Bearer <token>` when there is a token. */
export function withAuth(headers: HeadersInit | undefined, token: string | null): Record<string, string> {
  const out: Record<string, string> = {};
  if (headers instanceof Headers) headers.forEach((v, k) => (out[k] = v));
  else if (Array.isArray(headers)) for (const [k, v] of headers) out[k] = v;
  else if (headers) Object.assign(out, headers);
  for (const k of Object.keys(out)) if (k.toLowerCase() === "authorization") delete out[k];
  if (token) out.Authorization = `Bearer ${token}`;
  return out;
}

/**
 * The subprotocols of a WebSocket: `["wiretrail", "bearer.<token>"]` with a token (the server
 * answers `wiretrail`), none without one (no-auth servers need nothing).
 */
export function wsProtocols(token: string | null): string[] {
  return token ? [WS_PROTOCOL, WS_BEARER_PREFIX + token] : [];
}

/** Whether a token can travel in `Sec-WebSocket-Protocol` (an RFC 7230 token: no spaces, commas, …). */
export function validTokenChars(token: string): boolean {
  return /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/.test(token);
}

/** The message shown in place of a refused (403) action. */
export function forbiddenMessage(server: string | undefined): string {
  const s = (server ?? "").trim();
  return s ? `Your role may not do this: ${s}` : "Your role may not do this (HTTP 403).";
}
