//! KFL syntax tree → DataFusion `Expr`: conditions, comparisons and `in`. Operands (fields,
//! literals, function calls) are built in `values.rs`.
//!
//! Every condition compiles to a boolean that is never NULL (two-valued logic): a comparison on
//! a missing (NULL) field or header is `false`, so `!(response.status == 200)` keeps rows that
//! have no status. Columns are guarded as `col IS NOT NULL AND col <op> literal`, which Parquet
//! statistics and page indexes can still prune on (`coalesce(…, false)` would hide the column
//! from pruning); computed values such as a header lookup use `(…) IS TRUE` instead, so that the
//! lookup runs once per row. Paths into JSON documents compile to the `kfl_json_test` UDF,
//! which answers `false` for a missing value.

use std::cell::Cell;
use std::ops::Not;

use arrow::datatypes::DataType;
use chrono::{DateTime, NaiveDateTime};
use datafusion::functions::expr_fn::regexp_like;
use datafusion::logical_expr::{cast, Expr};
use datafusion::prelude::lit;
use datafusion::scalar::ScalarValue;

use super::ast::{path_string, CmpOp, Node};
use super::fields::Kind;
use super::jsonpath::Step;
use super::redact::Redaction;
use super::{udf, KflError, KflOptions};

/// How a field's predicate is kept from being NULL.
#[derive(Clone)]
pub enum Guard {
    /// The column is never NULL.
    None,
    /// `col IS NOT NULL AND pred` (prunable); holds `col`.
    NotNull(Expr),
    /// `pred IS TRUE`, for computed values.
    IsTrue,
}

/// How string literals compared with a field are rewritten first.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Norm {
    None,
    /// `"HTTP/2"` → `http2`.
    Protocol,
    /// `"API_VERSIONS"` → `APIVERSIONS` (the field is uppercased without `_` too).
    Kafka,
}

/// A scalar field as an operand.
#[derive(Clone)]
pub struct FieldVal {
    pub expr: Expr,
    pub kind: Kind,
    pub guard: Guard,
    /// `ts`: literals become timestamps.
    pub time: bool,
    pub norm: Norm,
    /// For `redact()`: where the value appears in a returned entry.
    pub redact: Vec<Redaction>,
}

impl FieldVal {
    pub fn guarded(&self, pred: Expr) -> Expr {
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

    /// The value compared with literals (rewritten like the literals, see [`Norm`]).
    fn cmp_expr(&self) -> Expr {
        match self.norm {
            Norm::Kafka => datafusion::functions::expr_fn::upper(
                datafusion::functions::expr_fn::replace(self.text(), lit("_"), lit("")),
            ),
            _ => self.expr.clone(),
        }
    }

    /// The value as text, for comparisons between fields of different types.
    pub fn text(&self) -> Expr {
        cast(self.expr.clone(), DataType::Utf8)
    }
}

/// A path into a JSON document, evaluated by the `kfl_json*` UDFs.
#[derive(Clone)]
pub struct JsonVal {
    pub doc: Expr,
    pub steps: Vec<Step>,
    pub redact: Vec<Redaction>,
}

impl JsonVal {
    fn path(&self) -> Expr {
        lit(super::jsonpath::encode(&self.steps))
    }

    pub fn test(&self, op: &str, arg: &str) -> Expr {
        udf::json_test().call(vec![self.doc.clone(), self.path(), lit(op), lit(arg)])
    }

    pub fn get(&self) -> Expr {
        udf::json_get().call(vec![self.doc.clone(), self.path()])
    }

    pub fn size(&self) -> Expr {
        udf::json_size().call(vec![self.doc.clone(), self.path()])
    }
}

/// A compiled operand.
#[derive(Clone)]
pub enum Val {
    Field(FieldVal),
    Json(JsonVal),
    /// Either of several fields (`namespaces`): a test holds if it holds for one.
    Any(Vec<FieldVal>),
    /// A whole headers map (`request.headers`); `true` = response.
    Headers(bool),
    /// A KFL2 map variable wiretrail does not record: always empty.
    EmptyMap,
    Int(i64),
    Float(f64),
    Str(String),
    Bool(bool),
    Null,
    Regex(String),
    /// Epoch milliseconds from datetime(), now(), minutes(n) …
    Time(i64),
    /// Milliseconds from duration("5m").
    Dur(i64),
    /// A condition (a macro, a helper call, `!x`, a parenthesized comparison).
    Pred(Expr),
}

impl Val {
    fn is_subject(&self) -> bool {
        matches!(
            self,
            Val::Field(_)
                | Val::Json(_)
                | Val::Any(_)
                | Val::Pred(_)
                | Val::Headers(_)
                | Val::EmptyMap
        )
    }

