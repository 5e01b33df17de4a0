//! `consul-rs acl …`: Consul's ACL commands (bootstrap, tokens, policies, roles, templated
//! policies, auth methods, binding rules, agent tokens) with Consul 1.16's flag spellings, messages
//! and output (`acl_format`), on the SDK's typed ACL API.

use std::io::Read as _;

use anyhow::{anyhow, Result};
use clap::{ArgAction, Args, Subcommand};
use consul_sdk::acl::{
    AclAuthMethod, AclBindingRule, AclLink, AclNodeIdentity, AclPolicy, AclRole, AclServiceIdentity,
    AclTemplatedPolicy, AclTemplatedPolicyVariables, AclToken, TokenListFilter,
};

use crate::acl_format::{self as fmt, Format};
use crate::api::{sdk_err, Client, ClientFlags, Verbatim};

/// The anonymous token's AccessorID, which `-accessor-id=anonymous` names.
const ANONYMOUS_TOKEN_ID: &str = "00000000-0000-0000-0000-000000000002";
/// The `global-management` policy's ID, which `-policy-id=global-management` names.
const GLOBAL_MANAGEMENT_ID: &str = "00000000-0000-0000-0000-000000000001";

/// `acl` subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum AclCommand {
    /// Bootstrap the ACL system: create the initial management token.
    Bootstrap(BootstrapArgs),
    /// Manage tokens.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Manage policies.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Manage roles.
    #[command(subcommand)]
    Role(RoleCommand),
    /// Inspect templated policies (Consul 1.17+ agents).
    #[command(subcommand, name = "templated-policy")]
    TemplatedPolicy(TemplatedPolicyCommand),
    /// Manage auth methods.
    #[command(subcommand, name = "auth-method")]
    AuthMethod(AuthMethodCommand),
    /// Manage binding rules.
    #[command(subcommand, name = "binding-rule")]
    BindingRule(BindingRuleCommand),
    /// Set one of the agent's own ACL tokens: TYPE TOKEN.
    #[command(name = "set-agent-token")]
    SetAgentToken(SetAgentTokenArgs),
    /// Translate legacy (pre-1.4) rule syntax into the current one.
    #[command(name = "translate-rules")]
    TranslateRules(TranslateRulesArgs),
}

/// `-format` and `-meta`, on every command that prints objects.
#[derive(Debug, Clone, Args)]
pub(crate) struct OutputFlags {
    /// Output format: pretty or json.
    #[arg(long, default_value = "pretty")]
    format: String,
    /// Also print metadata: hash, create and modify indexes.
    #[arg(long = "meta", action = ArgAction::Set, num_args = 0..=1, require_equals = true,
          default_value = "false", default_missing_value = "true",
          value_parser = clap::builder::BoolishValueParser::new())]
    meta: bool,
}

impl OutputFlags {
    fn format(&self) -> Result<Format> {
        Format::parse(&self.format).map_err(verbatim)
    }
}

/// `acl bootstrap [secret-file|-]`.
#[derive(Debug, Args)]
pub(crate) struct BootstrapArgs {
    #[command(flatten)]
    client: ClientFlags,
    /// Output format: pretty or json.
    #[arg(long, default_value = "pretty")]
    format: String,
    /// A file (or `-` for stdin) holding the SecretID to give the management token.
    #[arg(num_args = 0..)]
    args: Vec<String>,
}

/// Token subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum TokenCommand {
    /// Create a token.
    Create(TokenCreateArgs),
    /// Read a token.
    Read(TokenReadArgs),
    /// Update a token.
    Update(TokenUpdateArgs),
    /// Delete a token.
    Delete(TokenIdArgs),
    /// List tokens.
    List(TokenListArgs),
    /// Clone a token.
    Clone(TokenCloneArgs),
}

/// Links and identities a token or role is created with.
#[derive(Debug, Clone, Default, Args)]
pub(crate) struct LinkFlags {
    /// ID (or unique ID prefix) of a policy to link; repeatable.
    #[arg(long = "policy-id", action = ArgAction::Append)]
    policy_id: Vec<String>,
    /// Name of a policy to link; repeatable.
    #[arg(long = "policy-name", action = ArgAction::Append)]
    policy_name: Vec<String>,
    /// Service identity, `NAME[:DC1,DC2]`; repeatable.
    #[arg(long = "service-identity", action = ArgAction::Append)]
    service_identity: Vec<String>,
    /// Node identity, `NAME:DC`; repeatable.
    #[arg(long = "node-identity", action = ArgAction::Append)]
    node_identity: Vec<String>,
    /// Templated policy name (Consul 1.17+ agents), e.g. `builtin/service`; repeatable.
    #[arg(long = "templated-policy", action = ArgAction::Append)]
    templated_policy: Vec<String>,
    /// Templated policy variable, `name:VALUE`; applies to the `-templated-policy` before it.
    #[arg(long = "var", action = ArgAction::Append)]
    var: Vec<String>,
}

/// `acl token create`.
#[derive(Debug, Args)]
pub(crate) struct TokenCreateArgs {
    #[command(flatten)]
    client: ClientFlags,
    #[command(flatten)]
    out: OutputFlags,
    #[command(flatten)]
    links: LinkFlags,
    /// ID (or unique ID prefix) of a role to link; repeatable.
    #[arg(long = "role-id", action = ArgAction::Append)]
    role_id: Vec<String>,
    /// Name of a role to link; repeatable.
    #[arg(long = "role-name", action = ArgAction::Append)]
    role_name: Vec<String>,
    /// A description of the token.
    #[arg(long, default_value = "")]
    description: String,
    /// Create a datacenter-local token.
    #[arg(long = "local", action = ArgAction::Set, num_args = 0..=1, require_equals = true,
          default_value = "false", default_missing_value = "true",
          value_parser = clap::builder::BoolishValueParser::new())]
    local: bool,
    /// Time until the token expires (Go duration, e.g. 1h).
    #[arg(long = "expires-ttl")]
    expires_ttl: Option<String>,
    /// Create the token with this SecretID (a UUID).
    #[arg(long, default_value = "")]
    secret: String,
    /// Create the token with this AccessorID (a UUID).
    #[arg(long, default_value = "")]
    accessor: String,
}

/// `-accessor-id` (and the deprecated `-id`).
#[derive(Debug, Clone, Default, Args)]
pub(crate) struct AccessorFlags {
    /// AccessorID of the token (a unique prefix is enough); `anonymous` names the anonymous token.
    #[arg(long = "accessor-id", default_value = "")]
    accessor_id: String,
    /// DEPRECATED: use -accessor-id.
    #[arg(long, default_value = "")]
    id: String,
}

/// `acl token read`.
#[derive(Debug, Args)]
pub(crate) struct TokenReadArgs {
    #[command(flatten)]
    client: ClientFlags,
    #[command(flatten)]
    out: OutputFlags,
    #[command(flatten)]
    acc: AccessorFlags,
    /// Read the token the request is made with.
    #[arg(long = "self", action = ArgAction::Set, num_args = 0..=1, require_equals = true,
          default_value = "false", default_missing_value = "true",
          value_parser = clap::builder::BoolishValueParser::new())]
    read_self: bool,
    /// Expand linked policies and roles (not supported by this client).
    #[arg(long = "expanded", action = ArgAction::Set, num_args = 0..=1, require_equals = true,
          default_value = "false", default_missing_value = "true",
          value_parser = clap::builder::BoolishValueParser::new())]
    expanded: bool,
}

/// `acl token update`.
#[derive(Debug, Args)]
pub(crate) struct TokenUpdateArgs {
    #[command(flatten)]
    client: ClientFlags,
    #[command(flatten)]
    out: OutputFlags,
    #[command(flatten)]
    acc: AccessorFlags,
    #[command(flatten)]
    links: LinkFlags,
    /// ID of a role to link (replaces the links); repeatable.
    #[arg(long = "role-id", action = ArgAction::Append)]
    role_id: Vec<String>,
    /// Name of a role to link (replaces the links); repeatable.
    #[arg(long = "role-name", action = ArgAction::Append)]
    role_name: Vec<String>,
    /// Policy ID to add to the existing links; repeatable.
    #[arg(long = "append-policy-id", action = ArgAction::Append)]
    append_policy_id: Vec<String>,
    /// Policy name to add to the existing links; repeatable.
    #[arg(long = "append-policy-name", action = ArgAction::Append)]
    append_policy_name: Vec<String>,
    /// Role ID to add to the existing links; repeatable.
    #[arg(long = "append-role-id", action = ArgAction::Append)]
    append_role_id: Vec<String>,
    /// Role name to add to the existing links; repeatable.
    #[arg(long = "append-role-name", action = ArgAction::Append)]
    append_role_name: Vec<String>,
    /// Service identity to add; repeatable.
    #[arg(long = "append-service-identity", action = ArgAction::Append)]
    append_service_identity: Vec<String>,
    /// Node identity to add; repeatable.
    #[arg(long = "append-node-identity", action = ArgAction::Append)]
    append_node_identity: Vec<String>,
    /// New description (empty keeps the current one).
    #[arg(long, default_value = "")]
    description: String,
    /// DEPRECATED: use -append-policy-id / -append-policy-name.
    #[arg(long = "merge-policies", action = ArgAction::Set, num_args = 0..=1, require_equals = true,
          default_value = "false", default_missing_value = "true",
          value_parser = clap::builder::BoolishValueParser::new())]
    merge_policies: bool,
    /// DEPRECATED: use -append-role-id / -append-role-name.
    #[arg(long = "merge-roles", action = ArgAction::Set, num_args = 0..=1, require_equals = true,
          default_value = "false", default_missing_value = "true",
          value_parser = clap::builder::BoolishValueParser::new())]
    merge_roles: bool,
    /// DEPRECATED: use -append-service-identity.
    #[arg(long = "merge-service-identities", action = ArgAction::Set, num_args = 0..=1, require_equals = true,
          default_value = "false", default_missing_value = "true",
          value_parser = clap::builder::BoolishValueParser::new())]
    merge_service_identities: bool,
    /// DEPRECATED: use -append-node-identity.
    #[arg(long = "merge-node-identities", action = ArgAction::Set, num_args = 0..=1, require_equals = true,
          default_value = "false", default_missing_value = "true",
          value_parser = clap::builder::BoolishValueParser::new())]
    merge_node_identities: bool,
}

