//! The authorizer: answers "may this token do that?" from a token's merged [`Rules`] and the
//! agent's `acl.default_policy`.
//!
//! Resolution, as Consul's policy authorizer chained before its default authorizer:
//!
//! 1. an exact rule for the name wins over every prefix rule;
//! 2. otherwise the longest matching prefix rule decides;
//! 3. a rule decides fully — a `read` rule denies a write even under `default_policy = allow`;
//! 4. with no rule the default policy decides: `allow` grants everything except ACL management
//!    (`acl:read`/`acl:write` always need a rule, as Consul's allow-all authorizer), `deny`
//!    grants nothing.

use std::fmt;
use std::str::FromStr;

use super::rules::{go_quote, Access, Need, Resource, Rule, Rules, Scalar, Segments};

/// `acl.default_policy`: what a token may do where none of its rules applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DefaultPolicy {
    /// Everything not denied by a rule is allowed (except managing ACLs).
    Allow,
    /// Only what a rule grants is allowed.
    Deny,
}

/// An unknown `default_policy` value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid ACL default policy {0:?}: must be \"allow\" or \"deny\"")]
pub struct DefaultPolicyError(pub String);

impl FromStr for DefaultPolicy {
    type Err = DefaultPolicyError;

    fn from_str(s: &str) -> Result<DefaultPolicy, DefaultPolicyError> {
        match s {
            "allow" => Ok(DefaultPolicy::Allow),
            "deny" => Ok(DefaultPolicy::Deny),
            other => Err(DefaultPolicyError(other.to_owned())),
        }
    }
}

impl fmt::Display for DefaultPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DefaultPolicy::Allow => "allow",
            DefaultPolicy::Deny => "deny",
        })
    }
}

/// A rule's verdict before the default policy: Consul's `EnforcementDecision`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Decision {
    Allow,
    Deny,
    /// No rule applies: ask the default policy.
    Default,
}

impl Decision {
    fn enforce(access: Access, need: Need) -> Decision {
        if access.grants(need) {
            Decision::Allow
        } else {
            Decision::Deny
        }
    }
}

/// Decides requests for one token: its merged rules over the default policy. Immutable, so it
/// is `Send + Sync` and cheap to share in an `Arc` across requests.
#[derive(Debug, Clone, PartialEq)]
pub struct Authorizer {
    rules: Rules,
    default: DefaultPolicy,
    enable_key_list_policy: bool,
    /// Consul's manage-all authorizer: ACLs disabled, or the built-in management identity.
    manage_all: bool,
}

impl Authorizer {
    /// An authorizer for a token whose policies merged into `rules`. With
    /// `enable_key_list_policy` false, [`Need::List`] on keys is checked as [`Need::Read`]
    /// (Consul checks `KeyList` only when the option is on, and otherwise filters by read).
    pub fn new(rules: Rules, default: DefaultPolicy, enable_key_list_policy: bool) -> Self {
        Authorizer { rules, default, enable_key_list_policy, manage_all: false }
    }

    /// Everything allowed, ACL management included: ACLs disabled, or global management.
    pub fn management() -> Self {
        Authorizer {
            rules: Rules::default(),
            default: DefaultPolicy::Allow,
            enable_key_list_policy: false,
            manage_all: true,
        }
    }

    /// The merged rules this authorizer decides with.
    pub fn rules(&self) -> &Rules {
        &self.rules
    }

    /// The default policy applied where no rule matches.
    pub fn default_policy(&self) -> DefaultPolicy {
        self.default
    }

    /// Whether `need` on the resource `name` is allowed. [`Need::List`] matters for keys only
    /// (with `enable_key_list_policy`); elsewhere it is checked as read.
    pub fn allows(&self, r: Resource, name: &str, need: Need) -> bool {
        if self.manage_all {
            return true;
        }
        let need = match need {
            Need::List if r != Resource::Key || !self.enable_key_list_policy => Need::Read,
            need => need,
        };
        let decision = match lookup(self.rules.segments(r), name) {
            Some(rule) => Decision::enforce(rule.access, need),
            None => Decision::Default,
        };
        self.resolve(decision)
    }

