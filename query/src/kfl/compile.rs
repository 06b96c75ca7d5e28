//! KFL syntax tree → DataFusion `Expr`.
//!
//! Every predicate compiles to a non-NULL boolean: a comparison on a missing (NULL) field or
//! header is `false`, so `!` behaves as people expect. Guards are written as
//! `col IS NOT NULL AND col <op> literal`, which Parquet statistics can still prune on.

use std::ops::Not;

use arrow::datatypes::DataType;
use chrono::{DateTime, NaiveDateTime};
use datafusion::functions::expr_fn::{contains, ends_with, regexp_like, starts_with};
use datafusion::logical_expr::{cast, Expr};
use datafusion::prelude::{col, lit};
use datafusion::scalar::ScalarValue;

use super::ast::{path_string, CmpOp, Node, Seg};
use super::fields::{resolve, suggest, Field, Kind, MACROS};
use super::{udf, KflError};

const HELPERS: &str = "use startsWith, endsWith, contains or matches";

/// A compiled operand.
enum Val {
    /// A field: its expression, kind, and the guard that is true when it is present.
    Field {
        expr: Expr,
        kind: Kind,
        present: Option<Expr>,
        time: bool,
    },
    Int(i64),
    Float(f64),
    Str(String),
    Bool(bool),
    Null,
    Regex(String),
    /// Epoch milliseconds from datetime(), now(), minutes(n) …
    Time(i64),
    /// A boolean condition (a helper call or a nested comparison).
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

fn guard(present: &Option<Expr>, pred: Expr) -> Expr {
    match present {
        Some(p) => p.clone().and(pred),
        None => pred,
    }
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

/// `datetime()` layout of KFL v1: `1/2/2006, 3:04:05.000 PM` (UTC).
pub fn parse_v1_datetime(s: &str) -> Option<i64> {
    NaiveDateTime::parse_from_str(s.trim(), "%m/%d/%Y, %I:%M:%S%.f %p")
        .ok()
        .map(|t| t.and_utc().timestamp_millis())
}

fn parse_time_str(s: &str) -> Option<i64> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.timestamp_millis())
        .ok()
        .or_else(|| parse_v1_datetime(s))
        .or_else(|| s.trim().parse::<i64>().ok())
}