/// `acl token delete`.
#[derive(Debug, Args)]
pub(crate) struct TokenIdArgs {
    #[command(flatten)]
    client: ClientFlags,
    #[command(flatten)]
    acc: AccessorFlags,
}

/// `acl token list`.
#[derive(Debug, Args)]
pub(crate) struct TokenListArgs {
    #[command(flatten)]
    client: ClientFlags,
    #[command(flatten)]
    out: OutputFlags,
}

/// `acl token clone`.
#[derive(Debug, Args)]
pub(crate) struct TokenCloneArgs {
    #[command(flatten)]
    client: ClientFlags,
    #[command(flatten)]
    out: OutputFlags,
    #[command(flatten)]
    acc: AccessorFlags,
    /// A description of the new token.
    #[arg(long, default_value = "")]
    description: String,
}

/// Policy subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum PolicyCommand {
    /// Create a policy.
    Create(PolicyCreateArgs),
    /// Read a policy by ID or name.
    Read(PolicyReadArgs),
    /// Update a policy.
    Update(PolicyUpdateArgs),
    /// Delete a policy.
    Delete(IdOrNameArgs),
    /// List policies.
    List(ListArgs),
}

/// `acl policy create`.
#[derive(Debug, Args)]
pub(crate) struct PolicyCreateArgs {
    #[command(flatten)]
    client: ClientFlags,
    #[command(flatten)]
    out: OutputFlags,
    /// The new policy's name (required).
    #[arg(long, default_value = "")]
    name: String,
    /// A description.
    #[arg(long, default_value = "")]
    description: String,
    /// The rules: text, `@file` or `-` (stdin).
    #[arg(long, default_value = "")]
    rules: String,
    /// A datacenter the policy is valid in; repeatable (default: all).
    #[arg(long = "valid-datacenter", action = ArgAction::Append)]
    valid_datacenter: Vec<String>,
}

/// `-id` (a unique prefix is enough) or `-name`.
#[derive(Debug, Clone, Default, Args)]
pub(crate) struct IdOrName {
    /// The ID (or a unique ID prefix).
    #[arg(long, default_value = "")]
    id: String,
    /// The name.
    #[arg(long, default_value = "")]
    name: String,
}

/// `acl policy read`, `acl role read`.
#[derive(Debug, Args)]
pub(crate) struct PolicyReadArgs {
    #[command(flatten)]
    client: ClientFlags,
    #[command(flatten)]
    out: OutputFlags,
    #[command(flatten)]
    which: IdOrName,
}

/// `acl policy delete`, `acl role delete`.
#[derive(Debug, Args)]
pub(crate) struct IdOrNameArgs {
    #[command(flatten)]
    client: ClientFlags,
    #[command(flatten)]
    which: IdOrName,
}

/// `… list`.
#[derive(Debug, Args)]
pub(crate) struct ListArgs {
    #[command(flatten)]
    client: ClientFlags,
    #[command(flatten)]
    out: OutputFlags,
}

/// `acl policy update`.
#[derive(Debug, Args)]
pub(crate) struct PolicyUpdateArgs {
    #[command(flatten)]
    client: ClientFlags,
    #[command(flatten)]
    out: OutputFlags,
    /// The ID (or unique prefix) of the policy to update.
    #[arg(long, default_value = "")]
    id: String,
    /// The policy's name: which policy without -id, its new name with -id.
    #[arg(long)]
    name: Option<String>,
    /// New description.
    #[arg(long)]
    description: Option<String>,
    /// New rules: text, `@file` or `-`.
    #[arg(long)]
    rules: Option<String>,
    /// Datacenters the policy is valid in (replaces the list); repeatable.
    #[arg(long = "valid-datacenter", action = ArgAction::Append)]
    valid_datacenter: Vec<String>,
    /// Replace the policy with exactly the flags given instead of merging.
    #[arg(long = "no-merge", action = ArgAction::Set, num_args = 0..=1, require_equals = true,
          default_value = "false", default_missing_value = "true",
          value_parser = clap::builder::BoolishValueParser::new())]
    no_merge: bool,
}

/// Role subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum RoleCommand {
    /// Create a role.
    Create(RoleCreateArgs),
    /// Read a role by ID or name.
    Read(PolicyReadArgs),
    /// Update a role.
    Update(RoleUpdateArgs),
    /// Delete a role.
    Delete(IdOrNameArgs),
    /// List roles.
    List(ListArgs),
}

/// `acl role create`.
#[derive(Debug, Args)]
pub(crate) struct RoleCreateArgs {
    #[command(flatten)]
    client: ClientFlags,
    #[command(flatten)]
    out: OutputFlags,
    #[command(flatten)]
    links: LinkFlags,
    /// The new role's name (required).
    #[arg(long, default_value = "")]
    name: String,
    /// A description.
    #[arg(long, default_value = "")]
    description: String,
}

/// `acl role update`.
#[derive(Debug, Args)]
pub(crate) struct RoleUpdateArgs {
    #[command(flatten)]
    client: ClientFlags,
    #[command(flatten)]
    out: OutputFlags,
    #[command(flatten)]
    links: LinkFlags,
    /// The ID (or unique prefix) of the role to update.
    #[arg(long, default_value = "")]
    id: String,
    /// New name.
    #[arg(long, default_value = "")]
    name: String,
    /// New description.
    #[arg(long, default_value = "")]
    description: String,
    /// Replace the role with exactly the flags given instead of merging.
    #[arg(long = "no-merge", action = ArgAction::Set, num_args = 0..=1, require_equals = true,
          default_value = "false", default_missing_value = "true",
          value_parser = clap::builder::BoolishValueParser::new())]
    no_merge: bool,
}

/// Templated policy subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum TemplatedPolicyCommand {
    /// List templated policies.
    List(ListArgs),
    /// Read a templated policy.
    Read(NameArgs),
    /// Preview the policy a template renders to.
    Preview(PreviewArgs),
}

/// `-name`.
#[derive(Debug, Args)]
pub(crate) struct NameArgs {
    #[command(flatten)]
    client: ClientFlags,
    #[command(flatten)]
    out: OutputFlags,
    /// The name.
    #[arg(long, default_value = "")]
    name: String,
}

/// `acl templated-policy preview`.
#[derive(Debug, Args)]
pub(crate) struct PreviewArgs {
    #[command(flatten)]
    client: ClientFlags,
    #[command(flatten)]
    out: OutputFlags,
    /// The template's name.
    #[arg(long, default_value = "")]
    name: String,
    /// Template variable, `name:VALUE`.
    #[arg(long = "var", action = ArgAction::Append)]
    var: Vec<String>,
}

/// Auth method subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum AuthMethodCommand {
    /// Create an auth method.
    Create(AuthMethodArgs),
    /// Read an auth method.
    Read(NameArgs),
    /// Update an auth method.
    Update(AuthMethodArgs),
    /// Delete an auth method.
    Delete(AuthMethodDeleteArgs),
    /// List auth methods.
    List(ListArgs),
}

