//! `telemetry.prefix_filter`: which metric names are kept.
//!
//! Rules are `+prefix` (allow) or `-prefix` (block) on the dotted name as sent (metrics prefix
//! included, `consul.raft.apply`). The longest matching prefix decides, as in go-metrics' radix
//! lookup; a name no rule matches follows `telemetry.filter_default` (true: kept).

/// A parsed `prefix_filter`.
#[derive(Debug, Clone, PartialEq)]
pub struct PrefixFilter {
    /// (prefix, allowed), longest first so the first match is the longest.
    rules: Vec<(String, bool)>,
    /// `filter_default`: what happens to a name no rule matches.
    default_allow: bool,
}

/// A `prefix_filter` entry that is neither `+…` nor `-…`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("prefix_filter entry {0:?} must start with '+' (allow) or '-' (block)")]
pub struct BadRule(pub String);

impl Default for PrefixFilter {
    fn default() -> Self {
        PrefixFilter { rules: Vec::new(), default_allow: true }
    }
}

impl PrefixFilter {
    /// Parses the rules; a later rule for the same prefix replaces an earlier one.
    pub fn new(rules: &[String], default_allow: bool) -> Result<Self, BadRule> {
        let mut parsed: Vec<(String, bool)> = Vec::new();
        for rule in rules {
            let (allow, prefix) = match rule.split_at_checked(1) {
                Some(("+", p)) => (true, p),
                Some(("-", p)) => (false, p),
                _ => return Err(BadRule(rule.clone())),
            };
            parsed.retain(|(p, _)| p != prefix);
            parsed.push((prefix.to_string(), allow));
        }
        parsed.sort_by_key(|(p, _)| std::cmp::Reverse(p.len()));
        Ok(PrefixFilter { rules: parsed, default_allow })
    }

    /// Whether a metric with this dotted name is kept.
    pub fn allows(&self, name: &str) -> bool {
        self.rules.iter().find(|(p, _)| name.starts_with(p.as_str())).map_or(self.default_allow, |(_, allow)| *allow)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filter(rules: &[&str], default_allow: bool) -> PrefixFilter {
        PrefixFilter::new(&rules.iter().map(|s| s.to_string()).collect::<Vec<_>>(), default_allow).expect("rules")
    }

    #[test]
    fn longest_prefix_wins() {
        let f = filter(&["+consul.raft", "-consul.raft.apply", "-consul.kvs"], true);
        assert!(f.allows("consul.raft.commitTime"));
        assert!(!f.allows("consul.raft.apply"));
        assert!(!f.allows("consul.kvs.apply"));
        assert!(f.allows("consul.txn.apply"), "no rule: filter_default");
    }

    #[test]
    fn filter_default_false_keeps_only_allowed() {
        let f = filter(&["+consul.raft"], false);
        assert!(f.allows("consul.raft.apply"));
        assert!(!f.allows("consul.kvs.apply"));
        assert!(PrefixFilter::default().allows("anything"));
    }

    #[test]
    fn rules_need_a_sign() {
        let e = PrefixFilter::new(&["consul.raft".to_string()], true).expect_err("no sign");
        assert_eq!(e, BadRule("consul.raft".into()));
        assert!(PrefixFilter::new(&[String::new()], true).is_err());
    }
}