impl Compiler<'_> {
    fn err<T>(&self, pos: usize, msg: &str) -> Result<T, KflError> {
        Err(KflError::at(self.query, pos, msg))
    }

    /// The top level: `limit(n)` may appear as one of the `and`-joined conditions.
    pub fn top(&self, node: &Node) -> Result<(Option<Expr>, Option<usize>), KflError> {
        let mut conjuncts = Vec::new();
        flatten_and(node, &mut conjuncts);
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
                        [Node::Int(n, _)] if *n > 0 => limit = Some(*n as usize),
                        _ => return self.err(*pos, "limit(n) takes one positive whole number"),
                    }
                    continue;
                }
            }
            exprs.push(self.cond(c)?);
        }
        Ok((exprs.into_iter().reduce(Expr::and), limit))
    }

    /// A node used as a condition.
    pub fn cond(&self, node: &Node) -> Result<Expr, KflError> {
        match node {
            Node::Or(a, b) => Ok(self.cond(a)?.or(self.cond(b)?)),
            Node::And(a, b) => Ok(self.cond(a)?.and(self.cond(b)?)),
            Node::Not(a, _) => Ok(self.cond(a)?.not()),
            Node::Bool(b, _) => Ok(lit(*b)),
            Node::Cmp(op, l, r, pos) => self.compare(*op, l, r, *pos),
            Node::In(l, items, pos) => self.is_in(l, items, *pos),
            Node::Path(segs, pos) => {
                if let [Seg::Field(name)] = segs.as_slice() {
                    if let Some((_, proto)) = MACROS.iter().find(|(m, _)| m == name) {
                        return Ok(col("protocol").eq(lit(*proto)));
                    }
                }
                match self.operand(node)? {
                    Val::Field { expr, kind, present, time } => Ok(if time {
                        lit(true)
                    } else {
                        match kind {
                            Kind::Str => guard(&present, cast(expr, DataType::Utf8).not_eq(lit(""))),
                            Kind::Int => guard(&present, expr.gt(lit(0i64))),
                        }
                    }),
                    _ => self.err(*pos, "expected a condition"),
                }
            }
            Node::Call { name, pos, .. } => match self.operand(node)? {
                Val::Pred(e) => Ok(e),
                _ if name == "limit" => self.err(*pos, "limit(n) must be joined to the rest of the query with `and` at the top level"),
                _ => self.err(*pos, &format!("{name}() is a value, not a condition: compare it, e.g. `timestamp >= {name}(…)`")),
            },
            other => self.err(other.pos(), "a value alone is not a condition: compare it with a field, e.g. `response.status == 200`"),
        }
    }

    fn field(&self, segs: &[Seg], pos: usize) -> Result<Val, KflError> {
        let f = resolve(segs).map_err(|msg| {
            let name = path_string(segs);
            let mut e = KflError::at(self.query, pos, &msg);
            e.suggestion = suggest(&name);
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
            } => {
                let c = col(name);
                Val::Field {
                    present: nullable.then(|| c.clone().is_not_null()),
                    expr: c,
                    kind,
                    time: false,
                }
            }
            Field::Header { response, name } => {
                let m = col(if response {
                    "response_headers"
                } else {
                    "request_headers"
                });
                let e = udf::header_get().call(vec![m, lit(name)]);
                Val::Field {
                    present: Some(e.clone().is_not_null()),
                    expr: e,
                    kind: Kind::Str,
                    time: false,
                }
            }
            Field::Timestamp => Val::Field {
                expr: col("ts"),
                kind: Kind::Int,
                present: None,
                time: true,
            },
            Field::ElapsedMs => {
                let c = col("elapsed_us");
                Val::Field {
                    present: Some(c.clone().is_not_null()),
                    expr: c / lit(1000i64),
                    kind: Kind::Int,
                    time: false,
                }
            }
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
                    return self.err(
                        *pos,
                        &format!(
                            "invalid regular expression: {}",
                            e.to_string().lines().last().unwrap_or("")
                        ),
                    );
                }
                Val::Regex(r.clone())
            }
            Node::Path(segs, pos) => {
                if let [Seg::Field(name)] = segs.as_slice() {
                    if MACROS.iter().any(|(m, _)| m == name) {
                        return Ok(Val::Pred(self.cond(node)?));
                    }
                }
                self.field(segs, *pos)?
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
            let Val::Field { expr, present, .. } = self.operand(recv)? else {
                return self.err(pos, &format!("{name}() must be called on a field"));
            };
            let text = cast(expr, DataType::Utf8);
            let arg = self.string_arg(name, args, pos)?;
            let pred = match name {
                "startsWith" | "starts_with" => starts_with(text, lit(arg)),
                "endsWith" | "ends_with" => ends_with(text, lit(arg)),
                "contains" => contains(text, lit(arg)),
                "matches" => {
                    if let Err(e) = regex::Regex::new(&arg) {
                        return self.err(
                            pos,
                            &format!(
                                "invalid regular expression: {}",
                                e.to_string().lines().last().unwrap_or("")
                            ),
                        );
                    }
                    regexp_like(text, lit(arg), None)
                }
                "json" | "xml" => return self.err(pos, &format!("{name}() is not supported yet")),
                other => return self.err(pos, &format!("unknown helper `{other}()`: {HELPERS}")),
            };
            return Ok(Val::Pred(guard(&present, pred)));
        }
        let num = |unit_ms: i64| -> Result<Val, KflError> {
            match args {
                [Node::Int(n, _)] => Ok(Val::Time(self.now_ms - n.saturating_mul(unit_ms))),
                _ => self.err(pos, &format!("{name}(n) takes one whole number")),
            }
        };
        match name {
            "now" if args.is_empty() => Ok(Val::Time(self.now_ms)),
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
                match DateTime::parse_from_rfc3339(&s) {
                    Ok(t) => Ok(Val::Time(t.timestamp_millis())),
                    Err(_) => self.err(
                        pos,
                        "timestamp() expects an RFC 3339 time, e.g. \"2026-11-25T03:12:44Z\"",
                    ),
                }
            }
            "seconds" => num(1_000),
            "minutes" => num(60_000),
            "hours" => num(3_600_000),
            "days" => num(86_400_000),
            "weeks" => num(7 * 86_400_000),
            "months" => num(30 * 86_400_000),
            "years" => num(365 * 86_400_000),
            "limit" => Ok(Val::Bool(true)),
            other => self.err(pos, &format!("unknown function `{other}()`")),
        }
    }

    /// A literal as a value of the field's kind.
    fn coerce(&self, kind: Kind, time: bool, v: Val, pos: usize) -> Result<Expr, KflError> {
        if time {
            return match v {
                Val::Int(ms) => Ok(ts_lit(ms)),
                Val::Float(ms) => Ok(ts_lit(ms as i64)),
                Val::Time(ms) => Ok(ts_lit(ms)),
                Val::Str(s) => match parse_time_str(&s) {
                    Some(ms) => Ok(ts_lit(ms)),
                    None => self.err(pos, &format!("cannot read {s:?} as a time: use epoch milliseconds, RFC 3339 or datetime(\"1/2/2006, 3:04:05.000 PM\")")),
                },
                _ => self.err(pos, "timestamp compares with a time"),
            };
        }
        match (kind, v) {
            (Kind::Int, Val::Int(i)) => Ok(lit(i)),
            (Kind::Int, Val::Float(f)) => Ok(lit(f)),
            (Kind::Int, Val::Str(s)) => match (s.trim().parse::<i64>(), s.trim().parse::<f64>()) {
                (Ok(i), _) => Ok(lit(i)),
                (_, Ok(f)) => Ok(lit(f)),
                _ => self.err(
                    pos,
                    &format!("this field is a number; {s:?} is not (a regex needs r\"…\")"),
                ),
            },
            (Kind::Str, Val::Str(s)) => Ok(lit(s)),
            (Kind::Str, Val::Int(i)) => Ok(lit(i.to_string())),
            (Kind::Str, Val::Float(f)) => Ok(lit(f.to_string())),
            (Kind::Str, Val::Bool(b)) => Ok(lit(b.to_string())),
            (_, Val::Time(ms)) => Ok(lit(ms)),
            (_, Val::Bool(_)) => self.err(pos, "this field is not a boolean"),
            _ => self.err(pos, "cannot compare these"),
        }
    }

    fn compare(&self, op: CmpOp, l: &Node, r: &Node, pos: usize) -> Result<Expr, KflError> {
        let (mut a, mut b) = (self.operand(l)?, self.operand(r)?);
        let mut op = op;
        let (mut apos, mut bpos) = (l.pos(), r.pos());
        if !matches!(a, Val::Field { .. } | Val::Pred(_))
            && matches!(b, Val::Field { .. } | Val::Pred(_))
        {
            std::mem::swap(&mut a, &mut b);
            std::mem::swap(&mut apos, &mut bpos);
            op = flip(op);
        }
        match (a, b) {
            (
                Val::Field {
                    expr,
                    kind,
                    present,
                    time,
                },
                b,
            ) => match b {
                Val::Regex(re) => {
                    let m = regexp_like(cast(expr, DataType::Utf8), lit(re), None);
                    match op {
                        CmpOp::Eq => Ok(guard(&present, m)),
                        CmpOp::Ne => Ok(guard(&present, m.not())),
                        _ => self.err(pos, "a regex can only be compared with == or !="),
                    }
                }
                Val::Null => match op {
                    CmpOp::Eq => Ok(present.map(|p| p.not()).unwrap_or(lit(false))),
                    CmpOp::Ne => Ok(present.unwrap_or(lit(true))),
                    _ => self.err(pos, "nil can only be compared with == or !="),
                },
                Val::Field {
                    expr: e2,
                    kind: k2,
                    present: p2,
                    ..
                } => {
                    let (x, y) = if kind == k2 {
                        (expr, e2)
                    } else {
                        (cast(expr, DataType::Utf8), cast(e2, DataType::Utf8))
                    };
                    let both = match (present, p2) {
                        (Some(p), Some(q)) => Some(p.and(q)),
                        (p, q) => p.or(q),
                    };
                    Ok(guard(&both, apply(op, x, y)))
                }
                Val::Pred(p) => {
                    let _ = p;
                    self.err(bpos, "compare a field with a value")
                }
                lit_val => {
                    let v = self.coerce(kind, time, lit_val, bpos)?;
                    Ok(guard(&present, apply(op, expr, v)))
                }
            },
            (Val::Pred(p), Val::Bool(b)) => match op {
                CmpOp::Eq => Ok(p.eq(lit(b))),
                CmpOp::Ne => Ok(p.not_eq(lit(b))),
                _ => self.err(pos, "conditions compare only with == or !="),
            },
            _ => self.err(
                apos,
                "a comparison needs a field on one side, e.g. `response.status >= 400`",
            ),
        }
    }

    fn is_in(&self, l: &Node, items: &[Node], pos: usize) -> Result<Expr, KflError> {
        let Val::Field {
            expr,
            kind,
            present,
            time,
        } = self.operand(l)?
        else {
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
            list.push(self.coerce(kind, time, v, it.pos())?);
        }
        let _ = pos;
        Ok(guard(&present, expr.in_list(list, false)))
    }
}

fn flatten_and<'a>(n: &'a Node, out: &mut Vec<&'a Node>) {
    match n {
        Node::And(a, b) => {
            flatten_and(a, out);
            flatten_and(b, out);
        }
        other => out.push(other),
    }
}
