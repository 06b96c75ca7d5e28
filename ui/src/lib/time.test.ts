import { describe, expect, it } from "vitest";
import {
  defaultWindow,
  formatBytes,
  formatLatency,
  formatSpan,
  formatUs,
  formatUsShort,
  parseTime,
  relativeRange,
  shiftWindow,
  spanLabel,
  zoomOut,
} from "./time";

const T = 1_795_576_364_269_324; // 2026-11-25T03:12:44.269324Z

describe("time parsing", () => {
  it("reads RFC 3339 with µs, offsets and no fraction", () => {
    expect(parseTime("2026-11-25T03:12:44.269324Z", 0)).toBe(T);
    expect(parseTime("2026-11-25T04:12:44.269324+01:00", 0)).toBe(T);
    expect(parseTime("2026-11-24T22:12:44.269324-05:00", 0)).toBe(T);
    expect(parseTime("2026-11-25T03:12:44.269324999Z", 0)).toBe(T);
    expect(parseTime("2026-11-25T03:12:44Z", 0)).toBe(T - 269_324);
    expect(parseTime("2026-11-25 03:12:44.269324", 0)).toBe(T);
    expect(parseTime("2026-11-25T03:12Z", 0)).toBe(T - 44_269_324);
  });

  it("reads now, relative times and epoch milliseconds", () => {
    expect(parseTime("now", T)).toBe(T);
    expect(parseTime("-15m", T)).toBe(T - 900_000_000);
    expect(parseTime("-2h", T)).toBe(T - 7_200_000_000);
    expect(parseTime("-7d", T)).toBe(T - 7 * 86_400_000_000);
    expect(parseTime("1795576364269", 0)).toBe(1_795_576_364_269_000);
  });

  it("refuses what it cannot read", () => {
    for (const s of ["", "yesterday", "2026-13-01T00:00:00Z", "-15x", "2026-11-25T25:00:00Z"]) {
      expect(parseTime(s, T)).toBeNull();
    }
  });

  it("formats as the API does and round-trips", () => {
    expect(formatUs(T)).toBe("2026-11-25T03:12:44.269324Z");
    expect(formatUs(T - 269_324)).toBe("2026-11-25T03:12:44.000000Z");
    expect(formatUsShort(T - 269_324)).toBe("2026-11-25T03:12:44Z");
    expect(formatUsShort(T)).toBe("2026-11-25T03:12:44.269324Z");
    expect(formatUsShort(T - 324)).toBe("2026-11-25T03:12:44.269Z");
    for (const us of [T, T + 1, 0, 1_000_000, 946_684_799_999_999]) expect(parseTime(formatUs(us), 0)).toBe(us);
  });

  it("formats spans, latencies and sizes", () => {
    expect(formatSpan(900_000_000)).toBe("15m");
    expect(formatSpan(5_400_000_000)).toBe("1h 30m");
    expect(formatSpan(7 * 86_400_000_000)).toBe("7d");
    expect(spanLabel(86_400_000_000)).toBe("24h");
    expect(spanLabel(7 * 86_400_000_000)).toBe("7d");
    expect(spanLabel(300_000_000)).toBe("5m");
    expect(formatLatency(850)).toBe("850µs");
    expect(formatLatency(12_345)).toBe("12.3ms");
    expect(formatLatency(1_240_000)).toBe("1.24s");
    expect(formatLatency(null)).toBe("—");
    expect(formatBytes(512)).toBe("512 B");
    expect(formatBytes(1536)).toBe("1.5 KiB");
  });
});

describe("windows", () => {
  const w = { fromUs: 1_000_000_000, toUs: 1_060_000_000 };
  it("shifts and zooms", () => {
    expect(shiftWindow(w, -1)).toEqual({ fromUs: 940_000_000, toUs: 1_000_000_000 });
    expect(shiftWindow(w, 1)).toEqual({ fromUs: 1_060_000_000, toUs: 1_120_000_000 });
    expect(zoomOut(w)).toEqual({ fromUs: 970_000_000, toUs: 1_090_000_000 });
  });

  it("defaults to where the data is", () => {
    const now = T + 30 * 86_400_000_000;
    const b = { oldest_us: T, newest_us: T + 75_000_000 };
    expect(defaultWindow(now, b)).toEqual({ from: "2026-11-25T03:12:44Z", to: "2026-11-25T03:14:00Z" });
    expect(defaultWindow(T + 100_000_000, b)).toEqual({ from: "-1h", to: "now" });
    expect(defaultWindow(now, null)).toEqual({ from: "-1h", to: "now" });
  });

  it("anchors relative ranges at the newest data when it is old", () => {
    const now = T + 86_400_000_000 * 3;
    expect(relativeRange(900_000_000, now, T)).toEqual({ from: "2026-11-25T02:57:45Z", to: "2026-11-25T03:12:45Z" });
    expect(relativeRange(900_000_000, T + 1, T)).toEqual({ from: "-15m", to: "now" });
    expect(relativeRange(86_400_000_000, now, null)).toEqual({ from: "-24h", to: "now" });
  });
});
