// Times are µs since the epoch (a JS number holds them exactly until the year 2255).

const UNIT_US: Record<string, number> = {
  s: 1_000_000,
  m: 60_000_000,
  h: 3_600_000_000,
  d: 86_400_000_000,
  w: 604_800_000_000,
};

const RFC3339 =
  /^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2})(?::(\d{2})(?:[.,](\d+))?)?\s*([Zz]|[+-]\d{2}:?\d{2})?$/;

/** `-15m`, `-2h`, `-7d` (also `now-15m`). */
export function isRelative(s: string): boolean {
  return /^(now)?-\d+[smhdw]$/i.test(s.trim()) || s.trim().toLowerCase() === "now";
}

/** µs of a relative time string, or null. */
export function relativeUs(s: string): number | null {
  const m = /^(?:now)?-(\d+)([smhdw])$/i.exec(s.trim());
  return m ? Number(m[1]) * UNIT_US[m[2].toLowerCase()] : null;
}

/**
 * Reads a time as the API takes it: RFC 3339 (any fraction, `Z` or an offset; a missing offset
 * means UTC), `now`, relative `-15m` (from `anchorUs`) or epoch milliseconds. Null when unreadable.
 */
export function parseTime(input: string, anchorUs: number): number | null {
  const s = input.trim();
  if (!s) return null;
  if (s.toLowerCase() === "now") return anchorUs;
  const rel = relativeUs(s);
  if (rel !== null) return anchorUs - rel;
  if (/^\d{9,}$/.test(s)) return Number(s) * 1000;
  const m = RFC3339.exec(s);
  if (!m) return null;
  const [, y, mo, d, h, mi, sec, frac, off] = m;
  const ms = Date.UTC(+y, +mo - 1, +d, +h, +mi, sec ? +sec : 0);
  if (Number.isNaN(ms) || +mo < 1 || +mo > 12 || +d < 1 || +d > 31 || +h > 23 || +mi > 59 || +(sec ?? 0) > 60)
    return null;
  let us = ms * 1000 + (frac ? Number(frac.slice(0, 6).padEnd(6, "0")) : 0);
  if (off && off.toUpperCase() !== "Z") {
    const sign = off[0] === "-" ? -1 : 1;
    const digits = off.slice(1).replace(":", "");
    us -= sign * (Number(digits.slice(0, 2)) * 60 + Number(digits.slice(2, 4))) * 60_000_000;
  }
  return us;
}

const pad = (n: number, w = 2) => String(n).padStart(w, "0");

/** RFC 3339 UTC with microseconds: `2026-11-25T03:12:44.269324Z` (as the API writes it). */
export function formatUs(us: number): string {
  const ms = Math.floor(us / 1000);
  const micro = us - Math.floor(us / 1_000_000) * 1_000_000;
  const d = new Date(ms);
  return (
    `${d.getUTCFullYear()}-${pad(d.getUTCMonth() + 1)}-${pad(d.getUTCDate())}` +
    `T${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}:${pad(d.getUTCSeconds())}.${pad(micro, 6)}Z`
  );
}

/** The shortest exact RFC 3339 UTC form: no fraction on a whole second, ms on a whole ms, else µs. */
export function formatUsShort(us: number): string {
  const full = formatUs(us);
  if (us % 1_000_000 === 0) return full.replace(/\.\d{6}Z$/, "Z");
  if (us % 1000 === 0) return full.replace(/(\.\d{3})000Z$/, "$1Z");
  return full;
}

/** Local time with the zone offset: `2026-11-25 04:12:44.269 +01:00`. */
export function formatLocal(us: number, withMs = true): string {
  const d = new Date(Math.floor(us / 1000));
  const off = -d.getTimezoneOffset();
  const sign = off >= 0 ? "+" : "-";
  const a = Math.abs(off);
  return (
    `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ` +
    `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}` +
    (withMs ? `.${pad(d.getMilliseconds(), 3)}` : "") +
    ` ${sign}${pad(Math.floor(a / 60))}:${pad(a % 60)}`
  );
}

/** Time of day in UTC with µs, for list rows: `03:12:44.269324`. */
export function formatClockUs(us: number): string {
  return formatUs(us).slice(11, 26);
}

