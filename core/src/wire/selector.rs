//! Binding-rule selectors: the subset of go-bexpr that Consul's auth methods use, over the
//! variables a login produced (`value.<name>` strings and `list.<name>` lists).
//!
//! ```text
//! expr    := and ("or" and)*
//! and     := unary ("and" unary)*
//! unary   := "not" unary | "(" expr ")" | match
//! match   := sel ("==" | "!=") lit | lit ["not"] "in" sel | sel ["not"] "contains" lit
//!          | sel "is" ["not"] "empty"
//! sel     := ("value" | "list") "." name | field
//! field   := word ("." word)+          (a method's own fields: `serviceaccount.name`)
//! lit     := "double quoted" | `backquoted` | bare word
//! ```
//! `in`/`contains` test membership on a list and substring on a string; a variable the login
//! did not produce is the empty string or list.

use std::collections::BTreeMap;

/// The variables a login produced.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Vars {
    /// `value.<name>`.
    pub values: BTreeMap<String, String>,
    /// `list.<name>`.
    pub lists: BTreeMap<String, Vec<String>>,
    /// Fields an auth method type defines itself, by their whole dotted path (the
    /// `kubernetes` method's `serviceaccount.name`); names here always hold a dot, so they
    /// never collide with `value.<name>`.
    pub fields: BTreeMap<String, String>,
}

/// A selector variable.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Sel {
    Value(String),
    List(String),
    Field(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Expr {
    Or(Box<Expr>, Box<Expr>),
    And(Box<Expr>, Box<Expr>),
    Not(Box<Expr>),
    Eq(Sel, String, bool),
    In(Sel, String, bool),
    Empty(Sel, bool),
}

/// A parsed selector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selector(Option<Expr>);

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    Word(String),
    Lit(String),
    Op(&'static str),
    Open,
    Close,
}

fn lex(s: &str) -> Result<Vec<Tok>, String> {
    let mut out = Vec::new();
    let chars: Vec<char> = s.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            c if c.is_whitespace() => i += 1,
            '(' => {
                out.push(Tok::Open);
                i += 1;
            }
            ')' => {
                out.push(Tok::Close);
                i += 1;
            }
            '=' | '!' => {
                if chars.get(i + 1) != Some(&'=') {
                    return Err(format!("unexpected {c:?} at offset {i}"));
                }
                out.push(Tok::Op(if c == '=' { "==" } else { "!=" }));
                i += 2;
            }
            '"' | '`' => {
                let quote = c;
                let mut lit = String::new();
                i += 1;
                loop {
                    match chars.get(i) {
                        None => return Err("unterminated string".into()),
                        Some('\\') if quote == '"' => {
                            if let Some(n) = chars.get(i + 1) {
                                lit.push(*n);
                            }
                            i += 2;
                        }
                        Some(ch) if *ch == quote => {
                            i += 1;
                            break;
                        }
                        Some(ch) => {
                            lit.push(*ch);
                            i += 1;
                        }
                    }
                }
                out.push(Tok::Lit(lit));
            }
            _ => {
                let start = i;
                while i < chars.len() && !chars[i].is_whitespace() && !matches!(chars[i], '(' | ')' | '=' | '!' | '"') {
                    i += 1;
                }
                out.push(Tok::Word(chars[start..i].iter().collect()));
            }
        }
    }
    Ok(out)
}

struct Parser {
    toks: Vec<Tok>,
    pos: usize,
}

impl Parser {
    fn peek_word(&self, w: &str) -> bool {
        matches!(self.toks.get(self.pos), Some(Tok::Word(x)) if x == w)
    }

    fn next(&mut self) -> Option<Tok> {
        let t = self.toks.get(self.pos).cloned();
        self.pos += 1;
        t
    }

    fn expr(&mut self, depth: usize) -> Result<Expr, String> {
        if depth > 64 {
            return Err("selector nested too deeply".into());
        }
        let mut left = self.and(depth)?;
        while self.peek_word("or") {
            self.pos += 1;
            left = Expr::Or(Box::new(left), Box::new(self.and(depth)?));
        }
        Ok(left)
    }

    fn and(&mut self, depth: usize) -> Result<Expr, String> {
        let mut left = self.unary(depth)?;
        while self.peek_word("and") {
            self.pos += 1;
            left = Expr::And(Box::new(left), Box::new(self.unary(depth)?));
        }
        Ok(left)
    }

    fn unary(&mut self, depth: usize) -> Result<Expr, String> {
        if self.peek_word("not") {
            self.pos += 1;
            return Ok(Expr::Not(Box::new(self.unary(depth + 1)?)));
        }
        if self.toks.get(self.pos) == Some(&Tok::Open) {
            self.pos += 1;
            let e = self.expr(depth + 1)?;
            return match self.next() {
                Some(Tok::Close) => Ok(e),
                _ => Err("missing closing parenthesis".into()),
            };
        }
        self.matcher()
    }

