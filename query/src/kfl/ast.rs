//! The KFL syntax tree. Every node keeps the character offset it started at.

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
}

#[derive(Debug, Clone, PartialEq)]
pub enum Node {
    Or(Box<Node>, Box<Node>),
    And(Box<Node>, Box<Node>),
    Not(Box<Node>, usize),
    Cmp(CmpOp, Box<Node>, Box<Node>, usize),
    In(Box<Node>, Vec<Node>, usize),
    Int(i64, usize),
    Float(f64, usize),
    Str(String, usize),
    Regex(String, usize),
    Bool(bool, usize),
    Null(usize),
    /// A dotted selector such as `request.headers["Host"]`.
    Path(Vec<Seg>, usize),
    /// `name(args)` or `receiver.name(args)`.
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
            Node::Or(a, _) | Node::And(a, _) => a.pos(),
            Node::Not(_, p)
            | Node::Cmp(_, _, _, p)
            | Node::In(_, _, p)
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

/// `request.headers["X"]` → `request.headers["X"]`, for messages and field lookup.
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
        }
    }
    s
}