/// `acl auth-method create|update`.
#[derive(Debug, Args)]
pub(crate) struct AuthMethodArgs {
    #[command(flatten)]
    client: ClientFlags,
    #[command(flatten)]
    out: OutputFlags,
    /// The method's type: kubernetes, jwt, oidc, aws-iam (create only).
    #[arg(long = "type", default_value = "")]
    method_type: String,
    /// The method's name.
    #[arg(long, default_value = "")]
    name: String,
    /// A display name.
    #[arg(long = "display-name")]
    display_name: Option<String>,
    /// A description.
    #[arg(long)]
    description: Option<String>,
    /// The longest a token minted by this method lives (Go duration).
    #[arg(long = "max-token-ttl")]
    max_token_ttl: Option<String>,
    /// `local` or `global` tokens.
    #[arg(long = "token-locality")]
    token_locality: Option<String>,
    /// The method's configuration as JSON: text, `@file` or `-`.
    #[arg(long)]
    config: Option<String>,
    /// Kubernetes API address (kubernetes methods).
    #[arg(long = "kubernetes-host")]
    kubernetes_host: Option<String>,
    /// PEM CA certificate of the Kubernetes API, text or `@file`.
    #[arg(long = "kubernetes-ca-cert")]
    kubernetes_ca_cert: Option<String>,
    /// Service account JWT that can call TokenReview.
    #[arg(long = "kubernetes-service-account-jwt")]
    kubernetes_service_account_jwt: Option<String>,
    /// Replace the method with exactly the flags given instead of merging (update only).
    #[arg(long = "no-merge", action = ArgAction::Set, num_args = 0..=1, require_equals = true,
          default_value = "false", default_missing_value = "true",
          value_parser = clap::builder::BoolishValueParser::new())]
    no_merge: bool,
}

/// `acl auth-method delete`.
#[derive(Debug, Args)]
pub(crate) struct AuthMethodDeleteArgs {
    #[command(flatten)]
    client: ClientFlags,
    /// The method's name.
    #[arg(long, default_value = "")]
    name: String,
}

/// Binding rule subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum BindingRuleCommand {
    /// Create a binding rule.
    Create(BindingRuleArgs),
    /// Read a binding rule.
    Read(BindingRuleIdArgs),
    /// Update a binding rule.
    Update(BindingRuleArgs),
    /// Delete a binding rule.
    Delete(BindingRuleDeleteArgs),
    /// List binding rules.
    List(BindingRuleListArgs),
}

/// `acl binding-rule create|update`.
#[derive(Debug, Args)]
pub(crate) struct BindingRuleArgs {
    #[command(flatten)]
    client: ClientFlags,
    #[command(flatten)]
    out: OutputFlags,
    /// The rule's ID, or a unique prefix (update only).
    #[arg(long, default_value = "")]
    id: String,
    /// The auth method the rule applies to (create only).
    #[arg(long, default_value = "")]
    method: String,
    /// A description.
    #[arg(long)]
    description: Option<String>,
    /// Selector over the method's claims.
    #[arg(long)]
    selector: Option<String>,
    /// What is bound: service (default), node, role.
    #[arg(long = "bind-type", default_value = "service")]
    bind_type: String,
    /// The name bound (may interpolate claims).
    #[arg(long = "bind-name")]
    bind_name: Option<String>,
    /// Replace the rule with exactly the flags given instead of merging (update only).
    #[arg(long = "no-merge", action = ArgAction::Set, num_args = 0..=1, require_equals = true,
          default_value = "false", default_missing_value = "true",
          value_parser = clap::builder::BoolishValueParser::new())]
    no_merge: bool,
}

/// `acl binding-rule read`.
#[derive(Debug, Args)]
pub(crate) struct BindingRuleIdArgs {
    #[command(flatten)]
    client: ClientFlags,
    #[command(flatten)]
    out: OutputFlags,
    /// The rule's ID, or a unique prefix.
    #[arg(long, default_value = "")]
    id: String,
}

/// `acl binding-rule delete`.
#[derive(Debug, Args)]
pub(crate) struct BindingRuleDeleteArgs {
    #[command(flatten)]
    client: ClientFlags,
    /// The rule's ID, or a unique prefix.
    #[arg(long, default_value = "")]
    id: String,
}

/// `acl binding-rule list`.
#[derive(Debug, Args)]
pub(crate) struct BindingRuleListArgs {
    #[command(flatten)]
    client: ClientFlags,
    #[command(flatten)]
    out: OutputFlags,
    /// Only rules of this auth method.
    #[arg(long, default_value = "")]
    method: String,
}

/// `acl set-agent-token TYPE TOKEN`.
#[derive(Debug, Args)]
pub(crate) struct SetAgentTokenArgs {
    #[command(flatten)]
    client: ClientFlags,
    /// TYPE (default, agent, recovery, replication, config_file_service_registration, dns) and
    /// TOKEN (text, `@file` or `-`).
    #[arg(num_args = 0..)]
    args: Vec<String>,
}

/// `acl translate-rules [rules|@file|-]`.
#[derive(Debug, Args)]
pub(crate) struct TranslateRulesArgs {
    #[command(flatten)]
    client: ClientFlags,
    /// The legacy rules: text, `@file` or `-` (stdin).
    #[arg(num_args = 0..)]
    args: Vec<String>,
}

/// An error printed exactly as worded (Consul's `Failed to …: …`), without an `Error: ` prefix.
fn verbatim(e: impl std::fmt::Display) -> anyhow::Error {
    anyhow::Error::new(Verbatim(e.to_string()))
}

macro_rules! bail_v {
    ($($t:tt)*) => { return Err(verbatim(format!($($t)*))) };
}

/// What Consul's `UI.Info` does with command output: the text and a newline, nothing when empty.
fn info(text: &str) {
    if !text.is_empty() {
        println!("{text}");
    }
}

/// Consul's `UI.Warn`: to stderr.
fn warn(text: &str) {
    eprintln!("{text}");
}

/// Consul's data sources: `@file`, `-` (stdin), or the text itself; empty stays empty.
pub(crate) fn load_data_source(data: &str) -> Result<String> {
    if let Some(path) = data.strip_prefix('@') {
        return std::fs::read_to_string(path).map_err(|e| anyhow!("Failed to read file: {e}"));
    }
    if data == "-" {
        let mut s = String::new();
        std::io::stdin().read_to_string(&mut s).map_err(|e| anyhow!("Failed to read stdin: {e}"))?;
        return Ok(s);
    }
    Ok(data.to_string())
}

/// `NAME` or `NAME:DC1,DC2` → a service identity.
pub(crate) fn service_identities(raw: &[String]) -> Result<Vec<AclServiceIdentity>> {
    raw.iter()
        .map(|s| {
            let parts: Vec<&str> = s.split(':').collect();
            match parts.as_slice() {
                [name] => Ok(AclServiceIdentity { service_name: name.to_string(), datacenters: vec![] }),
                [name, dcs] => Ok(AclServiceIdentity {
                    service_name: name.to_string(),
                    datacenters: dcs.split(',').map(str::to_string).collect(),
                }),
                _ => Err(verbatim(format!("Malformed -service-identity argument: {s:?}"))),
            }
        })
        .collect()
}

/// `NAME:DC` → a node identity.
pub(crate) fn node_identities(raw: &[String]) -> Result<Vec<AclNodeIdentity>> {
    raw.iter()
        .map(|s| match s.split(':').collect::<Vec<_>>().as_slice() {
            [name, dc] => Ok(AclNodeIdentity { node_name: name.to_string(), datacenter: dc.to_string() }),
            _ => Err(verbatim(format!("Malformed -node-identity argument: {s:?}"))),
        })
        .collect()
}

/// `-templated-policy NAME [-var name:VALUE]…` → templated policies. Variables go with the
/// template named before them on the command line; clap keeps each flag's values in order but not
/// their interleaving, so with several templates the `-var`s are matched to them in order.
pub(crate) fn templated_policies(names: &[String], vars: &[String]) -> Result<Vec<AclTemplatedPolicy>> {
    if names.is_empty() && !vars.is_empty() {
        bail_v!("Cannot use -var without -templated-policy");
    }
    let mut vars = vars.iter();
    names
        .iter()
        .map(|n| {
            let mut v = AclTemplatedPolicyVariables::default();
            if n != "builtin/dns" {
                if let Some(raw) = vars.next() {
                    v = template_var(raw)?;
                }
            }
            Ok(AclTemplatedPolicy {
                template_name: n.clone(),
                template_variables: (!v.name.is_empty()).then_some(v),
                datacenters: vec![],
            })
        })
        .collect()
}

fn template_var(raw: &str) -> Result<AclTemplatedPolicyVariables> {
    match raw.split_once(':') {
        Some(("name", v)) => Ok(AclTemplatedPolicyVariables { name: v.to_string() }),
        Some((k, _)) => Err(verbatim(format!("Unknown templated policy variable {k:?}: use name:VALUE"))),
        None => Err(verbatim(format!("Malformed -var argument: {raw:?}, expecting name:VALUE"))),
    }
}

/// A unique ID from a prefix, over the IDs a list returned (Consul's `Get…IDFromPartial`).
pub(crate) fn id_from_partial<'a>(partial: &str, ids: impl IntoIterator<Item = &'a str>, what: &str) -> Result<String> {
    let mut found: Option<&str> = None;
    for id in ids {
        if id.starts_with(partial) {
            if found.is_some() {
                return Err(anyhow!("Partial {what} ID is not unique"));
            }
            found = Some(id);
        }
    }
    found.map(str::to_string).ok_or_else(|| anyhow!("No such {what} ID with prefix: {partial}"))
}

