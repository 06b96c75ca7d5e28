//! The KFL syntax tree. Every node keeps the character offset it started at, so that the
//! compiler can point at the offending part of the query.
//!
//! `and`/`or` are n-ary (a flat list of operands) rather than binary: a long `a or b or c …`
//! then neither builds a deep tree that recursion (or `Drop`) could overflow on, nor a deep
//! DataFusion `Expr` (the compiler joins the operands as a balanced tree).
//!
//! `json()`/`xml()` inside a selector are [`Seg::Decode`] steps, so a path continues after them
//! (`response.body.json().items[0].name`); `..name` is [`Seg::Recursive`].

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmpOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

/// One step of a selector path.
#[derive(Debug, Clone, PartialEq)]
pub enum Seg {
    Field(String),
    Index(i64),
    Key(String),
    Wildcard,
    /// `..name`: every value under this key at any depth.
    Recursive(String),
    /// `json()` / `xml()`: decode the text value and continue inside it.
    Decode(&'static str),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArithOp {
    Add,
    Sub,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Node {
    /// Two or more operands.
    Or(Vec<Node>),
    /// Two or more operands.
    And(Vec<Node>),
    Not(Box<Node>, usize),
    Cmp(CmpOp, Box<Node>, Box<Node>, usize),
    /// `x in [a, b]`, `x in list_field`, `"key" in map_field`.
    In(Box<Node>, Box<Node>, usize),
    /// `[a, b, …]`, only on the right of `in`.
    List(Vec<Node>, usize),
    /// `cond ? a : b`.
    Ternary(Box<Node>, Box<Node>, Box<Node>, usize),
    /// `a + b`, `a - b` (time arithmetic such as `now() - duration("5m")`).
    Arith(ArithOp, Box<Node>, Box<Node>, usize),
    Int(i64, usize),
    Float(f64, usize),
    Str(String, usize),
    Regex(String, usize),
    Bool(bool, usize),
    Null(usize),
    /// A dotted selector such as `request.headers["Host"]`.
    Path(Vec<Seg>, usize),
    /// `name(args)` or `receiver.name(args)`; `pos` is where the name starts.
    Call {
        name: String,
        receiver: Option<Box<Node>>,
        args: Vec<Node>,
        pos: usize,
    },
}

impl Node {
    pub fn pos(&self) -> usize {
        match self {
            Node::Or(v) | Node::And(v) => v.first().map_or(0, Node::pos),
            Node::Not(_, p)
            | Node::Cmp(_, _, _, p)
            | Node::In(_, _, p)
            | Node::List(_, p)
            | Node::Ternary(_, _, _, p)
            | Node::Arith(_, _, _, p)
            | Node::Int(_, p)
            | Node::Float(_, p)
            | Node::Str(_, p)
            | Node::Regex(_, p)
            | Node::Bool(_, p)
            | Node::Null(p)
            | Node::Path(_, p) => *p,
            Node::Call { pos, .. } => *pos,
        }
    }
}

/// `[Field("request"), Field("headers"), Key("X")]` → `request.headers["X"]`, for messages and
/// field lookup.
pub fn path_string(segs: &[Seg]) -> String {
    let mut s = String::new();
    for (i, seg) in segs.iter().enumerate() {
        match seg {
            Seg::Field(f) => {
                if i > 0 {
                    s.push('.');
                }
                s.push_str(f);
            }
            Seg::Index(n) => s.push_str(&format!("[{n}]")),
            Seg::Key(k) => s.push_str(&format!("[{k:?}]")),
            Seg::Wildcard => s.push_str(".*"),
            Seg::Recursive(n) => {
                s.push_str("..");
                s.push_str(n);
            }
            Seg::Decode(d) => {
                s.push('.');
                s.push_str(d);
                s.push_str("()");
            }
        }
    }
    s
}
