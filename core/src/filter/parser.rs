//! A recursive-descent parser that checks every selector against the endpoint's [`Schema`] as
//! it goes and produces the evaluable tree directly: there is no separate untyped AST, so a
//! filter that compiles can only fail to match, never fail to evaluate.
//!
//! Precedence, loosest first: `or`, `and`, `not`, then a parenthesised expression or a match.
//! `and`/`or` chains become one n-ary node, so evaluation recursion is bounded by the nesting
//! depth ([`MAX_DEPTH`]) rather than by the expression's length.

use super::eval::{Expr, Leaf, Lit, Match, Op, Step};
use super::lexer::{Tok, Token};
use super::schema::{Field, Schema};
use super::FilterError;

/// Deepest nesting of parentheses and `not`s accepted.
pub const MAX_DEPTH: usize = 64;

/// Largest compiled regex (bytes of program), so `matches` cannot ask for unbounded memory.
const REGEX_SIZE_LIMIT: usize = 1 << 20;

pub(super) struct Parser<'a> {
    src: &'a str,
    toks: Vec<Token>,
    at: usize,
    schema: &'a Schema,
}

/// Something on the left of an operator: a selector (with the position of each segment) or a
/// plain value.
enum Operand {
    Selector(Vec<(String, usize)>),
    Value(String),
}

impl Operand {
    /// A bare word read as a value means its text (`Status == passing`).
    fn raw(&self) -> String {
        match self {
            Operand::Selector(parts) => parts.iter().map(|(p, _)| p.as_str()).collect::<Vec<_>>().join("."),
            Operand::Value(v) => v.clone(),
        }
    }
}

/// The operators as written, for messages.
#[derive(Clone, Copy, PartialEq)]
enum Written {
    Eq,
    Ne,
    Contains,
    NotContains,
    In,
    NotIn,
    Matches,
    NotMatches,
    IsEmpty,
    IsNotEmpty,
}

impl Written {
    fn text(self) -> &'static str {
        match self {
            Written::Eq => "==",
            Written::Ne => "!=",
            Written::Contains => "contains",
            Written::NotContains => "not contains",
            Written::In => "in",
            Written::NotIn => "not in",
            Written::Matches => "matches",
            Written::NotMatches => "not matches",
            Written::IsEmpty => "is empty",
            Written::IsNotEmpty => "is not empty",
        }
    }

    fn negated(self) -> bool {
        matches!(self, Written::Ne | Written::NotContains | Written::NotIn | Written::NotMatches | Written::IsNotEmpty)
    }
}

impl<'a> Parser<'a> {
    pub(super) fn new(src: &'a str, toks: Vec<Token>, schema: &'a Schema) -> Self {
        Parser { src, toks, at: 0, schema }
    }

    fn peek(&self) -> &Token {
        // The token list always ends with Eof and `at` never passes it.
        &self.toks[self.at.min(self.toks.len() - 1)]
    }

    fn peek_at(&self, n: usize) -> &Tok {
        &self.toks[(self.at + n).min(self.toks.len() - 1)].tok
    }

    fn bump(&mut self) -> Token {
        let t = self.peek().clone();
        if self.at < self.toks.len() - 1 {
            self.at += 1;
        }
        t
    }

    fn is_word(&self, n: usize, word: &str) -> bool {
        matches!(self.peek_at(n), Tok::Ident(w) if w == word)
    }

    fn err(&self, pos: usize, msg: impl Into<String>) -> FilterError {
        FilterError::syntax(self.src, pos, msg.into())
    }

    /// The whole input: one expression, then the end.
    pub(super) fn parse(mut self) -> Result<Expr, FilterError> {
        if matches!(self.peek().tok, Tok::Eof) {
            return Err(self.err(0, "empty expression"));
        }
        let e = self.or(0)?;
        let t = self.peek();
        match &t.tok {
            Tok::Eof => Ok(e),
            Tok::RParen => Err(self.err(t.pos, "unmatched \")\"")),
            other => Err(self.err(t.pos, format!("expected \"and\", \"or\" or the end, found {}", other.describe()))),
        }
    }

    fn or(&mut self, depth: usize) -> Result<Expr, FilterError> {
        let mut terms = vec![self.and(depth)?];
        while self.is_word(0, "or") {
            self.bump();
            terms.push(self.and(depth)?);
        }
        Ok(if terms.len() == 1 { terms.remove(0) } else { Expr::Any(terms) })
    }

    fn and(&mut self, depth: usize) -> Result<Expr, FilterError> {
        let mut terms = vec![self.unary(depth)?];
        while self.is_word(0, "and") {
            self.bump();
            terms.push(self.unary(depth)?);
        }
        Ok(if terms.len() == 1 { terms.remove(0) } else { Expr::All(terms) })
    }