    /// Consul's `KeyWritePrefix`: may everything under `prefix` be written (a recursive
    /// delete)? Denied if the longest prefix rule covering `prefix` grants less than write, or
    /// if any rule, exact or prefix, on `prefix` itself or under it grants less than write.
    /// Allowed if such a prefix rule grants write; with no prefix rule covering `prefix` (and
    /// nothing under it refusing), the default policy decides.
    pub fn allows_key_write_prefix(&self, prefix: &str) -> bool {
        if self.manage_all {
            return true;
        }
        let keys = self.rules.segments(Resource::Key);
        let base = match longest_prefix(&keys.prefix, prefix) {
            Some(rule) if rule.access == Access::Write => Decision::Allow,
            Some(_) => return false,
            None => Decision::Default,
        };
        let under = |map: &std::collections::BTreeMap<String, Rule>| {
            map.range::<str, _>((std::ops::Bound::Included(prefix), std::ops::Bound::Unbounded))
                .take_while(|(name, _)| name.starts_with(prefix))
                .any(|(_, rule)| rule.access != Access::Write)
        };
        if under(&keys.prefix) || under(&keys.exact) {
            return false;
        }
        self.resolve(base)
    }

    /// Whether `need` on a global permission is allowed. Unset `mesh` and `peering` follow
    /// `operator`, as in Consul; `acl` falls to deny even under `default_policy = allow`.
    /// [`Need::List`] is checked as read.
    pub fn allows_scalar(&self, s: Scalar, need: Need) -> bool {
        if self.manage_all {
            return true;
        }
        let need = if need == Need::List { Need::Read } else { need };
        let access = match s {
            Scalar::Mesh | Scalar::Peering => self.rules.scalar(s).or_else(|| self.rules.scalar(Scalar::Operator)),
            _ => self.rules.scalar(s),
        };
        match access {
            Some(access) => access.grants(need),
            // Consul's allow-all authorizer still refuses ACLRead/ACLWrite: only a rule (or
            // management) grants ACL administration.
            None if s == Scalar::Acl => false,
            None => self.resolve(Decision::Default),
        }
    }

    /// Whether `need` on intentions whose destination is `service` is allowed: the service
    /// rules' `intentions` (derived from their policy when unset: read/write ⇒ read, deny ⇒
    /// deny). For the wildcard destination `*`, as Consul, read needs some rule granting
    /// read, and write needs every rule (and the catch-all) to grant write.
    pub fn allows_intention(&self, service: &str, need: Need) -> bool {
        if self.manage_all {
            return true;
        }
        let need = if need == Need::List { Need::Read } else { need };
        let services = self.rules.segments(Resource::Service);
        let decision = if service == "*" {
            match need {
                Need::Write => all_allowed(services, need),
                _ => any_allowed(services, need),
            }
        } else {
            match lookup(services, service) {
                Some(rule) => Decision::enforce(rule.intention_access(), need),
                None => Decision::Default,
            }
        };
        self.resolve(decision)
    }

    fn resolve(&self, decision: Decision) -> bool {
        match decision {
            Decision::Allow => true,
            Decision::Deny => false,
            Decision::Default => self.default == DefaultPolicy::Allow,
        }
    }
}

/// The rule for `name`: an exact rule, else the longest prefix rule.
fn lookup(segments: &Segments, name: &str) -> Option<Rule> {
    segments.exact.get(name).copied().or_else(|| longest_prefix(&segments.prefix, name))
}

/// The prefix rule with the longest prefix of `name` (the empty prefix included).
fn longest_prefix(prefixes: &std::collections::BTreeMap<String, Rule>, name: &str) -> Option<Rule> {
    if prefixes.is_empty() {
        return None;
    }
    // Every prefix of a string ends on a char boundary; try them longest first.
    let ends = std::iter::once(name.len()).chain(name.char_indices().rev().map(|(i, _)| i));
    ends.filter_map(|end| name.get(..end)).find_map(|p| prefixes.get(p).copied())
}

