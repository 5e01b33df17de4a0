//! Reverse-lookup names (`<reversed-ip>.in-addr.arpa.` and nibble-format `ip6.arpa.`, RFC 1035
//! §3.5 and RFC 3596 §2.5), parsed strictly: anything that is not exactly one address is `None`,
//! so a malformed name becomes NXDOMAIN rather than a guess.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Whether `qname` (any case, with or without the trailing dot) is under `in-addr.arpa` or
/// `ip6.arpa`: such names are ours to answer even though they are outside our domains.
pub(crate) fn is_reverse_name(qname: &str) -> bool {
    let name = qname.trim_end_matches('.').to_ascii_lowercase();
    name == "in-addr.arpa" || name == "ip6.arpa" || name.ends_with(".in-addr.arpa") || name.ends_with(".ip6.arpa")
}

/// The address a reverse name stands for, or `None` when the name is not a complete, well-formed
/// reverse name (wrong label count, non-digit or out-of-range octets, leading zeros, labels that
/// are not single hex nibbles).
pub(crate) fn parse_reverse_name(qname: &str) -> Option<IpAddr> {
    let name = qname.strip_suffix('.').unwrap_or(qname).to_ascii_lowercase();
    if let Some(rest) = name.strip_suffix(".in-addr.arpa") {
        let labels: Vec<&str> = rest.split('.').collect();
        let [d, c, b, a] = labels.as_slice() else { return None };
        let octet = |l: &str| -> Option<u8> {
            // "0" is fine, "00" or "01" is not a canonical octet label.
            let canonical = !l.is_empty() && l.len() <= 3 && l.bytes().all(|c| c.is_ascii_digit());
            if !canonical || (l.len() > 1 && l.starts_with('0')) {
                return None;
            }
            l.parse().ok()
        };
        return Some(IpAddr::V4(Ipv4Addr::new(octet(a)?, octet(b)?, octet(c)?, octet(d)?)));
    }
    if let Some(rest) = name.strip_suffix(".ip6.arpa") {
        let labels: Vec<&str> = rest.split('.').collect();
        if labels.len() != 32 {
            return None;
        }
        let mut value: u128 = 0;
        // Least significant nibble first.
        for (i, l) in labels.iter().enumerate() {
            let &[c] = l.as_bytes() else { return None };
            let nibble = char::from(c).to_digit(16)?;
            value |= u128::from(nibble) << (4 * i);
        }
        return Some(IpAddr::V6(Ipv6Addr::from(value)));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("test address")
    }

    #[test]
    fn ipv4_names() {
        assert_eq!(parse_reverse_name("4.3.2.10.in-addr.arpa."), Some(ip("10.2.3.4")));
        assert_eq!(parse_reverse_name("1.0.0.127.IN-ADDR.ARPA"), Some(ip("127.0.0.1")));
        assert_eq!(parse_reverse_name("255.255.255.255.in-addr.arpa."), Some(ip("255.255.255.255")));
    }

    #[test]
    fn ipv6_names() {
        let name = "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa.";
        assert_eq!(parse_reverse_name(name), Some(ip("2001:db8::1")));
        assert_eq!(parse_reverse_name(&name.to_uppercase().replace("B", "b")), Some(ip("2001:db8::1")));
    }

    #[test]
    fn malformed_names_are_none() {
        for bad in [
            "in-addr.arpa.",
            "3.2.10.in-addr.arpa.",
            "5.4.3.2.10.in-addr.arpa.",
            "256.3.2.10.in-addr.arpa.",
            "01.3.2.10.in-addr.arpa.",
            "a.3.2.10.in-addr.arpa.",
            "-1.3.2.10.in-addr.arpa.",
            "+1.3.2.10.in-addr.arpa.",
            "..2.10.in-addr.arpa.",
            "1.0.ip6.arpa.",
            "ip6.arpa.",
            "10.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa.",
            "g.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa.",
            "\u{e9}.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa.",
            "4.3.2.10.in-addr.arpa.example.",
            "web.service.consul.",
        ] {
            assert_eq!(parse_reverse_name(bad), None, "{bad}");
        }
        assert!(is_reverse_name("x.in-addr.arpa.") && is_reverse_name("IP6.ARPA") && !is_reverse_name("arpa."));
    }
}
