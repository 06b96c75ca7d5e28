import { useEffect, useMemo, useRef, useState } from "preact/hooks";
import type { Core } from "cytoscape";
import { ApiError, getJson, isAbort, needSignIn, openSocket, reconnects, validateKfl } from "../api";
import { diffMaps, edgeKey, edgeKfl, foldTop, nodeKfl, OTHER, scoped, type Change, type DiffRow } from "../lib/mapkfl";
import { formatLatency, formatUsShort, parseTime } from "../lib/time";
import type { MapEdge, MapNode, ServiceMap as SM } from "../lib/types";
import { GROUP_BYS, type GroupBy } from "../lib/url";
import { compareWindow, navigate, nowUs, route, window_ } from "../state";
import { apiWindow, fmtInt, pct } from "../util";

type SortKey = "source" | "target" | "protocol" | "count" | "errors" | "rate" | "p50" | "p99" | "change";

/** `850µs`, `12ms`, `1.2s`: for deltas, where space is short. */
function compactLatency(us: number): string {
  if (us < 1000) return `${us}µs`;
  if (us < 1_000_000) return `${Math.round(us / 1000)}ms`;
  return `${(us / 1_000_000).toFixed(1)}s`;
}

function errColor(rate: number): string {
  if (rate <= 0) return "#6b8fb5";
  if (rate < 0.01) return "#c9a227";
  if (rate < 0.05) return "#e07b24";
  return "#d64545";
}

const CHANGE_COLOR: Record<Change, string> = { added: "#2e9e5b", removed: "#d64545", changed: "#e07b24", same: "#8592a3" };

function label(n: MapNode | undefined, id: string): string {
  if (!n) return id;
  if (n.namespace) return `${n.name}\n${n.namespace}`;
  // Node-level processes (`kubelet@node-a`): the node tells them apart.
  if (n.id.startsWith(`${n.name}@`)) return `${n.name}\n@${n.id.slice(n.name.length + 1)}`;
  return n.name;
}

/** Merges a live delta into the accumulated map. */
function mergeDelta(acc: SM, d: { nodes: MapNode[]; edges: MapEdge[] }): SM {
  const nodes = new Map(acc.nodes.map((n) => [n.id, { ...n }]));
  for (const n of d.nodes) {
    const m = nodes.get(n.id);
    if (m) {
      m.count += n.count;
      m.bytes += n.bytes;
    } else nodes.set(n.id, { ...n });
  }
  const edges = new Map(acc.edges.map((e) => [edgeKey(e), { ...e }]));
  for (const e of d.edges) {
    const m = edges.get(edgeKey(e));
    if (m) {
      m.count += e.count;
      m.errors += e.errors;
      m.bytes += e.bytes;
      // Percentiles of the last second only (the server says so): keep the larger.
      m.p50_us = e.p50_us ?? m.p50_us;
      m.p99_us = Math.max(m.p99_us ?? 0, e.p99_us ?? 0) || null;
    } else edges.set(edgeKey(e), { ...e });
  }
  return { nodes: [...nodes.values()], edges: [...edges.values()], source: "live" };
}

function CompareInputs() {
  const r = route.value;
  const [f, setF] = useState(r.cfrom);
  const [t, setT] = useState(r.cto);
  const [bad, setBad] = useState(false);
  useEffect(() => {
    setF(r.cfrom);
    setT(r.cto);
  }, [r.cfrom, r.cto]);
  function apply() {
    const now = Date.now() * 1000;
    const a = parseTime(f, now);
    const b = parseTime(t, now);
    if (a === null || b === null || a >= b) {
      setBad(true);
      return;
    }
    setBad(false);
    navigate({ cfrom: f.trim(), cto: t.trim() });
  }
  const key = (e: KeyboardEvent) => {
    if (e.key === "Enter") {
      e.preventDefault();
      apply();
    }
  };
  return (
    <span class="compare-inputs">
      <span class="muted small">baseline</span>
      <input class={`mono${bad ? " invalid" : ""}`} type="text" aria-label="Compare from" placeholder="from" value={f} onInput={(e) => setF(e.currentTarget.value)} onKeyDown={key} />
      <span aria-hidden="true">→</span>
      <input class={`mono${bad ? " invalid" : ""}`} type="text" aria-label="Compare to" placeholder="to" value={t} onInput={(e) => setT(e.currentTarget.value)} onKeyDown={key} />
    </span>
  );
}

