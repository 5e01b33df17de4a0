//! Tokens of a filter expression, each with the byte offset it starts at so errors can point
//! at it.

use super::FilterError;

/// What a token is.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Tok {
    /// A bare word: a selector segment, a keyword (`and`, `in`, …) or an unquoted value.
    Ident(String),
    /// A quoted (`"…"`, escapes decoded) or backtick (`` `…` ``, raw) string.
    Str(String),
    /// A number literal, kept as written: its meaning depends on the selector's type.
    Number(String),
    /// `==`.
    Eq,
    /// `!=`.
    Ne,
    /// `(`.
    LParen,
    /// `)`.
    RParen,
    /// `.`.
    Dot,
    /// `[`.
    LBracket,
    /// `]`.
    RBracket,
    /// The end of the input.
    Eof,
}

impl Tok {
    /// How the token reads in an error message.
    pub(super) fn describe(&self) -> String {
        match self {
            Tok::Ident(s) => format!("{s:?}"),
            Tok::Str(s) => format!("string {s:?}"),
            Tok::Number(n) => format!("number {n}"),
            Tok::Eq => "\"==\"".into(),
            Tok::Ne => "\"!=\"".into(),
            Tok::LParen => "\"(\"".into(),
            Tok::RParen => "\")\"".into(),
            Tok::Dot => "\".\"".into(),
            Tok::LBracket => "\"[\"".into(),
            Tok::RBracket => "\"]\"".into(),
            Tok::Eof => "the end of the expression".into(),
        }
    }
}

/// A token and the byte offset where it starts.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Token {
    pub(super) tok: Tok,
    pub(super) pos: usize,
}

fn is_ident_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_'
}

/// `-` is allowed inside a word so that map keys such as `Meta.consul-version` and bare values
/// such as `web-1` read naturally; nothing in the grammar subtracts.
fn is_ident_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '-'
}

/// Splits `src` into tokens; the last one is always [`Tok::Eof`].
pub(super) fn tokenize(src: &str) -> Result<Vec<Token>, FilterError> {
    let mut out = Vec::new();
    let mut chars = src.char_indices().peekable();
    while let Some(&(pos, c)) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
            continue;
        }
        let single = match c {
            '(' => Some(Tok::LParen),
            ')' => Some(Tok::RParen),
            '.' => Some(Tok::Dot),
            '[' => Some(Tok::LBracket),
            ']' => Some(Tok::RBracket),
            _ => None,
        };
        if let Some(tok) = single {
            chars.next();
            out.push(Token { tok, pos });
            continue;
        }
        match c {
            '=' | '!' => {
                chars.next();
                if chars.next_if(|&(_, n)| n == '=').is_none() {
                    return Err(FilterError::syntax(src, pos, format!("expected \"{c}=\"")));
                }
                out.push(Token { tok: if c == '=' { Tok::Eq } else { Tok::Ne }, pos });
            }
            '"' | '`' => {
                chars.next();
                let mut s = String::new();
                let mut closed = false;
                while let Some((at, ch)) = chars.next() {
                    if ch == c {
                        closed = true;
                        break;
                    }
                    if ch == '\\' && c == '"' {
                        s.push(unescape(src, at, &mut chars)?);
                    } else {
                        s.push(ch);
                    }
                }
                if !closed {
                    return Err(FilterError::syntax(src, pos, "unterminated string literal".into()));
                }
                out.push(Token { tok: Tok::Str(s), pos });
            }
            '-' | '0'..='9' => {
                let mut end = pos;
                while let Some(&(at, ch)) = chars.peek() {
                    if ch.is_ascii_alphanumeric() || matches!(ch, '.' | '-' | '_') {
                        end = at + ch.len_utf8();
                        chars.next();
                    } else {
                        break;
                    }
                }
                let text = &src[pos..end];
                if !valid_number(text) {
                    return Err(FilterError::syntax(src, pos, format!("invalid number literal {text:?}")));
                }
                out.push(Token { tok: Tok::Number(text.to_string()), pos });
            }
            c if is_ident_start(c) => {
                let mut end = pos;
                while let Some(&(at, ch)) = chars.peek() {
                    if is_ident_char(ch) {
                        end = at + ch.len_utf8();
                        chars.next();
                    } else {
                        break;
                    }
                }
                out.push(Token { tok: Tok::Ident(src[pos..end].to_string()), pos });
            }
            other => {
                return Err(FilterError::syntax(src, pos, format!("unexpected character {other:?}")));
            }
        }
    }
    out.push(Token { tok: Tok::Eof, pos: src.len() });
    Ok(out)
}