/** `15m`, `1h`, `1h 30m`, `7d`, `45s`, `250ms`. */
export function formatSpan(us: number): string {
  if (us < 1_000_000) return `${Math.round(us / 1000)}ms`;
  const s = Math.round(us / 1_000_000);
  const parts: string[] = [];
  const d = Math.floor(s / 86400);
  const h = Math.floor((s % 86400) / 3600);
  const m = Math.floor((s % 3600) / 60);
  const sec = s % 60;
  if (d) parts.push(`${d}d`);
  if (h) parts.push(`${h}h`);
  if (m) parts.push(`${m}m`);
  if (sec && !d) parts.push(`${sec}s`);
  return parts.slice(0, 2).join(" ") || "0s";
}

/** A latency: `850µs`, `12.3ms`, `1.24s`. */
export function formatLatency(us: number | null | undefined): string {
  if (us === null || us === undefined) return "—";
  if (us < 1000) return `${us}µs`;
  if (us < 10_000) return `${(us / 1000).toFixed(2)}ms`;
  if (us < 1_000_000) return `${(us / 1000).toFixed(1)}ms`;
  return `${(us / 1_000_000).toFixed(2)}s`;
}

/** Byte counts: `0 B`, `512 B`, `1.5 KiB`, `12 MiB`. */
export function formatBytes(n: number | null | undefined): string {
  if (n === null || n === undefined) return "—";
  if (n < 1024) return `${n} B`;
  const units = ["KiB", "MiB", "GiB", "TiB"];
  let v = n / 1024;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${v < 10 ? v.toFixed(1) : Math.round(v)} ${units[i]}`;
}

/** Resolved window [from, to) in µs. */
export interface Window {
  fromUs: number;
  toUs: number;
}

/** Shifts a window by its own length (dir -1 back, +1 forward). */
export function shiftWindow(w: Window, dir: number): Window {
  const len = w.toUs - w.fromUs;
  return { fromUs: w.fromUs + dir * len, toUs: w.toUs + dir * len };
}

/** Zooms out around the centre: twice as long. */
export function zoomOut(w: Window): Window {
  const len = w.toUs - w.fromUs;
  return { fromUs: w.fromUs - Math.floor(len / 2), toUs: w.toUs + Math.ceil(len / 2) };
}

/**
 * The window to show when the URL names none: the last `spanUs` before the newest entry when
 * the store's data is older than that (clamped to the oldest entry), else the last `spanUs`
 * before now. Ends are rounded out to whole seconds.
 */
export function defaultWindow(
  nowUs: number,
  bounds: { oldest_us: number; newest_us: number } | null | undefined,
  spanUs = 3_600_000_000,
): { from: string; to: string } {
  if (!bounds || bounds.newest_us >= nowUs - spanUs) return { from: `-${spanLabel(spanUs)}`, to: "now" };
  const to = Math.ceil((bounds.newest_us + 1) / 1_000_000) * 1_000_000;
  const from = Math.floor(Math.max(bounds.oldest_us, to - spanUs) / 1_000_000) * 1_000_000;
  return { from: formatUsShort(from), to: formatUsShort(to) };
}

/**
 * A relative range ("Last 15m"): anchored at now when data reaches into it, else at the newest
 * entry (a store of older traffic still shows its last 15 minutes). Relative when anchored at
 * now (the URL then stays a moving window), absolute otherwise.
 */
export function relativeRange(
  spanUs: number,
  nowUs: number,
  newestUs: number | null | undefined,
): { from: string; to: string } {
  if (newestUs === null || newestUs === undefined || newestUs >= nowUs - spanUs) {
    return { from: `-${spanLabel(spanUs)}`, to: "now" };
  }
  const to = Math.ceil((newestUs + 1) / 1_000_000) * 1_000_000;
  return { from: formatUsShort(to - spanUs), to: formatUsShort(to) };
}

/** `5m`, `15m`, `1h`, `24h`, `7d` style label of a span in µs (days from 2 days on). */
export function spanLabel(us: number): string {
  if (us % UNIT_US.d === 0 && us / UNIT_US.d >= 2) return `${us / UNIT_US.d}d`;
  if (us % UNIT_US.h === 0) return `${us / UNIT_US.h}h`;
  if (us % UNIT_US.m === 0) return `${us / UNIT_US.m}m`;
  return `${Math.max(1, Math.round(us / UNIT_US.s))}s`;
}
