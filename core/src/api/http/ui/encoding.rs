//! Content negotiation for the console's files: which encoding to send (`Accept-Encoding` with
//! its q-values) and whether the client's copy is current (`If-None-Match`).

/// A content coding the console's files can be sent in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Encoding {
    Brotli,
    Gzip,
    Identity,
}

impl Encoding {
    /// The `Content-Encoding` value (`None` for identity).
    pub(crate) fn header(self) -> Option<&'static str> {
        match self {
            Encoding::Brotli => Some("br"),
            Encoding::Gzip => Some("gzip"),
            Encoding::Identity => None,
        }
    }

    /// The suffix that keeps the ETags of different encodings of one file apart.
    pub(crate) fn etag_suffix(self) -> &'static str {
        match self {
            Encoding::Brotli => "-br",
            Encoding::Gzip => "-gz",
            Encoding::Identity => "",
        }
    }

    fn token(self) -> &'static str {
        match self {
            Encoding::Brotli => "br",
            Encoding::Gzip => "gzip",
            Encoding::Identity => "identity",
        }
    }
}

/// The q-value `accept` (an `Accept-Encoding` value) gives `coding`: its own entry, else `*`'s,
/// else 0 for the compressions and, for identity, the lowest preference above refusal: it is
/// always acceptable unless refused, but a compression the client lists wins over it.
fn quality(accept: &str, coding: Encoding) -> f32 {
    let mut own = None;
    let mut star = None;
    for item in accept.split(',') {
        let mut parts = item.split(';');
        let name = parts.next().unwrap_or_default().trim();
        if name.is_empty() {
            continue;
        }
        let mut q = 1.0f32;
        for param in parts {
            if let Some((k, v)) = param.split_once('=') {
                if k.trim().eq_ignore_ascii_case("q") {
                    q = v.trim().parse::<f32>().ok().filter(|q| (0.0..=1.0).contains(q)).unwrap_or(0.0);
                }
            }
        }
        if name.eq_ignore_ascii_case(coding.token())
            || (coding == Encoding::Gzip && name.eq_ignore_ascii_case("x-gzip"))
        {
            own = Some(q);
        } else if name == "*" {
            star = Some(q);
        }
    }
    own.or(star).unwrap_or(if coding == Encoding::Identity { 0.001 } else { 0.0 })
}

/// The encoding to send, among those `available` (in order of preference on equal q), for the
/// request's `Accept-Encoding` (`None`: the header was absent, which means identity). When the
/// client refuses everything, identity is sent anyway, as most servers do, rather than a 406.
pub(crate) fn negotiate(accept: Option<&str>, available: &[Encoding]) -> Encoding {
    let Some(accept) = accept else {
        return Encoding::Identity;
    };
    let mut best: Option<(f32, Encoding)> = None;
    for &coding in available.iter().chain(std::iter::once(&Encoding::Identity)) {
        let q = quality(accept, coding);
        if q > 0.0 && best.is_none_or(|(bq, _)| q > bq) {
            best = Some((q, coding));
        }
    }
    best.map_or(Encoding::Identity, |(_, c)| c)
}

/// Whether an `If-None-Match` value names `etag` (quoted, as sent) or is `*`. Weak tags match
/// too: a conditional GET uses weak comparison.
pub(crate) fn none_match(if_none_match: Option<&str>, etag: &str) -> bool {
    let Some(list) = if_none_match else {
        return false;
    };
    list.split(',').map(str::trim).any(|tag| tag == "*" || tag.trim_start_matches("W/") == etag)
}

#[cfg(test)]
mod tests {
    use super::*;
    use Encoding::*;

    const ALL: &[Encoding] = &[Brotli, Gzip];

    #[test]
    fn brotli_is_preferred_then_gzip_then_identity() {
        assert_eq!(negotiate(Some("gzip, deflate, br"), ALL), Brotli);
        assert_eq!(negotiate(Some("gzip, deflate, br, zstd"), &[Gzip]), Gzip);
        assert_eq!(negotiate(Some("gzip"), ALL), Gzip);
        assert_eq!(negotiate(Some("x-gzip"), ALL), Gzip);
        assert_eq!(negotiate(Some("deflate"), ALL), Identity);
        assert_eq!(negotiate(None, ALL), Identity);
        assert_eq!(negotiate(Some(""), ALL), Identity);
        assert_eq!(negotiate(Some("br"), &[]), Identity);
    }

    #[test]
    fn q_values_are_honoured() {
        assert_eq!(negotiate(Some("br;q=0.5, gzip;q=0.8"), ALL), Gzip);
        assert_eq!(negotiate(Some("br;q=0, gzip"), ALL), Gzip);
        assert_eq!(negotiate(Some("br;q=0, gzip;q=0"), ALL), Identity);
        assert_eq!(negotiate(Some("*"), ALL), Brotli);
        assert_eq!(negotiate(Some("*;q=0.1, identity;q=0.5"), ALL), Identity);
        assert_eq!(negotiate(Some("gzip;q=0.2, identity;q=0.1"), ALL), Gzip);
        assert_eq!(negotiate(Some("BR;Q=1"), ALL), Brotli);
        // A malformed q counts as a refusal, not as 1.
        assert_eq!(negotiate(Some("br;q=abc, gzip"), ALL), Gzip);
        // Everything refused: identity anyway.
        assert_eq!(negotiate(Some("identity;q=0, *;q=0"), ALL), Identity);
    }

    #[test]
    fn if_none_match_compares_weakly() {
        assert!(none_match(Some("\"abc\""), "\"abc\""));
        assert!(none_match(Some("W/\"abc\""), "\"abc\""));
        assert!(none_match(Some("\"x\", \"abc\""), "\"abc\""));
        assert!(none_match(Some("*"), "\"abc\""));
        assert!(!none_match(Some("\"abc-br\""), "\"abc\""));
        assert!(!none_match(None, "\"abc\""));
    }
}
