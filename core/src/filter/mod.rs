//! `?filter=` expressions: Consul's boolean filter language (go-bexpr's grammar and
//! semantics) over the JSON items an endpoint answers with.
//!
//! ```text
//! Service.Meta.version == "2" and "primary" in Service.Tags
//! not (Checks.Status == critical or Node.Meta["rack"] matches "^r1[0-9]$")
//! ```
//!
//! A filter is compiled once per request against the endpoint's [`Schema`] — every selector is
//! checked then, every value read as its field's type, every regex compiled — and evaluated
//! per item without allocating. Semantics follow bexpr: `in`/`contains` mean substring on
//! strings, membership on lists and key presence on maps; a selector through a list of objects
//! (`Checks.Status`) matches when any element does; a missing map key equals nothing, contains
//! nothing and is empty.
//!
//! Limits: expressions of at most [`MAX_LEN`] bytes, nested at most [`parser::MAX_DEPTH`]
//! levels (parentheses and `not`s), so nothing a client sends can exhaust the stack.
//!
//! A leaf layer: it owns the language and the per-endpoint selector schemas ([`schema`]) and
//! calls only `error` (a refused expression becomes a 400); the HTTP handlers call it.

mod eval;
mod lexer;
pub mod parser;
mod project;
pub mod schema;

pub use project::{project, Projection};
pub use schema::{Field, Schema, ENDPOINTS};

/// Longest expression accepted, in bytes.
pub const MAX_LEN: usize = 64 * 1024;

/// Why an expression was refused. Every variant but [`FilterError::TooLong`] carries the
/// 1-based line and column it points at.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FilterError {
    /// Over [`MAX_LEN`].
    #[error("filter expression is {len} bytes long, more than the {max} allowed")]
    TooLong {
        /// The expression's length.
        len: usize,
        /// [`MAX_LEN`].
        max: usize,
    },
    /// Not in the grammar, or a value or operator that does not suit its selector.
    #[error("invalid filter expression at {line}:{col}: {msg}")]
    Syntax {
        /// Line (from 1).
        line: usize,
        /// Column, in characters (from 1).
        col: usize,
        /// What is wrong.
        msg: String,
    },
    /// A selector naming no field of the endpoint's items.
    #[error("unknown selector {selector:?} at {line}:{col}: {field:?} is not one of {valid}")]
    UnknownSelector {
        /// Line (from 1).
        line: usize,
        /// Column, in characters (from 1).
        col: usize,
        /// The whole selector.
        selector: String,
        /// The segment that names nothing.
        field: String,
        /// The closest valid names at that point (or all of them when none is close).
        valid: String,
    },
}