/// Consul's `anyAllowed` over intention rules: allowed if any rule grants `need`; otherwise the
/// catch-all prefix rule's verdict (deny or no decision).
fn any_allowed(segments: &Segments, need: Need) -> Decision {
    let mut decision = Decision::Default;
    if let Some(rule) = segments.prefix.get("") {
        decision = Decision::enforce(rule.intention_access(), need);
        if decision == Decision::Allow {
            return decision;
        }
    }
    let any = segments.prefix.values().chain(segments.exact.values()).any(|r| r.intention_access().grants(need));
    if any {
        Decision::Allow
    } else {
        decision
    }
}

/// Consul's `allAllowed` over intention rules: denied if any rule refuses `need`; otherwise
/// the catch-all prefix rule's verdict (allow or no decision).
fn all_allowed(segments: &Segments, need: Need) -> Decision {
    let decision = match segments.prefix.get("") {
        Some(rule) => Decision::enforce(rule.intention_access(), need),
        None => Decision::Default,
    };
    if decision == Decision::Deny {
        return decision;
    }
    let refused = segments.prefix.values().chain(segments.exact.values()).any(|r| !r.intention_access().grants(need));
    if refused {
        Decision::Deny
    } else {
        decision
    }
}

/// A refused permission, for the 403 message. `permission` is `"<resource>:<level>"` (e.g.
/// `"key:write"`, `"operator:read"`, `"intention:write"`); `resource` the name, if the
/// permission is name-scoped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denied {
    /// `"<resource>:<level>"`, as in Consul's messages.
    pub permission: String,
    /// The name the permission was needed on; `None` for global permissions.
    pub resource: Option<String>,
}

impl Denied {
    /// A refusal of `need` on the resource `name`.
    pub fn resource(r: Resource, name: &str, need: Need) -> Denied {
        Denied { permission: format!("{r}:{need}"), resource: Some(name.to_owned()) }
    }

    /// A refusal of `need` on a global permission.
    pub fn scalar(s: Scalar, need: Need) -> Denied {
        Denied { permission: format!("{s}:{need}"), resource: None }
    }

    /// A refusal of `need` on intentions with destination `service`.
    pub fn intention(service: &str, need: Need) -> Denied {
        Denied { permission: format!("intention:{need}"), resource: Some(service.to_owned()) }
    }

    /// The message after `Permission denied: ` (Consul's `PermissionDeniedError`):
    /// `token with AccessorID '<a>' lacks permission 'key:write' on "foo"`. An empty accessor
    /// reads `provided token`, and the anonymous token is named and explained, as in Consul.
    pub fn message(&self, accessor: &str) -> String {
        let anonymous = accessor == crate::acl::builtin::ANONYMOUS_TOKEN_ACCESSOR_ID;
        let who = if accessor.is_empty() {
            "provided token".to_owned()
        } else if anonymous {
            "anonymous token".to_owned()
        } else {
            format!("token with AccessorID '{accessor}'")
        };
        let mut msg = match &self.resource {
            Some(name) if !name.is_empty() => {
                format!("{who} lacks permission '{}' on {}", self.permission, go_quote(name))
            }
            _ => format!("{who} lacks permission '{}'", self.permission),
        };
        if anonymous {
            msg.push_str(". The anonymous token is used implicitly when a request does not specify a token.");
        }
        msg
    }

    /// The crate error for this refusal (HTTP 403, `Permission denied: …`).
    pub fn into_error(self, accessor: &str) -> crate::error::Error {
        crate::error::Error::PermissionDenied(self.message(accessor))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use Need::{List, Read, Write};
    use Resource::*;

    fn authz(text: &str, default: DefaultPolicy) -> Authorizer {
        Authorizer::new(Rules::parse(text).unwrap(), default, true)
    }

    #[test]
    fn send_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Authorizer>();
    }

    #[test]
    fn default_policy_from_str() {
        assert_eq!("allow".parse::<DefaultPolicy>(), Ok(DefaultPolicy::Allow));
        assert_eq!("deny".parse::<DefaultPolicy>(), Ok(DefaultPolicy::Deny));
        assert_eq!(
            "Allow".parse::<DefaultPolicy>().unwrap_err().to_string(),
            r#"invalid ACL default policy "Allow": must be "allow" or "deny""#
        );
        assert_eq!(DefaultPolicy::Deny.to_string(), "deny");
    }

