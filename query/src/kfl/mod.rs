//! KFL, the Kubeshark Filter Language, compiled to a DataFusion [`Expr`] (never interpreted row
//! by row here): DataFusion evaluates it vectorized and pushes the plain `column op literal`
//! parts down to Parquet statistics, page indexes and the catalog.
//!
//! One parser accepts KFL v1 (`and`, `or`, `!`, `r"regex"`, `request.headers["X"]`,
//! `.startsWith()`, `datetime()`, `limit(n)`) and KFL2 (`&&`, `||`, `in [..]`, `.matches()`,
//! `timestamp("RFC 3339")`, flat names such as `status_code`, `dst.pod.namespace`).
//!
//! # Syntax
//! - Literals: integers (`42`, `-1`, `1_000`), floats (`3.5`), strings in `"…"`, `'…'` or
//!   `` `…` ``, regexes `r"…"` (also `r'…'`), `true`, `false`, `nil`/`null`.
//! - String escapes: `\<quote>` is the quote; in a plain string `\\` is one backslash. Any other
//!   backslash is kept as written (as v1 did), so `"\d+"` stays `\d+`; in `r"…"` even `\\` is
//!   kept (the regex escape for a backslash).
//! - Precedence, loosest first: `c ? a : b` → `or`/`||` → `and`/`&&` → comparison (`==` `!=`
//!   `<` `<=` `>` `>=`, `in`, not chainable) → `+`/`-` → `!`/`not` (the value right after it:
//!   `!x == 1` is an error, write `!(x == 1)`). `a or b and c` is `a or (b and c)` (as in
//!   KFL2/CEL; v1 had one right-associative level for both).
//! - Selectors: `a.b`, `a[0]`, `a["k"]`, `a.*`/`a[*]`, `a..name`, and `x.json()` / `x.xml()`
//!   that continue inside a decoded document (`response.body.json().items[0].name`).
//!
//! # Semantics
//! - Promoted names (`response.status`, `status_code`, `src.namespace` …) read columns; other
//!   `request.…`/`response.…` paths read the protocol-detail JSON, bodies and a few text fields
//!   read as documents (query string, cookies, path segments) through the `kfl_json*` UDFs
//!   ([`fields`] has the table). Regexes are RE2, unanchored.
//! - A literal is coerced to the field's type (`response.status == "200"` is `== 200`); a
//!   missing field, header or document value makes every comparison on it false, and the
//!   logic is two-valued (`!(response.status == 200)` holds for an entry without a status).
//! - On a list (`.*`, `..name`, a list value) `==` and the orderings hold when one element
//!   does, `!=` when none does (v1).
//! - Macros are whole identifiers: user macros ([`KflOptions::macros`], default `https`) first,
//!   then the protocol macros, `tls`, `error`, and KFL2 flags; KFL2 variables we do not
//!   record take their KFL2 defaults.
//! - `limit(n)` and `redact(…)` must be `and`-joined at the top level; they set
//!   [`CompiledKfl::limit`] and [`CompiledKfl::redact`].
//! - Time: `timestamp` compares with epoch ms, RFC 3339, `datetime()`, `timestamp()`, `now()`,
//!   `seconds(n)` … `years(n)` (now minus n units) and constant `now() - duration("5m")`; now is
//!   fixed at compile time ([`KflOptions::now_ms`]).
//! - Limits: a query is at most [`MAX_QUERY_LEN`] bytes, nests at most [`MAX_DEPTH`] levels
//!   and has at most [`MAX_TERMS`] values; beyond that it is refused with an error, never a
//!   crash. Errors carry the 0-based character position, line and column, and for an unknown
//!   field a suggestion ("did you mean `response.status`?").

mod ast;
mod compile;
mod fields;
mod jsonpath;
mod lexer;
mod parser;
mod redact;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_conformance;
#[cfg(test)]
mod tests_eval;
mod udf;
mod values;

use datafusion::logical_expr::ScalarUDF;
use datafusion::prelude::Expr;
use serde::Serialize;

pub use fields::known_names;
pub use redact::{Redaction, MASK};

/// Longest query accepted, in bytes.
pub const MAX_QUERY_LEN: usize = 64 * 1024;
/// Deepest nesting of parentheses, `!` and call arguments.
pub const MAX_DEPTH: usize = 128;
/// Most values (fields, literals, calls) in one query; keeps DataFusion's recursive plan
/// rewrites, which may turn a balanced `and` back into a chain, far from the stack limit.
pub const MAX_TERMS: usize = 1024;

