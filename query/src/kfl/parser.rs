//! Recursive-descent KFL parser. Precedence, loosest first: the ternary `c ? a : b`,
//! `or`/`||`, `and`/`&&`, comparisons (`==` `!=` `<` `<=` `>` `>=` `in`, not chainable),
//! `+`/`-`, `!`/`not` and unary `-`, then literals, selectors and calls. `and`/`or` chains are read in a loop into one n-ary
//! node; only parentheses, `!` and call arguments recurse, and their nesting is limited so
//! that a hostile query cannot exhaust the stack.

use super::ast::{ArithOp, CmpOp, Node, Seg};
use super::lexer::{describe, Tok, Token};
use super::{KflError, MAX_DEPTH, MAX_TERMS};

pub struct Parser<'q> {
    toks: Vec<Token>,
    i: usize,
    depth: usize,
    /// Values read so far, against [`MAX_TERMS`].
    terms: usize,
    query: &'q str,
}

impl<'q> Parser<'q> {
    pub fn new(toks: Vec<Token>, query: &'q str) -> Self {
        Parser {
            toks,
            i: 0,
            depth: 0,
            terms: 0,
            query,
        }
    }

    fn peek(&self) -> &Tok {
        &self.toks[self.i].tok
    }

    fn pos(&self) -> usize {
        self.toks[self.i].pos
    }

    fn bump(&mut self) -> Token {
        let t = self.toks[self.i].clone();
        if self.i + 1 < self.toks.len() {
            self.i += 1;
        }
        t
    }

    fn is_word(&self, w: &str) -> bool {
        matches!(self.peek(), Tok::Ident(s) if s == w)
    }

    fn err<T>(&self, msg: &str) -> Result<T, KflError> {
        Err(KflError::at(self.query, self.pos(), msg))
    }

    fn expect(&mut self, t: Tok, what: &str) -> Result<(), KflError> {
        if *self.peek() == t {
            self.bump();
            Ok(())
        } else {
            self.err(&format!("expected {what}, found {}", describe(self.peek())))
        }
    }

    /// The whole query; an empty query is `None` (match everything).
    pub fn parse(mut self) -> Result<Option<Node>, KflError> {
        if *self.peek() == Tok::Eof {
            return Ok(None);
        }
        let n = self.ternary()?;
        if *self.peek() != Tok::Eof {
            return self.err(&format!(
                "unexpected {}: expected `and`, `or` or the end of the query",
                describe(self.peek())
            ));
        }
        Ok(Some(n))
    }