    /// Precedence table: (rules, default, resource, name, need, allowed).
    #[test]
    fn precedence_table() {
        use DefaultPolicy::{Allow as A, Deny as D};
        let rules = r#"
            key_prefix ""          { policy = "read" }
            key_prefix "foo/"      { policy = "write" }
            key_prefix "foo/bar/"  { policy = "deny" }
            key "foo/bar/baz"      { policy = "read" }
            key "foo/"             { policy = "deny" }
            key_prefix "lst/"      { policy = "list" }
            service "web"          { policy = "write" }
            service_prefix "we"    { policy = "deny" }
            service_prefix ""      { policy = "read" }
            node "n1"              { policy = "write" }
            session_prefix "s"     { policy = "write" }
            event "deploy"         { policy = "write" }
            query_prefix "q"       { policy = "read" }
            agent_prefix ""        { policy = "read" }
            agent "a1"             { policy = "deny" }
        "#;
        let cases: &[(DefaultPolicy, Resource, &str, Need, bool)] = &[
            // Catch-all prefix.
            (D, Key, "other", Read, true),
            (D, Key, "other", Write, false),
            // Longer prefix wins over shorter.
            (D, Key, "foo/x", Write, true),
            (D, Key, "foo/bar/x", Read, false),
            (A, Key, "foo/bar/x", Read, false),
            // Exact beats every prefix, including a longer-matching one.
            (D, Key, "foo/bar/baz", Read, true),
            (D, Key, "foo/bar/baz", Write, false),
            (D, Key, "foo/bar/bazz", Read, false),
            // Exact on the prefix's own name beats the prefix rule of the same name.
            (D, Key, "foo/", Read, false),
            (D, Key, "foo/", Write, false),
            // List: grants list and read, not write.
            (D, Key, "lst/a", List, true),
            (D, Key, "lst/a", Read, true),
            (D, Key, "lst/a", Write, false),
            // Read does not grant list when the list policy is enabled.
            (D, Key, "other", List, false),
            // Write grants list.
            (D, Key, "foo/x", List, true),
            // Services: exact write; prefix deny for others starting "we"; catch-all read.
            (D, Service, "web", Write, true),
            (D, Service, "web", Read, true),
            (D, Service, "west", Read, false),
            (A, Service, "west", Read, false),
            (D, Service, "api", Read, true),
            (D, Service, "api", Write, false),
            // Nodes: only n1; the rest falls to the default policy.
            (D, Node, "n1", Write, true),
            (D, Node, "n2", Read, false),
            (A, Node, "n2", Write, true),
            (D, Session, "s1", Write, true),
            (D, Session, "t1", Read, false),
            (D, Event, "deploy", Write, true),
            (D, Event, "deployx", Write, false),
            (A, Event, "deployx", Write, true),
            (D, Query, "q1", Read, true),
            (D, Query, "q1", Write, false),
            (A, Query, "q1", Write, false),
            (D, Agent, "a2", Read, true),
            (D, Agent, "a1", Read, false),
            (A, Agent, "a1", Read, false),
            // List on a non-key resource is checked as read.
            (D, Service, "api", List, true),
        ];
        for &(default, r, name, need, want) in cases {
            let a = authz(rules, default);
            assert_eq!(a.allows(r, name, need), want, "{default} {r} {name:?} {need}");
        }
    }