/// `-?(0|[1-9][0-9]*)(\.[0-9]+)?`.
fn valid_number(text: &str) -> bool {
    let t = text.strip_prefix('-').unwrap_or(text);
    let (int, frac) = match t.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (t, None),
    };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    digits(int) && (int == "0" || !int.starts_with('0')) && frac.is_none_or(digits)
}

/// Decodes the escape after a `\` in a double-quoted string (`\"`, `\\`, `\n`, `\t`, `\r`,
/// `\uXXXX`).
fn unescape(
    src: &str,
    at: usize,
    chars: &mut std::iter::Peekable<std::str::CharIndices<'_>>,
) -> Result<char, FilterError> {
    let bad = || FilterError::syntax(src, at, "invalid escape sequence in string".into());
    match chars.next().map(|(_, c)| c) {
        Some('"') => Ok('"'),
        Some('\\') => Ok('\\'),
        Some('/') => Ok('/'),
        Some('n') => Ok('\n'),
        Some('t') => Ok('\t'),
        Some('r') => Ok('\r'),
        Some('u') => {
            let mut code = 0u32;
            for _ in 0..4 {
                let d = chars.next().and_then(|(_, c)| c.to_digit(16)).ok_or_else(bad)?;
                code = code * 16 + d;
            }
            char::from_u32(code).ok_or_else(bad)
        }
        _ => Err(bad()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toks(s: &str) -> Vec<Tok> {
        tokenize(s).expect("tokenize").into_iter().map(|t| t.tok).collect()
    }

    #[test]
    fn words_strings_numbers_and_punctuation() {
        assert_eq!(
            toks(r#"Node.Meta["rack"] == `a\b` and Port != -12.5"#),
            vec![
                Tok::Ident("Node".into()),
                Tok::Dot,
                Tok::Ident("Meta".into()),
                Tok::LBracket,
                Tok::Str("rack".into()),
                Tok::RBracket,
                Tok::Eq,
                Tok::Str("a\\b".into()),
                Tok::Ident("and".into()),
                Tok::Ident("Port".into()),
                Tok::Ne,
                Tok::Number("-12.5".into()),
                Tok::Eof,
            ]
        );
        assert_eq!(toks(r#""a\"b\u00e9\n""#)[0], Tok::Str("a\"b\u{e9}\n".into()));
    }

    #[test]
    fn positions_are_byte_offsets() {
        let t = tokenize("  (Name == x)").expect("tokenize");
        let pos: Vec<usize> = t.iter().map(|t| t.pos).collect();
        assert_eq!(pos, vec![2, 3, 8, 11, 12, 13]);
    }

    #[test]
    fn errors_point_at_the_bad_token() {
        let e = |s: &str| tokenize(s).expect_err(s).to_string();
        assert!(e("Name = x").contains("1:6"), "{}", e("Name = x"));
        assert!(e("Name == \"abc").contains("unterminated string"));
        assert!(e("Port == 01").contains("invalid number"));
        assert!(e("Port == 1.2.3").contains("invalid number"));
        assert!(e("Name == \"\\q\"").contains("escape"));
        assert!(e("Name == x &").contains("unexpected character"));
        assert!(e("a\n  b ~").contains("2:5"), "{}", e("a\n  b ~"));
    }
}
