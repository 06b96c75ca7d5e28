import { useEffect, useRef, useState } from "preact/hooks";
import uPlot from "uplot";
import "uplot/dist/uPlot.min.css";
import { getJson, isAbort, postRaw, reconnects, validateKfl } from "../api";
import { formatLocal, formatSpan, formatUs } from "../lib/time";
import type { Histogram as Hist, SqlAnswer } from "../lib/types";
import { hasHistogram, navigate, nowUs, route, snapshots, window_ } from "../state";
import { apiWindow, fmtInt } from "../util";
import { setWindow } from "./TimeBar";
import { afterFirstPage } from "../views/trafficData";

const STATUS_COLORS: Record<string, string> = {
  "2xx": "var(--c-2xx)",
  "3xx": "var(--c-3xx)",
  "4xx": "var(--c-4xx)",
  "5xx": "var(--c-5xx)",
  ok: "var(--c-ok)",
  error: "var(--c-err)",
  other: "var(--c-other)",
};
const PROTO_COLORS = ["#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac"];

function cssColor(v: string): string {
  if (!v.startsWith("var(")) return v;
  const name = v.slice(4, -1);
  return getComputedStyle(document.documentElement).getPropertyValue(name).trim() || "#888";
}

/** An x-axis label in UTC for a tick every `incr` seconds. */
export function axisLabel(sec: number, incr: number): string {
  const t = formatUs(Math.round(sec * 1e6)); // 2026-11-25T03:12:44.269324Z
  if (incr < 1) return t.slice(17, 23);
  if (incr < 60) return t.slice(11, 19);
  if (incr < 86400) return t.slice(11, 16);
  return t.slice(5, 10);
}

export function seriesColor(stack: string, name: string, i: number): string {
  return stack === "status" ? cssColor(STATUS_COLORS[name] ?? "var(--c-other)") : PROTO_COLORS[i % PROTO_COLORS.length];
}

class KflRejected extends Error {}

/** Without `/api/v1/histogram` (older servers): the unfiltered volume through SQL. */
async function sqlHistogram(fromUs: number, toUs: number, buckets: number, stack: string, nodes: string[], sig: AbortSignal): Promise<Hist> {
  const bucket = Math.max(1_000_000, Math.ceil((toUs - fromUs) / buckets / 1_000_000) * 1_000_000);
  const cls =
    stack === "protocol"
      ? "protocol"
      : `CASE WHEN status IS NULL THEN 'other'
          WHEN protocol IN ('http','http2','graphql') THEN CASE WHEN status >= 500 THEN '5xx' WHEN status >= 400 THEN '4xx' WHEN status >= 300 THEN '3xx' WHEN status >= 200 THEN '2xx' ELSE 'other' END
          WHEN status = 0 THEN 'ok' ELSE 'error' END`;
  const where = nodes.length ? `WHERE node IN (${nodes.map((n) => `'${n.replace(/'/g, "''")}'`).join(",")})` : "";
  const sql = `SELECT CAST(date_bin(INTERVAL '${bucket / 1_000_000} seconds', ts, TIMESTAMP '1970-01-01T00:00:00Z') AS BIGINT) AS b, ${cls} AS s, count(*) AS n FROM entries ${where} GROUP BY 1, 2`;
  const r = await postRaw("/api/v1/sql", { sql, from: formatUs(fromUs), to: formatUs(toUs) }, sig);
  const a = (await r.json()) as SqlAnswer;
  const series = stack === "status" ? ["2xx", "3xx", "4xx", "5xx", "ok", "error", "other"] : [...new Set(a.rows.map((x) => String(x.s)))].sort();
  const start0 = Math.floor(fromUs / bucket) * bucket;
  const n = Math.ceil((toUs - start0) / bucket);
  const out = Array.from({ length: n }, (_, i) => ({ start_us: start0 + i * bucket, total: 0, counts: series.map(() => 0) }));
  for (const row of a.rows) {
    // date_bin as BIGINT is in the timestamp's unit (µs).
    const i = Math.floor((Number(row.b) - start0) / bucket);
    const j = series.indexOf(String(row.s));
    if (i >= 0 && i < n && j >= 0) {
      out[i].counts[j] += Number(row.n);
      out[i].total += Number(row.n);
    }
  }
  return { from_us: fromUs, to_us: toUs, bucket_us: bucket, stack, series, buckets: out, source: "sql" };
}

