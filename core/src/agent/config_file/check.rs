//! Checking a source without stopping at the first problem, for `consul-rs validate`: every
//! bad key and value of a file is reported, each with the dotted key it is about, so the
//! command can point at its place in the file.
//!
//! The walk is the agent's own ([`Settings::apply_value`]'s per-key step), run once per
//! top-level key; blocks whose keys do not depend on each other are walked key by key too, so
//! that two bad ports are two problems.

use serde_json::{Map, Value};

use super::{Ctx, Settings};
use crate::error::Error;

/// Blocks whose keys are independent of each other (no key's meaning depends on a sibling), so
/// each can be checked on its own. Service and check definitions, `acl` and `tls` are not: a
/// lone key of those would be refused for what its siblings provide.
const INDEPENDENT_BLOCKS: &[&str] = &[
    "ports",
    "addresses",
    "limits",
    "performance",
    "dns_config",
    "gossip_lan",
    "gossip_wan",
    "http_config",
    "node_meta",
];

/// One problem in a source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyProblem {
    /// The dotted key the problem is about (`ports.http`, `service[0]` becomes `service`); empty
    /// when it is about the source as a whole.
    pub key: String,
    /// What is wrong, naming the key and the source.
    pub message: String,
}

impl Settings {
    /// Merges one parsed source like [`Settings::apply_value`], but goes on past a bad key and
    /// returns every problem found (none: the source applied completely).
    pub fn apply_value_collecting(&mut self, value: &Value, source: &str) -> Vec<KeyProblem> {
        let Value::Object(map) = value else {
            return self.apply_value(value, source).err().map(|e| problem("", e)).into_iter().collect();
        };
        let ctx = Ctx { source };
        let mut problems = Vec::new();
        for (key, v) in map {
            match v {
                Value::Object(block) if INDEPENDENT_BLOCKS.contains(&key.as_str()) && block.len() > 1 => {
                    for (sub, sv) in block {
                        let one = Value::Object(Map::from_iter([(sub.clone(), sv.clone())]));
                        if let Err(e) = self.apply_top(&ctx, key, &one) {
                            problems.push(problem(&format!("{key}.{sub}"), e));
                        }
                    }
                }
                _ => {
                    if let Err(e) = self.apply_top(&ctx, key, v) {
                        problems.push(problem(key, e));
                    }
                }
            }
        }
        problems
    }
}

/// A problem about `applied` (the key that was being applied): the message's own key when it
/// names a deeper one (`ports.htp` in an unknown-key message, `acl.tokens.agent: …`).
fn problem(applied: &str, e: Error) -> KeyProblem {
    let message = match e {
        Error::Config(m) => m,
        other => other.to_string(),
    };
    let named = message_key(&message).filter(|k| {
        !applied.is_empty() && (k == applied || k.starts_with(&format!("{}.", applied.split('.').next().unwrap_or(""))))
    });
    KeyProblem { key: named.unwrap_or_else(|| applied.to_string()), message }
}

/// The dotted key an error message starts with (`unknown key "a.b" in …`, `a.b[0].c: …`),
/// list indexes dropped.
fn message_key(message: &str) -> Option<String> {
    let raw = if let Some(rest) = message.strip_prefix("unknown key \"") {
        rest.split('"').next()?
    } else {
        let (head, _) = message.split_once(": ")?;
        head
    };
    if raw.is_empty() || raw.contains(char::is_whitespace) {
        return None;
    }
    let mut key = String::with_capacity(raw.len());
    let mut depth = 0usize;
    for c in raw.chars() {
        match c {
            '[' => depth += 1,
            ']' => depth = depth.saturating_sub(1),
            c if depth == 0 => key.push(c),
            _ => {}
        }
    }
    Some(key)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn every_bad_key_and_value_is_reported() {
        let v = json!({
            "datacenter": "dc1",
            "bootstrap_expct": 3,
            "ports": {"http": "abc", "dns": 8600, "server": 70000, "htp": 1},
            "retry_interval": 30,
            "retry_join": ["a", 1],
            "server": "yes",
            "service": {"name": "web", "port": "x"}
        });
        let mut s = Settings::new(false);
        let problems = s.apply_value_collecting(&v, "a.json");
        let keys: Vec<&str> = problems.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "bootstrap_expct",
                "ports.htp",
                "ports.http",
                "ports.server",
                "retry_interval",
                "retry_join",
                "server",
                "service"
            ],
            "{problems:#?}"
        );
        assert!(problems.iter().all(|p| p.message.contains("a.json")), "{problems:#?}");
        assert!(problems[2].message.contains("expected a number"), "{problems:#?}");
        // The good keys still applied.
        assert_eq!(s.agent.ports.dns, 8600);
        assert_eq!(s.agent.datacenter, "dc1");
    }

    #[test]
    fn a_good_source_has_no_problems_and_applies_like_apply_value() {
        let v = json!({"datacenter": "x", "ports": {"http": 9, "dns": -1}, "service": {"name": "a"}});
        let mut a = Settings::new(true);
        assert_eq!(a.apply_value_collecting(&v, "s"), vec![]);
        let mut b = Settings::new(true);
        b.apply_value(&v, "s").expect("good");
        assert_eq!(format!("{:?}", a.agent), format!("{:?}", b.agent));
        let top = Settings::new(false).apply_value_collecting(&json!([1]), "s");
        assert_eq!(top.len(), 1);
        assert_eq!(top[0].key, "");
    }

    #[test]
    fn keys_from_messages() {
        assert_eq!(message_key("unknown key \"ports.htp\" in a.json").as_deref(), Some("ports.htp"));
        assert_eq!(message_key("retry_join[1]: expected a string").as_deref(), Some("retry_join"));
        assert_eq!(message_key("watches[2].type: x").as_deref(), Some("watches.type"));
        assert_eq!(message_key("the top level must be: x"), None);
    }
}