export function ServiceMap() {
  const r = route.value;
  const w = window_.value;
  const cw = compareWindow.value;
  const [mapState, setMapState] = useState<{ key: string; map: SM } | null>(null);
  const [baseState, setBaseState] = useState<{ key: string; map: SM } | null>(null);
  const [err, setErr] = useState<string | null>(null);
  const [loading, setLoading] = useState(false);
  const [sort, setSort] = useState<{ k: SortKey; desc: boolean }>({ k: "count", desc: true });
  const [comparing, setComparing] = useState(!!(r.cfrom || r.cto));
  const [liveOn, setLiveOn] = useState(false);
  const graph = useRef<HTMLDivElement>(null);
  const cy = useRef<Core | null>(null);
  void nowUs.value;

  useEffect(() => {
    if (r.cfrom || r.cto) setComparing(true);
  }, [r.cfrom, r.cto]);

  const key = `${r.kfl}|${r.nodes.join(",")}|${w?.fromUs}|${w?.toUs}|${r.groupBy}|${r.live}|${reconnects.value}`;
  const ckey = `${r.kfl}|${r.nodes.join(",")}|${cw?.fromUs}|${cw?.toUs}|${r.groupBy}|${reconnects.value}`;
  // Only a map of the current scope is shown (never the previous one under a new filter).
  const map = mapState && mapState.key === key ? mapState.map : null;
  const base = cw && baseState && baseState.key === ckey ? baseState.map : null;
  const setMap = (f: SM | ((m: SM | null) => SM)) =>
    setMapState((prev) => ({ key, map: typeof f === "function" ? f(prev && prev.key === key ? prev.map : null) : f }));
  useEffect(() => {
    if (!w) return;
    const ac = new AbortController();
    let sock: WebSocket | null = null;
    let retry: ReturnType<typeof setTimeout> | null = null;
    setLoading(true);
    (async () => {
      try {
        const bad = await validateKfl(r.kfl, ac.signal);
        if (bad) {
          setErr(`KFL: ${bad.message}`);
          setLoading(false);
          return;
        }
        const m = await getJson<SM>("/api/v1/servicemap", { kfl: r.kfl, ...apiWindow(w), nodes: r.nodes.join(","), group_by: r.groupBy }, ac.signal);
        setMap(m);
        setErr(null);
        setLoading(false);
        if (r.live) {
          const open = () => {
            sock = openSocket("/api/v1/servicemap/live", { kfl: r.kfl, nodes: r.nodes.join(","), group_by: r.groupBy });
            sock.onopen = () => setLiveOn(true);
            sock.onmessage = (ev) => {
              try {
                const d = JSON.parse(ev.data);
                if (d.type === "delta") setMap((acc) => mergeDelta(acc ?? { nodes: [], edges: [] }, d));
              } catch {
                /* ignore */
              }
            };
            sock.onclose = () => {
              setLiveOn(false);
              if (!ac.signal.aborted && !needSignIn.value) retry = setTimeout(open, 2000);
            };
          };
          open();
        }
      } catch (e) {
        if (!isAbort(e)) {
          setErr(e instanceof ApiError ? e.body.message : String(e));
          setLoading(false);
        }
      }
    })();
    return () => {
      ac.abort();
      if (retry) clearTimeout(retry);
      if (sock) {
        sock.onclose = null;
        sock.close();
      }
      setLiveOn(false);
    };
  }, [key]);

  useEffect(() => {
    if (!cw) {
      setBaseState(null);
      return;
    }
    const ac = new AbortController();
    getJson<SM>("/api/v1/servicemap", { kfl: r.kfl, ...apiWindow(cw), nodes: r.nodes.join(","), group_by: r.groupBy }, ac.signal)
      .then((m) => setBaseState({ key: ckey, map: m }))
      .catch((e) => !isAbort(e) && setErr(e instanceof ApiError ? e.body.message : String(e)));
    return () => ac.abort();
  }, [ckey]);

  const allNodes = useMemo(() => {
    const m = new Map<string, MapNode>();
    for (const n of [...(base?.nodes ?? []), ...(map?.nodes ?? [])]) m.set(n.id, n);
    return [...m.values()];
  }, [map, base]);

  const diff: DiffRow[] = useMemo(() => {
    if (!map) return [];
    if (base) return diffMaps(map.edges, base.edges);
    return map.edges.map((e) => ({ edge: e, before: null, change: "same" as Change, dCount: 0, dErrors: 0, dP99: null }));
  }, [map, base]);

  // The graph: top-N nodes, the rest folded into "(other)".
  useEffect(() => {
    const el = graph.current;
    if (!el || !map) return;
    let dead = false;
    (async () => {
      const [{ default: cytoscape }, { default: dagre }] = await Promise.all([import("cytoscape"), import("cytoscape-dagre")]);
      if (dead) return;
      try {
        cytoscape.use(dagre);
      } catch {
        /* registered */
      }
      const edges = base ? diff.map((d) => ({ ...d.edge, _change: d.change })) : map.edges.map((e) => ({ ...e, _change: "same" as Change }));
      const nodeIds = new Set(edges.flatMap((e) => [e.source, e.target]));
      const nodes = allNodes.filter((n) => nodeIds.has(n.id) || map.nodes.some((m) => m.id === n.id));
      const folded = foldTop(nodes, edges as MapEdge[], r.top);
      const changeOf = new Map(edges.map((e) => [edgeKey(e), e._change]));
      const maxCount = Math.max(1, ...folded.edges.map((e) => e.count));
      const css = getComputedStyle(document.documentElement);
      const fg = css.getPropertyValue("--fg").trim() || "#222";
      const panel = css.getPropertyValue("--panel").trim() || "#fff";
      const border = css.getPropertyValue("--border-strong").trim() || "#999";
      const elements = [
        ...folded.nodes.map((n) => {
          const l = n.id === OTHER ? n.name : label(n, n.id);
          const lines = l.split("\n");
          return {
            data: {
              id: n.id,
              label: l,
              kind: n.kind,
              count: n.count,
              w: Math.max(56, Math.max(...lines.map((x) => x.length)) * 6.4 + 18),
              h: lines.length * 14 + 12,
            },
          };
        }),
        ...folded.edges.map((e, i) => {
          const rate = e.count ? e.errors / e.count : 0;
          const ch = changeOf.get(edgeKey(e)) ?? "same";
          return {
            data: {
              id: `e${i}`,
              source: e.source,
              target: e.target,
              key: edgeKey(e),
              protocol: e.protocol,
              width: 1 + 7 * Math.sqrt(e.count / maxCount),
              color: base ? CHANGE_COLOR[ch] : errColor(rate),
              label: `${e.protocol} ${fmtInt(e.count)}${e.errors ? ` · ${pct(e.errors, e.count)} err` : ""} · ${formatLatency(e.p50_us)}/${formatLatency(e.p99_us)}`,
              dashed: ch === "removed" ? "dashed" : "solid",
            },
          };
        }),
      ];
      cy.current?.destroy();
      const c = cytoscape({
        container: el,
        elements,
        minZoom: 0.2,
        maxZoom: 1.4,
        style: [
          {
            selector: "node",
            style: {
              shape: "round-rectangle",
              "background-color": panel,
              "border-width": 1.5,
              "border-color": border,
              label: "data(label)",
              "text-wrap": "wrap",
              "text-valign": "center",
              "text-halign": "center",
              "font-size": 11,
              color: fg,
              width: "data(w)",
              height: "data(h)",
              "font-family": "system-ui, sans-serif",
            },
          },
          { selector: 'node[kind = "external"]', style: { "border-style": "dashed" } },
          { selector: 'node[kind = "other"]', style: { "border-style": "dotted", color: "#8592a3" } },
          { selector: "node:selected", style: { "border-color": "#2f6fde", "border-width": 2.5 } },
          {
            selector: "edge",
            style: {
              width: "data(width)",
              "line-color": "data(color)",
              "target-arrow-color": "data(color)",
              "target-arrow-shape": "triangle",
              "arrow-scale": 0.8,
              "curve-style": "bezier",
              label: "data(label)",
              "font-size": 9,
              color: fg,
              "text-background-color": panel,
              "text-background-opacity": 0.85,
              "text-background-padding": "2px",
              "text-rotation": "autorotate",
              "line-style": "data(dashed)" as never,
              opacity: 0.9,
            },
          },
          { selector: "edge:selected", style: { opacity: 1, "line-color": "#2f6fde", "target-arrow-color": "#2f6fde" } },
        ],
        layout: { name: "dagre", rankDir: "LR", nodeSep: 26, rankSep: 170, edgeSep: 12, padding: 16 } as never,
      });
      c.on("tap", "node", (ev) => {
        const id = ev.target.id();
        if (id === OTHER) return;
        navigate({ view: "traffic", kfl: scoped(r.kfl, nodeKfl(id, allNodes, r.groupBy)), entry: "", live: false });
      });
      c.on("tap", "edge", (ev) => {
        const d = ev.target.data();
        if (d.source === OTHER || d.target === OTHER) return;
        navigate({ view: "traffic", kfl: scoped(r.kfl, edgeKfl({ source: d.source, target: d.target, protocol: d.protocol }, allNodes, r.groupBy)), entry: "", live: false });
      });
      cy.current = c;
    })();
    return () => {
      dead = true;
    };
  }, [map, base, diff, r.top, allNodes]);

  useEffect(
    () => () => {
      cy.current?.destroy();
      cy.current = null;
    },
    [],
  );

  const sorted = useMemo(() => {
    const v = (d: DiffRow): string | number => {
      const e = d.edge;
      switch (sort.k) {
        case "source":
          return e.source;
        case "target":
          return e.target;
        case "protocol":
          return e.protocol;
        case "count":
          return e.count;
        case "errors":
          return e.errors;
        case "rate":
          return e.count ? e.errors / e.count : 0;
        case "p50":
          return e.p50_us ?? -1;
        case "p99":
          return e.p99_us ?? -1;
        case "change":
          return ["added", "removed", "changed", "same"].indexOf(d.change);
      }
    };
    return [...diff].sort((a, b) => {
      const x = v(a);
      const y = v(b);
      const c = typeof x === "number" && typeof y === "number" ? x - y : String(x).localeCompare(String(y));
      return sort.desc ? -c : c;
    });
  }, [diff, sort]);

  function openEdge(e: MapEdge) {
    navigate({ view: "traffic", kfl: scoped(r.kfl, edgeKfl(e, allNodes, r.groupBy)), entry: "", live: false });
  }

  const th = (k: SortKey, text: string, num = false) => (
    <th scope="col" aria-sort={sort.k === k ? (sort.desc ? "descending" : "ascending") : "none"} class={num ? "num" : ""}>
      <button class="sort" onClick={() => setSort({ k, desc: sort.k === k ? !sort.desc : num })}>
        {text}
        <span aria-hidden="true" class="sort-ind">
          {sort.k === k ? (sort.desc ? "▾" : "▴") : ""}
        </span>
      </button>
    </th>
  );
  const delta = (n: number) => (n > 0 ? `+${fmtInt(n)}` : n < 0 ? `−${fmtInt(-n)}` : "");
  const counts = { added: 0, removed: 0, changed: 0, same: 0 };
  for (const d of diff) counts[d.change]++;
  const folded = map ? Math.max(0, allNodes.length - r.top) : 0;

  return (
    <div class="map-view">
      <div class="map-controls">
        <label class="inline">
          <span class="muted small">Group by</span>
          <select aria-label="Group by" value={r.groupBy} onChange={(e) => navigate({ groupBy: e.currentTarget.value as GroupBy })}>
            {GROUP_BYS.map((g) => (
              <option value={g}>{g}</option>
            ))}
          </select>
        </label>
        <label class="inline">
          <span class="muted small">Top</span>
          <select aria-label="Top nodes" value={String(r.top)} onChange={(e) => navigate({ top: Number(e.currentTarget.value) }, true)}>
            {[10, 20, 30, 50, 100, 500].map((n) => (
              <option value={String(n)}>{n}</option>
            ))}
          </select>
        </label>
        <button
          class={`btn small${comparing ? " on" : ""}`}
          aria-pressed={comparing}
          onClick={() => {
            if (comparing) {
              setComparing(false);
              navigate({ cfrom: "", cto: "" });
            } else {
              setComparing(true);
              // Suggest the window just before this one as the baseline.
              if (w && !r.cfrom) {
                const len = w.toUs - w.fromUs;
                navigate({ cfrom: formatUsShort(w.fromUs - len), cto: formatUsShort(w.fromUs) });
              }
            }
          }}
          title="Compare this window with a baseline window"
        >
          Compare
        </button>
        {comparing && <CompareInputs />}
        {base && (
          <span class="small change-summary">
            <span class="ch added">{counts.added} added</span> <span class="ch removed">{counts.removed} removed</span>{" "}
            <span class="ch changed">{counts.changed} changed</span> <span class="ch same">{counts.same} same</span>
          </span>
        )}
        <span class="spacer" />
        {r.live && <span class={`live-state ${liveOn ? "on" : "closed"}`}>{liveOn ? "● live" : "connecting…"}</span>}
        {map && (
          <span class="muted small">
            {fmtInt(map.nodes.length)} nodes · {fmtInt(map.edges.length)} edges{folded > 0 ? ` · graph shows top ${r.top}` : ""} · {map.source}
          </span>
        )}
        {loading && <span class="spinner" aria-hidden="true" />}
      </div>
      {err && (
        <div class="error-box" role="alert">
          {err}
        </div>
      )}
      <div class="map-split">
        <div class={`graph-wrap${!map ? " stale" : ""}`} aria-busy={!map}>
          <div class="graph" ref={graph} role="img" aria-label="Service map graph (the Edges table has the same numbers)" />
          {map && map.edges.length === 0 && (
            <div class="empty overlay" role="status">
              No traffic in this window{r.kfl ? " for this filter" : ""}.
            </div>
          )}
          <div class="graph-legend small muted">
            {base ? (
              <>
                <i style={{ background: CHANGE_COLOR.added }} /> added <i style={{ background: CHANGE_COLOR.removed }} /> removed <i style={{ background: CHANGE_COLOR.changed }} /> changed{" "}
                <i style={{ background: CHANGE_COLOR.same }} /> same
              </>
            ) : (
              <>
                <i style={{ background: errColor(0) }} /> no errors <i style={{ background: errColor(0.005) }} /> &lt;1% <i style={{ background: errColor(0.02) }} /> &lt;5%{" "}
                <i style={{ background: errColor(0.5) }} /> ≥5% errors · width = count · click a node or edge for its traffic
              </>
            )}
          </div>
        </div>
        <div class="edges-wrap">
          <table class="edges" aria-label="Edges">
            <thead>
              <tr>
                {th("source", "Source")}
                {th("target", "Target")}
                {th("protocol", "Protocol")}
                {th("count", "Count", true)}
                {th("errors", "Errors", true)}
                {th("rate", "Error rate", true)}
                {th("p50", "p50", true)}
                {th("p99", "p99", true)}
                {base && th("change", "Change")}
              </tr>
            </thead>
            <tbody>
              {sorted.map((d) => {
                const e = d.edge;
                const before = d.before;
                // A removed edge has no traffic now: zeros, with the baseline as the delta.
                const gone = d.change === "removed";
                return (
                  <tr
                    class={`ch-${d.change}${base ? " compare" : ""}`}
                    tabIndex={0}
                    onClick={() => openEdge(e)}
                    onKeyDown={(ev) => ev.key === "Enter" && openEdge(e)}
                    title={gone ? `Only in the baseline window: ${e.count} entries, ${e.errors} errors` : "Open this edge's traffic"}
                  >
                    <td class="mono id" title={e.source}>
                      {e.source}
                    </td>
                    <td class="mono id" title={e.target}>
                      {e.target}
                    </td>
                    <td>
                      <span class={`badge p-${e.protocol}`}>{e.protocol}</span>
                    </td>
                    <td class={`num mono${base && d.dCount ? " delta" : ""}`} data-delta={base ? delta(d.dCount) || undefined : undefined}>
                      {gone ? 0 : e.count}
                    </td>
                    <td class={`num mono${base && d.dErrors ? " delta hot" : ""}`} data-delta={base ? delta(d.dErrors) || undefined : undefined}>
                      {gone ? 0 : e.errors}
                    </td>
                    <td class="num mono">{gone ? "—" : pct(e.errors, e.count)}</td>
                    <td class="num mono">{gone ? "—" : formatLatency(e.p50_us)}</td>
                    <td
                      class={`num mono${base && d.dP99 && before && d.change === "changed" ? " delta" : ""}`}
                      data-delta={base && d.dP99 && before && d.change === "changed" ? `${d.dP99 > 0 ? "+" : "−"}${compactLatency(Math.abs(d.dP99))}` : undefined}
                    >
                      {gone ? "—" : formatLatency(e.p99_us)}
                    </td>
                    {base && <td class={`ch ${d.change}`}>{d.change}</td>}
                  </tr>
                );
              })}
            </tbody>
          </table>
          {map && map.edges.length === 0 && !base && <p class="muted small pad">No edges.</p>}
          {!map && !err && <p class="muted small pad">Loading the map…</p>}
        </div>
      </div>
    </div>
  );
}
