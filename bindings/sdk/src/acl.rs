//! Consul's ACL HTTP API (`/v1/acl/*`, `/v1/agent/token/*`), typed.
//!
//! The wire types carry Consul's JSON field names, in the field order and with the `omitempty`
//! rules of Consul's Go `api` package (`api/acl.go`): the `consul-rs acl … -format=json` output is
//! these types re-serialized, and Consul's CLI prints its `api` structs the same way, so the two
//! agree byte for byte. Times are kept as the RFC 3339 strings the agent sent; hashes as the
//! base64 it sent.
//!
//! Errors keep Consul's own client wording, `Unexpected response code: 403 (Permission denied:
//! …)`, with [`ErrorCode::PermissionDenied`] for 401/403 (`ACL not found`, `Permission denied`,
//! `ACL support disabled`).

use std::collections::BTreeMap;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::client::{escape, Client, RawResponse};
use crate::error::{Error, ErrorCode, Result};

/// Go's zero `time.Time`, which Consul's `api` structs marshal when no time is set.
pub const GO_ZERO_TIME: &str = "0001-01-01T00:00:00Z";

fn go_zero_time() -> String {
    GO_ZERO_TIME.to_string()
}

fn is_zero(n: &i64) -> bool {
    *n == 0
}

fn empty_opt<T: AsRef<[u8]>>(v: &Option<T>) -> bool {
    v.as_ref().is_none_or(|v| v.as_ref().is_empty())
}

/// `null` and a missing field both read as the type's default (Go's zero value).
fn null_default<'de, D, T>(d: D) -> std::result::Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// Durations as Go's `time.Duration` JSON: an integer of nanoseconds (Consul's agent also
/// accepts and, for auth methods, sends a duration string such as `"1h0m0s"`).
mod nanos {
    use serde::{Deserialize, Deserializer};

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Either {
        N(i64),
        S(String),
    }

    /// Reads nanoseconds from a number, or from a Go duration string.
    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
        match Option::<Either>::deserialize(d)? {
            None => Ok(0),
            Some(Either::N(n)) => Ok(n),
            Some(Either::S(s)) if s.is_empty() => Ok(0),
            Some(Either::S(s)) => consul_core::duration::parse_go_duration(&s)
                .map(|d| d.as_nanos().min(i64::MAX as u128) as i64)
                .map_err(serde::de::Error::custom),
        }
    }
}

/// A Go duration string for nanoseconds (`"1h0m0s"`), as Go's `Duration.String` writes it.
pub fn go_duration_string(nanos: i64) -> String {
    if nanos <= 0 {
        return "0s".into();
    }
    consul_core::duration::format_go_duration(std::time::Duration::from_nanos(nanos as u64))
}

/// A link to a policy or role by ID or name (`ACLLink`). On writes either may be empty.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AclLink {
    /// `ID`.
    #[serde(rename = "ID", default, deserialize_with = "null_default")]
    pub id: String,
    /// `Name`.
    #[serde(rename = "Name", default, deserialize_with = "null_default")]
    pub name: String,
}

impl AclLink {
    /// A link by ID.
    pub fn by_id(id: impl Into<String>) -> AclLink {
        AclLink { id: id.into(), name: String::new() }
    }

    /// A link by name.
    pub fn by_name(name: impl Into<String>) -> AclLink {
        AclLink { id: String::new(), name: name.into() }
    }
}

/// A service identity (`ACLServiceIdentity`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct AclServiceIdentity {
    /// `ServiceName`.
    #[serde(default, deserialize_with = "null_default")]
    pub service_name: String,
    /// `Datacenters` (empty: all).
    #[serde(default, skip_serializing_if = "Vec::is_empty", deserialize_with = "null_default")]
    pub datacenters: Vec<String>,
}

/// A node identity (`ACLNodeIdentity`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct AclNodeIdentity {
    /// `NodeName`.
    #[serde(default, deserialize_with = "null_default")]
    pub node_name: String,
    /// `Datacenter`.
    #[serde(default, deserialize_with = "null_default")]
    pub datacenter: String,
}

/// Variables of a templated policy (`ACLTemplatedPolicyVariables`, Consul 1.17+).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct AclTemplatedPolicyVariables {
    /// `Name`.
    #[serde(default, skip_serializing_if = "String::is_empty", deserialize_with = "null_default")]
    pub name: String,
}

/// A templated policy on a token or role (`ACLTemplatedPolicy`, Consul 1.17+).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct AclTemplatedPolicy {
    /// `TemplateName`, e.g. `builtin/service`.
    #[serde(default, deserialize_with = "null_default")]
    pub template_name: String,
    /// `TemplateVariables`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template_variables: Option<AclTemplatedPolicyVariables>,
    /// `Datacenters` (empty: all).
    #[serde(default, skip_serializing_if = "Vec::is_empty", deserialize_with = "null_default")]
    pub datacenters: Vec<String>,
}

