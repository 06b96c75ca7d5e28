// KFL text helpers: string literals, clauses for include/exclude, appending to a query,
// error positions, and the token under the caret for autocomplete.

/** A KFL string literal: `"…"` with `\` and `"` escaped (the lexer reads `\\` and `\"`). */
export function kflString(s: string): string {
  return `"${s.replace(/\\/g, "\\\\").replace(/"/g, '\\"')}"`;
}

/** A literal for a value: numbers bare, everything else a string. */
export function kflLiteral(v: string | number | boolean | null): string {
  if (v === null) return "nil";
  if (typeof v === "number") return Number.isFinite(v) ? String(v) : kflString(String(v));
  if (typeof v === "boolean") return v ? "true" : "false";
  return kflString(v);
}

/** `request.headers["Authorization"]` */
export function headerField(response: boolean, name: string): string {
  return `${response ? "response" : "request"}.headers[${kflString(name)}]`;
}

/** `field == literal` (`field == nil` for a missing value). */
export function eqClause(field: string, value: string | number | boolean | null): string {
  return `${field} == ${kflLiteral(value)}`;
}

/**
 * Splits a query into top-level pieces for the purpose of deciding on parentheses: true when
 * `or`, `||` or a ternary `?` appear outside strings and parentheses (then the query must be
 * wrapped before `and` is appended, since `and` binds tighter).
 */
export function hasTopLevelLowPrecedence(q: string): boolean {
  let depth = 0;
  let i = 0;
  while (i < q.length) {
    const c = q[i];
    if (c === '"' || c === "'" || c === "`") {
      i = skipString(q, i);
      continue;
    }
    if (c === "(" || c === "[") depth++;
    else if (c === ")" || c === "]") depth = Math.max(0, depth - 1);
    else if (depth === 0) {
      if (c === "|" && q[i + 1] === "|") return true;
      if (c === "?") return true;
      if ((c === "o" || c === "O") && /^or\b/i.test(q.slice(i)) && (i === 0 || !/[\w.]/.test(q[i - 1])))
        return true;
    }
    i++;
  }
  return false;
}

/** Index after the string starting at `i` (a quote); tolerant of an unterminated string. */
function skipString(q: string, i: number): number {
  const quote = q[i];
  let j = i + 1;
  while (j < q.length) {
    if (q[j] === "\\" && j + 1 < q.length) {
      j += 2;
      continue;
    }
    if (q[j] === quote) return j + 1;
    j++;
  }
  return j;
}

/** Appends `and clause` (or `and !(clause)`) to a query, wrapping the query when needed. */
export function appendClause(query: string, clause: string, exclude = false): string {
  const c = exclude ? `!(${clause})` : clause;
  const q = query.trim();
  if (!q) return c;
  return `${hasTopLevelLowPrecedence(q) ? `(${q})` : q} and ${c}`;
}

/** A KFL error position (characters, as the server counts them) → a UTF-16 index into `text`. */
export function charToUtf16(text: string, pos: number): number {
  let i = 0;
  let n = 0;
  for (const ch of text) {
    if (n === pos) return i;
    i += ch.length;
    n++;
  }
  return text.length;
}

// ---- Autocomplete ----

/** Fields (v1 names and the KFL2 aliases that read columns), as query/src/kfl/fields.rs. */
export const FIELDS: string[] = [
  "protocol",
  "request.method",
  "request.path",
  "request.url",
  "request.headers[\"…\"]",
  "request.queryString[\"…\"]",
  "request.cookies[\"…\"]",
  "request.body",
  "request.bodySize",
  "request.httpVersion",
  "response.status",
  "response.statusText",
  "response.headers[\"…\"]",
  "response.cookies[\"…\"]",
  "response.body",
  "response.bodySize",
  "requestSize",
  "responseSize",
  "elapsedTime",
  "elapsed_us",
  "timestamp",
  "node",
  "capture",
  "src.ip",
  "src.port",
  "src.name",
  "src.namespace",
  "src.pod",
  "src.service",
  "src.workload",
  "src.node",
  "dst.ip",
  "dst.port",
  "dst.name",
  "dst.namespace",
  "dst.pod",
  "dst.service",
  "dst.workload",
  "dst.node",
  "namespaces",
  "pods",
  "services",
  "method",
  "path",
  "url",
  "status_code",
  "status_text",
  "query_string",
  "grpc_status",
  "grpc_method",
  "redis_key",
  "redis_command",
  "kafka_api_key_name",
  "kafka_client_id",
  "amqp_method",
  "dns_questions",
  "dns_answers",
  "dns_question_types",
  "postgresql_command",
  "postgresql_query",
  "postgresql_error_code",
];

export const MACROS: string[] = [
  "http",
  "http2",
  "grpc",
  "gql",
  "graphql",
  "redis",
  "kafka",
  "amqp",
  "dns",
  "postgres",
  "tls",
  "https",
  "error",
  "dns_request",
  "dns_response",
];

/** Helpers: methods after a value and free functions. */
export const METHODS: string[] = [".startsWith(\"\")", ".endsWith(\"\")", ".contains(\"\")", ".matches(\"\")", ".json()", ".xml()", ".size()"];
export const FUNCTIONS: string[] = [
  "limit()",
  "redact()",
  "size()",
  "map_get()",
  "now()",
  "duration(\"5m\")",
  "timestamp(\"\")",
  "datetime(\"\")",
  "seconds()",
  "minutes()",
  "hours()",
  "days()",
];