export function Histogram() {
  const r = route.value;
  const w = window_.value;
  const has = hasHistogram.value;
  const [data, setData] = useState<Hist | null>(null);
  const [err, setErr] = useState<string | null>(null);
  const [loading, setLoading] = useState(false);
  const [stale, setStale] = useState(false);
  const box = useRef<HTMLDivElement>(null);
  const plot = useRef<uPlot | null>(null);
  const [brush, setBrush] = useState<{ a: number; b: number } | null>(null);
  const [hover, setHover] = useState<{ i: number; left: number } | null>(null);
  const [width, setWidth] = useState(0);
  const key = `${w?.fromUs}|${w?.toUs}|${r.kfl}|${r.nodes.join(",")}|${r.stack}|${has}|${reconnects.value}`;

  useEffect(() => {
    const el = box.current;
    if (!el) return;
    const ro = new ResizeObserver(() => setWidth(el.clientWidth));
    ro.observe(el);
    setWidth(el.clientWidth);
    return () => ro.disconnect();
  }, []);

  useEffect(() => {
    if (!w || has === null) return;
    const ac = new AbortController();
    setLoading(true);
    const buckets = Math.max(30, Math.min(240, Math.floor((box.current?.clientWidth ?? 1200) / 7)));
    const p = validateKfl(r.kfl, ac.signal).then(async (bad) => {
      // The KFL bar shows the error; the chart keeps the previous answer, dimmed.
      if (bad) throw new KflRejected();
      // The list's first page goes first (see trafficData.afterFirstPage).
      await afterFirstPage();
      if (ac.signal.aborted) throw new DOMException("aborted", "AbortError");
      return has
      ? getJson<Hist>(
          "/api/v1/histogram",
          { kfl: r.kfl, ...apiWindow(w), nodes: r.nodes.join(","), buckets, stack: r.stack },
          ac.signal,
        )
      : sqlHistogram(w.fromUs, w.toUs, buckets, r.stack, r.nodes, ac.signal);
    });
    p.then((h) => {
      setData(h);
      setErr(null);
      setStale(false);
    })
      .catch((e) => {
        if (e instanceof KflRejected) setStale(true);
        else if (!isAbort(e)) setErr(e.message ?? String(e));
      })
      .finally(() => setLoading(false));
    return () => ac.abort();
  }, [key]);

  // Draw (or redraw) the plot.
  useEffect(() => {
    const el = box.current;
    if (!el || !data || !width) return;
    plot.current?.destroy();
    plot.current = null;
    const xs = data.buckets.map((b) => b.start_us / 1e6);
    // Stacked: each series is drawn as the running total, tallest first, so the lower ones cover it.
    const cum: number[][] = [];
    let acc = data.buckets.map(() => 0);
    data.series.forEach((_, j) => {
      acc = acc.map((v, i) => v + (data.buckets[i].counts[j] ?? 0));
      cum.push(acc);
    });
    const order = data.series.map((_, j) => j).reverse();
    const bars = uPlot.paths.bars!({ size: [0.86, 64], align: 1 });
    const opts: uPlot.Options = {
      width,
      height: 96,
      legend: { show: false },
      tzDate: (ts) => uPlot.tzDate(new Date(ts * 1e3), "Etc/UTC"),
      padding: [6, 8, 0, 0],
      cursor: { drag: { x: false, y: false }, points: { show: false }, y: false },
      select: { show: false, left: 0, top: 0, width: 0, height: 0 },
      scales: { x: { time: true, range: () => [data.from_us / 1e6, data.to_us / 1e6] }, y: { range: (_u, _min, max) => [0, Math.max(1, max) * 1.05] } },
      axes: [
        {
          stroke: cssColor("var(--muted)"),
          grid: { show: false },
          ticks: { size: 3, stroke: cssColor("var(--border)") },
          size: 22,
          space: 72,
          font: "11px system-ui, sans-serif",
          // UTC, like the list's times.
          values: (_u, vs, _ax, _space, incr) => vs.map((v) => axisLabel(v, incr)),
        },
        {
          stroke: cssColor("var(--muted)"),
          grid: { stroke: cssColor("var(--grid)"), width: 1 },
          ticks: { show: false },
          size: 40,
          font: "11px system-ui, sans-serif",
          values: (_u, vs) => vs.map((v) => (v >= 1000 ? `${(v / 1000).toFixed(v >= 10000 ? 0 : 1)}k` : String(v))),
          splits: (_u, _i, _min, max) => [0, Math.round(max / 2), Math.round(max)].filter((v, k, a) => a.indexOf(v) === k),
        },
      ],
      series: [
        {},
        ...order.map((j) => {
          const c = seriesColor(data.stack, data.series[j], j);
          return { label: data.series[j], stroke: c, fill: c, width: 0, paths: bars, points: { show: false } };
        }),
      ],
      hooks: {
        setCursor: [
          (u) => {
            const i = u.cursor.idx;
            setHover(i === null || i === undefined ? null : { i, left: u.cursor.left ?? 0 });
          },
        ],
      },
    };
    plot.current = new uPlot(opts, [xs, ...order.map((j) => cum[j])] as uPlot.AlignedData, el.querySelector(".hist-plot") as HTMLElement);
    return () => {
      plot.current?.destroy();
      plot.current = null;
    };
  }, [data, width]);

  // Drag to zoom, anywhere over the figure.
  function xToUs(clientX: number): number | null {
    const u = plot.current;
    if (!u) return null;
    const rect = u.over.getBoundingClientRect();
    const px = Math.min(rect.width, Math.max(0, clientX - rect.left));
    return Math.round(u.posToVal(px, "x") * 1e6);
  }
  function onDown(e: MouseEvent) {
    if (e.button !== 0 || !plot.current) return;
    const a = xToUs(e.clientX);
    if (a === null) return;
    e.preventDefault();
    setBrush({ a, b: a });
    const move = (ev: MouseEvent) => {
      const b = xToUs(ev.clientX);
      if (b !== null) setBrush({ a, b });
    };
    const up = (ev: MouseEvent) => {
      window.removeEventListener("mousemove", move);
      window.removeEventListener("mouseup", up);
      const b = xToUs(ev.clientX);
      setBrush(null);
      if (b === null) return;
      const lo = Math.min(a, b);
      const hi = Math.max(a, b);
      const u = plot.current!;
      const pxPerUs = u.over.getBoundingClientRect().width / ((data!.to_us - data!.from_us) || 1);
      if ((hi - lo) * pxPerUs < 4) return; // a click, not a drag
      // Whole milliseconds keep the URL readable.
      setWindow({ fromUs: Math.floor(lo / 1000) * 1000, toUs: Math.ceil(hi / 1000) * 1000 });
    };
    window.addEventListener("mousemove", move);
    window.addEventListener("mouseup", up);
  }

  const total = data ? data.buckets.reduce((s, b) => s + b.total, 0) : 0;
  const u = plot.current;
  let brushStyle: Record<string, string> | null = null;
  if (brush && u) {
    const l = u.valToPos(Math.min(brush.a, brush.b) / 1e6, "x");
    const rr = u.valToPos(Math.max(brush.a, brush.b) / 1e6, "x");
    const offset = u.over.offsetLeft;
    brushStyle = { left: `${offset + l}px`, width: `${Math.max(1, rr - l)}px`, top: `${u.over.offsetTop}px`, height: `${u.over.offsetHeight}px` };
  }
  const pins =
    u && data
      ? snapshots.value
          .filter((s) => s.to_us > data.from_us && s.from_us < data.to_us)
          .map((s) => {
            const l = u.valToPos(Math.max(s.from_us, data.from_us) / 1e6, "x");
            const rr = u.valToPos(Math.min(s.to_us, data.to_us) / 1e6, "x");
            return { s, left: u.over.offsetLeft + l, width: Math.max(2, rr - l) };
          })
      : [];
  const hb = hover && data ? data.buckets[hover.i] : null;
  void nowUs.value;
  return (
    <section class="hist" aria-label="Volume">
      <div class="hist-head">
        <span class="title">Volume</span>
        {data && (
          <span class="muted small">
            {fmtInt(total)} in {formatSpan(data.to_us - data.from_us)} · {formatSpan(data.bucket_us)} buckets
            {data.source === "sql" && r.kfl ? " · unfiltered (this server has no /api/v1/histogram)" : ""}
          </span>
        )}
        {loading && <span class="spinner" aria-hidden="true" />}
        <span class="spacer" />
        <div class="legend" aria-hidden="true">
          {data?.series.map((s, j) =>
            data.buckets.some((b) => b.counts[j]) ? (
              <span class="lg">
                <i style={{ background: seriesColor(data.stack, s, j) }} />
                {s}
              </span>
            ) : null,
          )}
        </div>
        <label class="inline">
          <span class="muted small">Stack by</span>
          <select aria-label="Stack by" value={r.stack} onChange={(e) => navigate({ stack: e.currentTarget.value as "status" | "protocol" }, true)}>
            <option value="status">status</option>
            <option value="protocol">protocol</option>
          </select>
        </label>
      </div>
      <figure
        ref={box}
        class={`hist-figure${stale ? " stale" : ""}`}
        role="img"
        aria-label="Volume histogram"
        title="Drag across to zoom into that range"
        onMouseDown={onDown}
        onMouseLeave={() => setHover(null)}
      >
        <div class="hist-plot" />
        {pins.map((p) => (
          <div class="hist-pin" style={{ left: `${p.left}px`, width: `${p.width}px` }} title={`pinned snapshot ${p.s.name}`} />
        ))}
        {brushStyle && <div class="hist-brush" style={brushStyle} />}
        {hb && !brush && (
          <div class="hist-tip" style={{ left: `${Math.min(hover!.left + 50, width - 200)}px` }}>
            <div class="mono">{formatUs(hb.start_us).slice(11, 23)} UTC</div>
            <div class="muted small">{formatLocal(hb.start_us, false)}</div>
            <div>
              <strong>{fmtInt(hb.total)}</strong> entries
            </div>
            {data!.series.map((s, j) =>
              hb.counts[j] ? (
                <div class="tip-row">
                  <i style={{ background: seriesColor(data!.stack, s, j) }} />
                  {s} <span class="mono">{fmtInt(hb.counts[j])}</span>
                </div>
              ) : null,
            )}
          </div>
        )}
        {err && <div class="hist-msg">histogram: {err}</div>}
      </figure>
    </section>
  );
}