/// A token (`ACLToken`): what create, read, update, clone and bootstrap answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct AclToken {
    /// `CreateIndex`.
    #[serde(default, deserialize_with = "null_default")]
    pub create_index: u64,
    /// `ModifyIndex`.
    #[serde(default, deserialize_with = "null_default")]
    pub modify_index: u64,
    /// `AccessorID`: the token's public ID.
    #[serde(rename = "AccessorID", default, deserialize_with = "null_default")]
    pub accessor_id: String,
    /// `SecretID`: the bearer secret.
    #[serde(rename = "SecretID", default, deserialize_with = "null_default")]
    pub secret_id: String,
    /// `Description`.
    #[serde(default, deserialize_with = "null_default")]
    pub description: String,
    /// `Policies`.
    #[serde(default, skip_serializing_if = "Vec::is_empty", deserialize_with = "null_default")]
    pub policies: Vec<AclLink>,
    /// `Roles`.
    #[serde(default, skip_serializing_if = "Vec::is_empty", deserialize_with = "null_default")]
    pub roles: Vec<AclLink>,
    /// `ServiceIdentities`.
    #[serde(default, skip_serializing_if = "Vec::is_empty", deserialize_with = "null_default")]
    pub service_identities: Vec<AclServiceIdentity>,
    /// `NodeIdentities`.
    #[serde(default, skip_serializing_if = "Vec::is_empty", deserialize_with = "null_default")]
    pub node_identities: Vec<AclNodeIdentity>,
    /// `TemplatedPolicies` (Consul 1.17+).
    #[serde(default, skip_serializing_if = "Vec::is_empty", deserialize_with = "null_default")]
    pub templated_policies: Vec<AclTemplatedPolicy>,
    /// `Local`: valid in this datacenter only.
    #[serde(default, deserialize_with = "null_default")]
    pub local: bool,
    /// `AuthMethod` that minted the token, if any.
    #[serde(default, skip_serializing_if = "String::is_empty", deserialize_with = "null_default")]
    pub auth_method: String,
    /// `ExpirationTTL` in nanoseconds (on create only; 0: none).
    #[serde(rename = "ExpirationTTL", default, skip_serializing_if = "is_zero", with = "nanos_ser")]
    pub expiration_ttl: i64,
    /// `ExpirationTime` (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expiration_time: Option<String>,
    /// `CreateTime` (RFC 3339; Go's zero time when unset).
    #[serde(default = "go_zero_time", deserialize_with = "time_or_zero")]
    pub create_time: String,
    /// `Hash` (base64).
    #[serde(default, skip_serializing_if = "empty_opt")]
    pub hash: Option<String>,
    /// `Namespace` (Enterprise).
    #[serde(default, skip_serializing_if = "String::is_empty", deserialize_with = "null_default")]
    pub namespace: String,
    /// `Partition` (Enterprise).
    #[serde(default, skip_serializing_if = "String::is_empty", deserialize_with = "null_default")]
    pub partition: String,
    /// `AuthMethodNamespace` (Enterprise).
    #[serde(default, skip_serializing_if = "String::is_empty", deserialize_with = "null_default")]
    pub auth_method_namespace: String,
}

impl Default for AclToken {
    fn default() -> Self {
        AclToken {
            create_index: 0,
            modify_index: 0,
            accessor_id: String::new(),
            secret_id: String::new(),
            description: String::new(),
            policies: Vec::new(),
            roles: Vec::new(),
            service_identities: Vec::new(),
            node_identities: Vec::new(),
            templated_policies: Vec::new(),
            local: false,
            auth_method: String::new(),
            expiration_ttl: 0,
            expiration_time: None,
            create_time: go_zero_time(),
            hash: None,
            namespace: String::new(),
            partition: String::new(),
            auth_method_namespace: String::new(),
        }
    }
}

fn time_or_zero<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<String, D::Error> {
    Ok(Option::<String>::deserialize(d)?.unwrap_or_else(go_zero_time))
}

/// [`nanos`] for reading, a plain integer for writing (what Consul's Go client sends).
mod nanos_ser {
    pub(super) use super::nanos::deserialize;
    use serde::Serializer;

    /// Writes nanoseconds as an integer.
    pub(super) fn serialize<S: Serializer>(n: &i64, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_i64(*n)
    }
}

/// A token in a list (`ACLTokenListEntry`): no `ExpirationTTL`, `Hash` always present.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct AclTokenListEntry {
    /// `CreateIndex`.
    #[serde(default, deserialize_with = "null_default")]
    pub create_index: u64,
    /// `ModifyIndex`.
    #[serde(default, deserialize_with = "null_default")]
    pub modify_index: u64,
    /// `AccessorID`.
    #[serde(rename = "AccessorID", default, deserialize_with = "null_default")]
    pub accessor_id: String,
    /// `SecretID` (redacted without `acl:write`).
    #[serde(rename = "SecretID", default, deserialize_with = "null_default")]
    pub secret_id: String,
    /// `Description`.
    #[serde(default, deserialize_with = "null_default")]
    pub description: String,
    /// `Policies`.
    #[serde(default, skip_serializing_if = "Vec::is_empty", deserialize_with = "null_default")]
    pub policies: Vec<AclLink>,
    /// `Roles`.
    #[serde(default, skip_serializing_if = "Vec::is_empty", deserialize_with = "null_default")]
    pub roles: Vec<AclLink>,
    /// `ServiceIdentities`.
    #[serde(default, skip_serializing_if = "Vec::is_empty", deserialize_with = "null_default")]
    pub service_identities: Vec<AclServiceIdentity>,
    /// `NodeIdentities`.
    #[serde(default, skip_serializing_if = "Vec::is_empty", deserialize_with = "null_default")]
    pub node_identities: Vec<AclNodeIdentity>,
    /// `TemplatedPolicies` (Consul 1.17+).
    #[serde(default, skip_serializing_if = "Vec::is_empty", deserialize_with = "null_default")]
    pub templated_policies: Vec<AclTemplatedPolicy>,
    /// `Local`.
    #[serde(default, deserialize_with = "null_default")]
    pub local: bool,
    /// `AuthMethod`.
    #[serde(default, skip_serializing_if = "String::is_empty", deserialize_with = "null_default")]
    pub auth_method: String,
    /// `ExpirationTime`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expiration_time: Option<String>,
    /// `CreateTime`.
    #[serde(default = "go_zero_time", deserialize_with = "time_or_zero")]
    pub create_time: String,
    /// `Hash` (base64; `null` when absent).
    #[serde(default)]
    pub hash: Option<String>,
    /// `Namespace` (Enterprise).
    #[serde(default, skip_serializing_if = "String::is_empty", deserialize_with = "null_default")]
    pub namespace: String,
    /// `Partition` (Enterprise).
    #[serde(default, skip_serializing_if = "String::is_empty", deserialize_with = "null_default")]
    pub partition: String,
    /// `AuthMethodNamespace` (Enterprise).
    #[serde(default, skip_serializing_if = "String::is_empty", deserialize_with = "null_default")]
    pub auth_method_namespace: String,
}

