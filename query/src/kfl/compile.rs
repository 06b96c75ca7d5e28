//! KFL syntax tree → DataFusion `Expr`.
//!
//! Every condition compiles to a boolean that is never NULL (two-valued logic): a comparison on
//! a missing (NULL) field or header is `false`, so `!(response.status == 200)` keeps rows that
//! have no status. Columns are guarded as `col IS NOT NULL AND col <op> literal`, which Parquet
//! statistics and page indexes can still prune on (`coalesce(…, false)` would hide the column
//! from pruning); computed values such as a header lookup use `(…) IS TRUE` instead, so that the
//! lookup runs once per row.

use std::ops::Not;

use arrow::datatypes::DataType;
use chrono::{DateTime, NaiveDateTime};
use datafusion::functions::expr_fn::{contains, ends_with, regexp_like, starts_with};
use datafusion::logical_expr::{cast, Expr};
use datafusion::prelude::{col, lit};
use datafusion::scalar::ScalarValue;
use wiretrail_proto::schema as sc;

use super::ast::{path_string, CmpOp, Node, Seg};
use super::fields::{resolve, suggest, Field, Kind, MACROS};
use super::{udf, KflError};

const HELPERS: &str = "use startsWith, endsWith, contains or matches";

/// How a field's predicate is kept from being NULL.
#[derive(Clone)]
enum Guard {
    /// The column is never NULL.
    None,
    /// `col IS NOT NULL AND pred` (prunable); holds `col`.
    NotNull(Expr),
    /// `pred IS TRUE`, for computed values.
    IsTrue,
}

/// A field as an operand.
struct FieldVal {
    expr: Expr,
    kind: Kind,
    guard: Guard,
    /// `ts`: literals become timestamps.
    time: bool,
    /// `protocol`: string literals are normalized (`"HTTP/2"` → `"http2"`).
    protocol: bool,
}

impl FieldVal {
    fn guarded(&self, pred: Expr) -> Expr {
        match &self.guard {
            Guard::None => pred,
            Guard::NotNull(c) => c.clone().is_not_null().and(pred),
            Guard::IsTrue => pred.is_true(),
        }
    }

    fn is_null(&self) -> Expr {
        match &self.guard {
            Guard::None => lit(false),
            Guard::NotNull(c) => c.clone().is_null(),
            Guard::IsTrue => self.expr.clone().is_null(),
        }
    }
}

/// A compiled operand.
enum Val {
    Field(FieldVal),
    Int(i64),
    Float(f64),
    Str(String),
    Bool(bool),
    Null,
    Regex(String),
    /// Epoch milliseconds from datetime(), now(), minutes(n) …
    Time(i64),
    /// A condition (a macro, a helper call, `!x`, a parenthesized comparison).
    Pred(Expr),
}

pub struct Compiler<'q> {
    pub query: &'q str,
    pub now_ms: i64,
}

fn ts_lit(ms: i64) -> Expr {
    lit(ScalarValue::TimestampMicrosecond(
        Some(ms.saturating_mul(1000)),
        Some("UTC".into()),
    ))
}

fn flip(op: CmpOp) -> CmpOp {
    match op {
        CmpOp::Lt => CmpOp::Gt,
        CmpOp::Le => CmpOp::Ge,
        CmpOp::Gt => CmpOp::Lt,
        CmpOp::Ge => CmpOp::Le,
        o => o,
    }
}

fn apply(op: CmpOp, a: Expr, b: Expr) -> Expr {
    match op {
        CmpOp::Eq => a.eq(b),
        CmpOp::Ne => a.not_eq(b),
        CmpOp::Lt => a.lt(b),
        CmpOp::Le => a.lt_eq(b),
        CmpOp::Gt => a.gt(b),
        CmpOp::Ge => a.gt_eq(b),
    }
}

/// Joins operands as a balanced tree, so that a long `or` chain stays shallow for DataFusion's
/// recursive rewrites.
fn balanced(mut v: Vec<Expr>, join: fn(Expr, Expr) -> Expr) -> Expr {
    match v.len() {
        0 => lit(true),
        1 => v.pop().unwrap_or(lit(true)),
        n => {
            let right = v.split_off(n / 2);
            join(balanced(v, join), balanced(right, join))
        }
    }
}

