//! Consul's built-in ACL objects: the two built-in policies, the anonymous token, the rules
//! synthesised for service and node identities, and the templated policies of Consul 1.17+.
//!
//! IDs, names, descriptions, rules and templates are Consul's, because clients see them:
//! `GET /v1/acl/policies` lists the built-ins, `GET /v1/acl/templated-policies` returns the
//! templates and schemas verbatim, and tokens refer to both by these IDs.

use super::rules::{go_quote, Rules, RulesError};

/// ID of the `global-management` policy (unlimited access).
pub const GLOBAL_MANAGEMENT_POLICY_ID: &str = "00000000-0000-0000-0000-000000000001";
/// Name of the `global-management` policy.
pub const GLOBAL_MANAGEMENT_POLICY_NAME: &str = "global-management";
/// Description of the `global-management` policy.
pub const GLOBAL_MANAGEMENT_POLICY_DESCRIPTION: &str = "Builtin Policy that grants unlimited access";
/// Rules of the `global-management` policy: write on everything, ACLs included.
pub const GLOBAL_MANAGEMENT_POLICY_RULES: &str = r#"
acl = "write"
agent_prefix "" {
	policy = "write"
}
event_prefix "" {
	policy = "write"
}
key_prefix "" {
	policy = "write"
}
keyring = "write"
node_prefix "" {
	policy = "write"
}
operator = "write"
mesh = "write"
peering = "write"
query_prefix "" {
	policy = "write"
}
service_prefix "" {
	policy = "write"
	intentions = "write"
}
session_prefix "" {
	policy = "write"
}"#;

/// ID of the `builtin/global-read-only` policy (Consul 1.17+).
pub const GLOBAL_READ_ONLY_POLICY_ID: &str = "00000000-0000-0000-0000-000000000002";
/// Name of the global read-only policy.
pub const GLOBAL_READ_ONLY_POLICY_NAME: &str = "builtin/global-read-only";
/// Description of the global read-only policy.
pub const GLOBAL_READ_ONLY_POLICY_DESCRIPTION: &str =
    "Builtin Policy that grants unlimited read-only access to all components";
/// Rules of the global read-only policy: read on everything, ACLs included.
pub const GLOBAL_READ_ONLY_POLICY_RULES: &str = r#"
acl = "read"
agent_prefix "" {
	policy = "read"
}
event_prefix "" {
	policy = "read"
}
key_prefix "" {
	policy = "read"
}
keyring = "read"
node_prefix "" {
	policy = "read"
}
operator = "read"
mesh = "read"
peering = "read"
query_prefix "" {
	policy = "read"
}
service_prefix "" {
	policy = "read"
	intentions = "read"
}
session_prefix "" {
	policy = "read"
}"#;

/// AccessorID of the anonymous token, used when a request carries no token. (It equals the
/// read-only policy's ID: tokens and policies are different tables.)
pub const ANONYMOUS_TOKEN_ACCESSOR_ID: &str = "00000000-0000-0000-0000-000000000002";
/// SecretID of the anonymous token.
pub const ANONYMOUS_TOKEN_SECRET_ID: &str = "anonymous";
/// Description Consul gives the anonymous token.
pub const ANONYMOUS_TOKEN_DESCRIPTION: &str = "Anonymous Token";

/// IDs starting with this (all but the last byte zero) are reserved for built-in objects;
/// user-created policies must not take them.
pub const RESERVED_ID_PREFIX: &str = "00000000-0000-0000-0000-0000000000";

/// Whether `id` is in the range reserved for built-in policies.
pub fn is_reserved_id(id: &str) -> bool {
    id.starts_with(RESERVED_ID_PREFIX)
}

/// A built-in policy: present in every cluster, its rules not editable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BuiltinPolicy {
    /// The fixed policy ID.
    pub id: &'static str,
    /// The policy name.
    pub name: &'static str,
    /// The policy description.
    pub description: &'static str,
    /// The rules text, as the API returns it.
    pub rules: &'static str,
}