/// A token with everything it resolves to (`GET /v1/acl/token/:id?expanded`, Consul's
/// `ACLTokenExpanded`): the token's own fields, the policies and roles behind its links, and
/// the resolving agent's defaults.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct AclTokenExpanded {
    /// `ExpandedPolicies`: every policy the token links, directly or through its roles.
    #[serde(default, deserialize_with = "null_default")]
    pub expanded_policies: Vec<AclPolicy>,
    /// `ExpandedRoles`: every role the token links.
    #[serde(default, deserialize_with = "null_default")]
    pub expanded_roles: Vec<AclRole>,
    /// `NamespaceDefaultPolicyIDs` (Enterprise; always empty here).
    #[serde(rename = "NamespaceDefaultPolicyIDs", default, deserialize_with = "null_default")]
    pub namespace_default_policy_ids: Vec<String>,
    /// `NamespaceDefaultRoleIDs` (Enterprise; always empty here).
    #[serde(rename = "NamespaceDefaultRoleIDs", default, deserialize_with = "null_default")]
    pub namespace_default_role_ids: Vec<String>,
    /// `AgentACLDefaultPolicy`: `allow` or `deny`.
    #[serde(rename = "AgentACLDefaultPolicy", default, deserialize_with = "null_default")]
    pub agent_acl_default_policy: String,
    /// `AgentACLDownPolicy`: the resolving agent's `acl.down_policy`.
    #[serde(rename = "AgentACLDownPolicy", default, deserialize_with = "null_default")]
    pub agent_acl_down_policy: String,
    /// `ResolvedByAgent`: the node name of the agent that answered.
    #[serde(default, deserialize_with = "null_default")]
    pub resolved_by_agent: String,
    /// The token itself.
    #[serde(flatten)]
    pub token: AclToken,
}

/// A policy (`ACLPolicy`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct AclPolicy {
    /// `ID`.
    #[serde(rename = "ID", default, deserialize_with = "null_default")]
    pub id: String,
    /// `Name`.
    #[serde(default, deserialize_with = "null_default")]
    pub name: String,
    /// `Description`.
    #[serde(default, deserialize_with = "null_default")]
    pub description: String,
    /// `Rules` (HCL or JSON rule text).
    #[serde(default, deserialize_with = "null_default")]
    pub rules: String,
    /// `Datacenters` it is valid in (`None`/empty: all).
    #[serde(default)]
    pub datacenters: Option<Vec<String>>,
    /// `Hash` (base64).
    #[serde(default)]
    pub hash: Option<String>,
    /// `CreateIndex`.
    #[serde(default, deserialize_with = "null_default")]
    pub create_index: u64,
    /// `ModifyIndex`.
    #[serde(default, deserialize_with = "null_default")]
    pub modify_index: u64,
    /// `Namespace` (Enterprise).
    #[serde(default, skip_serializing_if = "String::is_empty", deserialize_with = "null_default")]
    pub namespace: String,
    /// `Partition` (Enterprise).
    #[serde(default, skip_serializing_if = "String::is_empty", deserialize_with = "null_default")]
    pub partition: String,
}

/// A policy in a list (`ACLPolicyListEntry`): no rules.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct AclPolicyListEntry {
    /// `ID`.
    #[serde(rename = "ID", default, deserialize_with = "null_default")]
    pub id: String,
    /// `Name`.
    #[serde(default, deserialize_with = "null_default")]
    pub name: String,
    /// `Description`.
    #[serde(default, deserialize_with = "null_default")]
    pub description: String,
    /// `Datacenters`.
    #[serde(default)]
    pub datacenters: Option<Vec<String>>,
    /// `Hash` (base64).
    #[serde(default)]
    pub hash: Option<String>,
    /// `CreateIndex`.
    #[serde(default, deserialize_with = "null_default")]
    pub create_index: u64,
    /// `ModifyIndex`.
    #[serde(default, deserialize_with = "null_default")]
    pub modify_index: u64,
    /// `Namespace` (Enterprise).
    #[serde(default, skip_serializing_if = "String::is_empty", deserialize_with = "null_default")]
    pub namespace: String,
    /// `Partition` (Enterprise).
    #[serde(default, skip_serializing_if = "String::is_empty", deserialize_with = "null_default")]
    pub partition: String,
}

/// A role (`ACLRole`); lists answer the same shape.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct AclRole {
    /// `ID`.
    #[serde(rename = "ID", default, deserialize_with = "null_default")]
    pub id: String,
    /// `Name`.
    #[serde(default, deserialize_with = "null_default")]
    pub name: String,
    /// `Description`.
    #[serde(default, deserialize_with = "null_default")]
    pub description: String,
    /// `Policies`.
    #[serde(default, skip_serializing_if = "Vec::is_empty", deserialize_with = "null_default")]
    pub policies: Vec<AclLink>,
    /// `ServiceIdentities`.
    #[serde(default, skip_serializing_if = "Vec::is_empty", deserialize_with = "null_default")]
    pub service_identities: Vec<AclServiceIdentity>,
    /// `NodeIdentities`.
    #[serde(default, skip_serializing_if = "Vec::is_empty", deserialize_with = "null_default")]
    pub node_identities: Vec<AclNodeIdentity>,
    /// `TemplatedPolicies` (Consul 1.17+).
    #[serde(default, skip_serializing_if = "Vec::is_empty", deserialize_with = "null_default")]
    pub templated_policies: Vec<AclTemplatedPolicy>,
    /// `Hash` (base64).
    #[serde(default)]
    pub hash: Option<String>,
    /// `CreateIndex`.
    #[serde(default, deserialize_with = "null_default")]
    pub create_index: u64,
    /// `ModifyIndex`.
    #[serde(default, deserialize_with = "null_default")]
    pub modify_index: u64,
    /// `Namespace` (Enterprise).
    #[serde(default, skip_serializing_if = "String::is_empty", deserialize_with = "null_default")]
    pub namespace: String,
    /// `Partition` (Enterprise).
    #[serde(default, skip_serializing_if = "String::is_empty", deserialize_with = "null_default")]
    pub partition: String,
}