/// Stored protocol names are lowercase (`http`, `http2`, `graphql` …); v1 compared
/// `protocol.abbr` with `"HTTP"`, `"HTTP/2"`, `"gRPC"`, `"GQL"`, so literals are mapped.
fn protocol_value(s: &str) -> String {
    let l = s.trim().to_ascii_lowercase();
    match l.as_str() {
        "http/1.0" | "http/1.1" | "http/1" | "http1" => "http".into(),
        "http/2" | "http/2.0" | "h2" => "http2".into(),
        "gql" => "graphql".into(),
        "postgresql" | "pg" => "postgres".into(),
        _ => l,
    }
}

/// `datetime()` layout of KFL v1: `1/2/2006, 3:04:05.000 PM` (UTC). The milliseconds may be
/// left out (v1 then silently matched everything; we accept it).
pub fn parse_v1_datetime(s: &str) -> Option<i64> {
    let s = s.trim();
    NaiveDateTime::parse_from_str(s, "%m/%d/%Y, %I:%M:%S%.f %p")
        .or_else(|_| NaiveDateTime::parse_from_str(s, "%m/%d/%Y, %I:%M:%S %p"))
        .ok()
        .map(|t| t.and_utc().timestamp_millis())
}

/// A time literal: RFC 3339, the v1 `datetime()` layout, or epoch milliseconds.
fn parse_time_str(s: &str) -> Option<i64> {
    DateTime::parse_from_rfc3339(s.trim())
        .map(|t| t.timestamp_millis())
        .ok()
        .or_else(|| parse_v1_datetime(s))
        .or_else(|| s.trim().parse::<i64>().ok())
}

fn regex_error(e: &regex::Error) -> String {
    format!(
        "invalid regular expression: {}",
        e.to_string().lines().last().unwrap_or("").trim()
    )
}

