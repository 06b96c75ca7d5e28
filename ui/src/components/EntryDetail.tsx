import { useEffect, useState } from "preact/hooks";
import { ApiError, getJson, isAbort } from "../api";
import { contentType, renderBody, type Rendered } from "../lib/body";
import { curlCommand, isHttpFamily } from "../lib/curl";
import { appendClause, eqClause, headerField, kflString } from "../lib/kfl";
import { formatBytes, formatLatency, formatLocal, formatUs } from "../lib/time";
import type { Body, FullEntry, Header, Identity } from "../lib/types";
import { toUrl } from "../lib/url";
import { navigate, route } from "../state";
import { copied, copyText, statusClass } from "../util";

/** Appends `and clause` / `and !(clause)` to the applied KFL. */
function addClause(clause: string, exclude: boolean) {
  navigate({ kfl: appendClause(route.value.kfl, clause, exclude), entry: "" });
}

/** "+" / "−" buttons for one value. */
export function IncExc({ field, value, clause }: { field: string; value: string | number | boolean | null; clause?: string }) {
  const c = clause ?? eqClause(field, value);
  const shown = value === null ? "nil" : String(value);
  return (
    <span class="incexc">
      <button class="ie" title="+" aria-label={`Include ${field} ${shown}`} onClick={() => addClause(c, false)}>
        +
      </button>
      <button class="ie" title="−" aria-label={`Exclude ${field} ${shown}`} onClick={() => addClause(c, true)}>
        −
      </button>
    </span>
  );
}

function Val({ field, value, mono = true }: { field: string; value: string | number | null | undefined; mono?: boolean }) {
  if (value === null || value === undefined || value === "") return <span class="muted">—</span>;
  return (
    <span class="val">
      <span class={mono ? "mono" : ""}>{String(value)}</span>
      <IncExc field={field} value={value} />
    </span>
  );
}

function IdentityBlock({ side, id, title }: { side: "src" | "dst"; id: Identity; title: string }) {
  const addr = id.ip ? `${id.ip.includes(":") ? `[${id.ip}]` : id.ip}:${id.port ?? ""}` : null;
  const rows: [string, string | number | null][] = [
    ["pod", id.pod],
    ["service", id.service],
    ["workload", id.workload],
    ["namespace", id.namespace],
    ["node", id.node],
    // The name only when it says something the others do not (an address's DNS name).
    ["name", id.name && ![id.pod, id.service, id.workload].includes(id.name) ? id.name : null],
  ];
  return (
    <div class="ident">
      <div class="ident-title">{title}</div>
      <dl class="kv">
        {rows
          .filter(([, v]) => v)
          .map(([k, v]) => (
            <>
              <dt>{k}</dt>
              <dd>
                <Val field={`${side}.${k}`} value={v} />
              </dd>
            </>
          ))}
        <dt>address</dt>
        <dd>
          {addr ? (
            <span class="val">
              <span class="mono">{addr}</span>
              <IncExc field={`${side}.ip`} value={id.ip} />
            </span>
          ) : (
            "—"
          )}
        </dd>
      </dl>
    </div>
  );
}

function HeadersTable({ headers, response }: { headers: Header[] | null; response: boolean }) {
  const label = response ? "Response headers" : "Request headers";
  if (!headers || headers.length === 0)
    return (
      <p class="muted small" aria-label={label}>
        No headers.
      </p>
    );
  return (
    <table class="headers" aria-label={label}>
      <thead>
        <tr>
          <th scope="col">Name</th>
          <th scope="col">Value</th>
          <th scope="col">
            <span class="sr-only">Filter</span>
          </th>
        </tr>
      </thead>
      <tbody>
        {headers.map((h) => {
          const f = headerField(response, h.name);
          return (
            <tr>
              <td class="mono h-name">{h.name}</td>
              <td class="mono h-val">{h.value ?? ""}</td>
              <td class="h-act">{h.name.startsWith(":") ? null : <IncExc field={f} value={h.value} />}</td>
            </tr>
          );
        })}
      </tbody>
    </table>
  );
}