    fn unary(&mut self, depth: usize) -> Result<Expr, FilterError> {
        let t = self.peek().clone();
        if depth >= MAX_DEPTH {
            return Err(self.err(t.pos, format!("expression nested more than {MAX_DEPTH} levels deep")));
        }
        if self.is_word(0, "not") {
            self.bump();
            return Ok(match self.unary(depth + 1)? {
                Expr::Not(inner) => *inner,
                e => Expr::Not(Box::new(e)),
            });
        }
        if t.tok == Tok::LParen {
            self.bump();
            let e = self.or(depth + 1)?;
            let close = self.peek().clone();
            if close.tok != Tok::RParen {
                return Err(self.err(
                    close.pos,
                    format!(
                        "expected \")\" to close the \"(\" at {}, found {}",
                        self.at_text(t.pos),
                        close.tok.describe()
                    ),
                ));
            }
            self.bump();
            return Ok(e);
        }
        self.matcher()
    }

    fn at_text(&self, pos: usize) -> String {
        let (line, col) = super::line_col(self.src, pos);
        format!("{line}:{col}")
    }

    /// `selector op value`, `selector is [not] empty` or `value [not] in selector`.
    fn matcher(&mut self) -> Result<Expr, FilterError> {
        let start = self.peek().pos;
        let left = self.operand()?;
        let op_tok = self.peek().clone();
        let written = match &op_tok.tok {
            Tok::Eq => Written::Eq,
            Tok::Ne => Written::Ne,
            Tok::Ident(w) => match w.as_str() {
                "contains" => Written::Contains,
                "matches" => Written::Matches,
                "in" => Written::In,
                "is" if self.is_word(1, "empty") => Written::IsEmpty,
                "is" if self.is_word(1, "not") && self.is_word(2, "empty") => Written::IsNotEmpty,
                "is" => return Err(self.err(op_tok.pos, "expected \"is empty\" or \"is not empty\"")),
                "not" if self.is_word(1, "contains") => Written::NotContains,
                "not" if self.is_word(1, "in") => Written::NotIn,
                "not" if self.is_word(1, "matches") => Written::NotMatches,
                _ => return Err(self.expected_operator(&left, &op_tok)),
            },
            _ => return Err(self.expected_operator(&left, &op_tok)),
        };
        let words = match written {
            Written::Eq | Written::Ne | Written::Contains | Written::Matches | Written::In => 1,
            Written::NotContains | Written::NotIn | Written::NotMatches | Written::IsEmpty => 2,
            Written::IsNotEmpty => 3,
        };
        for _ in 0..words {
            self.bump();
        }
        let (selector, value, value_pos) = match written {
            Written::In | Written::NotIn => {
                let sel_tok = self.peek().clone();
                let Operand::Selector(sel) = self.operand()? else {
                    return Err(self.err(
                        sel_tok.pos,
                        format!("expected a selector after \"{}\", found {}", written.text(), sel_tok.tok.describe()),
                    ));
                };
                (sel, Some(left.raw()), start)
            }
            _ => {
                let Operand::Selector(sel) = left else {
                    return Err(
                        self.err(start, format!("expected a selector before \"{}\", found a value", written.text()))
                    );
                };
                if matches!(written, Written::IsEmpty | Written::IsNotEmpty) {
                    (sel, None, start)
                } else {
                    let vt = self.peek().clone();
                    let raw = match &vt.tok {
                        Tok::Str(s) | Tok::Number(s) => {
                            self.bump();
                            s.clone()
                        }
                        Tok::Ident(_) => self.operand()?.raw(),
                        other => {
                            return Err(self.err(
                                vt.pos,
                                format!("expected a value after \"{}\", found {}", written.text(), other.describe()),
                            ))
                        }
                    };
                    (sel, Some(raw), vt.pos)
                }
            }
        };
        self.compile(selector, written, op_tok.pos, value, value_pos)
    }

    fn expected_operator(&self, left: &Operand, t: &Token) -> FilterError {
        self.err(
            t.pos,
            format!(
                "expected an operator (==, !=, contains, not contains, in, not in, matches, not matches, is empty, \
                 is not empty) after {:?}, found {}",
                left.raw(),
                t.tok.describe()
            ),
        )
    }

    /// A selector (`A.B["c"].d`) or a literal.
    fn operand(&mut self) -> Result<Operand, FilterError> {
        let t = self.bump();
        match t.tok {
            Tok::Str(s) | Tok::Number(s) => Ok(Operand::Value(s)),
            Tok::Ident(first) => {
                let mut parts = vec![(first, t.pos)];
                loop {
                    match self.peek().tok {
                        Tok::Dot => {
                            let dot = self.bump();
                            let seg = self.bump();
                            match seg.tok {
                                Tok::Ident(s) => parts.push((s, seg.pos)),
                                // `1.2` after a dot lexes as a number: a map key like `Meta.2`.
                                Tok::Number(n) if !n.starts_with('-') => parts.push((n, seg.pos)),
                                other => {
                                    return Err(self.err(
                                        dot.pos,
                                        format!("expected a field name after \".\", found {}", other.describe()),
                                    ))
                                }
                            }
                        }
                        Tok::LBracket => {
                            let open = self.bump();
                            let key = self.bump();
                            let Tok::Str(k) = key.tok else {
                                return Err(self.err(key.pos, "expected a quoted key inside \"[ ]\""));
                            };
                            let close = self.bump();
                            if close.tok != Tok::RBracket {
                                return Err(self.err(
                                    close.pos,
                                    format!("expected \"]\" to close the \"[\" at {}", self.at_text(open.pos)),
                                ));
                            }
                            parts.push((k, key.pos));
                        }
                        _ => break,
                    }
                }
                Ok(Operand::Selector(parts))
            }
            other => Err(self.err(t.pos, format!("expected a selector or a value, found {}", other.describe()))),
        }
    }