async fn token_id(c: &consul_sdk::Client, partial: &str) -> Result<String> {
    if partial == "anonymous" {
        return Ok(ANONYMOUS_TOKEN_ID.into());
    }
    if partial.len() == 36 {
        return Ok(partial.into());
    }
    let list = c.acl_token_list(&TokenListFilter::default()).await.map_err(sdk_err)?;
    id_from_partial(partial, list.iter().map(|t| t.accessor_id.as_str()), "token")
}

async fn policy_id(c: &consul_sdk::Client, partial: &str) -> Result<String> {
    if partial == "global-management" {
        return Ok(GLOBAL_MANAGEMENT_ID.into());
    }
    if partial.len() == 36 {
        return Ok(partial.into());
    }
    let list = c.acl_policy_list().await.map_err(sdk_err)?;
    id_from_partial(partial, list.iter().map(|p| p.id.as_str()), "policy")
}

async fn role_id(c: &consul_sdk::Client, partial: &str) -> Result<String> {
    if partial.len() == 36 {
        return Ok(partial.into());
    }
    let list = c.acl_role_list(None).await.map_err(sdk_err)?;
    id_from_partial(partial, list.iter().map(|r| r.id.as_str()), "role")
}

async fn rule_id(c: &consul_sdk::Client, partial: &str) -> Result<String> {
    if partial.len() == 36 {
        return Ok(partial.into());
    }
    let list = c.acl_binding_rule_list(None).await.map_err(sdk_err)?;
    // Consul words this one differently (lower case, wrapping its "ACL not found" error).
    id_from_partial(partial, list.iter().map(|r| r.id.as_str()), "rule").map_err(|e| {
        if e.to_string().starts_with("No such") {
            anyhow!("no such rule ID with prefix: {partial}: ACL not found")
        } else {
            e
        }
    })
}

async fn policy_links(c: &consul_sdk::Client, ids: &[String], names: &[String]) -> Result<Vec<AclLink>> {
    let mut out: Vec<AclLink> = names.iter().map(AclLink::by_name).collect();
    for id in ids {
        let full = policy_id(c, id).await.map_err(|e| verbatim(format!("Error resolving policy ID {id}: {e:#}")))?;
        out.push(AclLink::by_id(full));
    }
    Ok(out)
}

async fn role_links(c: &consul_sdk::Client, ids: &[String], names: &[String]) -> Result<Vec<AclLink>> {
    let mut out: Vec<AclLink> = names.iter().map(AclLink::by_name).collect();
    for id in ids {
        let full = role_id(c, id).await.map_err(|e| verbatim(format!("Error resolving role ID {id}: {e:#}")))?;
        out.push(AclLink::by_id(full));
    }
    Ok(out)
}

fn sdk(flags: &ClientFlags) -> Result<consul_sdk::Client> {
    // Client::new words its errors as Consul does: `Error connecting to Consul agent: …`.
    Ok(Client::new(flags)?.sdk().clone())
}

fn nanos_of(arg: &str, s: &str) -> Result<i64> {
    let d = consul_sdk::duration::parse(arg, s)
        .map_err(|e| verbatim(format!("invalid value {s:?} for flag -{arg}: {}", e.message)))?;
    Ok(d.as_nanos().min(i64::MAX as u128) as i64)
}

/// Runs an `acl` subcommand.
pub(crate) async fn run(cmd: AclCommand) -> Result<()> {
    match cmd {
        AclCommand::Bootstrap(a) => bootstrap(a).await,
        AclCommand::Token(c) => match c {
            TokenCommand::Create(a) => token_create(a).await,
            TokenCommand::Read(a) => token_read(a).await,
            TokenCommand::Update(a) => token_update(a).await,
            TokenCommand::Delete(a) => token_delete(a).await,
            TokenCommand::List(a) => token_list(a).await,
            TokenCommand::Clone(a) => token_clone(a).await,
        },
        AclCommand::Policy(c) => match c {
            PolicyCommand::Create(a) => policy_create(a).await,
            PolicyCommand::Read(a) => policy_read(a).await,
            PolicyCommand::Update(a) => policy_update(a).await,
            PolicyCommand::Delete(a) => policy_delete(a).await,
            PolicyCommand::List(a) => policy_list(a).await,
        },
        AclCommand::Role(c) => match c {
            RoleCommand::Create(a) => role_create(a).await,
            RoleCommand::Read(a) => role_read(a).await,
            RoleCommand::Update(a) => role_update(a).await,
            RoleCommand::Delete(a) => role_delete(a).await,
            RoleCommand::List(a) => role_list(a).await,
        },
        AclCommand::TemplatedPolicy(c) => templated(c).await,
        AclCommand::AuthMethod(c) => auth_method(c).await,
        AclCommand::BindingRule(c) => binding_rule(c).await,
        AclCommand::SetAgentToken(a) => set_agent_token(a).await,
        AclCommand::TranslateRules(a) => translate_rules(a),
    }
}

async fn bootstrap(a: BootstrapArgs) -> Result<()> {
    let f = Format::parse(&a.format).map_err(verbatim)?;
    if a.args.len() > 1 {
        bail_v!("This command takes up to one argument");
    }
    let secret = match a.args.first() {
        Some(src) => {
            let text = if src == "-" { load_data_source("-") } else { load_data_source(&format!("@{src}")) }
                .map_err(|e| verbatim(format!("Error reading provided token: {e:#}")))?;
            text.trim().to_string()
        }
        None => String::new(),
    };
    let c = sdk(&a.client)?;
    let t = c
        .acl_bootstrap(Some(&secret))
        .await
        .map_err(|e| verbatim(format!("Failed ACL bootstrapping: {}", e.message)))?;
    info(&fmt::token(&t, f, false)?);
    Ok(())
}

async fn token_create(a: TokenCreateArgs) -> Result<()> {
    let l = &a.links;
    if l.policy_name.is_empty()
        && l.policy_id.is_empty()
        && a.role_name.is_empty()
        && a.role_id.is_empty()
        && l.service_identity.is_empty()
        && l.node_identity.is_empty()
        && l.templated_policy.is_empty()
    {
        bail_v!(
            "Cannot create a token without specifying -policy-name, -policy-id, -role-name, -role-id, \
             -service-identity, or -node-identity at least once"
        );
    }
    let f = a.out.format()?;
    let c = sdk(&a.client)?;
    let mut t = AclToken {
        description: a.description.clone(),
        local: a.local,
        accessor_id: a.accessor.clone(),
        secret_id: a.secret.clone(),
        ..AclToken::default()
    };
    if let Some(ttl) = a.expires_ttl.as_deref().filter(|s| !s.is_empty()) {
        t.expiration_ttl = nanos_of("expires-ttl", ttl)?;
    }
    t.service_identities = service_identities(&l.service_identity)?;
    t.node_identities = node_identities(&l.node_identity)?;
    t.templated_policies = templated_policies(&l.templated_policy, &l.var)?;
    t.policies = policy_links(&c, &l.policy_id, &l.policy_name).await?;
    t.roles = role_links(&c, &a.role_id, &a.role_name).await?;
    let t = c.acl_token_create(&t).await.map_err(|e| verbatim(format!("Failed to create new token: {}", e.message)))?;
    info(&fmt::token(&t, f, a.out.meta)?);
    Ok(())
}

/// `-accessor-id`, else the deprecated `-id` with Consul's warning.
fn accessor(acc: &AccessorFlags, missing: &str, warning: &str) -> Result<String> {
    if !acc.accessor_id.is_empty() {
        return Ok(acc.accessor_id.clone());
    }
    if acc.id.is_empty() {
        bail_v!("{missing}");
    }
    warn(warning);
    Ok(acc.id.clone())
}

async fn token_read(a: TokenReadArgs) -> Result<()> {
    let f = a.out.format()?;
    if a.expanded {
        if a.read_self {
            bail_v!("Cannot use both -expanded and -self. Instead, use -expanded and -accessor-id=<accessor id>.");
        }
        let c = sdk(&a.client)?;
        let acc = accessor(
            &a.acc,
            "Must specify the -accessor-id parameter",
            "Use the -accessor-id parameter to specify token by Accessor ID",
        )?;
        let id = token_id(&c, &acc).await.map_err(|e| verbatim(format!("Error determining token ID: {e:#}")))?;
        let t = c
            .acl_token_read_expanded(&id)
            .await
            .map_err(|e| verbatim(format!("Error reading token {id:?}: {}", e.message)))?;
        info(&fmt::token_expanded(&t, f, a.out.meta)?);
        return Ok(());
    }
    let c = sdk(&a.client)?;
    let t = if a.read_self {
        c.acl_token_read_self().await.map_err(|e| verbatim(format!("Error reading token: {}", e.message)))?
    } else {
        let acc = accessor(
            &a.acc,
            "Must specify the -accessor-id parameter",
            "Use the -accessor-id parameter to specify token by Accessor ID",
        )?;
        let id = token_id(&c, &acc).await.map_err(|e| verbatim(format!("Error determining token ID: {e:#}")))?;
        c.acl_token_read(&id).await.map_err(|e| verbatim(format!("Error reading token {id:?}: {}", e.message)))?
    };
    info(&fmt::token(&t, f, a.out.meta)?);
    Ok(())
}