/// A binding rule (`ACLBindingRule`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct AclBindingRule {
    /// `ID`.
    #[serde(rename = "ID", default, deserialize_with = "null_default")]
    pub id: String,
    /// `Description`.
    #[serde(default, deserialize_with = "null_default")]
    pub description: String,
    /// `AuthMethod` it applies to.
    #[serde(default, deserialize_with = "null_default")]
    pub auth_method: String,
    /// `Selector` over the method's claims.
    #[serde(default, deserialize_with = "null_default")]
    pub selector: String,
    /// `BindType`: `service`, `node`, `role` (`policy`, `templated-policy` in 1.17+).
    #[serde(default, deserialize_with = "null_default")]
    pub bind_type: String,
    /// `BindName`.
    #[serde(default, deserialize_with = "null_default")]
    pub bind_name: String,
    /// `CreateIndex`.
    #[serde(default, deserialize_with = "null_default")]
    pub create_index: u64,
    /// `ModifyIndex`.
    #[serde(default, deserialize_with = "null_default")]
    pub modify_index: u64,
    /// `Namespace` (Enterprise).
    #[serde(default, skip_serializing_if = "String::is_empty", deserialize_with = "null_default")]
    pub namespace: String,
    /// `Partition` (Enterprise).
    #[serde(default, skip_serializing_if = "String::is_empty", deserialize_with = "null_default")]
    pub partition: String,
}

/// An auth method (`ACLAuthMethod`). `MaxTokenTTL` goes over the wire as a Go duration string and
/// comes first, as Consul's custom marshaller writes it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct AclAuthMethod {
    /// `MaxTokenTTL` in nanoseconds (0: the agent's maximum).
    #[serde(rename = "MaxTokenTTL", default, skip_serializing_if = "is_zero", with = "duration_text")]
    pub max_token_ttl: i64,
    /// `Name`.
    #[serde(default, deserialize_with = "null_default")]
    pub name: String,
    /// `Type`: `kubernetes`, `jwt`, `oidc`, `aws-iam`.
    #[serde(default, deserialize_with = "null_default")]
    pub r#type: String,
    /// `DisplayName`.
    #[serde(default, skip_serializing_if = "String::is_empty", deserialize_with = "null_default")]
    pub display_name: String,
    /// `Description`.
    #[serde(default, skip_serializing_if = "String::is_empty", deserialize_with = "null_default")]
    pub description: String,
    /// `TokenLocality`: `local` or `global`.
    #[serde(default, skip_serializing_if = "String::is_empty", deserialize_with = "null_default")]
    pub token_locality: String,
    /// `Config`: the method type's own settings.
    #[serde(default)]
    pub config: Option<BTreeMap<String, Value>>,
    /// `CreateIndex`.
    #[serde(default, deserialize_with = "null_default")]
    pub create_index: u64,
    /// `ModifyIndex`.
    #[serde(default, deserialize_with = "null_default")]
    pub modify_index: u64,
    /// `NamespaceRules` (Enterprise).
    #[serde(default, skip_serializing_if = "Vec::is_empty", deserialize_with = "null_default")]
    pub namespace_rules: Vec<Value>,
    /// `Namespace` (Enterprise).
    #[serde(default, skip_serializing_if = "String::is_empty", deserialize_with = "null_default")]
    pub namespace: String,
    /// `Partition` (Enterprise).
    #[serde(default, skip_serializing_if = "String::is_empty", deserialize_with = "null_default")]
    pub partition: String,
}

/// An auth method in a list (`ACLAuthMethodListEntry`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct AclAuthMethodListEntry {
    /// `MaxTokenTTL` in nanoseconds.
    #[serde(rename = "MaxTokenTTL", default, skip_serializing_if = "is_zero", with = "duration_text")]
    pub max_token_ttl: i64,
    /// `Name`.
    #[serde(default, deserialize_with = "null_default")]
    pub name: String,
    /// `Type`.
    #[serde(default, deserialize_with = "null_default")]
    pub r#type: String,
    /// `DisplayName`.
    #[serde(default, skip_serializing_if = "String::is_empty", deserialize_with = "null_default")]
    pub display_name: String,
    /// `Description`.
    #[serde(default, skip_serializing_if = "String::is_empty", deserialize_with = "null_default")]
    pub description: String,
    /// `TokenLocality`.
    #[serde(default, skip_serializing_if = "String::is_empty", deserialize_with = "null_default")]
    pub token_locality: String,
    /// `CreateIndex`.
    #[serde(default, deserialize_with = "null_default")]
    pub create_index: u64,
    /// `ModifyIndex`.
    #[serde(default, deserialize_with = "null_default")]
    pub modify_index: u64,
    /// `Namespace` (Enterprise).
    #[serde(default, skip_serializing_if = "String::is_empty", deserialize_with = "null_default")]
    pub namespace: String,
    /// `Partition` (Enterprise).
    #[serde(default, skip_serializing_if = "String::is_empty", deserialize_with = "null_default")]
    pub partition: String,
}

/// Durations written as Go duration strings, read as strings or nanoseconds.
mod duration_text {
    pub(super) use super::nanos::deserialize;
    use serde::Serializer;

    /// Writes nanoseconds as `"1h0m0s"`.
    pub(super) fn serialize<S: Serializer>(n: &i64, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::go_duration_string(*n))
    }
}

/// A templated policy as `/v1/acl/templated-policies` describes it (Consul 1.17+).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct AclTemplatedPolicyResponse {
    /// `TemplateName`.
    #[serde(default, deserialize_with = "null_default")]
    pub template_name: String,
    /// `Schema` (JSON schema of its variables).
    #[serde(default, deserialize_with = "null_default")]
    pub schema: String,
    /// `Template` (rule text with placeholders).
    #[serde(default, deserialize_with = "null_default")]
    pub template: String,
    /// `Description`.
    #[serde(default, deserialize_with = "null_default")]
    pub description: String,
}

