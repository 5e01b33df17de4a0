//! Evaluation of a compiled filter against the JSON an endpoint is about to answer with.
//! Walks the value by reference: matching an item allocates nothing.

use regex::Regex;
use serde_json::Value;

/// A compiled expression.
#[derive(Debug)]
pub(super) enum Expr {
    /// Every term matches (`a and b and c`).
    All(Vec<Expr>),
    /// Some term matches (`a or b or c`).
    Any(Vec<Expr>),
    /// `not e`.
    Not(Box<Expr>),
    /// One comparison.
    Match(Match),
}

/// One step from a JSON value to a part of it.
#[derive(Debug)]
pub(super) enum Step {
    /// An object's field (always present in the endpoint's JSON; `null` if not).
    Field(String),
    /// A map's key, which may be missing (then the comparison answers by its kind, see
    /// [`Match::missing`]).
    MapKey(String),
    /// Into every element of a list of objects: the rest matches if it matches for any one.
    Each,
}

/// What the selector ends at (the schema type, reduced to what evaluation needs).
#[derive(Debug, Clone, Copy)]
pub(super) enum Leaf {
    String,
    Int,
    Bool,
    /// A list (`in`/`contains` test membership).
    List,
    /// A map (`in`/`contains` test for a key).
    Map,
}

/// A literal read for the field's type at compile time.
#[derive(Debug)]
pub(super) enum Lit {
    Str(String),
    Int(i128),
    Bool(bool),
}

/// The operation, before negation.
#[derive(Debug)]
pub(super) enum Op {
    Eq(Lit),
    /// Substring for strings, element for lists, key for maps.
    In(String),
    Empty,
    Matches(Regex),
}

/// `selector op value`, compiled.
#[derive(Debug)]
pub(super) struct Match {
    pub(super) steps: Vec<Step>,
    pub(super) leaf: Leaf,
    pub(super) op: Op,
    /// `!=`, `not in`, `not contains`, `not matches`, `is not empty`.
    pub(super) negate: bool,
}

impl Expr {
    pub(super) fn eval(&self, v: &Value) -> bool {
        match self {
            Expr::All(terms) => terms.iter().all(|t| t.eval(v)),
            Expr::Any(terms) => terms.iter().any(|t| t.eval(v)),
            Expr::Not(e) => !e.eval(v),
            Expr::Match(m) => m.eval(v, &m.steps),
        }
    }
}

impl Match {
    /// The answer when a map key on the path is missing: nothing equals, contains or matches
    /// it, and it is empty — so the negated forms (and `is empty`) hold.
    fn missing(&self) -> bool {
        match self.op {
            Op::Empty => !self.negate,
            _ => self.negate,
        }
    }

    fn eval(&self, v: &Value, steps: &[Step]) -> bool {
        let Some((step, rest)) = steps.split_first() else {
            return self.leaf(v) != self.negate;
        };
        match step {
            Step::Field(name) => self.eval(v.get(name.as_str()).unwrap_or(&Value::Null), rest),
            Step::MapKey(key) => match v.get(key.as_str()) {
                Some(child) => self.eval(child, rest),
                None => self.missing(),
            },
            Step::Each => match v {
                Value::Array(items) => items.iter().any(|item| self.eval(item, rest)),
                _ => false,
            },
        }
    }

    /// The operation itself, not negated. `null` reads as the field's empty value.
    fn leaf(&self, v: &Value) -> bool {
        match &self.op {
            Op::Empty => match v {
                Value::Null => true,
                Value::String(s) => s.is_empty(),
                Value::Array(a) => a.is_empty(),
                Value::Object(o) => o.is_empty(),
                _ => false,
            },
            Op::Eq(Lit::Str(s)) => match v {
                Value::String(x) => x == s,
                Value::Null => s.is_empty(),
                _ => false,
            },
            Op::Eq(Lit::Int(n)) => match v {
                Value::Number(x) => {
                    x.as_i64().map(i128::from).or_else(|| x.as_u64().map(i128::from)).is_some_and(|x| x == *n)
                }
                Value::Null => *n == 0,
                _ => false,
            },
            Op::Eq(Lit::Bool(b)) => match v {
                Value::Bool(x) => x == b,
                Value::Null => !*b,
                _ => false,
            },
            Op::In(needle) => match (self.leaf, v) {
                (Leaf::String, Value::String(s)) => s.contains(needle.as_str()),
                (Leaf::String, Value::Null) => needle.is_empty(),
                (Leaf::List, Value::Array(items)) => items.iter().any(|i| i.as_str() == Some(needle.as_str())),
                (Leaf::Map, Value::Object(o)) => o.contains_key(needle.as_str()),
                _ => false,
            },
            Op::Matches(re) => match v {
                Value::String(s) => re.is_match(s),
                Value::Null => re.is_match(""),
                _ => false,
            },
        }
    }
}
