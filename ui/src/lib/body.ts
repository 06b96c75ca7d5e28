// Bodies for the detail pane: pretty-printed by content type; hex + text for binary.

import { base64Bytes } from "./curl";
import type { Body, Header } from "./types";

export type Rendered =
  | { kind: "json"; text: string }
  | { kind: "xml"; text: string }
  | { kind: "form"; pairs: [string, string][] }
  | { kind: "graphql"; query: string; variables: string | null; operationName: string | null }
  | { kind: "text"; text: string }
  | { kind: "hex"; text: string };

export function contentType(headers: Header[] | null): string {
  const h = (headers ?? []).find((x) => x.name.toLowerCase() === "content-type");
  return (h?.value ?? "").toLowerCase();
}

/** Classic hex dump: offset, 16 bytes in hex, printable ASCII. */
export function hexDump(bytes: Uint8Array, max = 64 * 1024): string {
  const lines: string[] = [];
  const n = Math.min(bytes.length, max);
  for (let off = 0; off < n; off += 16) {
    const row = bytes.subarray(off, Math.min(off + 16, n));
    let hex = "";
    let txt = "";
    for (let i = 0; i < 16; i++) {
      if (i < row.length) {
        hex += row[i].toString(16).padStart(2, "0") + " ";
        txt += row[i] >= 0x20 && row[i] < 0x7f ? String.fromCharCode(row[i]) : ".";
      } else hex += "   ";
      if (i === 7) hex += " ";
    }
    lines.push(`${off.toString(16).padStart(8, "0")}  ${hex} ${txt}`);
  }
  return lines.join("\n");
}

/** Indents XML by its tags (keeps text as is; a failure returns the input). */
export function prettyXml(xml: string): string {
  const tokens = xml.replace(/>\s+</g, "><").split(/(<[^>]+>)/).filter((t) => t.trim() !== "");
  let depth = 0;
  const out: string[] = [];
  for (const t of tokens) {
    if (/^<\//.test(t)) {
      depth = Math.max(0, depth - 1);
      const last = out[out.length - 1];
      // `<a>text</a>` stays on one line.
      if (last !== undefined && !last.trimStart().startsWith("<") && out.length >= 2) {
        const text = out.pop()!;
        out[out.length - 1] += text.trim() + t;
        continue;
      }
      out.push("  ".repeat(depth) + t);
    } else if (/^<[^?!].*[^/]>$/.test(t) && !/^<[^>]+\/>$/.test(t)) {
      out.push("  ".repeat(depth) + t);
      depth++;
    } else out.push("  ".repeat(depth) + t);
  }
  return out.join("\n");
}

function tryJson(s: string): unknown | undefined {
  try {
    return JSON.parse(s);
  } catch {
    return undefined;
  }
}

/** Renders a body by its content type (and by sniffing when the type is missing). */
export function renderBody(body: Body, ctype: string, isGraphql = false): Rendered {
  if (body.encoding === "base64") return { kind: "hex", text: hexDump(base64Bytes(body.data)) };
  const text = body.data;
  const trimmed = text.trimStart();
  const json = ctype.includes("json") || ((trimmed.startsWith("{") || trimmed.startsWith("[")) && !ctype.includes("form"));
  if (ctype.includes("graphql") && !ctype.includes("json")) return { kind: "graphql", query: text, variables: null, operationName: null };
  if (json) {
    const v = tryJson(text);
    if (v !== undefined) {
      if (isGraphql || (v && typeof v === "object" && !Array.isArray(v) && typeof (v as Record<string, unknown>).query === "string")) {
        const o = v as Record<string, unknown>;
        if (typeof o.query === "string")
          return {
            kind: "graphql",
            query: o.query,
            variables: o.variables === undefined || o.variables === null ? null : JSON.stringify(o.variables, null, 2),
            operationName: typeof o.operationName === "string" ? o.operationName : null,
          };
      }
      return { kind: "json", text: JSON.stringify(v, null, 2) };
    }
  }
  if (ctype.includes("x-www-form-urlencoded")) {
    const pairs: [string, string][] = [];
    for (const [k, v] of new URLSearchParams(text)) pairs.push([k, v]);
    return { kind: "form", pairs };
  }
  if (ctype.includes("xml") || (trimmed.startsWith("<") && !ctype.includes("html") && /^<(\?xml|[A-Za-z])/.test(trimmed) && !/^<!doctype html|^<html/i.test(trimmed)))
    return { kind: "xml", text: prettyXml(text) };
  // Mostly control characters: treat as binary.
  let ctrl = 0;
  for (let i = 0; i < Math.min(text.length, 512); i++) {
    const c = text.charCodeAt(i);
    if (c < 9 || (c > 13 && c < 32)) ctrl++;
  }
  if (ctrl > 8) {
    const bytes = new TextEncoder().encode(text);
    return { kind: "hex", text: hexDump(bytes) };
  }
  return { kind: "text", text };
}