#[derive(Debug, Clone)]
pub struct KflOptions {
    /// What `now()` and `minutes(n)` … count from.
    pub now_ms: i64,
    /// User macros (name, KFL expression), checked before the built-in ones; see
    /// [`default_macros`].
    pub macros: Vec<(String, String)>,
}

/// Macros every deployment has unless configured otherwise (Kubeshark's Helm default).
pub fn default_macros() -> Vec<(String, String)> {
    vec![("https".into(), "tls and (http or http2)".into())]
}

impl KflOptions {
    pub fn new(now_ms: i64) -> Self {
        KflOptions {
            now_ms,
            macros: default_macros(),
        }
    }
}

/// Reads `NAME=EXPR` (the `--kfl-macro` option); the name must be an identifier and the
/// expression must compile.
pub fn parse_macro(s: &str) -> Result<(String, String), String> {
    let (name, body) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?}: expected NAME=EXPR"))?;
    let name = name.trim();
    let ident = name
        .chars()
        .next()
        .is_some_and(|c| c.is_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_alphanumeric() || c == '_');
    if !ident {
        return Err(format!("macro name {name:?} must be an identifier"));
    }
    let mut opts = KflOptions::new(0);
    opts.macros.retain(|(n, _)| n != name);
    compile(body, &opts).map_err(|e| format!("macro {name}: {e}"))?;
    Ok((name.to_string(), body.trim().to_string()))
}

#[derive(Debug, Clone)]
pub struct CompiledKfl {
    /// `None`: the query is empty and matches everything.
    pub filter: Option<Expr>,
    /// From `limit(n)`.
    pub limit: Option<usize>,
    /// From `redact(…)`: fields to mask in the returned entries ([`redact_entries`]).
    pub redact: Vec<Redaction>,
}

/// Masks the fields `redact(…)` named in entries turned into JSON.
pub fn redact_entries(entries: &mut [serde_json::Value], redact: &[Redaction]) {
    if !redact.is_empty() {
        redact::apply(entries, redact);
    }
}

/// A query error with where it happened.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct KflError {
    pub message: String,
    /// 0-based character offset.
    pub position: usize,
    /// 1-based.
    pub line: usize,
    /// 1-based.
    pub column: usize,
    pub suggestion: Option<String>,
}

impl KflError {
    pub fn at(query: &str, position: usize, message: &str) -> Self {
        let before: Vec<char> = query.chars().take(position).collect();
        let line = before.iter().filter(|c| **c == '\n').count() + 1;
        let column = before.iter().rev().take_while(|c| **c != '\n').count() + 1;
        KflError {
            message: message.to_string(),
            position,
            line,
            column,
            suggestion: None,
        }
    }

    /// The offending line with a caret under the position.
    pub fn render(&self, query: &str) -> String {
        let line = query.lines().nth(self.line - 1).unwrap_or("");
        format!("{line}\n{}^ {}", " ".repeat(self.column - 1), self.message)
    }
}

impl std::fmt::Display for KflError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} (at line {}, column {})",
            self.message, self.line, self.column
        )
    }
}

impl std::error::Error for KflError {}

/// Compiles a query into a filter expression over the entry schema.
pub fn compile(query: &str, opts: &KflOptions) -> Result<CompiledKfl, KflError> {
    if query.len() > MAX_QUERY_LEN {
        return Err(KflError::at(
            query,
            0,
            &format!("query longer than {MAX_QUERY_LEN} bytes"),
        ));
    }
    let toks = lexer::lex(query)?;
    let Some(ast) = parser::Parser::new(toks, query).parse()? else {
        return Ok(CompiledKfl {
            filter: None,
            limit: None,
            redact: vec![],
        });
    };
    let (filter, limit, redact) = compile::Compiler {
        query,
        opts,
        macro_depth: Default::default(),
    }
    .top(&ast)?;
    Ok(CompiledKfl {
        filter,
        limit,
        redact,
    })
}

/// Checks a query without running it (with the default macros).
pub fn validate(query: &str) -> Result<(), KflError> {
    compile(query, &KflOptions::new(0)).map(|_| ())
}

/// Functions the compiled expressions use; register them on the session.
pub fn udfs() -> Vec<ScalarUDF> {
    vec![
        udf::header_get(),
        udf::json_get(),
        udf::json_size(),
        udf::json_test(),
        udf::bytes(),
    ]
}