    fn literal(&mut self) -> Result<String, String> {
        match self.next() {
            Some(Tok::Lit(s)) | Some(Tok::Word(s)) => Ok(s),
            other => Err(format!("expected a value, found {other:?}")),
        }
    }

    fn selector(&mut self) -> Result<Sel, String> {
        match self.next() {
            Some(Tok::Word(w)) => parse_sel(&w),
            other => Err(format!("expected a selector, found {other:?}")),
        }
    }

    fn matcher(&mut self) -> Result<Expr, String> {
        // `lit [not] in sel` starts with a literal; everything else with a selector.
        let first = self.next().ok_or("unexpected end of selector")?;
        let negated_in =
            self.peek_word("not") && matches!(self.toks.get(self.pos + 1), Some(Tok::Word(w)) if w == "in");
        if negated_in || self.peek_word("in") {
            let lit = match first {
                Tok::Lit(s) | Tok::Word(s) => s,
                other => return Err(format!("expected a value, found {other:?}")),
            };
            self.pos += if negated_in { 2 } else { 1 };
            let sel = self.selector()?;
            return Ok(Expr::In(sel, lit, negated_in));
        }
        let sel = match first {
            Tok::Word(w) => parse_sel(&w)?,
            other => return Err(format!("expected a selector, found {other:?}")),
        };
        match self.next() {
            Some(Tok::Op("==")) => Ok(Expr::Eq(sel, self.literal()?, false)),
            Some(Tok::Op("!=")) => Ok(Expr::Eq(sel, self.literal()?, true)),
            Some(Tok::Word(w)) if w == "contains" => Ok(Expr::In(sel, self.literal()?, false)),
            Some(Tok::Word(w)) if w == "not" => match self.next() {
                Some(Tok::Word(w)) if w == "contains" => Ok(Expr::In(sel, self.literal()?, true)),
                other => Err(format!("expected contains after not, found {other:?}")),
            },
            Some(Tok::Word(w)) if w == "is" => {
                let negated = self.peek_word("not");
                if negated {
                    self.pos += 1;
                }
                match self.next() {
                    Some(Tok::Word(w)) if w == "empty" => Ok(Expr::Empty(sel, negated)),
                    other => Err(format!("expected empty, found {other:?}")),
                }
            }
            other => Err(format!("expected an operator, found {other:?}")),
        }
    }
}

fn parse_sel(w: &str) -> Result<Sel, String> {
    let bad = || format!("invalid selector {w:?}: use value.<name>, list.<name> or a field of the auth method");
    let (kind, name) = w.split_once('.').ok_or_else(bad)?;
    match kind {
        "value" | "list" if name.is_empty() || name.contains('.') => Err(bad()),
        "value" => Ok(Sel::Value(name.to_string())),
        "list" => Ok(Sel::List(name.to_string())),
        _ if w
            .split('.')
            .all(|part| !part.is_empty() && part.chars().all(|c| c.is_alphanumeric() || c == '_' || c == '-')) =>
        {
            Ok(Sel::Field(w.to_string()))
        }
        _ => Err(bad()),
    }
}

impl Selector {
    /// Parses a selector; the empty selector matches everything.
    pub fn parse(s: &str) -> Result<Selector, String> {
        if s.trim().is_empty() {
            return Ok(Selector(None));
        }
        let mut p = Parser { toks: lex(s)?, pos: 0 };
        let e = p.expr(0)?;
        if p.pos < p.toks.len() {
            return Err(format!("unexpected {:?} after the expression", p.toks[p.pos]));
        }
        Ok(Selector(Some(e)))
    }

    /// Whether `vars` satisfy the selector.
    pub fn matches(&self, vars: &Vars) -> bool {
        self.0.as_ref().is_none_or(|e| eval(e, vars))
    }

    /// The method fields (dotted paths other than `value.*`/`list.*`) the selector names, so a
    /// binding rule can be refused when its method has no such field.
    pub fn fields(&self) -> Vec<&str> {
        fn walk<'a>(e: &'a Expr, out: &mut Vec<&'a str>) {
            match e {
                Expr::Or(a, b) | Expr::And(a, b) => {
                    walk(a, out);
                    walk(b, out);
                }
                Expr::Not(a) => walk(a, out),
                Expr::Eq(sel, ..) | Expr::In(sel, ..) | Expr::Empty(sel, _) => {
                    if let Sel::Field(f) = sel {
                        out.push(f);
                    }
                }
            }
        }
        let mut out = Vec::new();
        if let Some(e) = &self.0 {
            walk(e, &mut out);
        }
        out
    }
}

