//! Operands: fields (columns, headers, JSON paths), macros, literals and function calls.

use datafusion::functions::expr_fn::{
    character_length, coalesce, contains, ends_with, regexp_like, starts_with,
};
use std::ops::Not;

use datafusion::logical_expr::{when, Expr};
use datafusion::prelude::{col, lit};
use wiretrail_proto::schema as sc;

use super::ast::{path_string, ArithOp, Node, Seg};
use super::compile::{
    balanced, parse_time_str, regex_error, Compiler, FieldVal, Guard, JsonVal, Norm, Val,
};
use super::fields::{resolve, suggest, Doc, Fallback, Field, Kind, FALSE_FLAGS, MACROS};
use super::jsonpath::Step;
use super::redact::Redaction;
use super::{udf, KflError};

const HELPERS: &str = "use startsWith, endsWith, contains, matches or size";

/// Most macro expansions inside one another (a macro that names itself is an error).
const MAX_MACRO_DEPTH: usize = 16;

fn column_field(name: &'static str, kind: Kind, nullable: bool) -> FieldVal {
    FieldVal {
        expr: col(name),
        kind,
        guard: if nullable {
            Guard::NotNull(col(name))
        } else {
            Guard::None
        },
        time: false,
        norm: if name == sc::PROTOCOL {
            Norm::Protocol
        } else {
            Norm::None
        },
        redact: vec![Redaction::Column(name)],
    }
}

fn computed(expr: Expr, kind: Kind) -> FieldVal {
    FieldVal {
        expr,
        kind,
        guard: Guard::IsTrue,
        time: false,
        norm: Norm::None,
        redact: vec![],
    }
}

/// `"12"`, `"5m"`, `"1h30m"`, `"1.5s"`, `"300ms"` → milliseconds.
pub fn parse_duration(s: &str) -> Option<i64> {
    let s = s.trim();
    let (neg, mut rest) = match s.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s),
    };
    if rest.is_empty() {
        return None;
    }
    let mut total = 0f64;
    while !rest.is_empty() {
        let n = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let num: f64 = rest[..n].parse().ok()?;
        rest = &rest[n..];
        let u = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit = match &rest[..u] {
            "ns" => 1e-6,
            "us" | "µs" => 1e-3,
            "ms" => 1.0,
            "s" => 1e3,
            "m" => 6e4,
            "h" => 3.6e6,
            "d" => 8.64e7,
            _ => return None,
        };
        rest = &rest[u..];
        total += num * unit;
    }
    let ms = total.round();
    (ms.is_finite() && ms.abs() < 9.2e18).then(|| if neg { -(ms as i64) } else { ms as i64 })
}