/** Identity fields whose values come from `/api/v1/values/{tag}`. */
export const VALUE_TAGS: Record<string, "namespace" | "service" | "node" | "protocol"> = {
  protocol: "protocol",
  node: "node",
  "node.name": "node",
  "src.namespace": "namespace",
  "dst.namespace": "namespace",
  namespace: "namespace",
  namespaces: "namespace",
  "src.service": "service",
  "dst.service": "service",
  services: "service",
  "src.node": "node",
  "dst.node": "node",
};

export interface CaretContext {
  /** What to complete. */
  kind: "field" | "value" | "none";
  /** Replace text[start, end) with the chosen completion. */
  start: number;
  end: number;
  prefix: string;
  /** For values: the field before the operator. */
  field?: string;
  /** For values: an opening quote was typed already. */
  quoted?: boolean;
}

/** What the caret is in: a name (field, macro or function), or a value after `field ==`/`!=`/`in`. */
export function caretContext(text: string, caret: number): CaretContext {
  const before = text.slice(0, caret);
  // Inside a string after `field ==` ?
  const v = /([A-Za-z_][\w.]*(?:\[[^\]]*\])?)\s*(==|!=|in\s*\[?)\s*(["']?)([^"'\s()]*)$/.exec(before);
  if (v) {
    const quoted = v[3] !== "";
    const prefix = v[4];
    const start = caret - prefix.length - (quoted ? 1 : 0);
    let end = caret;
    while (end < text.length && /[^\s"')\]]/.test(text[end])) end++;
    if (quoted && text[end] === v[3]) end++;
    return { kind: "value", start, end, prefix, field: v[1], quoted };
  }
  if (inString(before)) return { kind: "none", start: caret, end: caret, prefix: "" };
  const m = /[A-Za-z_][\w.]*$/.exec(before);
  const prefix = m ? m[0] : "";
  if (!prefix) return { kind: "none", start: caret, end: caret, prefix: "" };
  let end = caret;
  while (end < text.length && /[\w.]/.test(text[end])) end++;
  return { kind: "field", start: caret - prefix.length, end, prefix };
}

function inString(s: string): boolean {
  let i = 0;
  while (i < s.length) {
    const c = s[i];
    if (c === '"' || c === "'" || c === "`") {
      let j = i + 1;
      let closed = false;
      while (j < s.length) {
        if (s[j] === "\\" && j + 1 < s.length) {
          j += 2;
          continue;
        }
        if (s[j] === c) {
          closed = true;
          break;
        }
        j++;
      }
      if (!closed) return true;
      i = j + 1;
      continue;
    }
    i++;
  }
  return false;
}

/** Suggestions for a name prefix: fields, macros and functions that start with it (then contain it). */
export function nameSuggestions(prefix: string, limit = 12): string[] {
  const p = prefix.toLowerCase();
  const all = [...FIELDS, ...MACROS, ...FUNCTIONS];
  if (p.endsWith(".")) {
    const base = p.slice(0, -1);
    if (!all.some((f) => f.toLowerCase().startsWith(p))) {
      // After a complete value: offer the string helpers.
      if (all.some((f) => f.toLowerCase() === base)) return METHODS.map((m) => prefix.slice(0, -1) + m).slice(0, limit);
    }
  }
  const starts = all.filter((f) => f.toLowerCase().startsWith(p) && f.toLowerCase() !== p);
  const contains = all.filter((f) => !f.toLowerCase().startsWith(p) && f.toLowerCase().includes(p));
  return [...starts, ...contains].slice(0, limit);
}

/** Applies a completion: the new text and the caret after it. */
export function applyCompletion(text: string, ctx: CaretContext, completion: string): { text: string; caret: number } {
  let insert = completion;
  if (ctx.kind === "value") insert = kflString(completion);
  const next = text.slice(0, ctx.start) + insert + text.slice(ctx.end);
  let caret = ctx.start + insert.length;
  // Put the caret inside an empty `""` or `()` of a template.
  const hole = insert.search(/""|\(\)|\["…"\]/);
  if (ctx.kind !== "value" && hole >= 0) {
    if (insert.includes('["…"]')) {
      const t = text.slice(0, ctx.start) + insert.replace('["…"]', '[""]') + text.slice(ctx.end);
      return { text: t, caret: ctx.start + insert.indexOf('["…"]') + 2 };
    }
    caret = ctx.start + hole + 1;
  }
  return { text: next, caret };
}

/** Examples for the cheatsheet: each works on today's server. */
export const EXAMPLES: [string, string][] = [
  ['http and response.status >= 500', "HTTP server errors"],
  ['request.headers["Authorization"] == r"Token.*"', "a header matching a regex (RE2, unanchored)"],
  ['src.pod == "frontend-7c9d5b8f6-2xkqp" and dst.service == "api"', "one pod talking to a service"],
  ['"shop" in namespaces', "either side in a namespace"],
  ['request.path.startsWith("/api/") and request.method == "POST"', "string helpers: startsWith, endsWith, contains, matches"],
  ["elapsedTime > 300", "slower than 300 ms (elapsed_us is µs)"],
  ['dns and response.status != 0', "DNS errors (rcode)"],
  ['redis and redis_command == "GET"', "Redis GETs"],
  ['kafka and request.path == "orders"', "Kafka topic"],
  ['response.body.json().items[0].name == "x"', "inside a JSON body"],
  ['request.queryString["page"] == "2"', "query string parameter"],
  ['!(http or dns)', "everything but HTTP and DNS"],
  ['error', "errors of every protocol"],
  ['timestamp > now() - duration("5m")', "time arithmetic"],
  ['http and limit(100)', "cap the answer"],
  ['http and redact("request.headers[\'Authorization\']")', "mask fields in the answer"],
];