async fn token_update(a: TokenUpdateArgs) -> Result<()> {
    let f = a.out.format()?;
    let acc = accessor(
        &a.acc,
        "Cannot update a token without specifying the -accessor-id parameter",
        "Use the -accessor-id parameter to specify token by Accessor ID",
    )?;
    let c = sdk(&a.client)?;
    let id = token_id(&c, &acc).await.map_err(|e| verbatim(format!("Error determining token ID: {e:#}")))?;
    let mut t = c
        .acl_token_read(&id)
        .await
        .map_err(|e| verbatim(format!("Error when retrieving current token: {}", e.message)))?;
    if !a.description.is_empty() {
        // As Consul: an empty -description keeps the current one rather than clearing it.
        t.description = a.description.clone();
    }
    let l = &a.links;
    if !a.append_service_identity.is_empty() && !l.service_identity.is_empty() {
        bail_v!(
            "Cannot combine the use of service-identity flag with append-service-identity. To set or overwrite \
             existing service identities, use -service-identity. To append to existing service identities, use \
             -append-service-identity."
        );
    }
    let append_svc = !a.append_service_identity.is_empty();
    let svc = service_identities(if append_svc { &a.append_service_identity } else { &l.service_identity })?;
    if !a.append_node_identity.is_empty() && !l.node_identity.is_empty() {
        bail_v!(
            "Cannot combine the use of node-identity flag with append-node-identity. To set or overwrite existing \
             node identities, use -node-identity. To append to existing node identities, use -append-node-identity."
        );
    }
    let append_node = !a.append_node_identity.is_empty();
    let nodes = node_identities(if append_node { &a.append_node_identity } else { &l.node_identity })?;

    // Policies: merge (deprecated), replace, or append.
    if a.merge_policies {
        warn(
            "merge-policies is deprecated and will be removed in a future Consul version. Use \
             `append-policy-name` or `append-policy-id` instead.",
        );
        for link in policy_links(&c, &l.policy_id, &l.policy_name).await? {
            if !t
                .policies
                .iter()
                .any(|p| (!link.id.is_empty() && p.id == link.id) || (!link.name.is_empty() && p.name == link.name))
            {
                t.policies.push(link);
            }
        }
    } else {
        let replace = !l.policy_id.is_empty() || !l.policy_name.is_empty();
        if replace && (!a.append_policy_id.is_empty() || !a.append_policy_name.is_empty()) {
            bail_v!(
                "Cannot combine the use of policy-id/policy-name flags with append- variants. To set or overwrite \
                 existing policies, use -policy-id or -policy-name. To append to existing policies, use \
                 -append-policy-id or -append-policy-name."
            );
        }
        if replace {
            t.policies = policy_links(&c, &l.policy_id, &l.policy_name).await?;
        } else {
            t.policies.extend(policy_links(&c, &a.append_policy_id, &a.append_policy_name).await?);
        }
    }
    // Roles: the same three ways.
    if a.merge_roles {
        warn(
            "merge-roles is deprecated and will be removed in a future Consul version. Use `append-role-name` or \
             `append-role-id` instead.",
        );
        for link in role_links(&c, &a.role_id, &a.role_name).await? {
            if !t
                .roles
                .iter()
                .any(|r| (!link.id.is_empty() && r.id == link.id) || (!link.name.is_empty() && r.name == link.name))
            {
                t.roles.push(link);
            }
        }
    } else {
        let replace = !a.role_id.is_empty() || !a.role_name.is_empty();
        if replace && (!a.append_role_id.is_empty() || !a.append_role_name.is_empty()) {
            bail_v!(
                "Cannot combine the use of role-id/role-name flags with append- variants. To set or overwrite \
                 existing roles, use -role-id or -role-name. To append to existing roles, use -append-role-id or \
                 -append-role-name."
            );
        }
        if replace {
            t.roles = role_links(&c, &a.role_id, &a.role_name).await?;
        } else {
            t.roles.extend(role_links(&c, &a.append_role_id, &a.append_role_name).await?);
        }
    }
    // Identities: as Consul 1.16, without -merge-*/-append-* the given list replaces the current
    // one (so an update without -service-identity clears them).
    if a.merge_service_identities || append_svc {
        for s in svc {
            match t.service_identities.iter_mut().find(|x| x.service_name == s.service_name) {
                Some(x) => *x = s,
                None => t.service_identities.push(s),
            }
        }
    } else {
        t.service_identities = svc;
    }
    if a.merge_node_identities || append_node {
        for n in nodes {
            if !t.node_identities.contains(&n) {
                t.node_identities.push(n);
            }
        }
    } else {
        t.node_identities = nodes;
    }
    if !l.templated_policy.is_empty() {
        t.templated_policies = templated_policies(&l.templated_policy, &l.var)?;
    }
    let t =
        c.acl_token_update(&t).await.map_err(|e| verbatim(format!("Failed to update token {id}: {}", e.message)))?;
    info(&fmt::token(&t, f, a.out.meta)?);
    Ok(())
}

async fn token_delete(a: TokenIdArgs) -> Result<()> {
    let acc = accessor(
        &a.acc,
        "Must specify the -accessor-id parameter",
        "Use the -accessor-id parameter to specify token by Accessor ID.",
    )?;
    let c = sdk(&a.client)?;
    let id = token_id(&c, &acc).await.map_err(|e| verbatim(format!("Error determining token ID: {e:#}")))?;
    c.acl_token_delete(&id).await.map_err(|e| verbatim(format!("Error deleting token {id:?}: {}", e.message)))?;
    info(&format!("Token {id:?} deleted successfully"));
    Ok(())
}

async fn token_list(a: TokenListArgs) -> Result<()> {
    let f = a.out.format()?;
    let c = sdk(&a.client)?;
    let l = c
        .acl_token_list(&TokenListFilter::default())
        .await
        .map_err(|e| verbatim(format!("Failed to retrieve the token list: {}", e.message)))?;
    info(&fmt::token_list(&l, f, a.out.meta)?);
    Ok(())
}

async fn token_clone(a: TokenCloneArgs) -> Result<()> {
    let f = a.out.format()?;
    let acc = accessor(
        &a.acc,
        "Cannot update a token without specifying the -accessor-id parameter",
        "The -id parameter is deprecated. Use the -accessor-id parameter instead.",
    )?;
    let c = sdk(&a.client)?;
    let id = token_id(&c, &acc).await.map_err(|e| verbatim(format!("Error determining token Accessor ID: {e:#}")))?;
    let t = c
        .acl_token_clone(&id, &a.description)
        .await
        .map_err(|e| verbatim(format!("Error cloning token: {}", e.message)))?;
    info(&fmt::token(&t, f, a.out.meta)?);
    Ok(())
}

async fn policy_create(a: PolicyCreateArgs) -> Result<()> {
    if a.name.is_empty() {
        bail_v!("Missing require '-name' flag");
    }
    let f = a.out.format()?;
    let c = sdk(&a.client)?;
    let rules = load_data_source(&a.rules).map_err(|e| verbatim(format!("Error loading rules: {e:#}")))?;
    let p = AclPolicy {
        name: a.name.clone(),
        description: a.description.clone(),
        datacenters: (!a.valid_datacenter.is_empty()).then(|| a.valid_datacenter.clone()),
        rules,
        ..AclPolicy::default()
    };
    let p =
        c.acl_policy_create(&p).await.map_err(|e| verbatim(format!("Failed to create new policy: {}", e.message)))?;
    info(&fmt::policy(&p, f, a.out.meta)?);
    Ok(())
}

async fn policy_read(a: PolicyReadArgs) -> Result<()> {
    let w = &a.which;
    if w.id.is_empty() && w.name.is_empty() {
        bail_v!("Must specify either the -id or -name parameters");
    }
    let f = a.out.format()?;
    let c = sdk(&a.client)?;
    let (p, what) = if !w.id.is_empty() {
        let id = policy_id(&c, &w.id).await.map_err(|e| verbatim(format!("Error determining policy ID: {e:#}")))?;
        (c.acl_policy_read(&id).await, id)
    } else {
        (c.acl_policy_read_by_name(&w.name).await, w.name.clone())
    };
    let p = p.map_err(|e| verbatim(format!("Error reading policy {what:?}: {}", e.message)))?;
    let Some(p) = p else { bail_v!("Error policy not found: {}", w.name) };
    info(&fmt::policy(&p, f, a.out.meta)?);
    Ok(())
}

