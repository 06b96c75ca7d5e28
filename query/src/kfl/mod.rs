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
//! - Precedence, tightest first: `!`/`not` → comparison (`==` `!=` `<` `<=` `>` `>=`, `in`) →
//!   `and`/`&&` → `or`/`||`. So `a or b and c` is `a or (b and c)` and `a and b or c` is
//!   `(a and b) or c` (as in KFL2/CEL; v1 had one right-associative level for both). `!` takes
//!   the value right after it: `!x == 1` is an error, write `!(x == 1)`. Comparisons do not
//!   chain (`1 < x < 3` is an error).
//!
//! # Semantics
//! - Regexes are RE2 syntax (the `regex` crate), unanchored (`r"4.."` also matches `1404`):
//!   `x == r"…"` is a match, `x != r"…"` a non-match, on the value as text. An invalid regex is
//!   an error at the literal.
//! - A literal is coerced to the field's type: `response.status == "200"` and `== 200` are the
//!   same (compared as numbers, so no v1 6-digit float formatting bug); `"abc"` against a number
//!   is an error. Numbers compared with a text field are compared as their decimal text.
//! - A missing field (NULL column, absent header) makes every comparison on it false, and the
//!   logic is two-valued: `!(response.status == 200)` is true for an entry without a status,
//!   `response.status != 200` is false for it. `x == nil` tests for absence.
//! - A field used alone as a condition is "present and non-empty" (text) or "present and
//!   greater than zero" (number), as v1 truthiness.
//! - Header names are matched case-insensitively (`request.headers["authorization"]` finds
//!   `Authorization`); values compare case-sensitively.
//! - `protocol` (also `protocol.name`, `protocol.abbr`) holds lowercase names: `http` (HTTP/1.x),
//!   `http2`, `grpc`, `graphql`, `redis`, `kafka`, `amqp`, `dns`, `tls`, `postgres`. String
//!   literals compared with it are lowercased and v1 abbreviations mapped (`"HTTP/2"` →
//!   `http2`, `"GQL"` → `graphql`), so v1 `protocol.abbr == "DNS"` works.
//! - Protocol macros (`http`, `http2`, `grpc`, `gql`, `graphql`, `redis`, `kafka`, `amqp`, `dns`,
//!   `tls`, `postgres`) are whole identifiers only: `request.httpVersion` is not rewritten.
//! - `timestamp` compares with epoch milliseconds, RFC 3339 strings, `datetime("1/2/2006,
//!   3:04:05.000 PM")` (UTC; the milliseconds may be omitted), `timestamp("RFC 3339")`, `now()` and
//!   `seconds(n)` `minutes(n)` `hours(n)` `days(n)` `weeks(n)` `months(n)` (30 d) `years(n)`
//!   (365 d), which mean "now minus n units" as in v1 (`timestamp >= minutes(5)`); now is fixed
//!   at compile time ([`KflOptions::now_ms`]).
//! - `elapsedTime` is whole milliseconds (`elapsed_us / 1000`, truncated); `elapsed_us` is exact.
//! - `limit(n)` is true and sets [`CompiledKfl::limit`]; it must be one of the `and`-joined
//!   conditions of the whole query (`limit(10) and http`), anywhere else it is an error. With
//!   several, the smallest wins.
//! - Helpers on a field: `.startsWith(s)`, `.endsWith(s)`, `.contains(s)` (case-sensitive, on the
//!   value as text) and `.matches(re)`; usable alone or compared with `true`/`false`.
//! - Limits: a query is at most [`MAX_QUERY_LEN`] bytes, nests at most [`MAX_DEPTH`] levels
//!   (parentheses, `!`, call arguments) and has at most [`MAX_TERMS`] values; beyond that it is
//!   refused with an error, never a crash.
//! - Errors carry the 0-based character position, line and column, and for an unknown field a
//!   suggestion ("did you mean `response.status`?").

mod ast;
mod compile;
mod fields;
mod lexer;
mod parser;
#[cfg(test)]
mod tests;
mod udf;

use datafusion::logical_expr::ScalarUDF;
use datafusion::prelude::Expr;
use serde::Serialize;

pub use fields::known_names;

/// Longest query accepted, in bytes.
pub const MAX_QUERY_LEN: usize = 64 * 1024;
/// Deepest nesting of parentheses, `!` and call arguments.
pub const MAX_DEPTH: usize = 128;
/// Most values (fields, literals, calls) in one query; keeps DataFusion's recursive plan
/// rewrites, which may turn a balanced `and` back into a chain, far from the stack limit.
pub const MAX_TERMS: usize = 1024;

pub struct KflOptions {
    /// What `now()` and `minutes(n)` … count from.
    pub now_ms: i64,
}

#[derive(Debug, Clone)]
pub struct CompiledKfl {
    /// `None`: the query is empty and matches everything.
    pub filter: Option<Expr>,
    /// From `limit(n)`.
    pub limit: Option<usize>,
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
        });
    };
    let (filter, limit) = compile::Compiler {
        query,
        now_ms: opts.now_ms,
    }
    .top(&ast)?;
    Ok(CompiledKfl { filter, limit })
}

/// Checks a query without running it.
pub fn validate(query: &str) -> Result<(), KflError> {
    compile(query, &KflOptions { now_ms: 0 }).map(|_| ())
}

/// Functions the compiled expressions use; register them on the session.
pub fn udfs() -> Vec<ScalarUDF> {
    vec![udf::header_get()]
}