/// 1-based line and column (in characters) of byte offset `pos`.
pub(crate) fn line_col(src: &str, pos: usize) -> (usize, usize) {
    let before = src.get(..pos).unwrap_or(src);
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

impl FilterError {
    fn syntax(src: &str, pos: usize, msg: String) -> Self {
        let (line, col) = line_col(src, pos);
        FilterError::Syntax { line, col, msg }
    }

    fn unknown_selector(src: &str, pos: usize, selector: &str, field: &str, fields: &[(&str, Field)]) -> Self {
        let (line, col) = line_col(src, pos);
        let names: Vec<&str> = fields.iter().map(|(n, _)| *n).collect();
        let lower = field.to_ascii_lowercase();
        let mut close: Vec<&str> = names
            .iter()
            .copied()
            .filter(|n| {
                let n = n.to_ascii_lowercase();
                edit_distance(&n, &lower) <= 2 || (lower.len() >= 3 && (n.contains(&lower) || lower.contains(&n)))
            })
            .collect();
        if close.is_empty() {
            close = names;
        }
        let valid = close.iter().map(|n| format!("{n:?}")).collect::<Vec<_>>().join(", ");
        FilterError::UnknownSelector { line, col, selector: selector.to_string(), field: field.to_string(), valid }
    }
}

/// Levenshtein distance, for "did you mean" hints (names are short).
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

/// A compiled filter.
#[derive(Debug)]
pub struct Filter {
    expr: eval::Expr,
}

impl Filter {
    /// Compiles `expr` for items described by `schema`.
    pub fn compile(expr: &str, schema: &Schema) -> Result<Filter, FilterError> {
        if expr.len() > MAX_LEN {
            return Err(FilterError::TooLong { len: expr.len(), max: MAX_LEN });
        }
        let toks = lexer::tokenize(expr)?;
        Ok(Filter { expr: parser::Parser::new(expr, toks, schema).parse()? })
    }

    /// Whether `item` (one element of the endpoint's JSON answer) passes.
    pub fn matches(&self, item: &serde_json::Value) -> bool {
        self.expr.eval(item)
    }

    /// The fields this filter reads: [`matches`](Filter::matches) answers the same for an
    /// item's [`project`]ion as for the whole item.
    pub fn projection(&self) -> Projection {
        Projection::of(&self.expr)
    }
}

impl From<FilterError> for crate::Error {
    /// A 400 with Consul's prefix (Consul itself answers 500 for these).
    fn from(e: FilterError) -> Self {
        crate::Error::BadRequest(format!("Failed to create boolean expression evaluator: {e}"))
    }
}

/// The `?filter=` of a request compiled for `schema`; `None` when absent or empty.
pub fn from_query(expr: Option<&str>, schema: &Schema) -> Result<Option<Filter>, crate::Error> {
    match expr.map(str::trim).filter(|e| !e.is_empty()) {
        None => Ok(None),
        Some(e) => Ok(Some(Filter::compile(e, schema)?)),
    }
}

/// Keeps the items of a JSON list (or the values of a JSON map) that `filter` passes.
pub fn retain(value: &mut serde_json::Value, filter: Option<&Filter>) {
    let Some(f) = filter else { return };
    match value {
        serde_json::Value::Array(items) => items.retain(|i| f.matches(i)),
        serde_json::Value::Object(map) => map.retain(|_, v| f.matches(v)),
        _ => {}
    }
}

/// `docs/filter-selectors.md`: every endpoint and the selectors it accepts.
pub fn selectors_markdown() -> String {
    let mut out = String::from(
        "# `?filter=` selectors\n\n\
         Generated from `core/src/filter/schema.rs` by the `filter_docs_match_the_code` test \
         (`UPDATE_FILTER_DOCS=1 cargo test -p consul-core --lib filter_docs` rewrites it).\n\n\
         The grammar is Consul's (go-bexpr): `==`, `!=`, `in`, `not in`, `contains`, `not contains`, \
         `matches`, `not matches` (regular expressions), `is empty`, `is not empty`, `and`, `or`, `not` and \
         parentheses. Values are bare words, numbers, `\"quoted\"` or `` `raw` `` strings. Map values are \
         selected with `Meta.key` or `Meta[\"key\"]`; a selector through a list of objects \
         (`Checks.Status`) matches when any element does. A malformed expression or unknown selector \
         is a 400 naming the line and column.\n\n\
         | operator | string | integer, boolean | list of strings | map | list of objects |\n\
         |---|---|---|---|---|---|\n\
         | `==`, `!=` | yes | yes | | | |\n\
         | `contains`, `not contains`, `in`, `not in` | substring | | element | key | |\n\
         | `matches`, `not matches` | yes | | | | |\n\
         | `is empty`, `is not empty` | yes | | yes | yes | yes |\n\n",
    );
    out.push_str("## Endpoints\n\n| endpoint | items |\n|---|---|\n");
    for (endpoint, schema) in ENDPOINTS {
        out.push_str(&format!("| `{endpoint}` | [{0}](#{1}) |\n", schema.name, schema.name.to_ascii_lowercase()));
    }
    let mut seen: Vec<&str> = Vec::new();
    for (_, schema) in ENDPOINTS {
        if seen.contains(&schema.name) {
            continue;
        }
        seen.push(schema.name);
        out.push_str(&format!("\n## {}\n\n| selector | type |\n|---|---|\n", schema.name));
        for (sel, field) in schema.selectors() {
            out.push_str(&format!("| `{sel}` | {} |\n", field.describe()));
        }
    }
    out
}

#[cfg(test)]
mod tests;