async fn policy_update(a: PolicyUpdateArgs) -> Result<()> {
    let name = a.name.clone().unwrap_or_default();
    if a.id.is_empty() && name.is_empty() {
        bail_v!("Must specify either the -id or -name parameters");
    }
    let f = a.out.format()?;
    let c = sdk(&a.client)?;
    let id = if !a.id.is_empty() {
        policy_id(&c, &a.id).await
    } else {
        match c.acl_policy_read_by_name(&name).await {
            Ok(Some(p)) => Ok(p.id),
            Ok(None) => Err(anyhow!("Failed to find policy with name {name}: policy not found")),
            Err(e) => Err(anyhow!("Failed to find policy with name {name}: {}", e.message)),
        }
    }
    .map_err(|e| verbatim(format!("Error determining policy ID: {e:#}")))?;
    let rules = load_data_source(a.rules.as_deref().unwrap_or_default())
        .map_err(|e| verbatim(format!("Error loading data source: {e:#}")))?;
    let dcs = (!a.valid_datacenter.is_empty()).then(|| a.valid_datacenter.clone());
    let updated = if a.no_merge {
        AclPolicy {
            id: id.clone(),
            name,
            description: a.description.clone().unwrap_or_default(),
            datacenters: dcs,
            rules,
            ..AclPolicy::default()
        }
    } else {
        let cur = c
            .acl_policy_read(&id)
            .await
            .map_err(|e| verbatim(format!("Error reading policy {id:?}: {}", e.message)))?
            .ok_or_else(|| verbatim(format!("Error reading policy {id:?}: policy not found")))?;
        AclPolicy {
            id: id.clone(),
            // With -id, -name renames; without, it only chose the policy.
            name: if a.id.is_empty() { cur.name } else { a.name.clone().unwrap_or(cur.name) },
            description: a.description.clone().unwrap_or(cur.description),
            rules: if a.rules.is_some() { rules } else { cur.rules },
            datacenters: dcs.or(cur.datacenters),
            ..AclPolicy::default()
        }
    };
    let p = c
        .acl_policy_update(&updated)
        .await
        .map_err(|e| verbatim(format!("Error updating policy {id:?}: {}", e.message)))?;
    info(&fmt::policy(&p, f, a.out.meta)?);
    Ok(())
}

async fn policy_delete(a: IdOrNameArgs) -> Result<()> {
    let w = &a.which;
    if w.id.is_empty() && w.name.is_empty() {
        bail_v!("Must specify either the -id or -name parameters");
    }
    let c = sdk(&a.client)?;
    let id = if !w.id.is_empty() {
        policy_id(&c, &w.id).await
    } else {
        match c.acl_policy_read_by_name(&w.name).await {
            Ok(Some(p)) => Ok(p.id),
            Ok(None) => Err(anyhow!("Failed to find policy with name {}: policy not found", w.name)),
            Err(e) => Err(anyhow!("Failed to find policy with name {}: {}", w.name, e.message)),
        }
    }
    .map_err(|e| verbatim(format!("Error determining policy ID: {e:#}")))?;
    c.acl_policy_delete(&id).await.map_err(|e| verbatim(format!("Error deleting policy {id:?}: {}", e.message)))?;
    info(&format!("Policy {id:?} deleted successfully"));
    Ok(())
}

async fn policy_list(a: ListArgs) -> Result<()> {
    let f = a.out.format()?;
    let c = sdk(&a.client)?;
    let l = c
        .acl_policy_list()
        .await
        .map_err(|e| verbatim(format!("Failed to retrieve the policy list: {}", e.message)))?;
    info(&fmt::policy_list(&l, f, a.out.meta)?);
    Ok(())
}

async fn role_create(a: RoleCreateArgs) -> Result<()> {
    if a.name.is_empty() {
        bail_v!("Missing require '-name' flag");
    }
    let l = &a.links;
    if l.policy_name.is_empty()
        && l.policy_id.is_empty()
        && l.service_identity.is_empty()
        && l.node_identity.is_empty()
        && l.templated_policy.is_empty()
    {
        bail_v!(
            "Cannot create a role without specifying -policy-name, -policy-id, -service-identity, or \
             -node-identity at least once"
        );
    }
    let f = a.out.format()?;
    let c = sdk(&a.client)?;
    let r = AclRole {
        name: a.name.clone(),
        description: a.description.clone(),
        policies: policy_links(&c, &l.policy_id, &l.policy_name).await?,
        service_identities: service_identities(&l.service_identity)?,
        node_identities: node_identities(&l.node_identity)?,
        templated_policies: templated_policies(&l.templated_policy, &l.var)?,
        ..AclRole::default()
    };
    let r = c.acl_role_create(&r).await.map_err(|e| verbatim(format!("Failed to create new role: {}", e.message)))?;
    info(&fmt::role(&r, f, a.out.meta)?);
    Ok(())
}

async fn role_read(a: PolicyReadArgs) -> Result<()> {
    let w = &a.which;
    if w.id.is_empty() && w.name.is_empty() {
        bail_v!("Must specify either the -id or -name parameters");
    }
    let f = a.out.format()?;
    let c = sdk(&a.client)?;
    let r = if !w.id.is_empty() {
        let id = role_id(&c, &w.id).await.map_err(|e| verbatim(format!("Error determining role ID: {e:#}")))?;
        c.acl_role_read(&id)
            .await
            .map_err(|e| verbatim(format!("Error reading role {id:?}: {}", e.message)))?
            .ok_or_else(|| verbatim(format!("Role not found with ID {id:?}")))?
    } else {
        c.acl_role_read_by_name(&w.name)
            .await
            .map_err(|e| verbatim(format!("Error reading role {:?}: {}", w.name, e.message)))?
            .ok_or_else(|| verbatim(format!("Role not found with name {:?}", w.name)))?
    };
    info(&fmt::role(&r, f, a.out.meta)?);
    Ok(())
}

async fn role_update(a: RoleUpdateArgs) -> Result<()> {
    if a.id.is_empty() {
        bail_v!("Cannot update a role without specifying the -id parameter");
    }
    let f = a.out.format()?;
    let c = sdk(&a.client)?;
    let id = role_id(&c, &a.id).await.map_err(|e| verbatim(format!("Error determining role ID: {e:#}")))?;
    let l = &a.links;
    let svc = service_identities(&l.service_identity)?;
    let nodes = node_identities(&l.node_identity)?;
    let cur = c
        .acl_role_read(&id)
        .await
        .map_err(|e| verbatim(format!("Error when retrieving current role: {}", e.message)))?
        .ok_or_else(|| verbatim(format!("Role not found with ID {id:?}")))?;
    let r = if a.no_merge {
        AclRole {
            id: id.clone(),
            name: a.name.clone(),
            description: a.description.clone(),
            policies: policy_links(&c, &l.policy_id, &l.policy_name).await?,
            service_identities: svc,
            node_identities: nodes,
            templated_policies: templated_policies(&l.templated_policy, &l.var)?,
            ..AclRole::default()
        }
    } else {
        let mut r = cur;
        if !a.name.is_empty() {
            r.name = a.name.clone();
        }
        if !a.description.is_empty() {
            r.description = a.description.clone();
        }
        for link in policy_links(&c, &l.policy_id, &l.policy_name).await? {
            if !r
                .policies
                .iter()
                .any(|p| (!link.id.is_empty() && p.id == link.id) || (!link.name.is_empty() && p.name == link.name))
            {
                r.policies.push(link);
            }
        }
        for s in svc {
            match r.service_identities.iter_mut().find(|x| x.service_name == s.service_name) {
                Some(x) => *x = s,
                None => r.service_identities.push(s),
            }
        }
        for n in nodes {
            if !r.node_identities.contains(&n) {
                r.node_identities.push(n);
            }
        }
        r.templated_policies.extend(templated_policies(&l.templated_policy, &l.var)?);
        r
    };
    let r = c.acl_role_update(&r).await.map_err(|e| verbatim(format!("Error updating role {id:?}: {}", e.message)))?;
    info(&fmt::role(&r, f, a.out.meta)?);
    Ok(())
}

async fn role_delete(a: IdOrNameArgs) -> Result<()> {
    let w = &a.which;
    if w.id.is_empty() && w.name.is_empty() {
        bail_v!("Must specify the -id or -name parameters");
    }
    let c = sdk(&a.client)?;
    let id = if !w.id.is_empty() {
        role_id(&c, &w.id).await
    } else {
        let list = c.acl_role_list(None).await.map_err(sdk_err);
        list.and_then(|l| {
            l.into_iter()
                .find(|r| r.name == w.name)
                .map(|r| r.id)
                .ok_or_else(|| anyhow!("No such role with name {}", w.name))
        })
    }
    .map_err(|e| verbatim(format!("Error determining role ID: {e:#}")))?;
    c.acl_role_delete(&id).await.map_err(|e| verbatim(format!("Error deleting role {id:?}: {}", e.message)))?;
    info(&format!("Role {id:?} deleted successfully"));
    Ok(())
}

async fn role_list(a: ListArgs) -> Result<()> {
    let f = a.out.format()?;
    let c = sdk(&a.client)?;
    let l = c
        .acl_role_list(None)
        .await
        .map_err(|e| verbatim(format!("Failed to retrieve the role list: {}", e.message)))?;
    info(&fmt::role_list(&l, f, a.out.meta)?);
    Ok(())
}