static BUILTIN_POLICIES: [BuiltinPolicy; 2] = [
    BuiltinPolicy {
        id: GLOBAL_MANAGEMENT_POLICY_ID,
        name: GLOBAL_MANAGEMENT_POLICY_NAME,
        description: GLOBAL_MANAGEMENT_POLICY_DESCRIPTION,
        rules: GLOBAL_MANAGEMENT_POLICY_RULES,
    },
    BuiltinPolicy {
        id: GLOBAL_READ_ONLY_POLICY_ID,
        name: GLOBAL_READ_ONLY_POLICY_NAME,
        description: GLOBAL_READ_ONLY_POLICY_DESCRIPTION,
        rules: GLOBAL_READ_ONLY_POLICY_RULES,
    },
];

/// The built-in policies, management first.
pub fn builtin_policies() -> &'static [BuiltinPolicy] {
    &BUILTIN_POLICIES
}

/// The built-in policy with this ID.
pub fn builtin_policy(id: &str) -> Option<&'static BuiltinPolicy> {
    BUILTIN_POLICIES.iter().find(|p| p.id == id)
}

impl BuiltinPolicy {
    /// The parsed rules. The texts are constants covered by tests, so this cannot fail in
    /// practice; it still returns the error rather than panicking.
    pub fn parsed_rules(&self) -> Result<Rules, RulesError> {
        Rules::parse(self.rules)
    }
}

/// Longest service or node identity name Consul accepts.
pub const IDENTITY_NAME_MAX_LEN: usize = 256;

/// Consul's `validServiceIdentityName`/`validNodeIdentityName`: 1–256 characters of lowercase
/// ASCII letters, digits, `-` and `_`, starting and ending with a letter or digit. Stricter
/// than catalog names because the name is interpolated into rules text.
pub fn is_valid_identity_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    let alnum = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    match (bytes.first(), bytes.last()) {
        (Some(first), Some(last)) => {
            bytes.len() <= IDENTITY_NAME_MAX_LEN
                && alnum(first)
                && alnum(last)
                && bytes.iter().all(|b| alnum(b) || *b == b'-' || *b == b'_')
        }
        _ => false,
    }
}

/// The rules Consul synthesises for a service identity on a token or role: write on the
/// service and its `<name>-sidecar-proxy`, read on every service and node (for discovery).
/// `datacenters` scopes the identity (empty: every datacenter); outside them, in
/// `local_datacenter`, it grants nothing and the result is empty.
pub fn service_identity_rules(name: &str, datacenters: &[String], local_datacenter: &str) -> Result<Rules, RulesError> {
    if !is_valid_identity_name(name) {
        return Err(RulesError(format!(
            "Service identity {} has an invalid name. Only lowercase alphanumeric characters, '-' and '_' are allowed",
            go_quote(name)
        )));
    }
    if !datacenters.is_empty() && !datacenters.iter().any(|dc| dc == local_datacenter) {
        return Ok(Rules::default());
    }
    Rules::parse(&service_identity_rules_text(name))
}

/// The rules Consul synthesises for a node identity: write on the node, read on every service
/// (anti-entropy). A node identity is always scoped to one `datacenter`; elsewhere (in
/// `local_datacenter`) it grants nothing and the result is empty.
pub fn node_identity_rules(name: &str, datacenter: &str, local_datacenter: &str) -> Result<Rules, RulesError> {
    if !is_valid_identity_name(name) {
        return Err(RulesError(format!(
            "Node identity {} has an invalid name. Only lowercase alphanumeric characters, '-' and '_' are allowed",
            go_quote(name)
        )));
    }
    if datacenter.is_empty() {
        return Err(RulesError(format!("Node identity {} is missing the datacenter field", go_quote(name))));
    }
    if datacenter != local_datacenter {
        return Ok(Rules::default());
    }
    Rules::parse(&node_identity_rules_text(name))
}