impl Compiler<'_> {
    fn err<T>(&self, pos: usize, msg: &str) -> Result<T, KflError> {
        Err(KflError::at(self.query, pos, msg))
    }

    /// The top level: `limit(n)` may appear as one of the `and`-joined conditions.
    pub fn top(&self, node: &Node) -> Result<(Option<Expr>, Option<usize>), KflError> {
        let mut conjuncts = Vec::new();
        let mut stack = vec![node];
        while let Some(n) = stack.pop() {
            match n {
                Node::And(items) => stack.extend(items.iter().rev()),
                other => conjuncts.push(other),
            }
        }
        let mut limit = None;
        let mut exprs = Vec::new();
        for c in conjuncts {
            if let Node::Call {
                name,
                receiver: None,
                args,
                pos,
            } = c
            {
                if name == "limit" {
                    match args.as_slice() {
                        [Node::Int(n, _)] if *n > 0 => {
                            let n = usize::try_from(*n).unwrap_or(usize::MAX);
                            limit = Some(limit.map_or(n, |l: usize| l.min(n)));
                        }
                        _ => return self.err(*pos, "limit(n) takes one positive whole number"),
                    }
                    continue;
                }
            }
            exprs.push(self.cond(c)?);
        }
        let filter = (!exprs.is_empty()).then(|| balanced(exprs, Expr::and));
        Ok((filter, limit))
    }

    /// A node used as a condition.
    pub fn cond(&self, node: &Node) -> Result<Expr, KflError> {
        match node {
            Node::Or(items) => Ok(balanced(self.conds(items)?, Expr::or)),
            Node::And(items) => Ok(balanced(self.conds(items)?, Expr::and)),
            Node::Not(a, _) => Ok(self.cond(a)?.not()),
            Node::Bool(b, _) => Ok(lit(*b)),
            Node::Cmp(op, l, r, pos) => self.compare(*op, l, r, *pos),
            Node::In(l, items, _) => self.is_in(l, items),
            Node::Path(segs, pos) => match self.operand(node)? {
                Val::Pred(e) => Ok(e),
                Val::Field(f) if f.time => Ok(lit(true)),
                // Truthiness as in v1: present and non-empty / greater than zero.
                Val::Field(f) => Ok(match f.kind {
                    Kind::Str => f.guarded(f.expr.clone().not_eq(lit(""))),
                    Kind::Int => f.guarded(f.expr.clone().gt(lit(0i64))),
                }),
                _ => self.err(*pos, &format!("`{}` is not a condition", path_string(segs))),
            },
            Node::Call { name, pos, .. } => match self.operand(node)? {
                Val::Pred(e) => Ok(e),
                _ if name == "limit" => self.err(*pos, "limit(n) must be joined to the rest of the query with `and` at the top level"),
                _ => self.err(*pos, &format!("{name}() is a value, not a condition: compare it, e.g. `timestamp >= {name}(…)`")),
            },
            other => self.err(other.pos(), "a value alone is not a condition: compare it with a field, e.g. `response.status == 200`"),
        }
    }

    fn conds(&self, items: &[Node]) -> Result<Vec<Expr>, KflError> {
        items.iter().map(|n| self.cond(n)).collect()
    }

    fn field(&self, segs: &[Seg], pos: usize) -> Result<FieldVal, KflError> {
        let f = resolve(segs).map_err(|msg| {
            let mut e = KflError::at(self.query, pos, &msg);
            e.suggestion = suggest(&path_string(segs));
            if let Some(s) = &e.suggestion {
                e.message = format!("{msg}; did you mean `{s}`?");
            }
            e
        })?;
        Ok(match f {
            Field::Column {
                name,
                kind,
                nullable,
            } => FieldVal {
                expr: col(name),
                kind,
                guard: if nullable {
                    Guard::NotNull(col(name))
                } else {
                    Guard::None
                },
                time: false,
                protocol: name == sc::PROTOCOL,
            },
            Field::Header { response, name } => {
                let map = col(if response {
                    sc::RESPONSE_HEADERS
                } else {
                    sc::REQUEST_HEADERS
                });
                FieldVal {
                    expr: udf::header_get().call(vec![map, lit(name)]),
                    kind: Kind::Str,
                    guard: Guard::IsTrue,
                    time: false,
                    protocol: false,
                }
            }
            Field::Timestamp => FieldVal {
                expr: col(sc::TS),
                kind: Kind::Int,
                guard: Guard::None,
                time: true,
                protocol: false,
            },
            Field::ElapsedMs => FieldVal {
                expr: col(sc::ELAPSED_US) / lit(1000i64),
                kind: Kind::Int,
                guard: Guard::NotNull(col(sc::ELAPSED_US)),
                time: false,
                protocol: false,
            },
        })
    }

    fn operand(&self, node: &Node) -> Result<Val, KflError> {
        Ok(match node {
            Node::Int(i, _) => Val::Int(*i),
            Node::Float(f, _) => Val::Float(*f),
            Node::Str(s, _) => Val::Str(s.clone()),
            Node::Bool(b, _) => Val::Bool(*b),
            Node::Null(_) => Val::Null,
            Node::Regex(r, pos) => {
                if let Err(e) = regex::Regex::new(r) {
                    return self.err(*pos, &regex_error(&e));
                }
                Val::Regex(r.clone())
            }
            Node::Path(segs, pos) => {
                if let [Seg::Field(name)] = segs.as_slice() {
                    if let Some((_, proto)) = MACROS.iter().find(|(m, _)| m == name) {
                        return Ok(Val::Pred(col(sc::PROTOCOL).eq(lit(*proto))));
                    }
                }
                Val::Field(self.field(segs, *pos)?)
            }
            Node::Call {
                name,
                receiver,
                args,
                pos,
            } => self.call(name, receiver.as_deref(), args, *pos)?,
            other => Val::Pred(self.cond(other)?),
        })
    }

    fn string_arg(&self, name: &str, args: &[Node], pos: usize) -> Result<String, KflError> {
        match args {
            [Node::Str(s, _)] => Ok(s.clone()),
            _ => self.err(pos, &format!("{name}() takes one \"string\"")),
        }
    }

    fn call(
        &self,
        name: &str,
        receiver: Option<&Node>,
        args: &[Node],
        pos: usize,
    ) -> Result<Val, KflError> {
        if let Some(recv) = receiver {
            let Val::Field(f) = self.operand(recv)? else {
                return self.err(pos, &format!("{name}() must be called on a field"));
            };
            if matches!(name, "json" | "xml") {
                return self.err(pos, &format!("{name}() is not supported yet"));
            }
            let text = cast(f.expr.clone(), DataType::Utf8);
            let arg = self.string_arg(name, args, pos)?;
            let pred = match name {
                "startsWith" | "starts_with" => starts_with(text, lit(arg)),
                "endsWith" | "ends_with" => ends_with(text, lit(arg)),
                "contains" => contains(text, lit(arg)),
                "matches" => {
                    if let Err(e) = regex::Regex::new(&arg) {
                        return self.err(args[0].pos(), &regex_error(&e));
                    }
                    regexp_like(text, lit(arg), None)
                }
                other => return self.err(pos, &format!("unknown helper `{other}()`: {HELPERS}")),
            };
            return Ok(Val::Pred(f.guarded(pred)));
        }
        let ago = |unit_ms: i64| -> Result<Val, KflError> {
            match args {
                [Node::Int(n, _)] => Ok(Val::Time(
                    self.now_ms.saturating_sub(n.saturating_mul(unit_ms)),
                )),
                _ => self.err(pos, &format!("{name}(n) takes one whole number")),
            }
        };
        match name {
            "now" if args.is_empty() => Ok(Val::Time(self.now_ms)),
            "now" => self.err(pos, "now() takes no arguments"),
            "datetime" => {
                let s = self.string_arg(name, args, pos)?;
                match parse_time_str(&s) {
                    Some(ms) => Ok(Val::Time(ms)),
                    None => self.err(
                        pos,
                        "datetime() expects \"1/2/2006, 3:04:05.000 PM\" (UTC) or RFC 3339",
                    ),
                }
            }
            "timestamp" => {
                let s = self.string_arg(name, args, pos)?;
                match DateTime::parse_from_rfc3339(s.trim()) {
                    Ok(t) => Ok(Val::Time(t.timestamp_millis())),
                    Err(_) => self.err(
                        pos,
                        "timestamp() expects an RFC 3339 time, e.g. \"2026-11-25T03:12:44Z\"",
                    ),
                }
            }
            "seconds" => ago(1_000),
            "minutes" => ago(60_000),
            "hours" => ago(3_600_000),
            "days" => ago(86_400_000),
            "weeks" => ago(7 * 86_400_000),
            "months" => ago(30 * 86_400_000),
            "years" => ago(365 * 86_400_000),
            "limit" => Ok(Val::Bool(true)),
            other => self.err(pos, &format!("unknown function `{other}()`")),
        }
    }

    /// A literal as a value of the field's type.
    fn coerce(&self, f: &FieldVal, v: Val, pos: usize) -> Result<Expr, KflError> {
        if f.time {
            return match v {
                Val::Int(ms) | Val::Time(ms) => Ok(ts_lit(ms)),
                Val::Float(ms) => Ok(ts_lit(ms as i64)),
                Val::Str(s) => match parse_time_str(&s) {
                    Some(ms) => Ok(ts_lit(ms)),
                    None => self.err(pos, &format!("cannot read {s:?} as a time: use epoch milliseconds, RFC 3339 or datetime(\"1/2/2006, 3:04:05.000 PM\")")),
                },
                _ => self.err(pos, "timestamp compares with a time: epoch milliseconds, RFC 3339 or datetime(…)"),
            };
        }
        match (f.kind, v) {
            (Kind::Int, Val::Int(i) | Val::Time(i)) => Ok(lit(i)),
            (Kind::Int, Val::Float(x)) => Ok(lit(x)),
            (Kind::Int, Val::Str(s)) => match (s.trim().parse::<i64>(), s.trim().parse::<f64>()) {
                (Ok(i), _) => Ok(lit(i)),
                (_, Ok(x)) if x.is_finite() => Ok(lit(x)),
                _ => self.err(
                    pos,
                    &format!("this field is a number; {s:?} is not (a regex needs r\"…\")"),
                ),
            },
            (Kind::Str, Val::Str(s)) if f.protocol => Ok(lit(protocol_value(&s))),
            (Kind::Str, Val::Str(s)) => Ok(lit(s)),
            (Kind::Str, Val::Int(i) | Val::Time(i)) => Ok(lit(i.to_string())),
            (Kind::Str, Val::Float(x)) => Ok(lit(x.to_string())),
            (_, Val::Bool(_)) => self.err(pos, "this field is not a boolean"),
            (_, Val::Regex(_)) => self.err(pos, "a regex can only be used with == or !="),
            (_, Val::Null) => self.err(pos, "nil can only be used with == or !="),
            _ => self.err(pos, "compare a field with a value"),
        }
    }

    fn compare(&self, op: CmpOp, l: &Node, r: &Node, pos: usize) -> Result<Expr, KflError> {
        let (mut a, mut b) = (self.operand(l)?, self.operand(r)?);
        let mut op = op;
        let (mut apos, mut bpos) = (l.pos(), r.pos());
        let is_subject = |v: &Val| matches!(v, Val::Field(_) | Val::Pred(_));
        if !is_subject(&a) && is_subject(&b) {
            std::mem::swap(&mut a, &mut b);
            std::mem::swap(&mut apos, &mut bpos);
            op = flip(op);
        }
        match (a, b) {
            (Val::Field(f), Val::Regex(re)) => {
                let m = regexp_like(cast(f.expr.clone(), DataType::Utf8), lit(re), None);
                match op {
                    CmpOp::Eq => Ok(f.guarded(m)),
                    CmpOp::Ne => Ok(f.guarded(m.not())),
                    _ => self.err(pos, "a regex can only be compared with == or !="),
                }
            }
            (Val::Field(f), Val::Null) => match op {
                CmpOp::Eq => Ok(f.is_null()),
                CmpOp::Ne => Ok(f.is_null().not()),
                _ => self.err(pos, "nil can only be compared with == or !="),
            },
            (Val::Field(f), Val::Field(g)) => {
                let (x, y) = if f.kind == g.kind && f.time == g.time {
                    (f.expr, g.expr)
                } else {
                    (cast(f.expr, DataType::Utf8), cast(g.expr, DataType::Utf8))
                };
                let pred = apply(op, x, y);
                Ok(match (&f.guard, &g.guard) {
                    (Guard::None, Guard::None) => pred,
                    _ => pred.is_true(),
                })
            }
            (Val::Field(_), Val::Pred(_)) => {
                self.err(bpos, "compare a field with a value, not with a condition")
            }
            (Val::Field(f), v) => {
                let v = self.coerce(&f, v, bpos)?;
                Ok(f.guarded(apply(op, f.expr.clone(), v)))
            }
            (Val::Pred(p), Val::Bool(b)) => match op {
                CmpOp::Eq => Ok(p.eq(lit(b))),
                CmpOp::Ne => Ok(p.not_eq(lit(b))),
                _ => self.err(pos, "conditions compare only with == or !="),
            },
            (Val::Pred(_), _) => {
                let why = if matches!(l, Node::Not(..)) {
                    "`!` applies to the value right after it: write `!(a == b)` to negate a comparison"
                } else {
                    "a condition can only be compared with true or false"
                };
                self.err(apos, why)
            }
            _ => self.err(
                apos,
                "a comparison needs a field on one side, e.g. `response.status >= 400`",
            ),
        }
    }

    fn is_in(&self, l: &Node, items: &[Node]) -> Result<Expr, KflError> {
        let Val::Field(f) = self.operand(l)? else {
            return self.err(
                l.pos(),
                "`in` needs a field on its left, e.g. `protocol in [\"http\", \"dns\"]`",
            );
        };
        if items.is_empty() {
            return Ok(lit(false));
        }
        let mut list = Vec::new();
        for it in items {
            let v = self.operand(it)?;
            list.push(self.coerce(&f, v, it.pos())?);
        }
        Ok(f.guarded(f.expr.clone().in_list(list, false)))
    }
}