async fn templated(cmd: TemplatedPolicyCommand) -> Result<()> {
    match cmd {
        TemplatedPolicyCommand::List(a) => {
            let f = a.out.format()?;
            let c = sdk(&a.client)?;
            let m = c
                .acl_templated_policy_list()
                .await
                .map_err(|e| verbatim(format!("Failed to retrieve the templated policies list: {}", e.message)))?;
            info(&fmt::templated_policy_list(&m, f)?);
        }
        TemplatedPolicyCommand::Read(a) => {
            if a.name.is_empty() {
                bail_v!("Must specify the -name parameter");
            }
            let f = a.out.format()?;
            let c = sdk(&a.client)?;
            let t = c
                .acl_templated_policy_read(&a.name)
                .await
                .map_err(|e| verbatim(format!("Error reading templated policy {:?}: {}", a.name, e.message)))?
                .ok_or_else(|| verbatim(format!("Templated policy not found with name {:?}", a.name)))?;
            info(&fmt::templated_policy(&t, f, a.out.meta)?);
        }
        TemplatedPolicyCommand::Preview(a) => {
            if a.name.is_empty() {
                bail_v!("Must specify the -name parameter");
            }
            let f = a.out.format()?;
            let vars = match a.var.first() {
                Some(v) => template_var(v)?,
                None => AclTemplatedPolicyVariables::default(),
            };
            let c = sdk(&a.client)?;
            let p = c
                .acl_templated_policy_preview(&a.name, &vars)
                .await
                .map_err(|e| verbatim(format!("Failed to generate the templated policy preview: {}", e.message)))?;
            info(&fmt::policy(&p, f, a.out.meta)?);
        }
    }
    Ok(())
}

/// Applies the auth method flags to `m` (all of them with `-no-merge` or on create; only those
/// given otherwise).
fn apply_method_flags(a: &AuthMethodArgs, m: &mut AclAuthMethod) -> Result<()> {
    if let Some(v) = &a.display_name {
        m.display_name = v.clone();
    }
    if let Some(v) = &a.description {
        m.description = v.clone();
    }
    if let Some(v) = a.max_token_ttl.as_deref().filter(|v| !v.is_empty()) {
        m.max_token_ttl = nanos_of("max-token-ttl", v)?;
    }
    if let Some(v) = &a.token_locality {
        m.token_locality = v.clone();
    }
    if let Some(cfg) = &a.config {
        let text = load_data_source(cfg).map_err(|e| verbatim(format!("Error loading configuration file: {e:#}")))?;
        let v: std::collections::BTreeMap<String, serde_json::Value> = serde_json::from_str(&text)
            .map_err(|e| verbatim(format!("Error parsing JSON for auth method config: {e}")))?;
        m.config = Some(v);
    }
    if m.r#type == "kubernetes" {
        let cfg = m.config.get_or_insert_with(Default::default);
        for (key, v) in [
            ("Host", &a.kubernetes_host),
            ("CACert", &a.kubernetes_ca_cert),
            ("ServiceAccountJWT", &a.kubernetes_service_account_jwt),
        ] {
            if let Some(v) = v {
                let v = load_data_source(v)?;
                cfg.insert(key.to_string(), serde_json::Value::String(v));
            }
        }
    }
    Ok(())
}

