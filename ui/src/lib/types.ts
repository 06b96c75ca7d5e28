// Shapes of the REST API's answers (query/src/json.rs, openapi.rs).

export interface Identity {
  ip: string | null;
  port: number | null;
  name: string | null;
  namespace: string | null;
  pod: string | null;
  service: string | null;
  workload: string | null;
  node: string | null;
}

export interface Header {
  name: string;
  value: string | null;
}

export interface Body {
  encoding: "utf8" | "base64";
  data: string;
  truncated: boolean;
  size: number;
}

export interface Entry {
  id: string;
  ts: string;
  ts_us: number;
  protocol: string | null;
  method: string | null;
  path: string | null;
  status: number | null;
  status_text: string | null;
  elapsed_us: number | null;
  node: string | null;
  capture: string | null;
  request_size: number | null;
  response_size: number | null;
  src: Identity;
  dst: Identity;
}

export interface FullEntry extends Entry {
  request_headers: Header[] | null;
  response_headers: Header[] | null;
  request_body: Body | null;
  response_body: Body | null;
  request: unknown;
  response: unknown;
}

export interface EntriesPage {
  entries: Entry[];
  next_cursor: string | null;
  stats: Record<string, number>;
}

export interface Bounds {
  oldest: string;
  newest: string;
  oldest_us: number;
  newest_us: number;
}

export interface Boundaries {
  overall: Bounds | null;
  nodes: (Bounds & { node: string })[];
}

export interface MapNode {
  id: string;
  name: string;
  namespace: string;
  kind: string;
  count: number;
  bytes: number;
}

export interface MapEdge {
  source: string;
  target: string;
  protocol: string;
  count: number;
  errors: number;
  bytes: number;
  p50_us: number | null;
  p99_us: number | null;
}

export interface ServiceMap {
  nodes: MapNode[];
  edges: MapEdge[];
  source?: string;
  files_scanned?: number;
}

export interface Histogram {
  from_us: number;
  to_us: number;
  bucket_us: number;
  stack: string;
  series: string[];
  buckets: { start_us: number; total: number; counts: number[] }[];
  source?: string;
}

export interface Snapshot {
  name: string;
  from: string;
  to: string;
  from_us: number;
  to_us: number;
  kfl: string;
  nodes: string[];
  created: string;
  imported?: Record<string, unknown>;
}

export interface SqlAnswer {
  columns: { name: string; type: string }[];
  row_count: number;
  truncated: boolean;
  rows: Record<string, unknown>[];
}

export interface ApiErrorBody {
  message: string;
  position?: number | null;
  line?: number | null;
  column?: number | null;
  suggestion?: string | null;
}