/// ACL replication state (`/v1/acl/replication`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct AclReplicationStatus {
    /// `Enabled`.
    #[serde(default, deserialize_with = "null_default")]
    pub enabled: bool,
    /// `Running`.
    #[serde(default, deserialize_with = "null_default")]
    pub running: bool,
    /// `SourceDatacenter`.
    #[serde(default, deserialize_with = "null_default")]
    pub source_datacenter: String,
    /// `ReplicationType`.
    #[serde(default, deserialize_with = "null_default")]
    pub replication_type: String,
    /// `ReplicatedIndex`.
    #[serde(default, deserialize_with = "null_default")]
    pub replicated_index: u64,
    /// `ReplicatedRoleIndex`.
    #[serde(default, deserialize_with = "null_default")]
    pub replicated_role_index: u64,
    /// `ReplicatedTokenIndex`.
    #[serde(default, deserialize_with = "null_default")]
    pub replicated_token_index: u64,
    /// `LastSuccess`.
    #[serde(default = "go_zero_time", deserialize_with = "time_or_zero")]
    pub last_success: String,
    /// `LastError`.
    #[serde(default = "go_zero_time", deserialize_with = "time_or_zero")]
    pub last_error: String,
    /// `LastErrorMessage`.
    #[serde(default, deserialize_with = "null_default")]
    pub last_error_message: String,
}

/// `POST /v1/acl/login` parameters (`ACLLoginParams`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct AclLoginParams {
    /// `AuthMethod`.
    pub auth_method: String,
    /// `BearerToken`: the credential the method verifies.
    pub bearer_token: String,
    /// `Meta` put on the minted token.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub meta: BTreeMap<String, String>,
}

/// Filters of a token list (`?policy=`, `?role=`, `?authmethod=`, `?servicename=`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TokenListFilter {
    /// Only tokens linking this policy ID.
    pub policy: Option<String>,
    /// Only tokens linking this role ID.
    pub role: Option<String>,
    /// Only tokens minted by this auth method.
    pub auth_method: Option<String>,
    /// Only tokens with this service identity.
    pub service_name: Option<String>,
}

/// The agent tokens `PUT /v1/agent/token/<type>` sets.
pub const AGENT_TOKEN_TYPES: &[&str] =
    &["default", "agent", "agent_recovery", "replication", "config_file_service_registration", "dns"];

/// Legacy spellings of agent token types, as Consul's CLI still accepts them.
fn agent_token_type(t: &str) -> Result<&'static str> {
    Ok(match t {
        "default" => "default",
        "agent" => "agent",
        "agent_recovery" | "agent-recovery" | "agent_master" | "master" => "agent_recovery",
        "replication" | "acl_replication_token" => "replication",
        "config_file_service_registration" => "config_file_service_registration",
        "dns" => "dns",
        other => return Err(Error::invalid("token_type", format!("unknown agent token type {other:?}"))),
    })
}

fn decode<T: DeserializeOwned>(r: RawResponse) -> Result<T> {
    r.error_for_status()?.json()
}

fn not_empty(arg: &str, v: &str) -> Result<()> {
    if v.is_empty() {
        return Err(Error::invalid(arg, "must not be empty"));
    }
    Ok(())
}

fn body<T: Serialize>(arg: &str, v: &T) -> Result<Option<Vec<u8>>> {
    serde_json::to_vec(v).map(Some).map_err(|e| Error::invalid(arg, e))
}

/// Typed ACL calls on a [`Client`] (its token, or [`Client::with_token`]'s, authorizes them).
impl Client {
    async fn acl_get<T: DeserializeOwned>(&self, path: &str, query: &[(&str, Option<&str>)]) -> Result<T> {
        decode(self.call("GET", path, query, None).await?)
    }

    /// `GET` that answers `None` on 404, as Consul's client does for policy and role reads.
    async fn acl_get_opt<T: DeserializeOwned>(&self, path: &str) -> Result<Option<T>> {
        let r = self.call("GET", path, &[], None).await?;
        if r.status == 404 {
            return Ok(None);
        }
        decode(r).map(Some)
    }

    async fn acl_delete(&self, path: &str) -> Result<()> {
        self.call("DELETE", path, &[], None).await?.error_for_status().map(|_| ())
    }

    /// `PUT /v1/acl/bootstrap`: the initial management token, once. `secret` chooses its
    /// SecretID (Consul's `BootstrapSecret`).
    pub async fn acl_bootstrap(&self, secret: Option<&str>) -> Result<AclToken> {
        let b = match secret.filter(|s| !s.is_empty()) {
            Some(s) => body("secret", &serde_json::json!({ "BootstrapSecret": s }))?,
            None => None,
        };
        decode(self.call("PUT", "/v1/acl/bootstrap", &[], b).await?)
    }

    /// `PUT /v1/acl/token`: creates a token; the answer carries its AccessorID and SecretID.
    pub async fn acl_token_create(&self, token: &AclToken) -> Result<AclToken> {
        decode(self.call("PUT", "/v1/acl/token", &[], body("token", token)?).await?)
    }

    /// `GET /v1/acl/token/:accessor`. An unknown token is a 403 `ACL not found`
    /// ([`ErrorCode::PermissionDenied`]), as in Consul.
    pub async fn acl_token_read(&self, accessor_id: &str) -> Result<AclToken> {
        not_empty("accessor_id", accessor_id)?;
        self.acl_get(&format!("/v1/acl/token/{}", escape(accessor_id, false)), &[]).await
    }

    /// `GET /v1/acl/token/:accessor?expanded`: the token with the policies and roles it
    /// resolves to (`acl token read -expanded`).
    pub async fn acl_token_read_expanded(&self, accessor_id: &str) -> Result<AclTokenExpanded> {
        not_empty("accessor_id", accessor_id)?;
        self.acl_get(&format!("/v1/acl/token/{}", escape(accessor_id, false)), &[("expanded", None)]).await
    }

    /// `GET /v1/acl/token/self`: the token this client sends.
    pub async fn acl_token_read_self(&self) -> Result<AclToken> {
        self.acl_get("/v1/acl/token/self", &[]).await
    }

    /// `PUT /v1/acl/token/:accessor`: replaces a token's description, links and identities.
    pub async fn acl_token_update(&self, token: &AclToken) -> Result<AclToken> {
        not_empty("accessor_id", &token.accessor_id)?;
        let path = format!("/v1/acl/token/{}", escape(&token.accessor_id, false));
        decode(self.call("PUT", &path, &[], body("token", token)?).await?)
    }