impl Compiler<'_> {
    pub fn header(&self, response: bool, name: &str) -> Expr {
        let map = col(if response {
            sc::RESPONSE_HEADERS
        } else {
            sc::REQUEST_HEADERS
        });
        udf::header_get().call(vec![map, lit(name.to_string())])
    }

    fn doc(&self, doc: &Doc) -> Expr {
        match doc {
            Doc::Detail { response: true } => col(sc::RESPONSE),
            Doc::Detail { response: false } => col(sc::REQUEST),
            Doc::Body { response: true } => col(sc::RESPONSE_BODY),
            Doc::Body { response: false } => col(sc::REQUEST_BODY),
            Doc::Path => col(sc::PATH),
            Doc::Header { response, name } => self.header(*response, name),
        }
    }

    fn unknown(&self, segs: &[Seg], pos: usize, msg: &str) -> KflError {
        let mut e = KflError::at(self.query, pos, msg);
        e.suggestion = suggest(&path_string(segs));
        if let Some(s) = &e.suggestion {
            e.message = format!("{msg}; did you mean `{s}`?");
        }
        e
    }

    fn field(&self, segs: &[Seg], pos: usize) -> Result<Val, KflError> {
        let f = resolve(segs).map_err(|msg| self.unknown(segs, pos, &msg))?;
        if !matches!(f, Field::Json { .. })
            && segs
                .iter()
                .any(|s| matches!(s, Seg::Decode(_) | Seg::Recursive(_)))
        {
            return Err(self.unknown(segs, pos, "json(), xml() and `..` apply to documents such as response.body or request.payload"));
        }
        Ok(match f {
            Field::Column {
                name,
                kind,
                nullable,
            } => Val::Field(column_field(name, kind, nullable)),
            Field::Scoped {
                protocol,
                name,
                kind,
            } => {
                let mut f = computed(
                    when(col(sc::PROTOCOL).eq(lit(protocol)), col(name))
                        .end()
                        .unwrap_or(col(name)),
                    kind,
                );
                f.redact = vec![Redaction::Column(name)];
                Val::Field(f)
            }
            Field::Header { response, name } => {
                let mut f = computed(self.header(response, &name), Kind::Str);
                f.redact = vec![Redaction::Header { response, name }];
                Val::Field(f)
            }
            Field::Headers { response } => Val::Headers(response),
            Field::Timestamp => Val::Field(FieldVal {
                expr: col(sc::TS),
                kind: Kind::Int,
                guard: Guard::None,
                time: true,
                norm: Norm::None,
                redact: vec![Redaction::Column(sc::TS)],
            }),
            Field::ElapsedMs => Val::Field(FieldVal {
                expr: col(sc::ELAPSED_US) / lit(1000i64),
                kind: Kind::Int,
                guard: Guard::NotNull(col(sc::ELAPSED_US)),
                time: false,
                norm: Norm::None,
                redact: vec![Redaction::Column(sc::ELAPSED_US)],
            }),
            Field::BodySize { response } => {
                let body = col(if response {
                    sc::RESPONSE_BODY
                } else {
                    sc::REQUEST_BODY
                });
                let mut f = computed(udf::bytes().call(vec![body]), Kind::Int);
                f.guard = Guard::None;
                Val::Field(f)
            }
            Field::KafkaApiName => {
                let mut f = computed(
                    when(col(sc::PROTOCOL).eq(lit("kafka")), col(sc::METHOD))
                        .end()
                        .unwrap_or(col(sc::METHOD)),
                    Kind::Str,
                );
                f.norm = Norm::Kafka;
                f.redact = vec![Redaction::Column(sc::METHOD)];
                Val::Field(f)
            }
            Field::Json { doc, steps } => {
                let redact = vec![match &doc {
                    Doc::Detail { response } => Redaction::Detail {
                        response: *response,
                        steps: steps.iter().skip(1).cloned().collect(),
                    },
                    Doc::Body { response } => Redaction::Body {
                        response: *response,
                        steps: steps.clone(),
                    },
                    Doc::Path => Redaction::Column(sc::PATH),
                    Doc::Header { response, name } => Redaction::Header {
                        response: *response,
                        name: name.clone(),
                    },
                }];
                Val::Json(JsonVal {
                    doc: self.doc(&doc),
                    steps,
                    redact,
                })
            }
            Field::AnyOf(cols) => Val::Any(
                cols.iter()
                    .map(|c| column_field(c, Kind::Str, true))
                    .collect(),
            ),
            Field::Absent => Val::Field(computed(
                lit(datafusion::scalar::ScalarValue::Utf8(None)),
                Kind::Str,
            )),
            Field::Default(Fallback::Str) => Val::Field(FieldVal {
                guard: Guard::None,
                ..computed(lit(""), Kind::Str)
            }),
            Field::Default(Fallback::Int) => Val::Field(FieldVal {
                guard: Guard::None,
                ..computed(lit(0i64), Kind::Int)
            }),
            Field::Default(Fallback::Map) => Val::EmptyMap,
        })
    }

    /// A bare name that is a macro: user macros first, then the built-in ones.
    fn macro_val(&self, name: &str, pos: usize) -> Result<Option<Val>, KflError> {
        if let Some((_, body)) = self.opts.macros.iter().find(|(m, _)| m == name) {
            let depth = self.macro_depth.get();
            if depth >= MAX_MACRO_DEPTH {
                return self.err(pos, &format!("macro `{name}` expands into itself"));
            }
            self.macro_depth.set(depth + 1);
            let inner = Compiler {
                query: body,
                opts: self.opts,
                macro_depth: self.macro_depth.clone(),
            };
            let r = super::lexer::lex(body)
                .and_then(|t| super::parser::Parser::new(t, body).parse())
                .and_then(|n| match n {
                    Some(n) => inner.cond(&n),
                    None => Ok(lit(true)),
                });
            self.macro_depth.set(depth);
            return match r {
                Ok(e) => Ok(Some(Val::Pred(e))),
                Err(e) => self.err(pos, &format!("in macro `{name}`: {}", e.message)),
            };
        }
        let proto = |p: &str| col(sc::PROTOCOL).eq(lit(p.to_string()));
        if let Some((_, p)) = MACROS.iter().find(|(m, _)| *m == name) {
            return Ok(Some(Val::Pred(proto(p))));
        }
        Ok(Some(Val::Pred(match name {
            // A TLS handshake, or an entry decrypted from TLS (its detail says so).
            "tls" => proto("tls").or(JsonVal {
                doc: col(sc::REQUEST),
                steps: vec![Step::Decode("json".into()), Step::Field("tls".into())],
                redact: vec![],
            }
            .test("exists", "")),
            "error" => error_expr(),
            "dns_response" => proto("dns").and(col(sc::STATUS).is_not_null()),
            n if FALSE_FLAGS.contains(&n) => lit(false),
            _ => return Ok(None),
        })))
    }

    pub fn operand(&self, node: &Node) -> Result<Val, KflError> {
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
                    if let Some(v) = self.macro_val(name, *pos)? {
                        return Ok(v);
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
            Node::Arith(op, l, r, pos) => self.arith(*op, l, r, *pos)?,
            Node::List(_, pos) => {
                return self.err(*pos, "a list can only follow `in`");
            }
            other => Val::Pred(self.cond(other)?),
        })
    }

    /// Constant arithmetic on numbers and times: `now() - duration("5m")`.
    fn arith(&self, op: ArithOp, l: &Node, r: &Node, pos: usize) -> Result<Val, KflError> {
        let (a, b) = (self.operand(l)?, self.operand(r)?);
        let f = |x: i64, y: i64| match op {
            ArithOp::Add => x.saturating_add(y),
            ArithOp::Sub => x.saturating_sub(y),
        };
        Ok(match (a, b) {
            (Val::Time(t), Val::Dur(d) | Val::Int(d)) => Val::Time(f(t, d)),
            (Val::Dur(d), Val::Time(t)) if op == ArithOp::Add => Val::Time(t.saturating_add(d)),
            (Val::Time(a), Val::Time(b)) if op == ArithOp::Sub => Val::Dur(a.saturating_sub(b)),
            (Val::Dur(a), Val::Dur(b)) => Val::Dur(f(a, b)),
            (Val::Int(a), Val::Int(b)) => Val::Int(f(a, b)),
            (Val::Float(a), Val::Float(b)) => Val::Float(match op {
                ArithOp::Add => a + b,
                ArithOp::Sub => a - b,
            }),
            _ => return self.err(pos, "`+` and `-` apply to numbers, times and durations, e.g. `now() - duration(\"5m\")`"),
        })
    }

    fn string_arg(&self, name: &str, args: &[Node], pos: usize) -> Result<String, KflError> {
        match args {
            [Node::Str(s, _)] => Ok(s.clone()),
            _ => self.err(pos, &format!("{name}() takes one \"string\"")),
        }
    }

    /// A helper called on a value: `x.startsWith("a")`, `x.matches(re)`, `x.size()`.
    fn method(&self, name: &str, recv: Val, args: &[Node], pos: usize) -> Result<Val, KflError> {
        if name == "size" && args.is_empty() {
            return self.size(recv, pos);
        }
        if !matches!(
            name,
            "startsWith" | "starts_with" | "endsWith" | "ends_with" | "contains" | "matches"
        ) {
            return self.err(pos, &format!("unknown helper `{name}()`: {HELPERS}"));
        }
        let [arg] = args else {
            return self.err(pos, &format!("{name}() takes one argument"));
        };
        let a = self.operand(arg)?;
        if name == "matches" {
            let (Val::Str(re) | Val::Regex(re)) = &a else {
                return self.err(arg.pos(), "matches() takes a \"regex\"");
            };
            if let Err(e) = regex::Regex::new(re) {
                return self.err(arg.pos(), &regex_error(&e));
            }
        }
        match recv {
            Val::Any(fs) => {
                let mut v = Vec::new();
                for f in fs {
                    match self.method(name, Val::Field(f), args, pos)? {
                        Val::Pred(e) => v.push(e),
                        _ => return self.err(pos, "internal: helper without a condition"),
                    }
                }
                Ok(Val::Pred(balanced(v, Expr::or)))
            }
            Val::Json(j) => {
                let op = match name {
                    "startsWith" | "starts_with" => "starts",
                    "endsWith" | "ends_with" => "ends",
                    "matches" => "re",
                    _ => "contains",
                };
                match (&a, a.literal_text()) {
                    (Val::Regex(re), _) => Ok(Val::Pred(j.test(op, re))),
                    (_, Some(t)) => Ok(Val::Pred(j.test(op, &t))),
                    _ => Ok(Val::Pred(
                        self.string_fn(name, j.get(), self.arg_expr(&a, arg)?)
                            .is_true(),
                    )),
                }
            }
            Val::Field(f) => {
                let e = self.string_fn(name, f.text(), self.arg_expr(&a, arg)?);
                Ok(Val::Pred(match a {
                    Val::Field(_) | Val::Json(_) => e.is_true(),
                    _ => f.guarded(e),
                }))
            }
            Val::EmptyMap => Ok(Val::Pred(lit(false))),
            _ => self.err(pos, &format!("{name}() must be called on a field")),
        }
    }

    fn arg_expr(&self, a: &Val, node: &Node) -> Result<Expr, KflError> {
        match a {
            Val::Field(f) => Ok(f.text()),
            Val::Json(j) => Ok(j.get()),
            Val::Regex(s) => Ok(lit(s.clone())),
            v => match v.literal_text() {
                Some(t) => Ok(lit(t)),
                None => self.err(node.pos(), "expected a \"string\" or a field"),
            },
        }
    }

    fn string_fn(&self, name: &str, text: Expr, arg: Expr) -> Expr {
        match name {
            "startsWith" | "starts_with" => starts_with(text, arg),
            "endsWith" | "ends_with" => ends_with(text, arg),
            "matches" => regexp_like(text, arg, None),
            _ => contains(text, arg),
        }
    }

    fn size(&self, v: Val, pos: usize) -> Result<Val, KflError> {
        Ok(Val::Field(match v {
            Val::Json(j) => computed(j.size(), Kind::Int),
            Val::Field(f) if f.kind == Kind::Str => FieldVal {
                expr: character_length(f.text()),
                kind: Kind::Int,
                ..f
            },
            Val::Any(fs) => {
                let counts: Vec<Expr> = fs
                    .iter()
                    .map(|f| {
                        when(f.expr.clone().is_not_null(), lit(1i64))
                            .otherwise(lit(0i64))
                            .unwrap_or(lit(0i64))
                    })
                    .collect();
                let sum = counts.into_iter().reduce(|a, b| a + b).unwrap_or(lit(0i64));
                FieldVal {
                    guard: Guard::None,
                    ..computed(sum, Kind::Int)
                }
            }
            Val::EmptyMap => FieldVal {
                guard: Guard::None,
                ..computed(lit(0i64), Kind::Int)
            },
            Val::Str(s) => FieldVal {
                guard: Guard::None,
                ..computed(lit(s.chars().count() as i64), Kind::Int)
            },
            _ => {
                return self.err(
                    pos,
                    "size() applies to a list, a map, a document path or a text field",
                )
            }
        }))
    }

    pub fn call(
        &self,
        name: &str,
        receiver: Option<&Node>,
        args: &[Node],
        pos: usize,
    ) -> Result<Val, KflError> {
        if let Some(recv) = receiver {
            let r = self.operand(recv)?;
            return self.method(name, r, args, pos);
        }
        let ago = |unit_ms: i64| -> Result<Val, KflError> {
            match args {
                [Node::Int(n, _)] => Ok(Val::Time(
                    self.opts.now_ms.saturating_sub(n.saturating_mul(unit_ms)),
                )),
                [Node::Float(n, _)] if n.is_finite() => Ok(Val::Time(
                    self.opts.now_ms.saturating_sub((n * unit_ms as f64) as i64),
                )),
                _ => self.err(pos, &format!("{name}(n) takes one number")),
            }
        };
        match name {
            "now" if args.is_empty() => Ok(Val::Time(self.opts.now_ms)),
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
                match chrono::DateTime::parse_from_rfc3339(s.trim()) {
                    Ok(t) => Ok(Val::Time(t.timestamp_millis())),
                    Err(_) => self.err(
                        pos,
                        "timestamp() expects an RFC 3339 time, e.g. \"2026-11-25T03:12:44Z\"",
                    ),
                }
            }
            "duration" => {
                let s = self.string_arg(name, args, pos)?;
                match parse_duration(&s) {
                    Some(ms) => Ok(Val::Dur(ms)),
                    None => self.err(pos, "duration() expects e.g. \"5m\", \"1h30m\", \"300ms\""),
                }
            }
            "size" => match args {
                [a] => {
                    let v = self.operand(a)?;
                    self.size(v, pos)
                }
                _ => self.err(pos, "size(x) takes one argument"),
            },
            "map_get" => self.map_get(args, pos),
            "seconds" => ago(1_000),
            "minutes" => ago(60_000),
            "hours" => ago(3_600_000),
            "days" => ago(86_400_000),
            "weeks" => ago(7 * 86_400_000),
            "months" => ago(30 * 86_400_000),
            "years" => ago(365 * 86_400_000),
            "limit" | "redact" => Ok(Val::Bool(true)),
            other => self.err(pos, &format!("unknown function `{other}()`")),
        }
    }

    /// `map_get(map, "key", default)`: the value, or the default when the key is absent.
    fn map_get(&self, args: &[Node], pos: usize) -> Result<Val, KflError> {
        let [m, k, d] = args else {
            return self.err(pos, "map_get(map, \"key\", default) takes three arguments");
        };
        let (Node::Str(key, _), Some(default)) = (k, self.operand(d)?.literal_text()) else {
            return self.err(pos, "map_get() takes a \"key\" and a default value");
        };
        let value = match self.operand(m)? {
            Val::Headers(response) => self.header(response, key),
            Val::Json(mut j) => {
                j.steps.push(Step::Key(key.clone()));
                j.get()
            }
            Val::EmptyMap => lit(default.clone()),
            _ => {
                return self.err(
                    m.pos(),
                    "map_get() takes a map: request.headers, a document path or a KFL2 map",
                )
            }
        };
        Ok(Val::Field(FieldVal {
            guard: Guard::None,
            ..computed(coalesce(vec![value, lit(default)]), Kind::Str)
        }))
    }

    /// `redact("request.path", "..password")`: each argument is a selector (a string, as in v1).
    pub fn redact_args(&self, args: &[Node], pos: usize) -> Result<Vec<Redaction>, KflError> {
        let mut out = Vec::new();
        for a in args {
            let Node::Str(s, apos) = a else {
                return self.err(a.pos(), "redact() takes \"selector\" strings, e.g. redact(\"request.headers['Authorization']\")");
            };
            let t = s.trim();
            if let Some(name) = t.strip_prefix("..") {
                let name = name.trim_start_matches('.');
                if name.is_empty() {
                    return self.err(*apos, "redact(\"..name\") needs a name");
                }
                out.push(Redaction::Recursive(name.to_string()));
                continue;
            }
            let fail = |e: KflError| {
                KflError::at(self.query, *apos, &format!("redact({s:?}): {}", e.message))
            };
            let node = super::lexer::lex(t)
                .and_then(|toks| super::parser::Parser::new(toks, t).parse())
                .map_err(fail)?;
            let val = match &node {
                Some(n @ Node::Path(..)) => self.operand(n),
                _ => self.err(*apos, "redact() takes field selectors"),
            }
            .map_err(|e| {
                KflError::at(self.query, *apos, &format!("redact({s:?}): {}", e.message))
            })?;
            match val {
                Val::Field(f) if !f.redact.is_empty() => out.extend(f.redact),
                Val::Json(j) => out.extend(j.redact),
                Val::Any(fs) => out.extend(fs.into_iter().flat_map(|f| f.redact)),
                Val::Headers(response) => out.push(Redaction::AllHeaders { response }),
                _ => {
                    return self.err(
                        *apos,
                        &format!("redact({s:?}): not a field of the returned entries"),
                    )
                }
            }
        }
        if out.is_empty() {
            return self.err(pos, "redact() needs at least one selector");
        }
        Ok(out)
    }
}

/// The `error` macro: the entry reports a failure. HTTP-family: status ≥ 500 (a 4xx is the
/// client's mistake, as in Kubeshark's error dashboard `response.status > 400 or error`);
/// AMQP: a reply code other than 200; every other protocol: a non-zero status (gRPC status,
/// DNS rcode, Redis/PostgreSQL error, Kafka error code, TLS alert).
fn error_expr() -> Expr {
    let p = col(sc::PROTOCOL);
    let s = col(sc::STATUS);
    let http = p
        .clone()
        .in_list(vec![lit("http"), lit("http2"), lit("graphql")], false);
    let amqp = p.eq(lit("amqp"));
    s.clone().is_not_null().and(
        http.clone()
            .and(s.clone().gt_eq(lit(500i32)))
            .or(amqp.clone().and(
                s.clone()
                    .not_eq(lit(200i32))
                    .and(s.clone().not_eq(lit(0i32))),
            ))
            .or(http.not().and(amqp.not()).and(s.not_eq(lit(0i32)))),
    )
}