/// The rules text Consul synthesises for a service identity named `name` (what `acl token read
/// -expanded` shows under the identity).
pub fn service_identity_rules_text(name: &str) -> String {
    SERVICE_TEMPLATE.replace(NAME_VAR, name)
}

/// The rules text Consul synthesises for a node identity named `name`.
pub fn node_identity_rules_text(name: &str) -> String {
    NODE_TEMPLATE.replace(NAME_VAR, name)
}

/// The template placeholder for the `name` variable (Go template syntax, as Consul shows it).
const NAME_VAR: &str = "{{.Name}}";

const SERVICE_TEMPLATE: &str = r#"
service "{{.Name}}" {
	policy = "write"
}
service "{{.Name}}-sidecar-proxy" {
	policy = "write"
}
service_prefix "" {
	policy = "read"
}
node_prefix "" {
	policy = "read"
}"#;

const NODE_TEMPLATE: &str = r#"
node "{{.Name}}" {
	policy = "write"
}
service_prefix "" {
	policy = "read"
}"#;

const DNS_TEMPLATE: &str = r#"
node_prefix "" {
	policy = "read"
}
service_prefix "" {
	policy = "read"
}
query_prefix "" {
	policy = "read"
}"#;

/// The input schema of templates taking a `name` (JSON Schema, as the API returns it).
const NAME_SCHEMA: &str = r##"{
	"type": "object",
	"properties": {
		"name": { "type": "string", "$ref": "#/definitions/min-length-one" }
	},
	"required": ["name"],
	"definitions": {
		"min-length-one": {
				"type": "string",
				"minLength": 1
		}
	}
}"##;

/// Name of the service templated policy.
pub const TEMPLATED_POLICY_SERVICE_NAME: &str = "builtin/service";
/// Name of the node templated policy.
pub const TEMPLATED_POLICY_NODE_NAME: &str = "builtin/node";
/// Name of the DNS templated policy.
pub const TEMPLATED_POLICY_DNS_NAME: &str = "builtin/dns";

/// A built-in policy template: rendered with its variables into the rules of a synthetic
/// policy for the token or role that names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TemplatedPolicy {
    /// `builtin/service`, `builtin/node` or `builtin/dns`.
    pub name: &'static str,
    /// The template's fixed ID.
    pub id: &'static str,
    /// Consul's description.
    pub description: &'static str,
    /// JSON Schema of the variables; `None` when the template takes none.
    pub schema: Option<&'static str>,
    template: &'static str,
}

static TEMPLATED_POLICIES: [TemplatedPolicy; 3] = [
    TemplatedPolicy {
        name: TEMPLATED_POLICY_SERVICE_NAME,
        id: "00000000-0000-0000-0000-000000000003",
        description: "Gives the token or role permissions to register a service and discover services in the Consul catalog. It also gives the specified service's sidecar proxy the permission to discover and route traffic to other services.",
        schema: Some(NAME_SCHEMA),
        template: SERVICE_TEMPLATE,
    },
    TemplatedPolicy {
        name: TEMPLATED_POLICY_NODE_NAME,
        id: "00000000-0000-0000-0000-000000000004",
        description: "Gives the token or role permissions for a register an agent/node into the catalog. A node is typically a consul agent but can also be a physical server, cloud instance or a container.",
        schema: Some(NAME_SCHEMA),
        template: NODE_TEMPLATE,
    },
    TemplatedPolicy {
        name: TEMPLATED_POLICY_DNS_NAME,
        id: "00000000-0000-0000-0000-000000000005",
        description: "Gives the token or role permissions for the Consul DNS to query services in the network.",
        schema: None,
        template: DNS_TEMPLATE,
    },
];

/// Every built-in templated policy (service, node, DNS).
pub fn templated_policies() -> &'static [TemplatedPolicy] {
    &TEMPLATED_POLICIES
}