    /// Resolves the selector against the schema and checks that the operator and value suit
    /// the field it ends at.
    fn compile(
        &self,
        selector: Vec<(String, usize)>,
        written: Written,
        op_pos: usize,
        value: Option<String>,
        value_pos: usize,
    ) -> Result<Expr, FilterError> {
        let full = selector.iter().map(|(p, _)| p.as_str()).collect::<Vec<_>>().join(".");
        let mut steps = Vec::with_capacity(selector.len());
        let mut current = Field::Object(self.schema.fields);
        for (i, (seg, pos)) in selector.iter().enumerate() {
            let so_far = || selector[..i].iter().map(|(p, _)| p.as_str()).collect::<Vec<_>>().join(".");
            current = match current {
                Field::Object(fields) | Field::ObjectList(fields) => {
                    let Some((_, f)) = fields.iter().find(|(name, _)| name == seg) else {
                        return Err(FilterError::unknown_selector(self.src, *pos, &full, seg, fields));
                    };
                    if matches!(current, Field::ObjectList(_)) {
                        steps.push(Step::Each);
                    }
                    steps.push(Step::Field(seg.clone()));
                    *f
                }
                Field::Map(inner) => {
                    steps.push(Step::MapKey(seg.clone()));
                    *inner
                }
                other => {
                    return Err(
                        self.err(*pos, format!("{:?} is {} and has no field {seg:?}", so_far(), other.with_article()))
                    )
                }
            };
        }
        let (leaf, allowed): (Leaf, &[Written]) = match current {
            Field::String => (
                Leaf::String,
                &[
                    Written::Eq,
                    Written::Ne,
                    Written::Contains,
                    Written::NotContains,
                    Written::In,
                    Written::NotIn,
                    Written::Matches,
                    Written::NotMatches,
                    Written::IsEmpty,
                    Written::IsNotEmpty,
                ],
            ),
            Field::Int => (Leaf::Int, &[Written::Eq, Written::Ne]),
            Field::Bool => (Leaf::Bool, &[Written::Eq, Written::Ne]),
            Field::StringList | Field::Map(_) => (
                if current == Field::StringList { Leaf::List } else { Leaf::Map },
                &[
                    Written::Contains,
                    Written::NotContains,
                    Written::In,
                    Written::NotIn,
                    Written::IsEmpty,
                    Written::IsNotEmpty,
                ],
            ),
            Field::ObjectList(_) => (Leaf::List, &[Written::IsEmpty, Written::IsNotEmpty]),
            Field::Object(_) => (Leaf::Map, &[]),
        };
        if !allowed.contains(&written) {
            let hint = if allowed.is_empty() {
                "select one of its fields".to_string()
            } else {
                format!("use {}", allowed.iter().map(|w| w.text()).collect::<Vec<_>>().join(", "))
            };
            return Err(self.err(
                op_pos,
                format!(
                    "operator \"{}\" does not apply to {full:?} ({}): {hint}",
                    written.text(),
                    current.with_article()
                ),
            ));
        }
        let raw = value.unwrap_or_default();
        let op = match written {
            Written::IsEmpty | Written::IsNotEmpty => Op::Empty,
            Written::Matches | Written::NotMatches => {
                let re = regex::RegexBuilder::new(&raw).size_limit(REGEX_SIZE_LIMIT).build().map_err(|e| {
                    self.err(value_pos, format!("invalid regular expression {raw:?}: {}", one_line(&e.to_string())))
                })?;
                Op::Matches(re)
            }
            Written::Eq | Written::Ne => Op::Eq(self.literal(current, &raw, &full, value_pos)?),
            _ => Op::In(raw),
        };
        Ok(Expr::Match(Match { steps, leaf, op, negate: written.negated() }))
    }

    /// Reads the value the way the field's type needs it (bexpr coerces from the text too).
    fn literal(&self, field: Field, raw: &str, selector: &str, pos: usize) -> Result<Lit, FilterError> {
        match field {
            Field::Int => raw
                .parse::<i128>()
                .map(Lit::Int)
                .map_err(|_| self.err(pos, format!("{selector:?} is an integer, and {raw:?} is not one"))),
            Field::Bool => match raw {
                "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok(Lit::Bool(true)),
                "0" | "f" | "F" | "false" | "FALSE" | "False" => Ok(Lit::Bool(false)),
                _ => Err(self.err(pos, format!("{selector:?} is a boolean, and {raw:?} is not one"))),
            },
            _ => Ok(Lit::Str(raw.to_string())),
        }
    }
}

/// Regex errors span several lines; a 400 body reads better on one.
fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}
