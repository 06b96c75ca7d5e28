//! The REST API's OpenAPI 3 document, served at `/api/v1/openapi.json`.
//!
//! [`OPS`] is the one list of endpoints: the router is built from it (see `rest::router`, which
//! fails at start-up for an endpoint without a handler), so the document cannot list a route
//! that is not served or miss one that is. Written out rather than derived with a macro crate:
//! utoipa would switch on `indexmap/serde`, which recompiles all of DataFusion.

use serde_json::{json, Map, Value};

use crate::auth::Access;

/// Where a parameter goes.
#[derive(Clone, Copy)]
pub(crate) enum In {
    Query,
    Path,
}

/// One parameter: name, location, required, JSON schema, description.
pub(crate) type Param = (&'static str, In, bool, &'static str, &'static str);

/// One operation of the API.
pub(crate) struct Op {
    pub method: &'static str,
    pub path: &'static str,
    pub summary: &'static str,
    pub params: &'static [Param],
    /// JSON schema of a JSON request body.
    pub body: Option<&'static str>,
    /// `(content type, JSON schema)` of the 200 answer; `101` for WebSocket upgrades.
    pub ok: (&'static str, &'static str),
    pub websocket: bool,
    /// Who may call it (`auth::http::guard` enforces it on the route).
    pub access: Access,
}

const STR: &str = r#"{"type":"string"}"#;
const TIME: &str = r#"{"type":"string","description":"RFC 3339, epoch milliseconds, `now` or relative like -15m"}"#;
const KFL: (&str, In, bool, &str, &str) = (
    "kfl",
    In::Query,
    false,
    STR,
    "KFL filter (empty: everything)",
);
const FROM: Param = (
    "from",
    In::Query,
    false,
    TIME,
    "start of the window (inclusive)",
);
const TO: Param = (
    "to",
    In::Query,
    false,
    TIME,
    "end of the window (exclusive)",
);
const NODES: Param = (
    "nodes",
    In::Query,
    false,
    STR,
    "comma-separated capture nodes (node focus)",
);
const GROUP_BY: Param = (
    "group_by",
    In::Query,
    false,
    r#"{"type":"string","enum":["service","workload","pod","namespace","node"]}"#,
    "what a map node stands for (default service)",
);

pub(crate) const OPS: &[Op] = &[
    Op {
        method: "get",
        path: "/healthz",
        summary: "Liveness: `ok`",
        params: &[],
        body: None,
        ok: ("text/plain", STR),
        websocket: false,
        access: Access::Open,
    },
    Op {
        method: "get",
        path: "/metrics",
        summary: "Prometheus metrics of ingest and storage",
        params: &[],
        body: None,
        ok: ("text/plain", STR),
        websocket: false,
        access: Access::Metrics,
    },
    Op {
        method: "get",
        path: "/api/v1/openapi.json",
        summary: "This document",
        params: &[],
        body: None,
        ok: ("application/json", r#"{"type":"object"}"#),
        websocket: false,
        access: Access::Read,
    },
    Op {
        method: "get",
        path: "/api/v1/entries",
        summary: "Entries in a window matching a KFL filter, newest first, with cursor paging",
        params: &[
            KFL,
            FROM,
            TO,
            NODES,
            (
                "limit",
                In::Query,
                false,
                r#"{"type":"integer","minimum":1,"maximum":10000}"#,
                "page size (default 100)",
            ),
            (
                "cursor",
                In::Query,
                false,
                STR,
                "`next_cursor` of the previous page",
            ),
        ],
        body: None,
        ok: (
            "application/json",
            r##"{"$ref":"#/components/schemas/EntriesPage"}"##,
        ),
        websocket: false,
        access: Access::Read,
    },
    Op {
        method: "get",
        path: "/api/v1/count",
        summary: "How many entries in a window match a KFL filter (`limit(n)` caps it)",
        params: &[KFL, FROM, TO, NODES],
        body: None,
        ok: (
            "application/json",
            r#"{"type":"object","required":["count","stats"],"properties":{"count":{"type":"integer"},"stats":{"type":"object"}}}"#,
        ),
        websocket: false,
        access: Access::Read,
    },
    Op {
        method: "get",
        path: "/api/v1/histogram",
        summary: "Entries per time bucket of a window, stacked by status class or protocol (the volume chart); the window defaults to where the data is",
        params: &[
            KFL,
            FROM,
            TO,
            NODES,
            (
                "buckets",
                In::Query,
                false,
                r#"{"type":"integer","minimum":1,"maximum":2000}"#,
                "at most this many buckets (default 100); the width is rounded up to a round duration",
            ),
            (
                "stack",
                In::Query,
                false,
                r#"{"type":"string","enum":["status","protocol"]}"#,
                "series: status classes 2xx/3xx/4xx/5xx/ok/error/other (default) or protocols",
            ),
        ],
        body: None,
        ok: (
            "application/json",
            r#"{"type":"object","required":["from_us","to_us","bucket_us","stack","series","buckets","source"],"properties":{"from_us":{"type":"integer"},"to_us":{"type":"integer"},"bucket_us":{"type":"integer"},"stack":{"type":"string"},"series":{"type":"array","items":{"type":"string"}},"buckets":{"type":"array","items":{"type":"object","required":["start_us","total","counts"],"properties":{"start_us":{"type":"integer"},"total":{"type":"integer"},"counts":{"type":"array","items":{"type":"integer"}}}}},"source":{"type":"string","enum":["rollups","scan"]},"files_scanned":{"type":"integer"}}}"#,
        ),
        websocket: false,
        access: Access::Read,
    },
    Op {
        method: "get",
        path: "/api/v1/entries/{id}",
        summary: "One full entry (headers, bodies, protocol detail)",
        params: &[("id", In::Path, true, STR, "26-character entry id")],
        body: None,
        ok: ("application/json", r#"{"type":"object"}"#),
        websocket: false,
        access: Access::Read,
    },
    Op {
        method: "get",
        path: "/api/v1/kfl/validate",
        summary: "Check a KFL query; errors carry the position and a suggestion",
        params: &[("q", In::Query, false, STR, "the query")],
        body: None,
        ok: (
            "application/json",
            r#"{"type":"object","properties":{"ok":{"type":"boolean"}}}"#,
        ),
        websocket: false,
        access: Access::Read,
    },
    Op {
        method: "get",
        path: "/api/v1/values/{tag}",
        summary: "Distinct values of a tag in a window (autocomplete), from the tag index",
        params: &[
            (
                "tag",
                In::Path,
                true,
                r#"{"type":"string","enum":["protocol","node","namespace","service"]}"#,
                "the tag",
            ),
            FROM,
            TO,
        ],
        body: None,
        ok: (
            "application/json",
            r#"{"type":"object","properties":{"tag":{"type":"string"},"values":{"type":"array","items":{"type":"string"}}}}"#,
        ),
        websocket: false,
        access: Access::Read,
    },
    Op {
        method: "get",
        path: "/api/v1/servicemap",
        summary: "Service map of a window, optionally scoped by KFL and capture nodes",
        params: &[KFL, FROM, TO, NODES, GROUP_BY],
        body: None,
        ok: (
            "application/json",
            r##"{"$ref":"#/components/schemas/ServiceMap"}"##,
        ),
        websocket: false,
        access: Access::Read,
    },
    Op {
        method: "get",
        path: "/api/v1/servicemap/live",
        summary: "WebSocket: service-map deltas every second with matching traffic",
        params: &[KFL, NODES, GROUP_BY],
        body: None,
        ok: ("", ""),
        websocket: true,
        access: Access::Read,
    },
    Op {
        method: "get",
        path: "/api/v1/stream",
        summary: "WebSocket: live tail of acknowledged entries matching a KFL filter",
        params: &[KFL, NODES],
        body: None,
        ok: ("", ""),
        websocket: true,
        access: Access::Read,
    },
    Op {
        method: "get",
        path: "/api/v1/boundaries",
        summary: "Oldest and newest entry overall and per capture node",
        params: &[],
        body: None,
        ok: (
            "application/json",
            r##"{"$ref":"#/components/schemas/Boundaries"}"##,
        ),
        websocket: false,
        access: Access::Read,
    },
    Op {
        method: "post",
        path: "/api/v1/sql",
        summary: "Read-only SQL over the `entries` table (JSON, CSV or Arrow IPC by Accept)",
        params: &[(
            "format",
            In::Query,
            false,
            r#"{"type":"string","enum":["json","csv","arrow"]}"#,
            "answer format (instead of Accept)",
        )],
        body: Some(r##"{"$ref":"#/components/schemas/SqlRequest"}"##),
        ok: (
            "application/json",
            r##"{"$ref":"#/components/schemas/SqlAnswer"}"##,
        ),
        websocket: false,
        access: Access::Read,
    },
    Op {
        method: "get",
        path: "/api/v1/snapshots",
        summary: "Snapshots for auditors (pinned windows and the query they select with)",
        params: &[],
        body: None,
        ok: (
            "application/json",
            r##"{"type":"object","required":["snapshots"],"properties":{"snapshots":{"type":"array","items":{"$ref":"#/components/schemas/Snapshot"}}}}"##,
        ),
        websocket: false,
        access: Access::Read,
    },
    Op {
        method: "post",
        path: "/api/v1/snapshots",
        summary: "Pin a window (retention keeps it) and record its KFL and nodes; 201, 409 if the name is taken",
        params: &[],
        body: Some(r##"{"$ref":"#/components/schemas/SnapshotCreate"}"##),
        ok: (
            "application/json",
            r##"{"$ref":"#/components/schemas/Snapshot"}"##,
        ),
        websocket: false,
        access: Access::Admin,
    },
    Op {
        method: "get",
        path: "/api/v1/snapshots/{name}",
        summary: "One snapshot",
        params: &[SNAPSHOT],
        body: None,
        ok: (
            "application/json",
            r##"{"$ref":"#/components/schemas/Snapshot"}"##,
        ),
        websocket: false,
        access: Access::Read,
    },
    Op {
        method: "delete",
        path: "/api/v1/snapshots/{name}",
        summary: "Unpin a snapshot (exported bundles are unaffected)",
        params: &[SNAPSHOT],
        body: None,
        ok: (
            "application/json",
            r#"{"type":"object","required":["deleted"],"properties":{"deleted":{"type":"string"}}}"#,
        ),
        websocket: false,
        access: Access::Admin,
    },
    Op {
        method: "get",
        path: "/api/v1/snapshots/{name}/export",
        summary: "Export a snapshot: the bundle as a tar (default), or its HAR (JSON) or PCAP alone",
        params: &[
            SNAPSHOT,
            (
                "format",
                In::Query,
                false,
                r#"{"type":"string","enum":["bundle","har","pcap"]}"#,
                "what to export (default bundle)",
            ),
        ],
        body: None,
        // A tar, HAR JSON or PCAP, by `format`.
        ok: ("*/*", "{}"),
        websocket: false,
        access: Access::Read,
    },
];

const SNAPSHOT: Param = ("name", In::Path, true, STR, "snapshot name");

fn schema(s: &str) -> Value {
    serde_json::from_str(s).expect("the schemas in OPS are valid JSON")
}

fn components() -> Value {
    let bounds = json!({"type": "object", "required": ["oldest", "newest", "oldest_us", "newest_us"],
        "properties": {"oldest": {"type": "string"}, "newest": {"type": "string"},
                       "oldest_us": {"type": "integer"}, "newest_us": {"type": "integer"}}});
    json!({"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer",
        "description": "`wiretrail up --auth tokens`: a token from `wiretrail auth token add`. WebSocket routes also take it as the subprotocol `bearer.<token>` (offer `wiretrail` beside it)."}},
    "schemas": {
        "Error": {"type": "object", "required": ["error"], "properties": {"error": {
            "type": "object", "required": ["message"], "properties": {
                "message": {"type": "string"}, "position": {"type": ["integer", "null"]},
                "line": {"type": ["integer", "null"]}, "column": {"type": ["integer", "null"]},
                "suggestion": {"type": ["string", "null"]}}}}},
        "EntriesPage": {"type": "object", "required": ["entries", "stats"], "properties": {
            "entries": {"type": "array", "items": {"type": "object"}},
            "next_cursor": {"type": ["string", "null"]},
            "stats": {"type": "object", "properties": {
                "files_scanned": {"type": "integer"}, "files_pruned": {"type": "integer"},
                "buffered_batches": {"type": "integer"}}}}},
        "ServiceMap": {"type": "object", "required": ["nodes", "edges", "source"], "properties": {
            "nodes": {"type": "array", "items": {"type": "object", "required": ["id", "name", "kind", "count", "bytes"],
                "properties": {"id": {"type": "string"}, "name": {"type": "string"}, "namespace": {"type": "string"},
                    "kind": {"type": "string"}, "count": {"type": "integer"}, "bytes": {"type": "integer"}}}},
            "edges": {"type": "array", "items": {"type": "object", "required": ["source", "target", "protocol", "count", "errors", "bytes"],
                "properties": {"source": {"type": "string"}, "target": {"type": "string"}, "protocol": {"type": "string"},
                    "count": {"type": "integer"}, "errors": {"type": "integer"}, "bytes": {"type": "integer"},
                    "p50_us": {"type": ["integer", "null"]}, "p99_us": {"type": ["integer", "null"]}}}},
            "source": {"type": "string", "enum": ["rollups", "scan"]},
            "files_scanned": {"type": "integer"}}},
        "Boundaries": {"type": "object", "required": ["nodes"], "properties": {
            "overall": {"oneOf": [bounds, {"type": "null"}]},
            "nodes": {"type": "array", "items": {"type": "object"}}}},
        "SqlRequest": {"type": "object", "required": ["sql"], "additionalProperties": false, "properties": {
            "sql": {"type": "string"}, "from": {"type": ["string", "integer"]}, "to": {"type": ["string", "integer"]},
            "timeout_ms": {"type": "integer", "minimum": 0}}},
        "Snapshot": {"type": "object", "required": ["name", "from", "to", "from_us", "to_us", "kfl", "nodes", "created"],
            "properties": {"name": {"type": "string"}, "from": {"type": "string"}, "to": {"type": "string"},
                "from_us": {"type": "integer"}, "to_us": {"type": "integer"}, "kfl": {"type": "string"},
                "nodes": {"type": "array", "items": {"type": "string"}}, "created": {"type": "string"},
                "imported": {"type": "object"}}},
        "SnapshotCreate": {"type": "object", "required": ["name"], "additionalProperties": false, "properties": {
            "name": {"type": "string"}, "from": {"type": ["string", "integer"]}, "to": {"type": ["string", "integer"]},
            "kfl": {"type": "string"}, "nodes": {"type": "array", "items": {"type": "string"}}}},
        "SqlAnswer": {"type": "object", "required": ["columns", "row_count", "truncated", "rows"], "properties": {
            "columns": {"type": "array", "items": {"type": "object"}}, "row_count": {"type": "integer"},
            "truncated": {"type": "boolean"}, "rows": {"type": "array", "items": {"type": "object"}}}}
    }})
}

/// The document for [`OPS`].
pub fn document() -> Value {
    let mut paths = Map::new();
    for op in OPS {
        let params: Vec<Value> = op
            .params
            .iter()
            .map(|(name, loc, required, s, desc)| {
                json!({"name": name, "in": match loc { In::Query => "query", In::Path => "path" },
                       "required": required, "schema": schema(s), "description": desc})
            })
            .collect();
        let error = json!({"description": "bad input (message, and for KFL the position)",
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}});
        let mut responses = Map::new();
        if op.websocket {
            responses.insert(
                "101".into(),
                json!({"description": "WebSocket upgrade; JSON text messages"}),
            );
        } else {
            let (ctype, s) = op.ok;
            responses.insert(
                "200".into(),
                json!({"description": "OK", "content": {ctype: {"schema": schema(s)}}}),
            );
        }
        responses.insert("400".into(), error.clone());
        if op.path.contains('{') {
            responses.insert("404".into(), error.clone());
        }
        if op.access != Access::Open {
            let mut e = error.clone();
            e["description"] = json!(
                "with `up --auth tokens`: no or invalid bearer token (`WWW-Authenticate: Bearer`)"
            );
            responses.insert("401".into(), e);
        }
        if matches!(op.access, Access::Read | Access::Admin | Access::Metrics) {
            let mut e = error;
            e["description"] = json!(format!(
                "with `up --auth tokens`: the principal's role may not (needs {})",
                op.access.needs()
            ));
            responses.insert("403".into(), e);
        }
        let mut o = json!({"summary": op.summary, "operationId": format!("{}{}", op.method, op.path.replace(['/', '{', '}', '.'], "_")),
                           "parameters": params, "responses": responses});
        // `/metrics` is open unless `up --metrics-auth`: an empty requirement means optional.
        match op.access {
            Access::Open => o["security"] = json!([]),
            Access::Metrics => o["security"] = json!([{}, {"bearer": []}]),
            _ => o["security"] = json!([{"bearer": []}]),
        }
        if let Some(b) = op.body {
            o["requestBody"] = json!({"required": true, "content": {
                "application/json": {"schema": schema(b)},
                "text/plain": {"schema": {"type": "string", "description": "the statement alone"}}}});
        }
        let item = paths
            .entry(op.path.to_string())
            .or_insert_with(|| json!({}));
        item[op.method] = o;
    }
    json!({
        "openapi": "3.1.0",
        "info": {"title": "wiretrail", "version": env!("CARGO_PKG_VERSION"),
                 "description": "Recorded API traffic of a Kubernetes cluster: entries, KFL, service map, SQL, live views."},
        "paths": paths,
        "components": components(),
    })
}
