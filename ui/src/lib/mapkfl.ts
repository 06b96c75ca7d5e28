// Service map ↔ KFL: the filter that selects exactly the entries of a map node or edge, as
// query/src/servicemap.rs forms them (node id `ns/name`, `name@node` or the address), and the
// top-N folding and the diff of two windows.

import { appendClause, hasTopLevelLowPrecedence, kflString } from "./kfl";
import type { MapEdge, MapNode } from "./types";
import type { GroupBy } from "./url";

/** The identity attributes tried in order at each level (the last, `name`, is "external"). */
const CHAIN: Record<GroupBy, string[]> = {
  service: ["service", "workload", "pod"],
  workload: ["workload", "pod"],
  pod: ["pod"],
  namespace: ["namespace"],
  node: ["node"],
};

const empty = (side: string, attr: string) => `!(${side}.${attr} != "")`;

/** The KFL clause selecting one side (`src`/`dst`) of entries at a map node. */
export function sideClause(side: "src" | "dst", n: Pick<MapNode, "id" | "name" | "namespace" | "kind">, g: GroupBy): string {
  const chain = CHAIN[g];
  const parts: string[] = [];
  const kind = n.kind;
  if (kind === "namespace" || kind === "node") return `${side}.${kind} == ${kflString(n.name)}`;
  const idx = kind === "external" ? chain.length : chain.indexOf(kind);
  if (idx < 0) return `${side}.name == ${kflString(n.name)}`;
  for (const attr of chain.slice(0, idx)) parts.push(empty(side, attr));
  parts.push(kind === "external" ? `${side}.name == ${kflString(n.name)}` : `${side}.${kind} == ${kflString(n.name)}`);
  const nodeOfId = n.id.startsWith(`${n.name}@`) ? n.id.slice(n.name.length + 1) : null;
  if (kind === "external") {
    parts.push(nodeOfId !== null ? `${side}.node == ${kflString(nodeOfId)}` : empty(side, "node"));
  } else if (n.namespace) {
    parts.push(`${side}.namespace == ${kflString(n.namespace)}`);
  } else {
    parts.push(empty(side, "namespace"));
    parts.push(nodeOfId !== null ? `${side}.node == ${kflString(nodeOfId)}` : empty(side, "node"));
  }
  return parts.join(" and ");
}

/** A map node id → the node (from the nodes list, else read back from the id). */
export function nodeOf(id: string, nodes: MapNode[]): MapNode {
  const n = nodes.find((x) => x.id === id);
  if (n) return n;
  const slash = id.indexOf("/");
  return slash > 0
    ? { id, name: id.slice(slash + 1), namespace: id.slice(0, slash), kind: "service", count: 0, bytes: 0 }
    : { id, name: id, namespace: "", kind: "external", count: 0, bytes: 0 };
}

/** KFL for the entries of one edge: both sides and the protocol. */
export function edgeKfl(e: Pick<MapEdge, "source" | "target" | "protocol">, nodes: MapNode[], g: GroupBy): string {
  return [
    sideClause("src", nodeOf(e.source, nodes), g),
    sideClause("dst", nodeOf(e.target, nodes), g),
    `protocol == ${kflString(e.protocol)}`,
  ].join(" and ");
}

/** KFL for the entries a node took part in (either side). */
export function nodeKfl(id: string, nodes: MapNode[], g: GroupBy): string {
  const n = nodeOf(id, nodes);
  return `(${sideClause("src", n, g)}) or (${sideClause("dst", n, g)})`;
}

/** The scope of the map and a click on it: the current KFL `and` the click's filter. */
export function scoped(base: string, clause: string): string {
  return appendClause(base, hasTopLevelLowPrecedence(clause) ? `(${clause})` : clause);
}

export const OTHER = "(other)";

/**
 * Keeps the `top` busiest nodes; the others become one node `(other)` and their edges are
 * merged into edges to/from it (counts and errors add up; percentiles are the maximum).
 */
export function foldTop(nodes: MapNode[], edges: MapEdge[], top: number): { nodes: MapNode[]; edges: MapEdge[]; folded: number } {
  if (nodes.length <= top) return { nodes, edges, folded: 0 };
  const sorted = [...nodes].sort((a, b) => b.count - a.count || a.id.localeCompare(b.id));
  const keep = new Set(sorted.slice(0, Math.max(1, top - 1)).map((n) => n.id));
  const rest = sorted.filter((n) => !keep.has(n.id));
  const other: MapNode = {
    id: OTHER,
    name: `${rest.length} others`,
    namespace: "",
    kind: "other",
    count: rest.reduce((s, n) => s + n.count, 0),
    bytes: rest.reduce((s, n) => s + n.bytes, 0),
  };
  const merged = new Map<string, MapEdge>();
  for (const e of edges) {
    const source = keep.has(e.source) ? e.source : OTHER;
    const target = keep.has(e.target) ? e.target : OTHER;
    const k = `${source}\u0000${target}\u0000${e.protocol}`;
    const m = merged.get(k);
    if (!m) merged.set(k, { ...e, source, target });
    else {
      m.count += e.count;
      m.errors += e.errors;
      m.bytes += e.bytes;
      m.p50_us = maxOrNull(m.p50_us, e.p50_us);
      m.p99_us = maxOrNull(m.p99_us, e.p99_us);
    }
  }
  return { nodes: [...sorted.filter((n) => keep.has(n.id)), other], edges: [...merged.values()], folded: rest.length };
}

function maxOrNull(a: number | null, b: number | null): number | null {
  if (a === null) return b;
  if (b === null) return a;
  return Math.max(a, b);
}

export type Change = "added" | "removed" | "changed" | "same";

export interface DiffRow {
  edge: MapEdge;
  /** The baseline (compare window) edge, when it had one. */
  before: MapEdge | null;
  change: Change;
  dCount: number;
  dErrors: number;
  dP99: number | null;
}

export const edgeKey = (e: Pick<MapEdge, "source" | "target" | "protocol">) => `${e.source}\u0000${e.target}\u0000${e.protocol}`;

/**
 * Current window vs the baseline (compare window): edges only now are `added`, only then
 * `removed` (shown with the baseline numbers), different count, errors or p99 (beyond 10 %)
 * `changed`.
 */
export function diffMaps(current: MapEdge[], baseline: MapEdge[]): DiffRow[] {
  const base = new Map(baseline.map((e) => [edgeKey(e), e]));
  const out: DiffRow[] = [];
  const seen = new Set<string>();
  for (const e of current) {
    const k = edgeKey(e);
    seen.add(k);
    const b = base.get(k) ?? null;
    if (!b) {
      out.push({ edge: e, before: null, change: "added", dCount: e.count, dErrors: e.errors, dP99: e.p99_us });
      continue;
    }
    const dP99 = e.p99_us !== null && b.p99_us !== null ? e.p99_us - b.p99_us : null;
    const p99Changed = dP99 !== null && Math.abs(dP99) > 0.1 * Math.max(e.p99_us ?? 0, b.p99_us ?? 0);
    const changed = e.count !== b.count || e.errors !== b.errors || p99Changed;
    out.push({ edge: e, before: b, change: changed ? "changed" : "same", dCount: e.count - b.count, dErrors: e.errors - b.errors, dP99 });
  }
  for (const b of baseline) {
    if (seen.has(edgeKey(b))) continue;
    out.push({ edge: b, before: b, change: "removed", dCount: -b.count, dErrors: -b.errors, dP99: null });
  }
  return out;
}
