// "Copy as curl" for HTTP-family entries: the exact method, the URL from the Host header (or
// :authority) and the path, every request header, and the body with --data-binary.

import type { FullEntry, Header } from "./types";

/** POSIX shell single-quoting: `'…'` with `'` written as `'\''`. Plain words stay bare. */
export function shQuote(s: string): string {
  if (/^[A-Za-z0-9_@%+=:,./-]+$/.test(s)) return s;
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

export const HTTP_FAMILY = ["http", "http2", "grpc", "graphql"];

export function isHttpFamily(protocol: string | null | undefined): boolean {
  return !!protocol && HTTP_FAMILY.includes(protocol);
}

function header(headers: Header[] | null, name: string): string | null {
  const h = (headers ?? []).find((x) => x.name.toLowerCase() === name.toLowerCase());
  return h?.value ?? null;
}

/** Base64 → bytes without Buffer (runs in browsers and in node). */
export function base64Bytes(b64: string): Uint8Array {
  const bin = atob(b64);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

/** `printf '%b' '…'` argument: every byte as a `\0ooo` octal escape except plain printable ASCII. */
function printfBytes(bytes: Uint8Array): string {
  let s = "";
  for (const b of bytes) {
    const c = String.fromCharCode(b);
    if (b >= 0x20 && b < 0x7f && c !== "\\" && c !== "'" && c !== "%") s += c;
    else s += `\\0${b.toString(8).padStart(3, "0")}`;
  }
  return s;
}

/** The URL an HTTP request went to: scheme by TLS, authority from Host/:authority, else dst ip:port. */
export function requestUrl(e: FullEntry): string {
  const tls = isTls(e);
  const host =
    header(e.request_headers, "host") ??
    header(e.request_headers, ":authority") ??
    (e.dst.ip ? (e.dst.ip.includes(":") ? `[${e.dst.ip}]` : e.dst.ip) + (e.dst.port ? `:${e.dst.port}` : "") : "localhost");
  let path = e.path ?? header(e.request_headers, ":path") ?? "/";
  if (!path.startsWith("/")) {
    if (/^[a-z]+:\/\//i.test(path)) return path;
    path = `/${path}`;
  }
  return `${tls ? "https" : "http"}://${host}${path}`;
}

function isTls(e: FullEntry): boolean {
  const d = e.request as Record<string, unknown> | null;
  return !!(d && typeof d === "object" && d.tls) || e.capture === "ebpf_tls";
}

/** The curl command for an HTTP-family entry, one option per line. */
export function curlCommand(e: FullEntry): string {
  const method = e.method ?? header(e.request_headers, ":method") ?? "GET";
  const first: string[] = ["curl", "--globoff", "--path-as-is"];
  const lines: string[] = [];
  if (e.protocol === "http2" || e.protocol === "grpc") {
    lines.push(isTls(e) ? "--http2" : "--http2-prior-knowledge");
  }
  const body = e.request_body;
  lines.push(method === "HEAD" ? "--head" : `-X ${shQuote(method)}`);
  lines.push(shQuote(requestUrl(e)));
  for (const h of e.request_headers ?? []) {
    if (h.name.startsWith(":")) continue;
    if (body?.truncated && h.name.toLowerCase() === "content-length") continue;
    const v = h.value ?? "";
    // `Name;` is curl's way to send a header with an empty value.
    lines.push(`-H ${shQuote(v === "" ? `${h.name};` : `${h.name}: ${v}`)}`);
  }
  let prefix = "";
  if (body && body.size > 0) {
    if (body.encoding === "utf8") {
      lines.push(`--data-binary ${shQuote(body.data)}`);
    } else {
      prefix = `printf '%b' '${printfBytes(base64Bytes(body.data))}' | `;
      lines.push("--data-binary @-");
    }
  }
  return prefix + [first.join(" "), ...lines].join(" \\\n  ");
}
