import { useEffect, useState } from "preact/hooks";
import { ApiError, getText, reconnects, serverDown } from "../api";
import { metricSum, parseProm } from "../lib/prom";
import { formatBytes } from "../lib/time";
import { version } from "../state";
import { fmtInt } from "../util";

interface Stats {
  rate: number | null;
  bufferBytes: number | null;
  bufferLimit: number | null;
  disk: number | null;
  files: number | null;
  drops: number | null;
  senderDropped: number | null;
  accepting: number | null;
}

export function StatusCorner() {
  const [s, setS] = useState<Stats | null>(null);
  useEffect(() => {
    let prev: { rows: number; t: number } | null = null;
    let timer: ReturnType<typeof setTimeout>;
    let dead = false;
    let ticks = 0;
    const tick = async () => {
      ticks++;
      try {
        // A server that accepts but does not answer (hung, stopped) counts as unreachable too.
        const text = await getText("/metrics", AbortSignal.timeout(4000));
        const samples = parseProm(text);
        const rows = metricSum(samples, "wiretrail_ingest_rows_total") ?? 0;
        const t = performance.now();
        const rate = prev && t > prev.t ? ((rows - prev.rows) * 1000) / (t - prev.t) : null;
        prev = { rows, t };
        setS({
          rate,
          bufferBytes: metricSum(samples, "wiretrail_buffer_bytes"),
          bufferLimit: metricSum(samples, "wiretrail_buffer_memory_limit_bytes"),
          disk: metricSum(samples, "wiretrail_catalog_bytes"),
          files: metricSum(samples, "wiretrail_catalog_files"),
          drops: metricSum(samples, "wiretrail_agent_kernel_drops_total"),
          senderDropped: metricSum(samples, "wiretrail_agent_sender_dropped_rows_total"),
          accepting: metricSum(samples, "wiretrail_ingest_accepting"),
        });
        if (serverDown.value) {
          serverDown.value = false;
          reconnects.value++;
        }
      } catch (e) {
        // A refused token (`up --metrics-auth`) is not an unreachable server.
        if (!(e instanceof ApiError) || e.status >= 500) serverDown.value = true;
        prev = null;
      }
      // The second sample comes soon, so the ingest rate shows within a second or two.
      if (!dead) timer = setTimeout(tick, serverDown.value ? 2000 : ticks === 1 ? 1500 : 5000);
    };
    void tick();
    return () => {
      dead = true;
      clearTimeout(timer);
    };
  }, []);
  const down = serverDown.value;
  return (
    <section class={`status-corner${down ? " down" : ""}`} aria-label="Status">
      {s && !down && (
        <>
          <span title="entries ingested per second (from /metrics)">
            <span class="k">ingest</span> <span class="mono">{s.rate === null ? "…" : `${s.rate < 10 ? s.rate.toFixed(1) : fmtInt(Math.round(s.rate))}/s`}</span>
          </span>
          <span title={`ingest buffer: ${s.bufferBytes ?? "?"} of ${s.bufferLimit ?? "?"} bytes`}>
            <span class="k">buffer</span> <span class="mono">{formatBytes(s.bufferBytes)}</span>
            {s.bufferLimit ? <span class="muted"> ({Math.round((100 * (s.bufferBytes ?? 0)) / s.bufferLimit)}%)</span> : null}
          </span>
          <span title={`${s.files ?? "?"} Parquet files in the catalog`}>
            <span class="k">disk</span> <span class="mono">{formatBytes(s.disk)}</span>
          </span>
          <span title="packets the kernel dropped (capture rings full); — when this process captures nothing">
            <span class="k">drops</span> <span class={`mono${s.drops ? " warn" : ""}`}>{s.drops === null ? "—" : fmtInt(s.drops)}</span>
          </span>
          {s.accepting === 0 && <span class="warn">ingest stopped (disk full?)</span>}
        </>
      )}
      {version.value && <span class="muted mono">v{version.value}</span>}
      {down && <span class="warn">offline</span>}
    </section>
  );
}

export function UnreachableBanner() {
  if (!serverDown.value) return null;
  return (
    <div class="banner" role="alert">
      Server unreachable — retrying every 2 s; the view reloads when it answers again.
    </div>
  );
}
