// Small shared helpers for components.

import { signal } from "@preact/signals";
import { formatUs, type Window } from "./lib/time";

export function apiWindow(w: Window | null): { from?: string; to?: string } {
  return w ? { from: formatUs(w.fromUs), to: formatUs(w.toUs) } : {};
}

/** The text of the `Copied` status and when it was set. */
export const copied = signal<{ text: string; at: number } | null>(null);

export async function copyText(text: string, what = "Copied"): Promise<void> {
  let ok = false;
  try {
    await navigator.clipboard.writeText(text);
    ok = true;
  } catch {
    const ta = document.createElement("textarea");
    ta.value = text;
    ta.setAttribute("readonly", "");
    ta.style.position = "fixed";
    ta.style.opacity = "0";
    document.body.appendChild(ta);
    ta.select();
    try {
      ok = document.execCommand("copy");
    } catch {
      ok = false;
    }
    ta.remove();
  }
  copied.value = { text: ok ? what : "Copy failed: select the text by hand", at: Date.now() };
  const at = copied.value.at;
  setTimeout(() => {
    if (copied.value?.at === at) copied.value = null;
  }, 2500);
}

/** `12345` → `12,345` for display (never for `Matching entries`, which is digits only). */
export function fmtInt(n: number): string {
  return n.toLocaleString("en-US");
}

export function pct(n: number, d: number): string {
  if (!d) return "0%";
  const p = (100 * n) / d;
  return p === 0 ? "0%" : p < 0.1 ? "<0.1%" : p < 10 ? `${p.toFixed(1)}%` : `${Math.round(p)}%`;
}

export function statusClass(protocol: string | null, status: number | null): string {
  if (status === null || status === undefined) return "st-none";
  if (protocol && ["http", "http2", "graphql"].includes(protocol)) {
    if (status >= 500) return "st-5xx";
    if (status >= 400) return "st-4xx";
    if (status >= 300) return "st-3xx";
    if (status >= 200) return "st-2xx";
    return "st-other";
  }
  if (protocol === "amqp") return status === 200 || status === 0 ? "st-ok" : status >= 300 ? "st-err" : "st-ok";
  return status === 0 ? "st-ok" : "st-err";
}

export function download(blob: Blob, name: string): void {
  const url = URL.createObjectURL(blob);
  const a = document.createElement("a");
  a.href = url;
  a.download = name;
  document.body.appendChild(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}

export function identityLabel(id: { pod: string | null; service: string | null; workload: string | null; name: string | null; ip: string | null }): string {
  return id.pod || id.service || id.workload || id.name || id.ip || "?";
}