    /// A literal's text, for the JSON tests.
    pub fn literal_text(&self) -> Option<String> {
        Some(match self {
            Val::Int(i) | Val::Time(i) | Val::Dur(i) => i.to_string(),
            Val::Float(f) => f.to_string(),
            Val::Str(s) => s.clone(),
            Val::Bool(b) => b.to_string(),
            _ => return None,
        })
    }
}

pub struct Compiler<'q> {
    pub query: &'q str,
    pub opts: &'q KflOptions,
    /// Macros being expanded, against self-reference.
    pub macro_depth: Cell<usize>,
}

pub fn ts_lit(ms: i64) -> Expr {
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

fn op_name(op: CmpOp) -> &'static str {
    match op {
        CmpOp::Eq => "eq",
        CmpOp::Ne => "ne",
        CmpOp::Lt => "lt",
        CmpOp::Le => "le",
        CmpOp::Gt => "gt",
        CmpOp::Ge => "ge",
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
pub fn balanced(mut v: Vec<Expr>, join: fn(Expr, Expr) -> Expr) -> Expr {
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

pub fn kafka_value(s: &str) -> String {
    s.replace('_', "").to_ascii_uppercase()
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
pub fn parse_time_str(s: &str) -> Option<i64> {
    DateTime::parse_from_rfc3339(s.trim())
        .map(|t| t.timestamp_millis())
        .ok()
        .or_else(|| parse_v1_datetime(s))
        .or_else(|| s.trim().parse::<i64>().ok())
}

pub fn regex_error(e: &regex::Error) -> String {
    format!(
        "invalid regular expression: {}",
        e.to_string().lines().last().unwrap_or("").trim()
    )
}

impl Compiler<'_> {
    pub fn err<T>(&self, pos: usize, msg: &str) -> Result<T, KflError> {
        Err(KflError::at(self.query, pos, msg))
    }

    /// The top level: `limit(n)` and `redact(…)` may appear as `and`-joined conditions.
    #[allow(clippy::type_complexity)]
    pub fn top(
        &self,
        node: &Node,
    ) -> Result<(Option<Expr>, Option<usize>, Vec<Redaction>), KflError> {
        let mut conjuncts = Vec::new();
        let mut stack = vec![node];
        while let Some(n) = stack.pop() {
            match n {
                Node::And(items) => stack.extend(items.iter().rev()),
                other => conjuncts.push(other),
            }
        }
        let mut limit = None;
        let mut redact = Vec::new();
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
                if name == "redact" {
                    redact.extend(self.redact_args(args, *pos)?);
                    continue;
                }
            }
            exprs.push(self.cond(c)?);
        }
        let filter = (!exprs.is_empty()).then(|| balanced(exprs, Expr::and));
        Ok((filter, limit, redact))
    }

    /// A node used as a condition.
    pub fn cond(&self, node: &Node) -> Result<Expr, KflError> {
        match node {
            Node::Or(items) => Ok(balanced(self.conds(items)?, Expr::or)),
            Node::And(items) => Ok(balanced(self.conds(items)?, Expr::and)),
            Node::Not(a, _) => Ok(self.cond(a)?.not()),
            Node::Bool(b, _) => Ok(lit(*b)),
            Node::Cmp(op, l, r, pos) => self.compare(*op, l, r, *pos),
            Node::In(l, r, pos) => self.is_in(l, r, *pos),
            Node::Ternary(c, a, b, _) => {
                let c = self.cond(c)?;
                Ok(c.clone().and(self.cond(a)?).or(c.not().and(self.cond(b)?)))
            }
            Node::Path(segs, pos) => match self.operand(node)? {
                Val::Pred(e) => Ok(e),
                v => self.truthy(v, *pos, &path_string(segs)),
            },
            Node::Call { name, pos, .. } => match self.operand(node)? {
                Val::Pred(e) => Ok(e),
                _ if name == "limit" || name == "redact" => self.err(*pos, &format!("{name}(…) must be joined to the rest of the query with `and` at the top level")),
                _ => self.err(*pos, &format!("{name}() is a value, not a condition: compare it, e.g. `timestamp >= {name}(…)`")),
            },
            other => self.err(other.pos(), "a value alone is not a condition: compare it with a field, e.g. `response.status == 200`"),
        }
    }

    /// A field used alone as a condition: v1 truthiness (present and non-empty / above zero).
    fn truthy(&self, v: Val, pos: usize, name: &str) -> Result<Expr, KflError> {
        match v {
            Val::Field(f) if f.time => Ok(lit(true)),
            Val::Field(f) => Ok(match f.kind {
                Kind::Str => f.guarded(f.expr.clone().not_eq(lit(""))),
                Kind::Int => f.guarded(f.expr.clone().gt(lit(0i64))),
            }),
            Val::Json(j) => Ok(j.test("truthy", "")),
            Val::Any(fs) => {
                let mut v = Vec::new();
                for f in fs {
                    v.push(self.truthy(Val::Field(f), pos, name)?);
                }
                Ok(balanced(v, Expr::or))
            }
            Val::EmptyMap => Ok(lit(false)),
            _ => self.err(pos, &format!("`{name}` is not a condition")),
        }
    }

    fn conds(&self, items: &[Node]) -> Result<Vec<Expr>, KflError> {
        items.iter().map(|n| self.cond(n)).collect()
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
            (Kind::Int, Val::Int(i) | Val::Time(i) | Val::Dur(i)) => Ok(lit(i)),
            (Kind::Int, Val::Float(x)) => Ok(lit(x)),
            (Kind::Int, Val::Str(s)) => match (s.trim().parse::<i64>(), s.trim().parse::<f64>()) {
                (Ok(i), _) => Ok(lit(i)),
                (_, Ok(x)) if x.is_finite() => Ok(lit(x)),
                _ => self.err(
                    pos,
                    &format!("this field is a number; {s:?} is not (a regex needs r\"…\")"),
                ),
            },
            (Kind::Str, Val::Str(s)) => Ok(lit(match f.norm {
                Norm::None => s,
                Norm::Protocol => protocol_value(&s),
                Norm::Kafka => kafka_value(&s),
            })),
            (Kind::Str, Val::Int(i) | Val::Time(i) | Val::Dur(i)) => Ok(lit(i.to_string())),
            (Kind::Str, Val::Float(x)) => Ok(lit(x.to_string())),
            (_, Val::Bool(_)) => self.err(pos, "this field is not a boolean"),
            (_, Val::Regex(_)) => self.err(pos, "a regex can only be used with == or !="),
            (_, Val::Null) => self.err(pos, "nil can only be used with == or !="),
            _ => self.err(pos, "compare a field with a value"),
        }
    }

    fn compare(&self, op: CmpOp, l: &Node, r: &Node, pos: usize) -> Result<Expr, KflError> {
        let (a, b) = (self.operand(l)?, self.operand(r)?);
        let not_left = matches!(l, Node::Not(..));
        self.compare_vals(op, a, b, (l.pos(), r.pos(), pos), not_left)
    }

    /// `poss`: (left, right, operator) positions.
    fn compare_vals(
        &self,
        op: CmpOp,
        a: Val,
        b: Val,
        poss: (usize, usize, usize),
        not_left: bool,
    ) -> Result<Expr, KflError> {
        let (mut a, mut b, mut op) = (a, b, op);
        let (mut apos, mut bpos, pos) = poss;
        if !a.is_subject() && b.is_subject() {
            std::mem::swap(&mut a, &mut b);
            std::mem::swap(&mut apos, &mut bpos);
            op = flip(op);
        }
        match (a, b) {
            (Val::Any(fs), b) => {
                let eq_op = if op == CmpOp::Ne { CmpOp::Eq } else { op };
                let mut v = Vec::new();
                for f in fs {
                    v.push(self.compare_vals(eq_op, Val::Field(f), b.clone(), (apos, bpos, pos), false)?);
                }
                let any = balanced(v, Expr::or);
                Ok(if op == CmpOp::Ne { any.not() } else { any })
            }
            (a, Val::Any(fs)) if !matches!(a, Val::Pred(_)) => {
                self.compare_vals(flip(op), Val::Any(fs), a, (bpos, apos, pos), false)
            }
            (Val::Headers(_), _) | (_, Val::Headers(_)) | (Val::EmptyMap, _) | (_, Val::EmptyMap) => self.err(
                apos,
                "a map is not compared as a whole: use request.headers[\"name\"], `\"name\" in request.headers` or map_get()",
            ),
            (Val::Field(f), Val::Regex(re)) => {
                let m = regexp_like(f.text(), lit(re), None);
                match op {
                    CmpOp::Eq => Ok(f.guarded(m)),
                    CmpOp::Ne => Ok(f.guarded(m.not())),
                    _ => self.err(pos, "a regex can only be compared with == or !="),
                }
            }
            (Val::Json(j), Val::Regex(re)) => match op {
                CmpOp::Eq => Ok(j.test("re", &re)),
                CmpOp::Ne => Ok(j.test("nre", &re)),
                _ => self.err(pos, "a regex can only be compared with == or !="),
            },
            (Val::Field(f), Val::Null) => match op {
                CmpOp::Eq => Ok(f.is_null()),
                CmpOp::Ne => Ok(f.is_null().not()),
                _ => self.err(pos, "nil can only be compared with == or !="),
            },
            (Val::Json(j), Val::Null) => match op {
                CmpOp::Eq => Ok(j.test("exists", "").not()),
                CmpOp::Ne => Ok(j.test("exists", "")),
                _ => self.err(pos, "nil can only be compared with == or !="),
            },
            (Val::Field(f), Val::Field(g)) => {
                let (x, y) = if f.kind == g.kind && f.time == g.time {
                    (f.expr, g.expr)
                } else {
                    (f.text(), g.text())
                };
                let pred = apply(op, x, y);
                Ok(match (&f.guard, &g.guard) {
                    (Guard::None, Guard::None) => pred,
                    _ => pred.is_true(),
                })
            }
            (Val::Field(f), Val::Json(j)) => Ok(apply(op, f.text(), j.get()).is_true()),
            (Val::Json(j), Val::Field(f)) => Ok(apply(op, j.get(), f.text()).is_true()),
            (Val::Json(a), Val::Json(b)) => Ok(apply(op, a.get(), b.get()).is_true()),
            (Val::Field(_) | Val::Json(_), Val::Pred(_)) => {
                self.err(bpos, "compare a field with a value, not with a condition")
            }
            (Val::Json(j), v) => match v.literal_text() {
                Some(t) => Ok(j.test(op_name(op), &t)),
                None => self.err(bpos, "compare a field with a value"),
            },
            (Val::Field(f), v) => {
                let v = self.coerce(&f, v, bpos)?;
                Ok(f.guarded(apply(op, f.cmp_expr(), v)))
            }
            (Val::Pred(p), Val::Bool(b)) => match op {
                CmpOp::Eq => Ok(p.eq(lit(b))),
                CmpOp::Ne => Ok(p.not_eq(lit(b))),
                _ => self.err(pos, "conditions compare only with == or !="),
            },
            (Val::Pred(p), Val::Pred(q)) if matches!(op, CmpOp::Eq | CmpOp::Ne) && !not_left => {
                Ok(apply(op, p, q))
            }
            (Val::Pred(_), _) => {
                let why = if not_left {
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

    /// `x in [a, b]`, `"v" in list_field`, `"key" in map_field`.
    fn is_in(&self, l: &Node, r: &Node, pos: usize) -> Result<Expr, KflError> {
        if let Node::List(items, _) = r {
            let left = self.operand(l)?;
            if items.is_empty() {
                return Ok(lit(false));
            }
            if let Val::Field(f) = &left {
                let mut list = Vec::new();
                for it in items {
                    let v = self.operand(it)?;
                    list.push(self.coerce(f, v, it.pos())?);
                }
                return Ok(f.guarded(f.cmp_expr().in_list(list, false)));
            }
            if !matches!(left, Val::Json(_) | Val::Any(_)) {
                return self.err(
                    l.pos(),
                    "`in` needs a field on its left, e.g. `protocol in [\"http\", \"dns\"]`",
                );
            }
            let mut v = Vec::new();
            for it in items {
                let b = self.operand(it)?;
                v.push(self.compare_vals(
                    CmpOp::Eq,
                    left.clone(),
                    b,
                    (l.pos(), it.pos(), pos),
                    false,
                )?);
            }
            return Ok(balanced(v, Expr::or));
        }
        let right = self.operand(r)?;
        let left = self.operand(l)?;
        let Some(key) = left.literal_text() else {
            return self.err(
                l.pos(),
                "`in` needs a value on its left when a field is on its right, e.g. `\"authorization\" in request.headers`",
            );
        };
        match right {
            Val::Headers(response) => Ok(self.header(response, &key).is_not_null()),
            Val::Json(j) => Ok(j.test("haskey", &key)),
            Val::EmptyMap => Ok(lit(false)),
            v @ (Val::Any(_) | Val::Field(_)) => {
                self.compare_vals(CmpOp::Eq, v, left, (r.pos(), l.pos(), pos), false)
            }
            _ => self.err(
                r.pos(),
                "`in` needs a list, a list field or a map on its right",
            ),
        }
    }
}