/// The templated policy called `name` (e.g. `builtin/service`).
pub fn templated_policy(name: &str) -> Option<&'static TemplatedPolicy> {
    TEMPLATED_POLICIES.iter().find(|t| t.name == name)
}

impl TemplatedPolicy {
    /// The template text with its `{{.Name}}` placeholder, as `GET
    /// /v1/acl/templated-policies` shows it.
    pub fn template(&self) -> &'static str {
        self.template
    }

    /// Whether the template needs the `name` variable.
    pub fn takes_name(&self) -> bool {
        self.schema.is_some()
    }

    /// The rules text for these variables. Templates with a schema need `name`, validated like
    /// Consul's identity names (it is interpolated into rules text unescaped, which is safe only
    /// because of that validation); templates without one ignore it.
    pub fn render(&self, name_var: Option<&str>) -> Result<String, RulesError> {
        if !self.takes_name() {
            return Ok(self.template.to_owned());
        }
        let Some(name) = name_var else {
            return Err(RulesError(format!("templated policy {}: variable name is required", self.name)));
        };
        if !is_valid_identity_name(name) {
            let what = if self.name == TEMPLATED_POLICY_NODE_NAME { "node" } else { "service" };
            return Err(RulesError(format!(
                "{what} identity {} has an invalid name. Only lowercase alphanumeric characters, '-' and '_' are allowed",
                go_quote(name)
            )));
        }
        Ok(self.template.replace(NAME_VAR, name))
    }

    /// The rendered rules, parsed.
    pub fn rules(&self, name_var: Option<&str>) -> Result<Rules, RulesError> {
        Rules::parse(&self.render(name_var)?)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::acl::{Access, Authorizer, DefaultPolicy, Need, Resource, Rule, Scalar};

    fn rule(access: Access) -> Rule {
        Rule { access, intentions: None }
    }

    #[test]
    fn builtin_policy_ids_and_lookup() {
        let ids: Vec<_> = builtin_policies().iter().map(|p| (p.id, p.name)).collect();
        assert_eq!(
            ids,
            [
                ("00000000-0000-0000-0000-000000000001", "global-management"),
                ("00000000-0000-0000-0000-000000000002", "builtin/global-read-only"),
            ]
        );
        assert_eq!(builtin_policy(GLOBAL_MANAGEMENT_POLICY_ID).map(|p| p.name), Some("global-management"));
        assert_eq!(builtin_policy("00000000-0000-0000-0000-000000000009"), None);
        assert!(is_reserved_id("00000000-0000-0000-0000-000000000042"));
        assert!(!is_reserved_id("10000000-0000-0000-0000-000000000001"));
        assert_eq!(ANONYMOUS_TOKEN_ACCESSOR_ID, "00000000-0000-0000-0000-000000000002");
        assert_eq!(ANONYMOUS_TOKEN_SECRET_ID, "anonymous");
    }

    #[test]
    fn global_management_grants_everything() {
        let rules = builtin_policy(GLOBAL_MANAGEMENT_POLICY_ID).unwrap().parsed_rules().unwrap();
        for s in Scalar::ALL {
            assert_eq!(rules.scalar(s), Some(Access::Write), "{s}");
        }
        for r in Resource::ALL {
            let want = if r == Resource::Service {
                Rule { access: Access::Write, intentions: Some(Access::Write) }
            } else {
                rule(Access::Write)
            };
            assert_eq!(rules.segments(r).prefix.get(""), Some(&want), "{r}");
            assert!(rules.segments(r).exact.is_empty());
        }
        let a = Authorizer::new(rules, DefaultPolicy::Deny, true);
        assert!(a.allows_scalar(Scalar::Acl, Need::Write));
        assert!(a.allows_key_write_prefix(""));
        assert!(a.allows_intention("*", Need::Write));
        assert!(a.allows(Resource::Key, "any", Need::List));
    }

    #[test]
    fn global_read_only_grants_read_only() {
        let rules = builtin_policy(GLOBAL_READ_ONLY_POLICY_ID).unwrap().parsed_rules().unwrap();
        let a = Authorizer::new(rules, DefaultPolicy::Deny, true);
        for r in Resource::ALL {
            assert!(a.allows(r, "x", Need::Read), "{r}");
            assert!(!a.allows(r, "x", Need::Write), "{r}");
        }
        // Read does not grant list when the key list policy is enabled.
        assert!(!a.allows(Resource::Key, "x", Need::List));
        for s in Scalar::ALL {
            assert!(a.allows_scalar(s, Need::Read), "{s}");
            assert!(!a.allows_scalar(s, Need::Write), "{s}");
        }
        assert!(a.allows_intention("web", Need::Read));
        assert!(!a.allows_intention("web", Need::Write));
    }

    #[test]
    fn identity_name_validation() {
        let long_ok = "a".repeat(256);
        let too_long = "a".repeat(257);
        for (name, ok) in [
            ("web", true),
            ("w", true),
            ("9", true),
            ("web-1_b", true),
            (long_ok.as_str(), true),
            ("", false),
            (too_long.as_str(), false),
            ("Web", false),
            ("-web", false),
            ("web-", false),
            ("_web", false),
            ("web_", false),
            ("web.1", false),
            ("we b", false),
            ("wéb", false),
            ("web\"", false),
        ] {
            assert_eq!(is_valid_identity_name(name), ok, "{name:?}");
        }
    }

    #[test]
    fn service_identity_synthesis() {
        let rules = service_identity_rules("web", &[], "dc1").unwrap();
        let svc = rules.segments(Resource::Service);
        assert_eq!(svc.exact.get("web"), Some(&rule(Access::Write)));
        assert_eq!(svc.exact.get("web-sidecar-proxy"), Some(&rule(Access::Write)));
        assert_eq!(svc.exact.len(), 2);
        assert_eq!(svc.prefix.get(""), Some(&rule(Access::Read)));
        assert_eq!(rules.segments(Resource::Node).prefix.get(""), Some(&rule(Access::Read)));
        assert!(rules.segments(Resource::Key).exact.is_empty() && rules.segments(Resource::Key).prefix.is_empty());

        let a = Authorizer::new(rules, DefaultPolicy::Deny, false);
        assert!(a.allows(Resource::Service, "web", Need::Write));
        assert!(a.allows(Resource::Service, "web-sidecar-proxy", Need::Write));
        assert!(!a.allows(Resource::Service, "db", Need::Write));
        assert!(a.allows(Resource::Service, "db", Need::Read));
        assert!(a.allows(Resource::Node, "n1", Need::Read));
        assert!(!a.allows(Resource::Node, "n1", Need::Write));
        assert!(!a.allows(Resource::Key, "k", Need::Read));

        // Datacenter scoping.
        let dcs = vec!["dc2".to_owned(), "dc3".to_owned()];
        assert!(service_identity_rules("web", &dcs, "dc1").unwrap().is_empty());
        assert!(!service_identity_rules("web", &dcs, "dc3").unwrap().is_empty());

        assert_eq!(
            service_identity_rules("Web", &[], "dc1").unwrap_err().to_string(),
            r#"Service identity "Web" has an invalid name. Only lowercase alphanumeric characters, '-' and '_' are allowed"#
        );
    }

    #[test]
    fn node_identity_synthesis() {
        let rules = node_identity_rules("node-1", "dc1", "dc1").unwrap();
        assert_eq!(rules.segments(Resource::Node).exact.get("node-1"), Some(&rule(Access::Write)));
        assert_eq!(rules.segments(Resource::Service).prefix.get(""), Some(&rule(Access::Read)));
        assert!(rules.segments(Resource::Node).prefix.is_empty());
        let a = Authorizer::new(rules, DefaultPolicy::Deny, false);
        assert!(a.allows(Resource::Node, "node-1", Need::Write));
        assert!(!a.allows(Resource::Node, "node-2", Need::Read));
        assert!(a.allows(Resource::Service, "any", Need::Read));
        assert!(!a.allows(Resource::Service, "any", Need::Write));

        assert!(node_identity_rules("node-1", "dc2", "dc1").unwrap().is_empty());
        assert_eq!(
            node_identity_rules("node.1", "dc1", "dc1").unwrap_err().to_string(),
            r#"Node identity "node.1" has an invalid name. Only lowercase alphanumeric characters, '-' and '_' are allowed"#
        );
        assert_eq!(
            node_identity_rules("n", "", "dc1").unwrap_err().to_string(),
            r#"Node identity "n" is missing the datacenter field"#
        );
    }

    #[test]
    fn templated_policy_table() {
        let list: Vec<_> = templated_policies().iter().map(|t| (t.name, t.id, t.takes_name())).collect();
        assert_eq!(
            list,
            [
                ("builtin/service", "00000000-0000-0000-0000-000000000003", true),
                ("builtin/node", "00000000-0000-0000-0000-000000000004", true),
                ("builtin/dns", "00000000-0000-0000-0000-000000000005", false),
            ]
        );
        assert!(templated_policy("builtin/nope").is_none());
        let dns = templated_policy("builtin/dns").unwrap();
        assert_eq!(
            dns.description,
            "Gives the token or role permissions for the Consul DNS to query services in the network."
        );
        assert!(dns.schema.is_none());
        let service = templated_policy("builtin/service").unwrap();
        assert!(service.template().contains("service \"{{.Name}}-sidecar-proxy\""));
        // The schema is valid JSON requiring a non-empty name.
        let schema: serde_json::Value = serde_json::from_str(service.schema.unwrap()).unwrap();
        assert_eq!(schema["required"], serde_json::json!(["name"]));
    }

    #[test]
    fn templated_policy_rendering() {
        let service = templated_policy(TEMPLATED_POLICY_SERVICE_NAME).unwrap();
        let text = service.render(Some("api")).unwrap();
        assert_eq!(
            text,
            "\nservice \"api\" {\n\tpolicy = \"write\"\n}\nservice \"api-sidecar-proxy\" {\n\tpolicy = \"write\"\n}\nservice_prefix \"\" {\n\tpolicy = \"read\"\n}\nnode_prefix \"\" {\n\tpolicy = \"read\"\n}"
        );
        // The service template and the service identity agree.
        assert_eq!(service.rules(Some("api")).unwrap(), service_identity_rules("api", &[], "dc1").unwrap());
        let node = templated_policy(TEMPLATED_POLICY_NODE_NAME).unwrap();
        assert_eq!(node.rules(Some("n1")).unwrap(), node_identity_rules("n1", "dc1", "dc1").unwrap());

        let dns = templated_policy(TEMPLATED_POLICY_DNS_NAME).unwrap();
        let dns_rules = dns.rules(None).unwrap();
        assert_eq!(dns.rules(Some("ignored")).unwrap(), dns_rules);
        for r in [Resource::Node, Resource::Service, Resource::Query] {
            assert_eq!(dns_rules.segments(r).prefix.get(""), Some(&rule(Access::Read)), "{r}");
        }

        assert_eq!(
            service.render(None).unwrap_err().to_string(),
            "templated policy builtin/service: variable name is required"
        );
        assert_eq!(
            service.render(Some("")).unwrap_err().to_string(),
            r#"service identity "" has an invalid name. Only lowercase alphanumeric characters, '-' and '_' are allowed"#
        );
        // An injection attempt is refused by the name check, never rendered.
        assert_eq!(
            node.render(Some("x\" {\n policy = \"write\"\n}\nacl = \"write")).unwrap_err().to_string(),
            r#"node identity "x\" {\n policy = \"write\"\n}\nacl = \"write" has an invalid name. Only lowercase alphanumeric characters, '-' and '_' are allowed"#
        );
    }
}