    #[test]
    fn default_policy_without_rules() {
        let allow = authz("", DefaultPolicy::Allow);
        let deny = authz("", DefaultPolicy::Deny);
        for r in Resource::ALL {
            for need in [Read, List, Write] {
                assert!(allow.allows(r, "x", need), "{r} {need}");
                assert!(!deny.allows(r, "x", need), "{r} {need}");
            }
        }
        for s in [Scalar::Operator, Scalar::Keyring, Scalar::Mesh, Scalar::Peering] {
            assert!(allow.allows_scalar(s, Write), "{s}");
            assert!(!deny.allows_scalar(s, Read), "{s}");
        }
        // ACL administration is never granted by the default policy (Consul's allowAll).
        assert!(!allow.allows_scalar(Scalar::Acl, Read));
        assert!(!allow.allows_scalar(Scalar::Acl, Write));
        assert!(allow.allows_key_write_prefix("any/"));
        assert!(!deny.allows_key_write_prefix("any/"));
        assert!(allow.allows_intention("web", Write));
        assert!(!deny.allows_intention("web", Read));
    }

    #[test]
    fn management_allows_everything() {
        let m = Authorizer::management();
        for r in Resource::ALL {
            assert!(m.allows(r, "x", Write));
        }
        for s in Scalar::ALL {
            assert!(m.allows_scalar(s, Write), "{s}");
        }
        assert!(m.allows_key_write_prefix(""));
        assert!(m.allows_intention("*", Write));
    }

    #[test]
    fn key_list_policy_switch() {
        let rules = Rules::parse(
            r#"key_prefix "a/" { policy = "read" }
key_prefix "b/" { policy = "list" }"#,
        )
        .unwrap();
        let on = Authorizer::new(rules.clone(), DefaultPolicy::Deny, true);
        let off = Authorizer::new(rules, DefaultPolicy::Deny, false);
        // Enabled: read is not enough to list; list is.
        assert!(!on.allows(Key, "a/", List));
        assert!(on.allows(Key, "b/", List));
        assert!(on.allows(Key, "b/x", Read));
        // Disabled: listing is checked as read.
        assert!(off.allows(Key, "a/", List));
        assert!(off.allows(Key, "b/", List));
        assert!(!off.allows(Key, "c/", List));
        assert!(!off.allows(Key, "b/x", Write));
    }

