//! KFL, the Kubeshark Filter Language, compiled to DataFusion expressions.
//!
//! One parser accepts KFL v1 (`and`, `or`, `!`, `r"regex"`, `request.headers["X"]`,
//! `.startsWith()`) and KFL2 (`&&`, `||`, `in [..]`, `.matches()`, flat names such as
//! `status_code`, `dst.pod.namespace`). Deliberate decisions (see README "KFL reference"):
//! - `and` binds tighter than `or`; `!`/`not` applies to a whole comparison (`!x == 1` is
//!   `!(x == 1)`); comparisons do not chain.
//! - regexes are RE2 syntax (the `regex` crate), unanchored;
//! - a literal is coerced to the field's type (`response.status == "200"` works; `"abc"` is an
//!   error for a numeric field);
//! - a missing field or header is NULL and any comparison on it is false (and `!` of that true);
//! - header names are matched case-insensitively;
//! - `timestamp` compares with epoch ms, RFC 3339 strings or `datetime("1/2/2006, 3:04:05.000 PM")`;
//! - protocol macros (`http`, `dns`, …) are whole identifiers only;
//! - errors carry the character position.

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

/// Longest query accepted.
pub const MAX_QUERY_LEN: usize = 64 * 1024;

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