fn eval(e: &Expr, vars: &Vars) -> bool {
    let empty = Vec::new();
    match e {
        Expr::Or(a, b) => eval(a, vars) || eval(b, vars),
        Expr::And(a, b) => eval(a, vars) && eval(b, vars),
        Expr::Not(a) => !eval(a, vars),
        Expr::Eq(sel, lit, neg) => {
            let hit = match sel {
                Sel::Value(n) => vars.values.get(n).map_or("", String::as_str) == lit,
                Sel::Field(n) => vars.fields.get(n).map_or("", String::as_str) == lit,
                Sel::List(n) => {
                    let l = vars.lists.get(n).unwrap_or(&empty);
                    l.len() == 1 && &l[0] == lit
                }
            };
            hit != *neg
        }
        Expr::In(sel, lit, neg) => {
            let hit = match sel {
                Sel::Value(n) => vars.values.get(n).is_some_and(|v| v.contains(lit.as_str())),
                Sel::Field(n) => vars.fields.get(n).is_some_and(|v| v.contains(lit.as_str())),
                Sel::List(n) => vars.lists.get(n).unwrap_or(&empty).iter().any(|x| x == lit),
            };
            hit != *neg
        }
        Expr::Empty(sel, neg) => {
            let is_empty = match sel {
                Sel::Value(n) => vars.values.get(n).is_none_or(String::is_empty),
                Sel::Field(n) => vars.fields.get(n).is_none_or(String::is_empty),
                Sel::List(n) => vars.lists.get(n).is_none_or(Vec::is_empty),
            };
            is_empty != *neg
        }
    }
}

/// Replaces `${value.name}` (or `${list.name}`, which must hold one item) in `template`; an
/// unknown variable is an error naming it.
pub fn interpolate(template: &str, vars: &Vars) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = template;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after.find('}').ok_or_else(|| format!("unterminated ${{ in {template:?}"))?;
        let name = after[..end].trim();
        let value = match parse_sel(name)? {
            Sel::Value(n) => vars.values.get(&n).cloned(),
            Sel::Field(n) => vars.fields.get(&n).cloned(),
            Sel::List(n) => vars.lists.get(&n).filter(|l| l.len() == 1).map(|l| l[0].clone()),
        };
        out.push_str(&value.ok_or_else(|| format!("unknown variable {name:?}"))?);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars() -> Vars {
        let mut v = Vars::default();
        v.values.insert("name".into(), "web".into());
        v.values.insert("team".into(), "platform-eng".into());
        v.lists.insert("groups".into(), vec!["admins".into(), "dev".into()]);
        v
    }

    fn m(s: &str) -> bool {
        Selector::parse(s).unwrap_or_else(|e| panic!("{s}: {e}")).matches(&vars())
    }

    #[test]
    fn operators() {
        assert!(m(""));
        assert!(m("value.name == web") && m(r#"value.name == "web""#) && m("value.name == `web`"));
        assert!(!m(r#"value.name != "web""#) && m(r#"value.name != "db""#));
        assert!(m(r#""admins" in list.groups"#) && !m(r#""ops" in list.groups"#));
        assert!(m(r#""ops" not in list.groups"#));
        assert!(m(r#"list.groups contains "dev""#) && m(r#"list.groups not contains "ops""#));
        assert!(m(r#"value.team contains "eng""#));
        assert!(m("value.missing is empty") && m("list.groups is not empty"));
        assert!(m(r#"value.missing == """#));
    }

    #[test]
    fn boolean_logic_and_precedence() {
        assert!(m(r#"value.name == "db" or value.name == "web" and "dev" in list.groups"#));
        assert!(!m(r#"(value.name == "db" or value.name == "web") and "ops" in list.groups"#));
        assert!(m(r#"not value.name == "db""#) && !m(r#"not (value.name == "web")"#));
    }

    #[test]
    fn refuses_bad_input() {
        for s in [
            "value.name ==",
            "name == x",
            "value.name = x",
            "(value.name == x",
            "value.name == x y",
            "\"x",
            "foo. == 1",
            "value. == x",
            "value.a.b == x",
        ] {
            assert!(Selector::parse(s).is_err(), "{s}");
        }
        let deep = "(".repeat(500) + "value.a == b" + &")".repeat(500);
        assert!(Selector::parse(&deep).is_err());
    }

    #[test]
    fn method_fields() {
        let mut v = vars();
        v.fields.insert("serviceaccount.name".into(), "web".into());
        v.fields.insert("serviceaccount.namespace".into(), "default".into());
        let s = Selector::parse("serviceaccount.namespace==default and serviceaccount.name != db").expect("parse");
        assert!(s.matches(&v));
        assert_eq!(s.fields(), ["serviceaccount.namespace", "serviceaccount.name"]);
        assert!(!Selector::parse("serviceaccount.namespace == kube-system").expect("parse").matches(&v));
        assert!(Selector::parse("serviceaccount.uid is empty").expect("parse").matches(&v));
        assert_eq!(interpolate("${serviceaccount.name}-sidecar", &v), Ok("web-sidecar".into()));
        assert!(interpolate("${serviceaccount.uid}", &v).is_err());
        assert!(Selector::parse("value.name == web").expect("parse").fields().is_empty());
    }

    #[test]
    fn interpolates() {
        assert_eq!(interpolate("svc-${value.name}", &vars()), Ok("svc-web".into()));
        assert!(interpolate("${value.nope}", &vars()).is_err());
        assert!(interpolate("${list.groups}", &vars()).is_err());
        assert_eq!(interpolate("plain", &vars()), Ok("plain".into()));
    }
}