    /// `DELETE /v1/acl/token/:accessor`.
    pub async fn acl_token_delete(&self, accessor_id: &str) -> Result<()> {
        not_empty("accessor_id", accessor_id)?;
        self.acl_delete(&format!("/v1/acl/token/{}", escape(accessor_id, false))).await
    }

    /// `PUT /v1/acl/token/:accessor/clone`: a new token with the same links.
    pub async fn acl_token_clone(&self, accessor_id: &str, description: &str) -> Result<AclToken> {
        not_empty("accessor_id", accessor_id)?;
        let path = format!("/v1/acl/token/{}/clone", escape(accessor_id, false));
        let b = body("description", &serde_json::json!({ "Description": description }))?;
        decode(self.call("PUT", &path, &[], b).await?)
    }

    /// `GET /v1/acl/tokens`, filtered.
    pub async fn acl_token_list(&self, filter: &TokenListFilter) -> Result<Vec<AclTokenListEntry>> {
        let q: Vec<(&str, Option<&str>)> = [
            ("policy", &filter.policy),
            ("role", &filter.role),
            ("authmethod", &filter.auth_method),
            ("servicename", &filter.service_name),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.as_deref().filter(|v| !v.is_empty()).map(|v| (k, Some(v))))
        .collect();
        let list: Option<Vec<AclTokenListEntry>> = self.acl_get("/v1/acl/tokens", &q).await?;
        Ok(list.unwrap_or_default())
    }

    /// `PUT /v1/acl/policy`.
    pub async fn acl_policy_create(&self, policy: &AclPolicy) -> Result<AclPolicy> {
        decode(self.call("PUT", "/v1/acl/policy", &[], body("policy", policy)?).await?)
    }

    /// `GET /v1/acl/policy/:id` (`None`: no such policy).
    pub async fn acl_policy_read(&self, id: &str) -> Result<Option<AclPolicy>> {
        not_empty("id", id)?;
        self.acl_get_opt(&format!("/v1/acl/policy/{}", escape(id, false))).await
    }

    /// `GET /v1/acl/policy/name/:name` (`None`: no such policy).
    pub async fn acl_policy_read_by_name(&self, name: &str) -> Result<Option<AclPolicy>> {
        not_empty("name", name)?;
        self.acl_get_opt(&format!("/v1/acl/policy/name/{}", escape(name, false))).await
    }

    /// `PUT /v1/acl/policy/:id`.
    pub async fn acl_policy_update(&self, policy: &AclPolicy) -> Result<AclPolicy> {
        not_empty("id", &policy.id)?;
        let path = format!("/v1/acl/policy/{}", escape(&policy.id, false));
        decode(self.call("PUT", &path, &[], body("policy", policy)?).await?)
    }

    /// `DELETE /v1/acl/policy/:id`.
    pub async fn acl_policy_delete(&self, id: &str) -> Result<()> {
        not_empty("id", id)?;
        self.acl_delete(&format!("/v1/acl/policy/{}", escape(id, false))).await
    }

    /// `GET /v1/acl/policies`.
    pub async fn acl_policy_list(&self) -> Result<Vec<AclPolicyListEntry>> {
        let list: Option<Vec<AclPolicyListEntry>> = self.acl_get("/v1/acl/policies", &[]).await?;
        Ok(list.unwrap_or_default())
    }

    /// `PUT /v1/acl/role`.
    pub async fn acl_role_create(&self, role: &AclRole) -> Result<AclRole> {
        decode(self.call("PUT", "/v1/acl/role", &[], body("role", role)?).await?)
    }

    /// `GET /v1/acl/role/:id` (`None`: no such role).
    pub async fn acl_role_read(&self, id: &str) -> Result<Option<AclRole>> {
        not_empty("id", id)?;
        self.acl_get_opt(&format!("/v1/acl/role/{}", escape(id, false))).await
    }

    /// `GET /v1/acl/role/name/:name` (`None`: no such role).
    pub async fn acl_role_read_by_name(&self, name: &str) -> Result<Option<AclRole>> {
        not_empty("name", name)?;
        self.acl_get_opt(&format!("/v1/acl/role/name/{}", escape(name, false))).await
    }

    /// `PUT /v1/acl/role/:id`.
    pub async fn acl_role_update(&self, role: &AclRole) -> Result<AclRole> {
        not_empty("id", &role.id)?;
        let path = format!("/v1/acl/role/{}", escape(&role.id, false));
        decode(self.call("PUT", &path, &[], body("role", role)?).await?)
    }

    /// `DELETE /v1/acl/role/:id`.
    pub async fn acl_role_delete(&self, id: &str) -> Result<()> {
        not_empty("id", id)?;
        self.acl_delete(&format!("/v1/acl/role/{}", escape(id, false))).await
    }

    /// `GET /v1/acl/roles` (optionally only roles linking `policy`).
    pub async fn acl_role_list(&self, policy: Option<&str>) -> Result<Vec<AclRole>> {
        let q: Vec<(&str, Option<&str>)> =
            policy.filter(|p| !p.is_empty()).map(|p| ("policy", Some(p))).into_iter().collect();
        let list: Option<Vec<AclRole>> = self.acl_get("/v1/acl/roles", &q).await?;
        Ok(list.unwrap_or_default())
    }

    /// `GET /v1/acl/templated-policies` (Consul 1.17+), by name.
    pub async fn acl_templated_policy_list(&self) -> Result<BTreeMap<String, AclTemplatedPolicyResponse>> {
        let map: Option<BTreeMap<String, AclTemplatedPolicyResponse>> =
            self.acl_get("/v1/acl/templated-policies", &[]).await?;
        Ok(map.unwrap_or_default())
    }

    /// `GET /v1/acl/templated-policy/name/:name` (Consul 1.17+; `None`: no such template).
    pub async fn acl_templated_policy_read(&self, name: &str) -> Result<Option<AclTemplatedPolicyResponse>> {
        not_empty("name", name)?;
        self.acl_get_opt(&format!("/v1/acl/templated-policy/name/{}", escape(name, true))).await
    }

