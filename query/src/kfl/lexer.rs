//! KFL tokens, with the character offset of each for error messages.

use super::KflError;

#[derive(Debug, Clone, PartialEq)]
pub enum Tok {
    Ident(String),
    Int(i64),
    Float(f64),
    Str(String),
    Regex(String),
    LParen,
    RParen,
    LBracket,
    RBracket,
    Dot,
    Comma,
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    Not,
    AndAnd,
    OrOr,
    Star,
    Minus,
    Plus,
    Question,
    Colon,
    Eof,
}

#[derive(Debug, Clone)]
pub struct Token {
    pub tok: Tok,
    /// Character offset in the query.
    pub pos: usize,
}

pub fn describe(t: &Tok) -> String {
    match t {
        Tok::Ident(s) => format!("`{s}`"),
        Tok::Int(i) => i.to_string(),
        Tok::Float(f) => f.to_string(),
        Tok::Str(s) => format!("\"{s}\""),
        Tok::Regex(s) => format!("r\"{s}\""),
        Tok::Eof => "the end of the query".into(),
        other => format!(
            "`{}`",
            match other {
                Tok::LParen => "(",
                Tok::RParen => ")",
                Tok::LBracket => "[",
                Tok::RBracket => "]",
                Tok::Dot => ".",
                Tok::Comma => ",",
                Tok::Eq => "==",
                Tok::Ne => "!=",
                Tok::Lt => "<",
                Tok::Le => "<=",
                Tok::Gt => ">",
                Tok::Ge => ">=",
                Tok::Not => "!",
                Tok::AndAnd => "&&",
                Tok::OrOr => "||",
                Tok::Star => "*",
                Tok::Plus => "+",
                Tok::Question => "?",
                Tok::Colon => ":",
                _ => "-",
            }
        ),
    }
}

/// Reads a quoted string starting at `chars[i]` (the quote); returns its text and the index after
/// the closing quote.
///
/// Escapes, chosen to stay close to v1 (which kept backslashes as written): in a plain string
/// `\<quote>` is the quote and `\\` one backslash; in a regex (`raw`) only `\<quote>` is
/// rewritten and `\\` stays two characters (the regex escape for a backslash). Every other
/// backslash is kept as written, so `"\d+"` and `r"\d+"` are the same regex.
fn string(chars: &[char], i: usize, query: &str, raw: bool) -> Result<(String, usize), KflError> {
    let quote = chars[i];
    let mut out = String::new();
    let mut j = i + 1;
    while j < chars.len() {
        match chars[j] {
            c if c == quote => return Ok((out, j + 1)),
            '\\' if j + 1 < chars.len() => {
                match chars[j + 1] {
                    c if c == quote => out.push(c),
                    '\\' if !raw => out.push('\\'),
                    other => {
                        out.push('\\');
                        out.push(other);
                    }
                }
                j += 2;
            }
            c => {
                out.push(c);
                j += 1;
            }
        }
    }
    Err(KflError::at(
        query,
        i,
        "unterminated string: add the closing quote",
    ))
}

pub fn lex(query: &str) -> Result<Vec<Token>, KflError> {
    let chars: Vec<char> = query.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let start = i;
        let two = |a: char, b: char| c == a && chars.get(i + 1) == Some(&b);
        let tok = if c.is_whitespace() {
            i += 1;
            continue;
        } else if (c == 'r' || c == 'R')
            && matches!(chars.get(i + 1), Some('"') | Some('\'') | Some('`'))
        {
            let (s, end) = string(&chars, i + 1, query, true)?;
            i = end;
            Tok::Regex(s)
        } else if c == '"' || c == '\'' || c == '`' {
            let (s, end) = string(&chars, i, query, false)?;
            i = end;
            Tok::Str(s)
        } else if c.is_ascii_digit() {
            let mut j = i;
            while j < chars.len() && (chars[j].is_ascii_digit() || chars[j] == '_') {
                j += 1;
            }
            let is_float =
                chars.get(j) == Some(&'.') && chars.get(j + 1).is_some_and(|c| c.is_ascii_digit());
            if is_float {
                j += 1;
                while j < chars.len() && chars[j].is_ascii_digit() {
                    j += 1;
                }
            }
            let text: String = chars[i..j].iter().filter(|c| **c != '_').collect();
            i = j;
            if is_float {
                Tok::Float(
                    text.parse()
                        .map_err(|_| KflError::at(query, start, "invalid number"))?,
                )
            } else {
                Tok::Int(
                    text.parse()
                        .map_err(|_| KflError::at(query, start, "number out of range"))?,
                )
            }
        } else if c.is_alphabetic() || c == '_' || c == '$' {
            let mut j = i;
            while j < chars.len()
                && (chars[j].is_alphanumeric() || chars[j] == '_' || chars[j] == '$')
            {
                j += 1;
            }
            let s: String = chars[i..j].iter().collect();
            i = j;
            Tok::Ident(s)
        } else if two('=', '=') {
            i += 2;
            Tok::Eq
        } else if two('!', '=') {
            i += 2;
            Tok::Ne
        } else if two('<', '=') {
            i += 2;
            Tok::Le
        } else if two('>', '=') {
            i += 2;
            Tok::Ge
        } else if two('&', '&') {
            i += 2;
            Tok::AndAnd
        } else if two('|', '|') {
            i += 2;
            Tok::OrOr
        } else {
            i += 1;
            match c {
                '(' => Tok::LParen,
                ')' => Tok::RParen,
                '[' => Tok::LBracket,
                ']' => Tok::RBracket,
                '.' => Tok::Dot,
                ',' => Tok::Comma,
                '<' => Tok::Lt,
                '>' => Tok::Gt,
                '!' => Tok::Not,
                '*' => Tok::Star,
                '-' => Tok::Minus,
                '+' => Tok::Plus,
                '?' => Tok::Question,
                ':' => Tok::Colon,
                '=' => return Err(KflError::at(query, start, "use `==` to compare")),
                other => {
                    return Err(KflError::at(
                        query,
                        start,
                        &format!("unexpected character `{other}`"),
                    ))
                }
            }
        };
        out.push(Token { tok, pos: start });
    }
    out.push(Token {
        tok: Tok::Eof,
        pos: chars.len(),
    });
    Ok(out)
}
