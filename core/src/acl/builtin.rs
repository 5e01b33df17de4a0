//! TEMP stub: built-in IDs and templated policies.

use super::rules::RulesError;

/// ID of the builtin `global-management` policy.
pub const GLOBAL_MANAGEMENT_ID: &str = "00000000-0000-0000-0000-000000000001";
/// AccessorID of the anonymous token.
pub const ANONYMOUS_ACCESSOR_ID: &str = "00000000-0000-0000-0000-000000000002";
/// SecretID of the anonymous token.
pub const ANONYMOUS_SECRET_ID: &str = "anonymous";

/// A built-in policy template (`builtin/service`, `builtin/node`, …).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplatedPolicy {
    /// Template name.
    pub name: &'static str,
    /// Fixed ID.
    pub id: &'static str,
    /// Description.
    pub description: &'static str,
    /// JSON schema of the variables, if it takes any.
    pub schema: Option<&'static str>,
    template: &'static str,
}

const NAME_SCHEMA: &str = r##"{
  "type": "object",
  "properties": { "name": { "type": "string", "$ref": "#/definitions/min-length-one" } },
  "required": ["name"],
  "definitions": { "min-length-one": { "type": "string", "minLength": 1 } }
}"##;

const TEMPLATES: &[TemplatedPolicy] = &[
    TemplatedPolicy {
        name: "builtin/service",
        id: "00000000-0000-0000-0000-000000000003",
        description: "Gives the token or role permissions to register a service and discover services in the Consul catalog. It also gives the specified service's sidecar proxy the permission to discover and route traffic to other services.",
        schema: Some(NAME_SCHEMA),
        template: "service \"{{.Name}}\" {\n  policy = \"write\"\n}\nservice \"{{.Name}}-sidecar-proxy\" {\n  policy = \"write\"\n}\nservice_prefix \"\" {\n  policy = \"read\"\n}\nnode_prefix \"\" {\n  policy = \"read\"\n}",
    },
    TemplatedPolicy {
        name: "builtin/node",
        id: "00000000-0000-0000-0000-000000000004",
        description: "Gives the token or role permissions for a register an agent/node into the catalog. A node is typically a consul agent but can also be a physical server, cloud instance or a container.",
        schema: Some(NAME_SCHEMA),
        template: "node \"{{.Name}}\" {\n  policy = \"write\"\n}\nservice_prefix \"\" {\n  policy = \"read\"\n}",
    },
    TemplatedPolicy {
        name: "builtin/dns",
        id: "00000000-0000-0000-0000-000000000005",
        description: "Gives the token or role permissions for the Consul DNS to query services in the network.",
        schema: None,
        template: "node_prefix \"\" {\n  policy = \"read\"\n}\nservice_prefix \"\" {\n  policy = \"read\"\n}\nquery_prefix \"\" {\n  policy = \"read\"\n}",
    },
];

/// The templated policy called `name`.
pub fn templated_policy(name: &str) -> Option<&'static TemplatedPolicy> {
    TEMPLATES.iter().find(|t| t.name == name)
}

/// Every templated policy.
pub fn templated_policies() -> &'static [TemplatedPolicy] {
    TEMPLATES
}

impl TemplatedPolicy {
    /// Renders the rules for `name_var` (required when the template has a schema).
    pub fn render(&self, name_var: Option<&str>) -> Result<String, RulesError> {
        match (self.schema, name_var) {
            (Some(_), None | Some("")) => {
                Err(RulesError("name: String length must be greater than or equal to 1".into()))
            }
            (_, Some(n)) => Ok(self.template.replace("{{.Name}}", n)),
            (None, None) => Ok(self.template.to_string()),
        }
    }
}