    /// `POST /v1/acl/templated-policy/preview/:name` (Consul 1.17+): the policy the template
    /// renders to with `vars`.
    pub async fn acl_templated_policy_preview(
        &self,
        name: &str,
        vars: &AclTemplatedPolicyVariables,
    ) -> Result<AclPolicy> {
        not_empty("name", name)?;
        let path = format!("/v1/acl/templated-policy/preview/{}", escape(name, true));
        decode(self.call("POST", &path, &[], body("vars", vars)?).await?)
    }

    /// `PUT /v1/acl/auth-method`.
    pub async fn acl_auth_method_create(&self, method: &AclAuthMethod) -> Result<AclAuthMethod> {
        decode(self.call("PUT", "/v1/acl/auth-method", &[], body("method", method)?).await?)
    }

    /// `GET /v1/acl/auth-method/:name` (`None`: no such method).
    pub async fn acl_auth_method_read(&self, name: &str) -> Result<Option<AclAuthMethod>> {
        not_empty("name", name)?;
        self.acl_get_opt(&format!("/v1/acl/auth-method/{}", escape(name, false))).await
    }

    /// `PUT /v1/acl/auth-method/:name`.
    pub async fn acl_auth_method_update(&self, method: &AclAuthMethod) -> Result<AclAuthMethod> {
        not_empty("name", &method.name)?;
        let path = format!("/v1/acl/auth-method/{}", escape(&method.name, false));
        decode(self.call("PUT", &path, &[], body("method", method)?).await?)
    }

    /// `DELETE /v1/acl/auth-method/:name`.
    pub async fn acl_auth_method_delete(&self, name: &str) -> Result<()> {
        not_empty("name", name)?;
        self.acl_delete(&format!("/v1/acl/auth-method/{}", escape(name, false))).await
    }

    /// `GET /v1/acl/auth-methods`.
    pub async fn acl_auth_method_list(&self) -> Result<Vec<AclAuthMethodListEntry>> {
        let list: Option<Vec<AclAuthMethodListEntry>> = self.acl_get("/v1/acl/auth-methods", &[]).await?;
        Ok(list.unwrap_or_default())
    }

    /// `PUT /v1/acl/binding-rule`.
    pub async fn acl_binding_rule_create(&self, rule: &AclBindingRule) -> Result<AclBindingRule> {
        decode(self.call("PUT", "/v1/acl/binding-rule", &[], body("rule", rule)?).await?)
    }

    /// `GET /v1/acl/binding-rule/:id` (`None`: no such rule).
    pub async fn acl_binding_rule_read(&self, id: &str) -> Result<Option<AclBindingRule>> {
        not_empty("id", id)?;
        self.acl_get_opt(&format!("/v1/acl/binding-rule/{}", escape(id, false))).await
    }

    /// `PUT /v1/acl/binding-rule/:id`.
    pub async fn acl_binding_rule_update(&self, rule: &AclBindingRule) -> Result<AclBindingRule> {
        not_empty("id", &rule.id)?;
        let path = format!("/v1/acl/binding-rule/{}", escape(&rule.id, false));
        decode(self.call("PUT", &path, &[], body("rule", rule)?).await?)
    }

    /// `DELETE /v1/acl/binding-rule/:id`.
    pub async fn acl_binding_rule_delete(&self, id: &str) -> Result<()> {
        not_empty("id", id)?;
        self.acl_delete(&format!("/v1/acl/binding-rule/{}", escape(id, false))).await
    }

    /// `GET /v1/acl/binding-rules` (optionally only those of `auth_method`).
    pub async fn acl_binding_rule_list(&self, auth_method: Option<&str>) -> Result<Vec<AclBindingRule>> {
        let q: Vec<(&str, Option<&str>)> =
            auth_method.filter(|m| !m.is_empty()).map(|m| ("authmethod", Some(m))).into_iter().collect();
        let list: Option<Vec<AclBindingRule>> = self.acl_get("/v1/acl/binding-rules", &q).await?;
        Ok(list.unwrap_or_default())
    }

    /// `POST /v1/acl/login`: trades an auth method credential for a token.
    pub async fn acl_login(&self, params: &AclLoginParams) -> Result<AclToken> {
        not_empty("auth_method", &params.auth_method)?;
        decode(self.call("POST", "/v1/acl/login", &[], body("params", params)?).await?)
    }

    /// `POST /v1/acl/logout`: destroys the token this client sends (a login token).
    pub async fn acl_logout(&self) -> Result<()> {
        self.call("POST", "/v1/acl/logout", &[], None).await?.error_for_status().map(|_| ())
    }

    /// `GET /v1/acl/replication`.
    pub async fn acl_replication(&self) -> Result<AclReplicationStatus> {
        self.acl_get("/v1/acl/replication", &[]).await
    }

    /// `PUT /v1/agent/token/<type>` with `{"Token": …}`: sets one of the agent's own tokens
    /// (`default`, `agent`, `agent_recovery`, `replication`, `config_file_service_registration`,
    /// `dns`; legacy spellings such as `agent_master` are mapped).
    pub async fn agent_set_token(&self, token_type: &str, token: &str) -> Result<()> {
        let t = agent_token_type(token_type)?;
        let b = body("token", &serde_json::json!({ "Token": token }))?;
        self.call("PUT", &format!("/v1/agent/token/{t}"), &[], b).await?.error_for_status().map(|_| ())
    }
}