    fn enter(&mut self) -> Result<(), KflError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return self.err(&format!("query nests deeper than {MAX_DEPTH} levels"));
        }
        Ok(())
    }

    /// `cond ? a : b` (right-associative, as in CEL).
    fn ternary(&mut self) -> Result<Node, KflError> {
        let cond = self.or()?;
        if *self.peek() != Tok::Question {
            return Ok(cond);
        }
        let pos = self.bump().pos;
        self.enter()?;
        let a = self.ternary()?;
        self.expect(Tok::Colon, "`:` between the two branches of `?`")?;
        let b = self.ternary()?;
        self.depth -= 1;
        Ok(Node::Ternary(Box::new(cond), Box::new(a), Box::new(b), pos))
    }

    fn or(&mut self) -> Result<Node, KflError> {
        let first = self.and()?;
        let mut items = vec![first];
        while self.is_word("or") || *self.peek() == Tok::OrOr {
            self.bump();
            items.push(self.and()?);
        }
        Ok(join(items, Node::Or))
    }

    fn and(&mut self) -> Result<Node, KflError> {
        let first = self.cmp()?;
        let mut items = vec![first];
        while self.is_word("and") || *self.peek() == Tok::AndAnd {
            self.bump();
            items.push(self.cmp()?);
        }
        Ok(join(items, Node::And))
    }

    fn cmp(&mut self) -> Result<Node, KflError> {
        let left = self.additive()?;
        let op = match self.peek() {
            Tok::Eq => CmpOp::Eq,
            Tok::Ne => CmpOp::Ne,
            Tok::Lt => CmpOp::Lt,
            Tok::Le => CmpOp::Le,
            Tok::Gt => CmpOp::Gt,
            Tok::Ge => CmpOp::Ge,
            Tok::Ident(w) if w == "in" => {
                let pos = self.bump().pos;
                let right = if *self.peek() == Tok::LBracket {
                    let at = self.pos();
                    Node::List(self.list()?, at)
                } else {
                    self.additive()?
                };
                return Ok(Node::In(Box::new(left), Box::new(right), pos));
            }
            _ => return Ok(left),
        };
        let pos = self.bump().pos;
        let right = self.additive()?;
        if matches!(
            self.peek(),
            Tok::Eq | Tok::Ne | Tok::Lt | Tok::Le | Tok::Gt | Tok::Ge
        ) {
            return self.err("comparisons cannot be chained: use `and` between them");
        }
        Ok(Node::Cmp(op, Box::new(left), Box::new(right), pos))
    }

    fn list(&mut self) -> Result<Vec<Node>, KflError> {
        self.expect(Tok::LBracket, "`[` to start a list")?;
        let mut items = Vec::new();
        if *self.peek() != Tok::RBracket {
            loop {
                items.push(self.unary()?);
                if *self.peek() == Tok::Comma {
                    self.bump();
                } else {
                    break;
                }
            }
        }
        self.expect(Tok::RBracket, "`]` to close the list")?;
        Ok(items)
    }

    /// `a + b - c`, left to right.
    fn additive(&mut self) -> Result<Node, KflError> {
        let mut left = self.unary()?;
        loop {
            let op = match self.peek() {
                Tok::Plus => ArithOp::Add,
                Tok::Minus => ArithOp::Sub,
                _ => return Ok(left),
            };
            let pos = self.bump().pos;
            let right = self.unary()?;
            left = Node::Arith(op, Box::new(left), Box::new(right), pos);
        }
    }

    /// `!`/`not` (binds tighter than a comparison, as in v1 and CEL) and `-` before a number.
    fn unary(&mut self) -> Result<Node, KflError> {
        if *self.peek() == Tok::Not || self.is_word("not") {
            let pos = self.bump().pos;
            self.enter()?;
            let inner = self.unary()?;
            self.depth -= 1;
            return Ok(Node::Not(Box::new(inner), pos));
        }
        if *self.peek() == Tok::Minus {
            let pos = self.bump().pos;
            return match self.bump().tok {
                Tok::Int(i) => Ok(Node::Int(-i, pos)),
                Tok::Float(f) => Ok(Node::Float(-f, pos)),
                _ => Err(KflError::at(
                    self.query,
                    pos,
                    "`-` must be followed by a number",
                )),
            };
        }
        self.primary()
    }

    fn primary(&mut self) -> Result<Node, KflError> {
        self.terms += 1;
        if self.terms > MAX_TERMS {
            return self.err(&format!("query has more than {MAX_TERMS} values"));
        }
        let t = self.bump();
        match t.tok {
            Tok::Int(i) => Ok(Node::Int(i, t.pos)),
            Tok::Float(f) => Ok(Node::Float(f, t.pos)),
            Tok::Str(s) => Ok(Node::Str(s, t.pos)),
            Tok::Regex(s) => Ok(Node::Regex(s, t.pos)),
            Tok::LParen => {
                self.enter()?;
                let inner = self.ternary()?;
                self.depth -= 1;
                self.expect(Tok::RParen, "`)`")?;
                Ok(inner)
            }
            Tok::Ident(w) => match w.as_str() {
                "true" => Ok(Node::Bool(true, t.pos)),
                "false" => Ok(Node::Bool(false, t.pos)),
                "nil" | "null" => Ok(Node::Null(t.pos)),
                "and" | "or" | "not" | "in" => Err(KflError::at(
                    self.query,
                    t.pos,
                    &format!("expected a value or a field, found `{w}`"),
                )),
                _ => self.selector(w, t.pos),
            },
            other => Err(KflError::at(
                self.query,
                t.pos,
                &format!("expected a value or a field, found {}", describe(&other)),
            )),
        }
    }

    fn selector(&mut self, first: String, pos: usize) -> Result<Node, KflError> {
        let mut segs = vec![Seg::Field(first)];
        loop {
            match self.peek() {
                Tok::Dot => {
                    self.bump();
                    let t = self.bump();
                    match t.tok {
                        Tok::Ident(s) => segs.push(Seg::Field(s)),
                        Tok::Star => segs.push(Seg::Wildcard),
                        Tok::Dot => match self.bump().tok {
                            Tok::Ident(s) => segs.push(Seg::Recursive(s)),
                            _ => {
                                return Err(KflError::at(
                                    self.query,
                                    t.pos,
                                    "expected a field name after `..`",
                                ))
                            }
                        },
                        other => {
                            return Err(KflError::at(
                                self.query,
                                t.pos,
                                &format!(
                                    "expected a field name after `.`, found {}",
                                    describe(&other)
                                ),
                            ))
                        }
                    }
                }
                Tok::LBracket => {
                    self.bump();
                    let t = self.bump();
                    match t.tok {
                        Tok::Int(i) => segs.push(Seg::Index(i)),
                        Tok::Str(s) => segs.push(Seg::Key(s)),
                        Tok::Star => segs.push(Seg::Wildcard),
                        other => {
                            return Err(KflError::at(
                                self.query,
                                t.pos,
                                &format!(
                                    "expected a number, a \"key\" or `*` inside `[ ]`, found {}",
                                    describe(&other)
                                ),
                            ))
                        }
                    }
                    self.expect(Tok::RBracket, "`]`")?;
                }
                Tok::LParen => {
                    let call_pos = self.pos();
                    let Some(Seg::Field(name)) = segs.pop() else {
                        return self.err("only a name can be called");
                    };
                    self.bump();
                    if (name == "json" || name == "xml") && *self.peek() == Tok::RParen {
                        if segs.is_empty() {
                            return Err(KflError::at(
                                self.query,
                                pos,
                                &format!(
                                    "{name}() decodes a field: write `response.body.{name}()…`"
                                ),
                            ));
                        }
                        self.bump();
                        segs.push(Seg::Decode(if name == "json" { "json" } else { "xml" }));
                        continue;
                    }
                    let mut args = Vec::new();
                    if *self.peek() != Tok::RParen {
                        loop {
                            self.enter()?;
                            args.push(self.ternary()?);
                            self.depth -= 1;
                            if *self.peek() == Tok::Comma {
                                self.bump();
                            } else {
                                break;
                            }
                        }
                    }
                    self.expect(Tok::RParen, "`)` to close the call")?;
                    let at = if segs.is_empty() { pos } else { call_pos };
                    let receiver = (!segs.is_empty()).then(|| Box::new(Node::Path(segs, pos)));
                    if matches!(self.peek(), Tok::Dot | Tok::LBracket) {
                        return self.err(&format!("`{name}()` gives a value, not a document: only json() and xml() can be continued with a path"));
                    }
                    return Ok(Node::Call {
                        name,
                        receiver,
                        args,
                        pos: at,
                    });
                }
                _ => return Ok(Node::Path(segs, pos)),
            }
        }
    }
}

/// One operand stays itself; more become an n-ary node.
fn join(mut items: Vec<Node>, make: fn(Vec<Node>) -> Node) -> Node {
    if items.len() == 1 {
        items.pop().unwrap_or(Node::Bool(true, 0))
    } else {
        make(items)
    }
}