async fn auth_method(cmd: AuthMethodCommand) -> Result<()> {
    match cmd {
        AuthMethodCommand::Create(a) => {
            if a.method_type.is_empty() {
                bail_v!("Missing required '-type' flag");
            }
            if a.name.is_empty() {
                bail_v!("Missing required '-name' flag");
            }
            if a.method_type == "kubernetes" && a.config.is_none() {
                for (flag, v) in [
                    ("kubernetes-host", &a.kubernetes_host),
                    ("kubernetes-ca-cert", &a.kubernetes_ca_cert),
                    ("kubernetes-service-account-jwt", &a.kubernetes_service_account_jwt),
                ] {
                    if v.as_deref().unwrap_or_default().is_empty() {
                        bail_v!("Missing required '-{flag}' flag");
                    }
                }
            }
            let f = a.out.format()?;
            let mut m = AclAuthMethod { name: a.name.clone(), r#type: a.method_type.clone(), ..Default::default() };
            apply_method_flags(&a, &mut m)?;
            let c = sdk(&a.client)?;
            let m = c
                .acl_auth_method_create(&m)
                .await
                .map_err(|e| verbatim(format!("Failed to create new auth method: {}", e.message)))?;
            info(&fmt::auth_method(&m, f, a.out.meta)?);
        }
        AuthMethodCommand::Update(a) => {
            if a.name.is_empty() {
                bail_v!("Cannot update an auth method without specifying the -name parameter");
            }
            let f = a.out.format()?;
            let c = sdk(&a.client)?;
            let cur = c
                .acl_auth_method_read(&a.name)
                .await
                .map_err(|e| verbatim(format!("Error when retrieving current auth method: {}", e.message)))?
                .ok_or_else(|| verbatim(format!("Auth method not found with name {:?}", a.name)))?;
            let mut m = if a.no_merge {
                AclAuthMethod { name: cur.name.clone(), r#type: cur.r#type.clone(), ..Default::default() }
            } else {
                cur
            };
            apply_method_flags(&a, &mut m)?;
            let m = c
                .acl_auth_method_update(&m)
                .await
                .map_err(|e| verbatim(format!("Error updating auth method {:?}: {}", a.name, e.message)))?;
            info(&fmt::auth_method(&m, f, a.out.meta)?);
        }
        AuthMethodCommand::Read(a) => {
            if a.name.is_empty() {
                bail_v!("Must specify the -name parameter");
            }
            let f = a.out.format()?;
            let c = sdk(&a.client)?;
            let m = c
                .acl_auth_method_read(&a.name)
                .await
                .map_err(|e| verbatim(format!("Error reading auth method {:?}: {}", a.name, e.message)))?
                .ok_or_else(|| verbatim(format!("Auth method not found with name {:?}", a.name)))?;
            info(&fmt::auth_method(&m, f, a.out.meta)?);
        }
        AuthMethodCommand::Delete(a) => {
            if a.name.is_empty() {
                bail_v!("Must specify the -name parameter");
            }
            let c = sdk(&a.client)?;
            c.acl_auth_method_delete(&a.name)
                .await
                .map_err(|e| verbatim(format!("Error deleting auth method {:?}: {}", a.name, e.message)))?;
            info(&format!("Auth method {:?} deleted successfully", a.name));
        }
        AuthMethodCommand::List(a) => {
            let f = a.out.format()?;
            let c = sdk(&a.client)?;
            let l = c
                .acl_auth_method_list()
                .await
                .map_err(|e| verbatim(format!("Failed to retrieve the auth method list: {}", e.message)))?;
            info(&fmt::auth_method_list(&l, f, a.out.meta)?);
        }
    }
    Ok(())
}

/// Merges the flags into a rule as Consul's update does: non-empty values replace, `-selector`
/// replaces whenever given (empty is a valid selector). `-bind-type` defaults to `service`, so,
/// as in Consul, a merge always sets it.
fn apply_rule_flags(a: &BindingRuleArgs, r: &mut AclBindingRule) {
    if let Some(v) = a.description.as_ref().filter(|v| !v.is_empty()) {
        r.description = v.clone();
    }
    if let Some(v) = &a.selector {
        r.selector = v.clone();
    }
    if !a.bind_type.is_empty() {
        r.bind_type = a.bind_type.clone();
    }
    if let Some(v) = a.bind_name.as_ref().filter(|v| !v.is_empty()) {
        r.bind_name = v.clone();
    }
}

async fn binding_rule(cmd: BindingRuleCommand) -> Result<()> {
    match cmd {
        BindingRuleCommand::Create(a) => {
            if a.method.is_empty() {
                bail_v!("Missing required '-method' flag");
            }
            if a.bind_type.is_empty() {
                bail_v!("Missing required '-bind-type' flag");
            }
            if a.bind_name.as_deref().unwrap_or_default().is_empty() {
                bail_v!("Missing required '-bind-name' flag");
            }
            let f = a.out.format()?;
            let mut r = AclBindingRule { auth_method: a.method.clone(), ..Default::default() };
            apply_rule_flags(&a, &mut r);
            let c = sdk(&a.client)?;
            let r = c
                .acl_binding_rule_create(&r)
                .await
                .map_err(|e| verbatim(format!("Failed to create new binding rule: {}", e.message)))?;
            info(&fmt::binding_rule(&r, f, a.out.meta)?);
        }
        BindingRuleCommand::Update(a) => {
            if a.id.is_empty() {
                bail_v!("Cannot update a binding rule without specifying the -id parameter");
            }
            let f = a.out.format()?;
            let c = sdk(&a.client)?;
            let id =
                rule_id(&c, &a.id).await.map_err(|e| verbatim(format!("Error determining binding rule ID: {e:#}")))?;
            let cur = c
                .acl_binding_rule_read(&id)
                .await
                .map_err(|e| verbatim(format!("Error when retrieving current binding rule: {}", e.message)))?
                .ok_or_else(|| verbatim(format!("Binding rule not found with ID {id:?}")))?;
            let r = if a.no_merge {
                if a.bind_type.is_empty() {
                    bail_v!("Missing required '-bind-type' flag");
                }
                let Some(bind_name) = a.bind_name.clone().filter(|n| !n.is_empty()) else {
                    bail_v!("Missing required '-bind-name' flag");
                };
                AclBindingRule {
                    id: id.clone(),
                    auth_method: cur.auth_method.clone(), // immutable
                    description: a.description.clone().unwrap_or_default(),
                    bind_type: a.bind_type.clone(),
                    bind_name,
                    selector: a.selector.clone().unwrap_or_default(),
                    ..Default::default()
                }
            } else {
                let mut r = cur;
                apply_rule_flags(&a, &mut r);
                r
            };
            let r = c
                .acl_binding_rule_update(&r)
                .await
                .map_err(|e| verbatim(format!("Error updating binding rule {id:?}: {}", e.message)))?;
            info(&fmt::binding_rule(&r, f, a.out.meta)?);
        }
        BindingRuleCommand::Read(a) => {
            if a.id.is_empty() {
                bail_v!("Must specify the -id parameter.");
            }
            let f = a.out.format()?;
            let c = sdk(&a.client)?;
            let id =
                rule_id(&c, &a.id).await.map_err(|e| verbatim(format!("Error determining binding rule ID: {e:#}")))?;
            let r = c
                .acl_binding_rule_read(&id)
                .await
                .map_err(|e| verbatim(format!("Error reading binding rule {id:?}: {}", e.message)))?
                .ok_or_else(|| verbatim(format!("Binding rule not found with ID {id:?}")))?;
            info(&fmt::binding_rule(&r, f, a.out.meta)?);
        }
        BindingRuleCommand::Delete(a) => {
            if a.id.is_empty() {
                bail_v!("Must specify the -id parameter");
            }
            let c = sdk(&a.client)?;
            let id =
                rule_id(&c, &a.id).await.map_err(|e| verbatim(format!("Error determining binding rule ID: {e:#}")))?;
            c.acl_binding_rule_delete(&id)
                .await
                .map_err(|e| verbatim(format!("Error deleting binding rule {id:?}: {}", e.message)))?;
            info(&format!("Binding rule {id:?} deleted successfully"));
        }
        BindingRuleCommand::List(a) => {
            let f = a.out.format()?;
            let c = sdk(&a.client)?;
            let l = c
                .acl_binding_rule_list(Some(&a.method))
                .await
                .map_err(|e| verbatim(format!("Failed to retrieve the binding rule list: {}", e.message)))?;
            info(&fmt::binding_rule_list(&l, f, a.out.meta)?);
        }
    }
    Ok(())
}

async fn set_agent_token(a: SetAgentTokenArgs) -> Result<()> {
    let (ty, token) = match a.args.as_slice() {
        [] => bail_v!("Error! Missing TYPE and TOKEN arguments"),
        [ty] if matches!(ty.as_str(), "default" | "agent" | "recovery" | "replication") => {
            bail_v!("Error! Missing TOKEN argument")
        }
        [_] => bail_v!("Error! MISSING TYPE argument"),
        [ty, tok] => (ty.clone(), load_data_source(tok).map_err(|e| verbatim(format!("Error! {e:#}")))?),
        more => bail_v!("Error! Too many arguments: expected 2 got {}", more.len()),
    };
    if !matches!(
        ty.as_str(),
        "default" | "agent" | "recovery" | "replication" | "config_file_service_registration" | "dns"
    ) {
        bail_v!("Unknown token type");
    }
    let c = sdk(&a.client)?;
    c.agent_set_token(&ty, &token)
        .await
        .map_err(|e| verbatim(format!("Failed to set ACL token {ty:?}: {}", e.message)))?;
    info(&format!("ACL token {ty:?} set successfully"));
    Ok(())
}

/// Legacy (pre-1.4) rules named prefixes with the bare resource word (`key "app/"` covered every
/// key under `app/`); the current syntax says `key_prefix`. The words that changed meaning.
const LEGACY_PREFIX_RULES: &[&str] = &["agent", "event", "key", "node", "query", "service", "session"];

/// Rewrites legacy rule text: each `WORD "x"` (and JSON `"WORD": {`) of a prefix-matching
/// resource becomes `WORD_prefix`. Everything else (policies, `operator`, `keyring`) is unchanged.
pub(crate) fn translate_legacy_rules(rules: &str) -> String {
    let mut out = String::with_capacity(rules.len() + 32);
    let bytes = rules.as_bytes();
    let mut i = 0;
    let mut at_statement = true;
    while i < bytes.len() {
        let c = bytes[i] as char;
        if at_statement && (c.is_ascii_alphabetic() || c == '"') {
            let quoted = c == '"';
            let start = if quoted { i + 1 } else { i };
            let end = start
                + rules[start..]
                    .find(|ch: char| !(ch.is_ascii_alphanumeric() || ch == '_'))
                    .unwrap_or(rules.len() - start);
            let word = &rules[start..end];
            let closes = !quoted || rules[end..].starts_with('"');
            if closes && LEGACY_PREFIX_RULES.contains(&word) {
                out.push_str(&rules[i..end]);
                out.push_str("_prefix");
                i = end;
                at_statement = false;
                continue;
            }
            at_statement = false;
        }
        match c {
            '\n' | '{' | ',' => at_statement = true,
            ch if ch.is_whitespace() => {}
            _ => at_statement = false,
        }
        out.push(c);
        i += c.len_utf8();
        while !rules.is_char_boundary(i) {
            i += 1;
        }
    }
    out
}

fn translate_rules(a: TranslateRulesArgs) -> Result<()> {
    let _ = &a.client;
    let src = match a.args.as_slice() {
        [] => bail_v!("Must specify exactly one of -token-accessor, -token-secret or the rules to translate"),
        [one] => one.clone(),
        _ => bail_v!("Too many arguments"),
    };
    let rules = load_data_source(&src).map_err(|e| verbatim(format!("Error loading rules: {e:#}")))?;
    info(&translate_legacy_rules(&rules));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identities_parse_like_consul() {
        let s = service_identities(&["web".into(), "api:dc1,dc2".into()]).expect("ok");
        assert_eq!(s[0], AclServiceIdentity { service_name: "web".into(), datacenters: vec![] });
        assert_eq!(s[1].datacenters, vec!["dc1", "dc2"]);
        assert_eq!(
            service_identities(&["a:b:c".into()]).expect_err("bad").to_string(),
            "Malformed -service-identity argument: \"a:b:c\""
        );
        assert_eq!(node_identities(&["n:dc1".into()]).expect("ok")[0].datacenter, "dc1");
        assert!(node_identities(&["n".into()]).is_err());
    }

    #[test]
    fn templated_policy_vars() {
        let t =
            templated_policies(&["builtin/service".into(), "builtin/dns".into()], &["name:api".into()]).expect("ok");
        assert_eq!(t[0].template_variables.as_ref().map(|v| v.name.as_str()), Some("api"));
        assert!(t[1].template_variables.is_none());
        assert!(templated_policies(&[], &["name:x".into()]).is_err());
        assert!(templated_policies(&["builtin/node".into()], &["nope".into()]).is_err());
    }

    #[test]
    fn partial_ids() {
        let ids = ["abc-1", "abd-2", "xyz"];
        assert_eq!(id_from_partial("abc", ids, "token").expect("unique"), "abc-1");
        assert_eq!(
            id_from_partial("ab", ids, "policy").expect_err("dup").to_string(),
            "Partial policy ID is not unique"
        );
        assert_eq!(id_from_partial("q", ids, "role").expect_err("none").to_string(), "No such role ID with prefix: q");
    }

    #[test]
    fn legacy_rules_translate() {
        assert_eq!(
            translate_legacy_rules("key \"app/\" { policy = \"read\" }\nservice \"\" {\n  policy = \"write\"\n}\noperator = \"read\"\nkey_prefix \"x\" { policy = \"deny\" }"),
            "key_prefix \"app/\" { policy = \"read\" }\nservice_prefix \"\" {\n  policy = \"write\"\n}\noperator = \"read\"\nkey_prefix \"x\" { policy = \"deny\" }"
        );
        assert_eq!(
            translate_legacy_rules("{\"key\": {\"a\": {\"policy\": \"read\"}}}"),
            "{\"key_prefix\": {\"a\": {\"policy\": \"read\"}}}"
        );
    }

    #[test]
    fn data_sources() {
        assert_eq!(load_data_source("text").expect("raw"), "text");
        assert_eq!(load_data_source("").expect("empty"), "");
        let dir = tempfile::tempdir().expect("tmp");
        let p = dir.path().join("r.hcl");
        std::fs::write(&p, "key_prefix \"\" {}").expect("write");
        assert_eq!(load_data_source(&format!("@{}", p.display())).expect("file"), "key_prefix \"\" {}");
        assert!(load_data_source("@/nonexistent/x").is_err());
    }
}
