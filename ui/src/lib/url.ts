// The screen as a URL (see ui/README.md, "URL state"): path = view, query = everything else.

export type View = "traffic" | "map" | "snapshots" | "sql";
export type GroupBy = "service" | "workload" | "pod" | "namespace" | "node";
export type Stack = "status" | "protocol";

export interface UrlState {
  view: View;
  kfl: string;
  /** As written in the URL: RFC 3339 or relative (`-15m`, `now`); empty = default window. */
  from: string;
  to: string;
  nodes: string[];
  entry: string;
  groupBy: GroupBy;
  stack: Stack;
  cfrom: string;
  cto: string;
  live: boolean;
  /** SQL console text. */
  sql: string;
  /** Service map: how many nodes before the rest go to "other". */
  top: number;
}

export const GROUP_BYS: GroupBy[] = ["service", "workload", "pod", "namespace", "node"];
export const DEFAULT_TOP = 30;

export function emptyState(): UrlState {
  return {
    view: "traffic",
    kfl: "",
    from: "",
    to: "",
    nodes: [],
    entry: "",
    groupBy: "service",
    stack: "status",
    cfrom: "",
    cto: "",
    live: false,
    sql: "",
    top: DEFAULT_TOP,
  };
}

const PATHS: Record<View, string> = {
  traffic: "/",
  map: "/map",
  snapshots: "/snapshots",
  sql: "/sql",
};

export function viewOfPath(pathname: string): View {
  const p = pathname.replace(/\/+$/, "") || "/";
  if (p === "/map") return "map";
  if (p === "/snapshots") return "snapshots";
  if (p === "/sql") return "sql";
  return "traffic";
}

export function pathOfView(v: View): string {
  return PATHS[v];
}

/** Reads a URL's path and query string into the state (unknown values fall back to defaults). */
export function parseUrl(pathname: string, search: string): UrlState {
  const q = new URLSearchParams(search);
  const s = emptyState();
  s.view = viewOfPath(pathname);
  s.kfl = q.get("kfl") ?? "";
  s.from = q.get("from") ?? "";
  s.to = q.get("to") ?? "";
  s.nodes = (q.get("nodes") ?? "")
    .split(",")
    .map((n) => n.trim())
    .filter(Boolean);
  s.entry = q.get("entry") ?? "";
  const g = q.get("group_by") as GroupBy | null;
  if (g && GROUP_BYS.includes(g)) s.groupBy = g;
  const st = q.get("stack");
  if (st === "protocol" || st === "status") s.stack = st;
  s.cfrom = q.get("cfrom") ?? "";
  s.cto = q.get("cto") ?? "";
  s.live = q.get("live") === "1";
  s.sql = q.get("sql") ?? "";
  const top = Number(q.get("top"));
  if (Number.isInteger(top) && top > 0) s.top = top;
  return s;
}

/**
 * The URL (path + query) of a state: a fixed parameter order, defaults left out, only the
 * parameters the view uses (the window, KFL and nodes are kept on every view so switching
 * views keeps the investigation).
 */
export function toUrl(s: UrlState): string {
  const q: [string, string][] = [];
  if (s.kfl) q.push(["kfl", s.kfl]);
  if (s.from) q.push(["from", s.from]);
  if (s.to) q.push(["to", s.to]);
  if (s.nodes.length) q.push(["nodes", s.nodes.join(",")]);
  if (s.view === "traffic") {
    if (s.entry) q.push(["entry", s.entry]);
    if (s.stack !== "status") q.push(["stack", s.stack]);
  }
  if (s.view === "map") {
    if (s.groupBy !== "service") q.push(["group_by", s.groupBy]);
    if (s.cfrom) q.push(["cfrom", s.cfrom]);
    if (s.cto) q.push(["cto", s.cto]);
    if (s.top !== DEFAULT_TOP) q.push(["top", String(s.top)]);
  }
  if (s.live && (s.view === "traffic" || s.view === "map")) q.push(["live", "1"]);
  if (s.view === "sql" && s.sql) q.push(["sql", s.sql]);
  const qs = new URLSearchParams(q).toString();
  return PATHS[s.view] + (qs ? `?${qs}` : "");
}

/** True when both states show the same screen. */
export function sameState(a: UrlState, b: UrlState): boolean {
  return toUrl(a) === toUrl(b);
}