/// Whether an error is Consul's "no such token" (403 `ACL not found`), as opposed to a refusal.
pub fn is_acl_not_found(e: &Error) -> bool {
    e.code == ErrorCode::PermissionDenied && e.message.contains("ACL not found")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What Consul 1.16's `/v1/acl/token` answers (structs.ACLToken, server field order).
    const TOKEN: &str = r#"{"AccessorID":"6a1253d2-1785-24fd-91c2-f8e78c745511","SecretID":"45a3bd52-07c7-47a4-52fd-0745e0cfe967","Description":"web","Policies":[{"ID":"165d4317-e379-f732-ce70-86278c4558f7","Name":"p1"}],"ServiceIdentities":[{"ServiceName":"web","Datacenters":["dc1"]}],"NodeIdentities":[{"NodeName":"n","Datacenter":"dc1"}],"Local":false,"ExpirationTime":"2026-12-05T17:00:00.5Z","ExpirationTTL":3600000000000,"CreateTime":"2026-12-05T16:00:00.123456789Z","Hash":"UuiRkOQPRCvo0hDSzbHc9A9ljz3TYzxwq2Nk4KfSz2w=","CreateIndex":59,"ModifyIndex":59}"#;

    #[test]
    fn token_reads_consul_shape_and_writes_go_api_order() {
        let t: AclToken = serde_json::from_str(TOKEN).expect("token");
        assert_eq!(t.accessor_id, "6a1253d2-1785-24fd-91c2-f8e78c745511");
        assert_eq!(t.policies, vec![AclLink { id: "165d4317-e379-f732-ce70-86278c4558f7".into(), name: "p1".into() }]);
        assert_eq!(t.expiration_ttl, 3_600_000_000_000);
        assert_eq!(t.service_identities[0].datacenters, vec!["dc1"]);
        let out = serde_json::to_string(&t).expect("json");
        assert_eq!(
            out,
            r#"{"CreateIndex":59,"ModifyIndex":59,"AccessorID":"6a1253d2-1785-24fd-91c2-f8e78c745511","SecretID":"45a3bd52-07c7-47a4-52fd-0745e0cfe967","Description":"web","Policies":[{"ID":"165d4317-e379-f732-ce70-86278c4558f7","Name":"p1"}],"ServiceIdentities":[{"ServiceName":"web","Datacenters":["dc1"]}],"NodeIdentities":[{"NodeName":"n","Datacenter":"dc1"}],"Local":false,"ExpirationTTL":3600000000000,"ExpirationTime":"2026-12-05T17:00:00.5Z","CreateTime":"2026-12-05T16:00:00.123456789Z","Hash":"UuiRkOQPRCvo0hDSzbHc9A9ljz3TYzxwq2Nk4KfSz2w="}"#
        );
    }

    #[test]
    fn create_request_is_what_consuls_client_sends() {
        let t = AclToken {
            description: "d".into(),
            policies: vec![AclLink::by_name("p")],
            expiration_ttl: 60_000_000_000,
            ..AclToken::default()
        };
        let v: Value = serde_json::to_value(&t).expect("json");
        assert_eq!(v["Policies"], serde_json::json!([{ "ID": "", "Name": "p" }]));
        assert_eq!(v["ExpirationTTL"], 60_000_000_000i64);
        assert_eq!(v["CreateTime"], GO_ZERO_TIME);
        assert!(v.get("Roles").is_none() && v.get("Hash").is_none() && v.get("AuthMethod").is_none());
    }

    #[test]
    fn lists_policies_roles_and_nulls() {
        let l: Vec<AclTokenListEntry> = serde_json::from_str(
            r#"[{"AccessorID":"a","SecretID":"s","Description":"","Policies":null,"Local":true,"CreateTime":"2026-12-05T16:00:00Z","Hash":null,"CreateIndex":1,"ModifyIndex":2,"Legacy":false}]"#,
        )
        .expect("list");
        assert!(l[0].local && l[0].policies.is_empty() && l[0].hash.is_none());
        let out = serde_json::to_string(&l[0]).expect("json");
        assert!(out.ends_with(r#""Local":true,"CreateTime":"2026-12-05T16:00:00Z","Hash":null}"#), "{out}");

        let p: AclPolicy = serde_json::from_str(
            r#"{"ID":"i","Name":"n","Description":"","Rules":"key \"\" { policy = \"read\" }","Datacenters":null,"Hash":"AA==","CreateIndex":3,"ModifyIndex":3}"#,
        )
        .expect("policy");
        assert_eq!(p.datacenters, None);
        assert_eq!(
            serde_json::to_string(&p).expect("json"),
            r#"{"ID":"i","Name":"n","Description":"","Rules":"key \"\" { policy = \"read\" }","Datacenters":null,"Hash":"AA==","CreateIndex":3,"ModifyIndex":3}"#
        );

        let r: AclRole = serde_json::from_str(
            r#"{"ID":"r","Name":"rn","Description":"","Policies":[{"ID":"i","Name":"n"}],"ServiceIdentities":null,"NodeIdentities":null,"Hash":"AA==","CreateIndex":4,"ModifyIndex":4}"#,
        )
        .expect("role");
        assert_eq!(
            serde_json::to_string(&r).expect("json"),
            r#"{"ID":"r","Name":"rn","Description":"","Policies":[{"ID":"i","Name":"n"}],"Hash":"AA==","CreateIndex":4,"ModifyIndex":4}"#
        );
    }

    #[test]
    fn auth_method_ttl_is_a_duration_string() {
        let m: AclAuthMethod = serde_json::from_str(
            r#"{"MaxTokenTTL":"1h0m0s","Name":"k8s","Type":"kubernetes","Config":{"Host":"https://x"},"CreateIndex":5,"ModifyIndex":5}"#,
        )
        .expect("method");
        assert_eq!(m.max_token_ttl, 3_600_000_000_000);
        let out = serde_json::to_string(&m).expect("json");
        assert_eq!(
            out,
            r#"{"MaxTokenTTL":"1h0m0s","Name":"k8s","Type":"kubernetes","Config":{"Host":"https://x"},"CreateIndex":5,"ModifyIndex":5}"#
        );
        let b: AclBindingRule =
            serde_json::from_str(r#"{"ID":"b","AuthMethod":"k8s","BindType":"service","BindName":"web"}"#)
                .expect("rule");
        assert_eq!(b.bind_type, "service");
    }

    #[test]
    fn agent_token_types() {
        assert_eq!(agent_token_type("agent_master").ok(), Some("agent_recovery"));
        assert_eq!(agent_token_type("dns").ok(), Some("dns"));
        assert!(agent_token_type("bogus").is_err());
        let e = Error::from_http(403, "ACL not found");
        assert!(is_acl_not_found(&e));
    }
}