function BodyView({ body, headers, graphql }: { body: Body | null; headers: Header[] | null; graphql: boolean }) {
  const [raw, setRaw] = useState(false);
  if (!body || body.size === 0) return <p class="muted small">No body.</p>;
  const ct = contentType(headers);
  const r: Rendered = raw && body.encoding === "utf8" ? { kind: "text", text: body.data } : renderBody(body, ct, graphql);
  return (
    <div class="body-view">
      <div class="body-meta muted small">
        {ct || "no content type"} · {formatBytes(body.size)} stored · {r.kind === "hex" ? "binary (hex + text)" : r.kind}
        {body.truncated && (
          <span class="trunc" title="The body was longer than the capture's body cap; the rest was counted, not stored">
            {" "}
            · truncated
          </span>
        )}
        {body.encoding === "utf8" && r.kind !== "text" && (
          <button class="btn ghost tiny" onClick={() => setRaw(!raw)}>
            {raw ? "pretty" : "raw"}
          </button>
        )}
      </div>
      {r.kind === "form" ? (
        <table class="headers">
          <tbody>
            {r.pairs.map(([k, v]) => (
              <tr>
                <td class="mono h-name">{k}</td>
                <td class="mono h-val">{v}</td>
                <td class="h-act">
                  <IncExc field={`request.postData.params[${kflString(k)}]`} value={v} />
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      ) : r.kind === "graphql" ? (
        <>
          {r.operationName && <div class="muted small">operation {r.operationName}</div>}
          <pre class="code">{r.query}</pre>
          {r.variables && (
            <>
              <div class="muted small">variables</div>
              <pre class="code">{r.variables}</pre>
            </>
          )}
        </>
      ) : (
        <pre class={`code ${r.kind}`}>{r.text}</pre>
      )}
      {body.truncated && <div class="trunc-mark">… truncated at {formatBytes(body.size)}</div>}
    </div>
  );
}

/** Protocol detail JSON as nested key/value rows, each scalar with include/exclude. */
function DetailTree({ value, path, root }: { value: unknown; path: string; root: string }) {
  if (value === null || value === undefined) return <span class="muted">null</span>;
  if (Array.isArray(value)) {
    if (value.length === 0) return <span class="muted">[]</span>;
    if (value.every((v) => v === null || typeof v !== "object")) {
      // A list of plain values reads as one value (KFL compares lists element-wise).
      return <span class="mono">{value.map((v) => (typeof v === "string" ? v : JSON.stringify(v))).join(", ")}</span>;
    }
    const flat = value.every(
      (v) => v && typeof v === "object" && !Array.isArray(v) && Object.values(v as object).every((x) => x === null || typeof x !== "object" || (Array.isArray(x) && x.every((y) => typeof y !== "object"))),
    );
    if (flat) {
      const cols = [...new Set(value.flatMap((v) => Object.keys(v as object)))];
      return (
        <table class="headers detail-table">
          <thead>
            <tr>
              {cols.map((c) => (
                <th scope="col">{c}</th>
              ))}
            </tr>
          </thead>
          <tbody>
            {value.map((v, i) => (
              <tr>
                {cols.map((c) => {
                  const x = (v as Record<string, unknown>)[c];
                  const p = /^[A-Za-z_]\w*$/.test(c) ? `${path}[${i}].${c}` : `${path}[${i}][${kflString(c)}]`;
                  return (
                    <td class="mono">
                      {x === null || x === undefined ? (
                        ""
                      ) : Array.isArray(x) ? (
                        JSON.stringify(x)
                      ) : (
                        <span class="val">
                          {String(x)}
                          <IncExc field={`${root}${p}`} value={x as string | number} />
                        </span>
                      )}
                    </td>
                  );
                })}
              </tr>
            ))}
          </tbody>
        </table>
      );
    }
    return (
      <ol class="tree">
        {value.map((v, i) => (
          <li>
            <DetailTree value={v} path={`${path}[${i}]`} root={root} />
          </li>
        ))}
      </ol>
    );
  }
  if (typeof value === "object") {
    const o = value as Record<string, unknown>;
    return (
      <dl class="kv tree">
        {Object.keys(o).map((k) => {
          const p = /^[A-Za-z_]\w*$/.test(k) ? `${path}.${k}` : `${path}[${kflString(k)}]`;
          return (
            <>
              <dt>{k}</dt>
              <dd>
                <DetailTree value={o[k]} path={p} root={root} />
              </dd>
            </>
          );
        })}
      </dl>
    );
  }
  const v = value as string | number | boolean;
  return (
    <span class="val">
      <span class="mono">{typeof v === "string" ? v : JSON.stringify(v)}</span>
      <IncExc field={`${root}${path}`} value={v} />
    </span>
  );
}

/** What `method` and `path` mean for a protocol. */
const SUMMARY: Record<string, [string, string]> = {
  redis: ["command", "key"],
  kafka: ["API", "topics"],
  amqp: ["method", "queue / exchange / routing key"],
  dns: ["query type", "name"],
  postgres: ["command", "query"],
  tls: ["message", "SNI"],
  grpc: ["method", "path"],
};

function hasDetail(v: unknown): boolean {
  return v !== null && v !== undefined && !(typeof v === "object" && Object.keys(v as object).length === 0);
}

function plain(v: unknown): string {
  if (typeof v === "string") return v;
  if (Array.isArray(v) && v.every((x) => typeof x !== "object")) return v.join(", ");
  return JSON.stringify(v);
}

function tlsFacts(e: FullEntry): [string, string][] {
  const out: [string, string][] = [];
  for (const side of [e.request, e.response]) {
    const t = side && typeof side === "object" ? (side as Record<string, unknown>).tls : null;
    if (t && typeof t === "object") {
      for (const [k, v] of Object.entries(t as Record<string, unknown>)) {
        if (v !== null && v !== undefined && !out.some(([x]) => x === k)) out.push([k, plain(v)]);
      }
    }
  }
  if (e.protocol === "tls") {
    const d = (e.request ?? {}) as Record<string, unknown>;
    for (const k of ["sni", "alpn", "version", "cipher"]) if (d[k] !== undefined && d[k] !== null && !out.some(([x]) => x === k)) out.push([k, plain(d[k])]);
  }
  if (e.capture === "ebpf_tls") out.push(["decrypted", "eBPF (OpenSSL plaintext)"]);
  return out;
}

export function EntryDetail({ id, onClose }: { id: string; onClose: () => void }) {
  const [e, setE] = useState<FullEntry | null>(null);
  const [err, setErr] = useState<string | null>(null);
  const [tab, setTab] = useState<"request" | "response">("request");
  useEffect(() => {
    const ac = new AbortController();
    setErr(null);
    getJson<FullEntry>(`/api/v1/entries/${encodeURIComponent(id)}`, {}, ac.signal)
      .then((x) => setE(x))
      .catch((x) => {
        if (!isAbort(x)) setErr(x instanceof ApiError ? x.body.message : String(x));
      });
    return () => ac.abort();
  }, [id]);

  const permalink = e
    ? toUrl({
        ...route.value,
        view: "traffic",
        entry: id,
        live: false,
        // A permalink pins the window around the entry.
        from: route.value.live ? formatUs(e.ts_us - 60_000_000) : route.value.from,
        to: route.value.live ? formatUs(e.ts_us + 60_000_000) : route.value.to,
      })
    : "";
  const isGql = e?.protocol === "graphql";
  const http = isHttpFamily(e?.protocol);
  return (
    <section class="detail" role="region" aria-label="Entry detail">
      <div class="detail-head">
        {e ? (
          <div class="d-title">
            <span class={`badge p-${e.protocol}`}>{e.protocol}</span>
            <span class="mono d-method">{e.method}</span>
            <span class="mono d-path" title={e.path ?? ""}>
              {e.path}
            </span>
            <span class={`mono d-status ${statusClass(e.protocol, e.status)}`}>
              {e.status ?? "—"} {e.status_text ?? ""}
            </span>
          </div>
        ) : (
          <div class="d-title muted">{err ? `Cannot load entry ${id}: ${err}` : "Loading…"}</div>
        )}
        <div class="d-actions">
          {e && isHttpFamily(e.protocol) && (
            <button class="btn small" onClick={() => void copyText(curlCommand(e))}>
              Copy as curl
            </button>
          )}
          {e && (
            <button class="btn small" onClick={() => void copyText(JSON.stringify(e, null, 2))}>
              Copy as JSON
            </button>
          )}
          {e && (
            <a class="btn small" href={permalink} title="Link to this entry in this window" onClick={(ev) => { ev.preventDefault(); void copyText(location.origin + permalink); }}>
              Permalink
            </a>
          )}
          <button class="btn small" onClick={onClose} title="Close (Esc)">
            Close
          </button>
        </div>
      </div>
      <div role="status" class="copied" aria-live="polite">
        {copied.value?.text ?? ""}
      </div>
      {e && (
        <div class="detail-body">
          <div class="facts">
            <dl class="kv general">
              <dt>time</dt>
              <dd>
                <span class="mono">{e.ts}</span>
                <div class="muted small">{formatLocal(e.ts_us)} local</div>
              </dd>
              <dt>latency</dt>
              <dd class="mono" title={e.elapsed_us !== null ? `response began at ${formatUs(e.ts_us + e.elapsed_us)}` : "no response"}>
                {formatLatency(e.elapsed_us)}
                {e.elapsed_us === null && <span class="muted small"> no response</span>}
              </dd>
              <dt>sizes</dt>
              <dd class="mono">
                {formatBytes(e.request_size)} → {formatBytes(e.response_size)}
              </dd>
              <dt>node</dt>
              <dd>
                <Val field="node" value={e.node} />
              </dd>
              <dt>capture</dt>
              <dd class="mono">{e.capture}</dd>
              <dt>protocol</dt>
              <dd>
                <Val field="protocol" value={e.protocol} />
              </dd>
              <dt>id</dt>
              <dd class="mono small">{e.id}</dd>
              {tlsFacts(e).map(([k, v]) => (
                <>
                  <dt>tls {k}</dt>
                  <dd class="mono">{v}</dd>
                </>
              ))}
            </dl>
            <div class="idents">
              <IdentityBlock side="src" id={e.src} title="Source" />
              <IdentityBlock side="dst" id={e.dst} title="Destination" />
            </div>
          </div>
          <div class="tabs" role="tablist" aria-label="Message">
            <button role="tab" id="tab-req" aria-selected={tab === "request"} aria-controls="panel-req" onClick={() => setTab("request")}>
              Request
            </button>
            <button role="tab" id="tab-resp" aria-selected={tab === "response"} aria-controls="panel-resp" onClick={() => setTab("response")}>
              Response
            </button>
          </div>
          {tab === "request" ? (
            <div role="tabpanel" id="panel-req" aria-labelledby="tab-req" class="panel">
              {SUMMARY[e.protocol ?? ""] ? (
                <dl class="kv summary">
                  <dt>{SUMMARY[e.protocol!][0]}</dt>
                  <dd>
                    <Val field="request.method" value={e.method} />
                  </dd>
                  <dt>{SUMMARY[e.protocol!][1]}</dt>
                  <dd>
                    <Val field="request.path" value={e.path} />
                  </dd>
                </dl>
              ) : (
                <div class="line mono">
                  <Val field="request.method" value={e.method} /> <Val field="request.path" value={e.path} />
                </div>
              )}
              {(http || (e.request_headers?.length ?? 0) > 0) && (
                <>
                  <h4>Headers</h4>
                  <HeadersTable headers={e.request_headers} response={false} />
                </>
              )}
              {(http || (e.request_body?.size ?? 0) > 0) && (
                <>
                  <h4>Body</h4>
                  <BodyView body={e.request_body} headers={e.request_headers} graphql={isGql} />
                </>
              )}
              {hasDetail(e.request) && (
                <>
                  <h4>Protocol detail</h4>
                  <DetailTree value={e.request} path="" root="request" />
                </>
              )}
            </div>
          ) : (
            <div role="tabpanel" id="panel-resp" aria-labelledby="tab-resp" class="panel">
              <div class="line mono">
                <Val field="response.status" value={e.status} /> <span class="muted">{e.status_text}</span>
                <span class="muted small"> · {formatLatency(e.elapsed_us)}</span>
              </div>
              {(http || (e.response_headers?.length ?? 0) > 0) && (
                <>
                  <h4>Headers</h4>
                  <HeadersTable headers={e.response_headers} response={true} />
                </>
              )}
              {(http || (e.response_body?.size ?? 0) > 0) && (
                <>
                  <h4>Body</h4>
                  <BodyView body={e.response_body} headers={e.response_headers} graphql={false} />
                </>
              )}
              {hasDetail(e.response) && (
                <>
                  <h4>Protocol detail</h4>
                  <DetailTree value={e.response} path="" root="response" />
                </>
              )}
            </div>
          )}
        </div>
      )}
    </section>
  );
}
