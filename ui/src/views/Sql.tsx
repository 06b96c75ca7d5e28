import { useEffect, useRef, useState } from "preact/hooks";
import { ApiError, postRaw } from "../api";
import { formatUs } from "../lib/time";
import type { SqlAnswer } from "../lib/types";
import { navigate, route, window_ } from "../state";
import { download, fmtInt } from "../util";

const DEFAULT_SQL = `SELECT protocol, count(*) AS entries, sum(CASE WHEN status >= 500 THEN 1 ELSE 0 END) AS server_errors
FROM entries
WHERE ts >= $from AND ts < $to
GROUP BY protocol
ORDER BY entries DESC`;

/** `$from`/`$to` → the time bar's window as timestamp literals. */
export function bindWindow(sql: string, from: number, to: number): string {
  return sql.replace(/\$from\b/g, `TIMESTAMP '${formatUs(from)}'`).replace(/\$to\b/g, `TIMESTAMP '${formatUs(to)}'`);
}

let schemaCache: { name: string; type: string }[] | null = null;

export function Sql() {
  const r = route.value;
  const w = window_.value;
  const [text, setText] = useState(r.sql || DEFAULT_SQL);
  const [ans, setAns] = useState<SqlAnswer | null>(null);
  const [err, setErr] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const [ms, setMs] = useState<number | null>(null);
  const [schema, setSchema] = useState(schemaCache);
  const [scoped, setScoped] = useState(true);
  const ta = useRef<HTMLTextAreaElement>(null);

  useEffect(() => {
    if (r.sql && r.sql !== text) setText(r.sql);
  }, [r.sql]);

  useEffect(() => {
    if (schemaCache) return;
    // The columns of `entries` as the server types them (no rows are read).
    postRaw("/api/v1/sql", { sql: "SELECT * FROM entries LIMIT 0" })
      .then((x) => x.json())
      .then((a: SqlAnswer) => {
        schemaCache = a.columns;
        setSchema(a.columns);
      })
      .catch(() => {});
  }, []);

  function body(sql: string) {
    const b: Record<string, unknown> = { sql: w ? bindWindow(sql, w.fromUs, w.toUs) : sql };
    if (scoped && w) {
      b.from = formatUs(w.fromUs);
      b.to = formatUs(w.toUs);
    }
    return b;
  }

  async function run() {
    setBusy(true);
    setErr(null);
    const t0 = performance.now();
    const keep = text === DEFAULT_SQL ? "" : text;
    if (keep !== r.sql) navigate({ sql: keep }, true);
    try {
      const res = await postRaw("/api/v1/sql", body(text));
      setAns((await res.json()) as SqlAnswer);
      setMs(Math.round(performance.now() - t0));
    } catch (e) {
      setErr(e instanceof ApiError ? e.body.message : String(e));
    } finally {
      setBusy(false);
    }
  }

  async function dl(format: "csv" | "arrow", e: Event) {
    e.preventDefault();
    try {
      const res = await postRaw(`/api/v1/sql?format=${format}`, body(text));
      download(await res.blob(), format === "csv" ? "wiretrail-query.csv" : "wiretrail-query.arrows");
    } catch (x) {
      setErr(x instanceof ApiError ? x.body.message : String(x));
    }
  }

  const cols = ans?.columns ?? [];
  const cell = (v: unknown) => (v === null || v === undefined ? "" : typeof v === "object" ? JSON.stringify(v) : String(v));
  return (
    <div class="page sql">
      <div class="sql-main">
        <div class="sql-editor">
          <textarea
            ref={ta}
            aria-label="SQL query"
            spellcheck={false}
            value={text}
            rows={8}
            onInput={(e) => setText(e.currentTarget.value)}
            onKeyDown={(e) => {
              if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) {
                e.preventDefault();
                void run();
              }
            }}
          />
          <div class="sql-bar">
            <button class="btn primary" onClick={() => void run()} disabled={busy} title="Run (Ctrl+Enter)">
              Run
            </button>
            <label class="inline small">
              <input type="checkbox" checked={scoped} onChange={(e) => setScoped(e.currentTarget.checked)} /> only the time bar's window
            </label>
            <span class="muted small">
              <code>$from</code> / <code>$to</code> = the time bar ({w ? `${formatUs(w.fromUs)} → ${formatUs(w.toUs)}` : "—"})
            </span>
            <span class="spacer" />
            {ans && (
              <span class="muted small">
                {fmtInt(ans.row_count)} rows{ans.truncated ? " (truncated at the row cap)" : ""}
                {ms !== null ? ` · ${ms} ms` : ""}
              </span>
            )}
            <a href="/api/v1/sql?format=csv" onClick={(e) => void dl("csv", e)}>
              Download CSV
            </a>
            <a href="/api/v1/sql?format=arrow" onClick={(e) => void dl("arrow", e)}>
              Download Arrow
            </a>
          </div>
        </div>
        {err && (
          <div class="error-box mono" role="alert">
            {err}
          </div>
        )}
        <div class="results-wrap">
          {ans ? (
            <table class="results" aria-label="Results">
              <thead>
                <tr>
                  {cols.map((c) => (
                    <th scope="col" title={c.type}>
                      {c.name}
                    </th>
                  ))}
                </tr>
              </thead>
              <tbody>
                {ans.rows.slice(0, 5000).map((row) => (
                  <tr>
                    {cols.map((c) => (
                      <td class="mono">{cell(row[c.name])}</td>
                    ))}
                  </tr>
                ))}
              </tbody>
            </table>
          ) : (
            <p class="muted pad">Run a query (Ctrl+Enter). Read-only SQL over the table <code>entries</code>.</p>
          )}
          {ans && ans.rows.length > 5000 && <p class="muted small pad">Showing 5,000 of {fmtInt(ans.rows.length)} rows; download CSV for all.</p>}
        </div>
      </div>
      <aside class="schema" aria-label="Schema of entries">
        <h3>
          <code>entries</code>
        </h3>
        <ul>
          {(schema ?? []).map((c) => (
            <li>
              <span
                class="col"
                title="Click to insert at the cursor"
                onClick={() => {
                  const el = ta.current;
                  if (!el) return;
                  const s = el.selectionStart ?? text.length;
                  const t = text.slice(0, s) + c.name + text.slice(el.selectionEnd ?? s);
                  setText(t);
                  requestAnimationFrame(() => {
                    el.focus();
                    el.setSelectionRange(s + c.name.length, s + c.name.length);
                  });
                }}
              >
                <span class="mono">{c.name}</span>
              </span>
              <span class="muted small mono">{c.type.replace(/Dictionary\(Int\d+, (\w+)\)/, "$1")}</span>
            </li>
          ))}
        </ul>
      </aside>
    </div>
  );
}