    /// Consul's `KeyWritePrefix` cases (policy_authorizer_test.go, restated).
    #[test]
    fn key_write_prefix_table() {
        use DefaultPolicy::{Allow as A, Deny as D};
        let cases: &[(&str, DefaultPolicy, &str, bool)] = &[
            // No rules: the default policy.
            ("", A, "foo/", true),
            ("", D, "foo/", false),
            // A write prefix covering it, nothing under it.
            (r#"key_prefix "" { policy = "write" }"#, D, "foo/", true),
            (r#"key_prefix "fo" { policy = "write" }"#, D, "foo/", true),
            // The covering prefix grants less than write.
            (r#"key_prefix "" { policy = "read" }"#, A, "foo/", false),
            (r#"key_prefix "" { policy = "list" }"#, A, "foo/", false),
            // The longest covering prefix decides.
            ("key_prefix \"\" { policy = \"read\" }\nkey_prefix \"foo/\" { policy = \"write\" }", D, "foo/", true),
            ("key_prefix \"\" { policy = \"write\" }\nkey_prefix \"foo\" { policy = \"deny\" }", A, "foo/", false),
            // A rule under the prefix refusing write, exact or prefix.
            ("key_prefix \"\" { policy = \"write\" }\nkey \"foo/x\" { policy = \"read\" }", D, "foo/", false),
            ("key_prefix \"\" { policy = \"write\" }\nkey_prefix \"foo/x/\" { policy = \"deny\" }", D, "foo/", false),
            ("key_prefix \"\" { policy = \"write\" }\nkey \"foo/\" { policy = \"read\" }", D, "foo/", false),
            // Write rules under the prefix are fine.
            ("key_prefix \"\" { policy = \"write\" }\nkey \"foo/x\" { policy = \"write\" }", D, "foo/", true),
            // Rules elsewhere do not matter.
            ("key_prefix \"\" { policy = \"write\" }\nkey \"bar\" { policy = \"deny\" }\nkey \"fo\" { policy = \"deny\" }", D, "foo/", true),
            // No covering prefix rule: default policy, unless something under it refuses.
            (r#"key "foo/x" { policy = "write" }"#, A, "foo/", true),
            (r#"key "foo/x" { policy = "write" }"#, D, "foo/", false),
            (r#"key "foo/x" { policy = "read" }"#, A, "foo/", false),
            (r#"key_prefix "foo/x" { policy = "write" }"#, D, "foo/", false),
            // An exact rule on the prefix itself does not cover it as a prefix.
            (r#"key "foo/" { policy = "write" }"#, D, "foo/", false),
            (r#"key "foo/" { policy = "write" }"#, A, "foo/", true),
            // The empty prefix (delete everything).
            ("key_prefix \"\" { policy = \"write\" }\nkey \"z\" { policy = \"list\" }", A, "", false),
            (r#"key_prefix "" { policy = "write" }"#, D, "", true),
        ];
        for &(rules, default, prefix, want) in cases {
            let a = authz(rules, default);
            assert_eq!(a.allows_key_write_prefix(prefix), want, "{rules:?} {default} {prefix:?}");
        }
    }

    #[test]
    fn scalars_and_mesh_peering_fall_back_to_operator() {
        use DefaultPolicy::{Allow as A, Deny as D};
        let cases: &[(&str, DefaultPolicy, Scalar, Need, bool)] = &[
            (r#"operator = "read""#, D, Scalar::Operator, Read, true),
            (r#"operator = "read""#, A, Scalar::Operator, Write, false),
            (r#"operator = "write""#, D, Scalar::Operator, Read, true),
            (r#"operator = "deny""#, A, Scalar::Operator, Read, false),
            (r#"keyring = "write""#, D, Scalar::Keyring, Read, true),
            (r#"keyring = "read""#, D, Scalar::Keyring, Write, false),
            (r#"acl = "read""#, D, Scalar::Acl, Read, true),
            (r#"acl = "read""#, A, Scalar::Acl, Write, false),
            (r#"acl = "write""#, D, Scalar::Acl, Write, true),
            ("", A, Scalar::Acl, Read, false),
            // Mesh/peering unset: operator decides.
            (r#"operator = "write""#, D, Scalar::Mesh, Write, true),
            (r#"operator = "read""#, D, Scalar::Mesh, Write, false),
            (r#"operator = "read""#, D, Scalar::Peering, Read, true),
            (r#"operator = "deny""#, A, Scalar::Peering, Read, false),
            // Unset operator too: the default policy.
            ("", A, Scalar::Mesh, Write, true),
            ("", D, Scalar::Peering, Read, false),
            // Mesh/peering set: they decide, whatever operator says.
            ("mesh = \"read\"\noperator = \"write\"", D, Scalar::Mesh, Write, false),
            ("mesh = \"write\"\noperator = \"deny\"", D, Scalar::Mesh, Write, true),
            ("peering = \"deny\"\noperator = \"write\"", A, Scalar::Peering, Read, false),
            // Operator does not follow mesh.
            (r#"mesh = "write""#, D, Scalar::Operator, Read, false),
        ];
        for &(rules, default, s, need, want) in cases {
            assert_eq!(authz(rules, default).allows_scalar(s, need), want, "{rules:?} {default} {s} {need}");
        }
    }

    #[test]
    fn intentions_table() {
        use DefaultPolicy::{Allow as A, Deny as D};
        let cases: &[(&str, DefaultPolicy, &str, Need, bool)] = &[
            // Derived from the service policy: read/write ⇒ intentions read.
            (r#"service "web" { policy = "write" }"#, D, "web", Read, true),
            (r#"service "web" { policy = "write" }"#, D, "web", Write, false),
            (r#"service "web" { policy = "read" }"#, A, "web", Write, false),
            (r#"service "web" { policy = "deny" }"#, A, "web", Read, false),
            // Explicit.
            ("service \"web\" {\n policy = \"read\"\n intentions = \"write\"\n}", D, "web", Write, true),
            ("service \"web\" {\n policy = \"write\"\n intentions = \"deny\"\n}", A, "web", Read, false),
            ("service_prefix \"\" {\n policy = \"read\"\n intentions = \"write\"\n}", D, "api", Write, true),
            // Unmatched: default policy.
            (r#"service "web" { policy = "write" }"#, A, "api", Write, true),
            (r#"service "web" { policy = "write" }"#, D, "api", Read, false),
            // Wildcard destination: read needs any rule granting read …
            (r#"service "web" { policy = "read" }"#, D, "*", Read, true),
            (r#"service_prefix "" { policy = "deny" }"#, A, "*", Read, false),
            ("", D, "*", Read, false),
            ("", A, "*", Read, true),
            // … write needs all rules granting write.
            ("service_prefix \"\" {\n policy = \"write\"\n intentions = \"write\"\n}", D, "*", Write, true),
            (
                "service_prefix \"\" {\n policy = \"write\"\n intentions = \"write\"\n}\nservice \"db\" { policy = \"write\" }",
                A,
                "*",
                Write,
                false,
            ),
            ("service \"web\" {\n policy = \"write\"\n intentions = \"write\"\n}", D, "*", Write, false),
            ("service \"web\" {\n policy = \"write\"\n intentions = \"write\"\n}", A, "*", Write, true),
        ];
        for &(rules, default, service, need, want) in cases {
            assert_eq!(
                authz(rules, default).allows_intention(service, need),
                want,
                "{rules:?} {default} {service} {need}"
            );
        }
    }

    #[test]
    fn merged_policies_deny_wins() {
        let mut rules = Rules::parse(r#"key_prefix "app/" { policy = "write" }"#).unwrap();
        rules.merge(&Rules::parse(r#"key_prefix "app/" { policy = "deny" }"#).unwrap());
        rules.merge(&Rules::parse(r#"key "app/open" { policy = "read" }"#).unwrap());
        let a = Authorizer::new(rules, DefaultPolicy::Allow, false);
        assert!(!a.allows(Key, "app/x", Read));
        assert!(a.allows(Key, "app/open", Read));
        assert!(!a.allows(Key, "app/open", Write));
        assert!(a.allows(Key, "other", Write));
    }

    #[test]
    fn unicode_names_match_by_prefix() {
        let a = authz(r#"key_prefix "ü" { policy = "write" }"#, DefaultPolicy::Deny);
        assert!(a.allows(Key, "üx", Write));
        assert!(a.allows(Key, "ü", Write));
        assert!(!a.allows(Key, "u", Write));
        assert!(!a.allows(Key, "", Read));
    }

    #[test]
    fn denial_messages() {
        let cases = [
            (
                Denied::resource(Key, "foo", Write),
                "abc",
                r#"token with AccessorID 'abc' lacks permission 'key:write' on "foo""#,
            ),
            (Denied::resource(Service, "web", Read), "", r#"provided token lacks permission 'service:read' on "web""#),
            (
                Denied::resource(Key, "a\"b", List),
                "x",
                r#"token with AccessorID 'x' lacks permission 'key:list' on "a\"b""#,
            ),
            (
                Denied::scalar(Scalar::Operator, Write),
                "abc",
                "token with AccessorID 'abc' lacks permission 'operator:write'",
            ),
            (Denied::scalar(Scalar::Acl, Read), "abc", "token with AccessorID 'abc' lacks permission 'acl:read'"),
            (
                Denied::scalar(Scalar::Acl, Read),
                "00000000-0000-0000-0000-000000000002",
                "anonymous token lacks permission 'acl:read'. The anonymous token is used implicitly when a \
                 request does not specify a token.",
            ),
            (
                Denied::intention("db", Write),
                "abc",
                r#"token with AccessorID 'abc' lacks permission 'intention:write' on "db""#,
            ),
            // An empty name reads like a global permission, as in Consul.
            (Denied::resource(Key, "", Write), "abc", "token with AccessorID 'abc' lacks permission 'key:write'"),
        ];
        for (denied, accessor, want) in cases {
            assert_eq!(denied.message(accessor), want);
        }
        let d = Denied { permission: "key:write".into(), resource: Some("foo".into()) };
        assert_eq!(
            d.into_error("abc").to_string(),
            r#"Permission denied: token with AccessorID 'abc' lacks permission 'key:write' on "foo""#
        );
    }
}
