//! ACL tables (Consul's `agent/consul/state/acl.go`): tokens, policies, roles, auth methods,
//! binding rules and the bootstrap state, replicated like the rest of [`StateData`].
//!
//! Apply is deterministic: IDs, secrets and times are chosen by the proposer (the HTTP handler
//! or the leader) and carried in the [`AclOp`]. Apply checks what depends on the replicated
//! state — links to policies and roles exist (names are resolved to IDs here, so a stored token
//! only holds IDs), names are unique, built-ins are protected, bootstrap happens once — and a
//! refused op changes nothing. Expiry is compared with a time the reader or the proposer passes
//! in, never with a clock read during apply.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::StateData;
use crate::error::ApplyError;

/// ID of the builtin `global-management` policy.
pub const GLOBAL_MANAGEMENT_ID: &str = "00000000-0000-0000-0000-000000000001";
/// Name of the builtin `global-management` policy.
pub const GLOBAL_MANAGEMENT_NAME: &str = "global-management";
/// AccessorID of the anonymous token.
pub const ANONYMOUS_ACCESSOR_ID: &str = "00000000-0000-0000-0000-000000000002";
/// SecretID of the anonymous token.
pub const ANONYMOUS_SECRET_ID: &str = "anonymous";
/// IDs with this prefix are reserved for built-ins (`structs.ACLReservedIDPrefix`).
pub const RESERVED_ID_PREFIX: &str = "00000000-0000-0000-0000-0000000000";
/// Watch key of every ACL table (reads of any ACL object wait on it).
pub const WATCH_ACL: &str = "\u{1}acl";

/// A link from a token or role to a policy or role. Stored with the ID only; the name is filled
/// in from the current object when read (names can change).
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct AclLink {
    /// The linked object's ID (empty in a request that names it instead).
    pub id: String,
    /// The linked object's name (only in requests).
    pub name: String,
}

/// A service identity (`structs.ACLServiceIdentity`).
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ServiceIdentity {
    /// Service name.
    pub service_name: String,
    /// Datacenters where it applies (empty: all).
    pub datacenters: Vec<String>,
}

/// A node identity (`structs.ACLNodeIdentity`).
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct NodeIdentity {
    /// Node name.
    pub node_name: String,
    /// The datacenter it applies in.
    pub datacenter: String,
}

/// A templated policy reference (`structs.ACLTemplatedPolicy`).
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct TemplatedPolicyRef {
    /// Template name (`builtin/service`, …).
    pub template_name: String,
    /// The `Name` variable, if the template takes one.
    pub name_var: Option<String>,
    /// Datacenters where it applies (empty: all).
    pub datacenters: Vec<String>,
}

/// An ACL token (`structs.ACLToken`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AclToken {
    /// Public ID.
    pub accessor_id: String,
    /// Bearer secret.
    pub secret_id: String,
    /// Free text.
    pub description: String,
    /// Linked policies (IDs once stored).
    pub policies: Vec<AclLink>,
    /// Linked roles (IDs once stored).
    pub roles: Vec<AclLink>,
    /// Service identities.
    pub service_identities: Vec<ServiceIdentity>,
    /// Node identities.
    pub node_identities: Vec<NodeIdentity>,
    /// Templated policies.
    pub templated_policies: Vec<TemplatedPolicyRef>,
    /// Datacenter-local.
    pub local: bool,
    /// The auth method that created it by login (empty otherwise).
    pub auth_method: String,
    /// Expiry, unix ms.
    pub expiration_time_ms: Option<u64>,
    /// The TTL it was created with, ns (informational once the expiry is set).
    pub expiration_ttl_ns: u64,
    /// Creation time, unix ms.
    pub create_time_ms: u64,
    /// Content hash (base64), computed at apply.
    pub hash: String,
    /// Raft index of creation.
    pub create_index: u64,
    /// Raft index of the last change.
    pub modify_index: u64,
}

impl AclToken {
    /// Whether the token has expired at `now_ms`.
    pub fn is_expired(&self, now_ms: u64) -> bool {
        self.expiration_time_ms.is_some_and(|t| t <= now_ms)
    }
}

/// An ACL policy (`structs.ACLPolicy`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AclPolicy {
    /// UUID.
    pub id: String,
    /// Unique name.
    pub name: String,
    /// Free text.
    pub description: String,
    /// Rules text (HCL or JSON).
    pub rules: String,
    /// Datacenters where it applies (empty: all).
    pub datacenters: Vec<String>,
    /// Content hash (base64).
    pub hash: String,
    /// Raft index of creation.
    pub create_index: u64,
    /// Raft index of the last change.
    pub modify_index: u64,
}

/// An ACL role (`structs.ACLRole`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AclRole {
    /// UUID.
    pub id: String,
    /// Unique name.
    pub name: String,
    /// Free text.
    pub description: String,
    /// Linked policies (IDs once stored).
    pub policies: Vec<AclLink>,
    /// Service identities.
    pub service_identities: Vec<ServiceIdentity>,
    /// Node identities.
    pub node_identities: Vec<NodeIdentity>,
    /// Templated policies.
    pub templated_policies: Vec<TemplatedPolicyRef>,
    /// Content hash (base64).
    pub hash: String,
    /// Raft index of creation.
    pub create_index: u64,
    /// Raft index of the last change.
    pub modify_index: u64,
}

/// An auth method (`structs.ACLAuthMethod`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AclAuthMethod {
    /// Unique name.
    pub name: String,
    /// Type (`jwt`, …).
    pub method_type: String,
    /// Display name.
    pub display_name: String,
    /// Free text.
    pub description: String,
    /// Longest TTL of tokens it creates, ns (0: none).
    pub max_token_ttl_ns: u64,
    /// `local` or `global` (empty: local).
    pub token_locality: String,
    /// The type-specific configuration, as JSON text (postcard cannot carry a JSON value).
    pub config_json: String,
    /// Raft index of creation.
    pub create_index: u64,
    /// Raft index of the last change.
    pub modify_index: u64,
}

/// A binding rule (`structs.ACLBindingRule`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AclBindingRule {
    /// UUID.
    pub id: String,
    /// Free text.
    pub description: String,
    /// The auth method it belongs to.
    pub auth_method: String,
    /// A selector over the login's claims (empty: always).
    pub selector: String,
    /// `service`, `node`, `role`, `policy` or `templated-policy`.
    pub bind_type: String,
    /// Name to bind, with `${…}` interpolation.
    pub bind_name: String,
    /// Variables for `templated-policy` (`Name`).
    pub bind_vars_name: Option<String>,
    /// Raft index of creation.
    pub create_index: u64,
    /// Raft index of the last change.
    pub modify_index: u64,
}

/// Bootstrap state (`structs.ACLBootstrap` / the `acl-token-bootstrap` index).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BootstrapState {
    /// Whether `/v1/acl/bootstrap` succeeded.
    pub bootstrapped: bool,
    /// Raft index of that bootstrap: the reset index an operator writes to re-allow it.
    pub reset_index: u64,
}

/// Every ACL table.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AclTables {
    /// Tokens by AccessorID.
    pub tokens: BTreeMap<String, AclToken>,
    /// SecretID → AccessorID. Derived from `tokens`: not serialised, rebuilt on load
    /// ([`AclTables::rebuild`]) so it can never disagree with them.
    #[serde(skip)]
    pub secrets: BTreeMap<String, String>,
    /// Policies by ID.
    pub policies: BTreeMap<String, AclPolicy>,
    /// Roles by ID.
    pub roles: BTreeMap<String, AclRole>,
    /// Auth methods by name.
    pub auth_methods: BTreeMap<String, AclAuthMethod>,
    /// Binding rules by ID.
    pub binding_rules: BTreeMap<String, AclBindingRule>,
    /// Bootstrap state.
    pub bootstrap: BootstrapState,
    /// Index of the last change to tokens.
    pub tokens_index: u64,
    /// Index of the last change to policies.
    pub policies_index: u64,
    /// Index of the last change to roles.
    pub roles_index: u64,
    /// Index of the last change to auth methods.
    pub auth_methods_index: u64,
    /// Index of the last change to binding rules.
    pub binding_rules_index: u64,
}

/// An ACL mutation (the payload of `Command::Acl`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum AclOp {
    /// `PUT /v1/acl/bootstrap`: store a management token, once. `reset_index` is what the
    /// leader's `acl-bootstrap-reset` file held (0: none); a match allows one more bootstrap.
    Bootstrap {
        /// The management token (its policy link is set by apply).
        token: Box<AclToken>,
        /// The reset index read by the proposer.
        reset_index: u64,
    },
    /// Create (`create`: the accessor must be new) or update a token. `now_ms` refuses an
    /// expiry already past.
    TokenSet {
        /// The token as requested (links may name policies and roles).
        token: Box<AclToken>,
        /// Create rather than update.
        create: bool,
        /// The proposer's clock, unix ms.
        now_ms: u64,
    },
    /// Delete a token by AccessorID (unknown: nothing happens).
    TokenDelete {
        /// AccessorID.
        accessor_id: String,
    },
    /// Create or update a policy (an existing ID updates).
    PolicySet(Box<AclPolicy>),
    /// Delete a policy by ID.
    PolicyDelete {
        /// Policy ID.
        id: String,
    },
    /// Create or update a role.
    RoleSet(Box<AclRole>),
    /// Delete a role by ID.
    RoleDelete {
        /// Role ID.
        id: String,
    },
    /// Create or update an auth method.
    AuthMethodSet(Box<AclAuthMethod>),
    /// Delete an auth method, its binding rules and the tokens it created.
    AuthMethodDelete {
        /// Name.
        name: String,
    },
    /// Create or update a binding rule.
    BindingRuleSet(Box<AclBindingRule>),
    /// Delete a binding rule.
    BindingRuleDelete {
        /// Rule ID.
        id: String,
    },
    /// Leader: delete tokens expired at `now_ms`.
    ReapExpired {
        /// The leader's clock, unix ms.
        now_ms: u64,
    },
    /// Leader: make sure the built-in policy and the anonymous token exist, and add the
    /// `initial_management` token if no token has its secret. Idempotent.
    Initialize {
        /// The builtin policies to create when missing.
        policies: Vec<AclPolicy>,
        /// The anonymous token to create when missing.
        anonymous: Box<AclToken>,
        /// The initial management token (with its accessor chosen by the leader).
        initial_management: Option<Box<AclToken>>,
    },
}

/// What an [`AclOp`] returned when it applied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum AclApplied {
    /// Nothing to report (deletes, leader ops).
    Done,
    /// The token as stored.
    Token(Box<AclToken>),
    /// The policy as stored.
    Policy(Box<AclPolicy>),
    /// The role as stored.
    Role(Box<AclRole>),
    /// The auth method as stored.
    AuthMethod(Box<AclAuthMethod>),
    /// The binding rule as stored.
    BindingRule(Box<AclBindingRule>),
}

fn invalid(msg: impl Into<String>) -> ApplyError {
    ApplyError::AclInvalid(msg.into())
}

fn hash_of<T: Serialize>(value: &T) -> String {
    use base64::Engine as _;
    let bytes = postcard::to_allocvec(value).unwrap_or_default();
    base64::engine::general_purpose::STANDARD.encode(Sha256::digest(&bytes))
}

impl AclTables {
    /// Rebuilds the secret index from the tokens (after a snapshot load or restore).
    pub fn rebuild(&mut self) {
        self.secrets = self.tokens.values().map(|t| (t.secret_id.clone(), t.accessor_id.clone())).collect();
    }

    /// The token with `secret`, unless it expired at `now_ms`. O(log n).
    pub fn token_by_secret(&self, secret: &str, now_ms: u64) -> Option<&AclToken> {
        let accessor = self.secrets.get(secret)?;
        self.tokens.get(accessor).filter(|t| !t.is_expired(now_ms))
    }

    /// What a client agent needs to judge requests carrying `secret`: that token, its roles and
    /// every policy they link, with the table indexes (`None`: no such live token). Client
    /// agents hold no replica; a server answers this and the client compiles it itself.
    pub fn for_secret(&self, secret: &str, now_ms: u64) -> Option<AclTables> {
        let token = self.token_by_secret(secret, now_ms)?;
        let mut out = AclTables {
            tokens_index: self.tokens_index,
            policies_index: self.policies_index,
            roles_index: self.roles_index,
            auth_methods_index: self.auth_methods_index,
            binding_rules_index: self.binding_rules_index,
            ..AclTables::default()
        };
        let mut policy_ids: Vec<&str> = token.policies.iter().map(|l| l.id.as_str()).collect();
        for link in &token.roles {
            if let Some(role) = self.role(&link.id) {
                policy_ids.extend(role.policies.iter().map(|l| l.id.as_str()));
                out.roles.insert(role.id.clone(), role.clone());
            }
        }
        for id in policy_ids {
            if let Some(p) = self.policy(id) {
                out.policies.insert(p.id.clone(), p.clone());
            }
        }
        out.tokens.insert(token.accessor_id.clone(), token.clone());
        out.rebuild();
        Some(out)
    }

    /// The token with `accessor_id`, unless it expired at `now_ms`.
    pub fn token_by_accessor(&self, accessor_id: &str, now_ms: u64) -> Option<&AclToken> {
        self.tokens.get(accessor_id).filter(|t| !t.is_expired(now_ms))
    }

    /// The policy with `id`.
    pub fn policy(&self, id: &str) -> Option<&AclPolicy> {
        self.policies.get(id)
    }

    /// The policy called `name` (linear: policies are few).
    pub fn policy_by_name(&self, name: &str) -> Option<&AclPolicy> {
        self.policies.values().find(|p| p.name == name)
    }

    /// The role with `id`.
    pub fn role(&self, id: &str) -> Option<&AclRole> {
        self.roles.get(id)
    }

    /// The role called `name`.
    pub fn role_by_name(&self, name: &str) -> Option<&AclRole> {
        self.roles.values().find(|r| r.name == name)
    }

    /// Highest index of any ACL table.
    pub fn max_index(&self) -> u64 {
        [self.tokens_index, self.policies_index, self.roles_index, self.auth_methods_index, self.binding_rules_index]
            .into_iter()
            .max()
            .unwrap_or(0)
    }

    fn id_in_use(&self, id: &str) -> bool {
        self.tokens.contains_key(id) || self.secrets.contains_key(id)
    }

    fn resolve_policies(&self, links: &[AclLink]) -> Result<Vec<AclLink>, ApplyError> {
        let mut out: Vec<AclLink> = Vec::new();
        for link in links {
            let id = if link.id.is_empty() {
                match self.policy_by_name(&link.name) {
                    Some(p) => p.id.clone(),
                    None => return Err(invalid(format!("No such ACL policy with name {:?}", link.name))),
                }
            } else if self.policies.contains_key(&link.id) {
                link.id.clone()
            } else {
                return Err(invalid(format!("No such ACL policy with ID {:?}", link.id)));
            };
            if !out.iter().any(|l| l.id == id) {
                out.push(AclLink { id, name: String::new() });
            }
        }
        Ok(out)
    }

    fn resolve_roles(&self, links: &[AclLink]) -> Result<Vec<AclLink>, ApplyError> {
        let mut out: Vec<AclLink> = Vec::new();
        for link in links {
            let id = if link.id.is_empty() {
                match self.role_by_name(&link.name) {
                    Some(r) => r.id.clone(),
                    None => return Err(invalid(format!("No such ACL role with name {:?}", link.name))),
                }
            } else if self.roles.contains_key(&link.id) {
                link.id.clone()
            } else {
                return Err(invalid(format!("No such ACL role with ID {:?}", link.id)));
            };
            if !out.iter().any(|l| l.id == id) {
                out.push(AclLink { id, name: String::new() });
            }
        }
        Ok(out)
    }

    fn insert_token(&mut self, mut token: AclToken, index: u64) -> AclToken {
        if let Some(old) = self.tokens.get(&token.accessor_id) {
            token.create_index = old.create_index;
            self.secrets.remove(&old.secret_id.clone());
        } else {
            token.create_index = index;
        }
        token.modify_index = index;
        token.hash = hash_of(&(
            &token.description,
            &token.policies,
            &token.roles,
            &token.service_identities,
            &token.node_identities,
            &token.templated_policies,
            token.local,
        ));
        self.secrets.insert(token.secret_id.clone(), token.accessor_id.clone());
        self.tokens.insert(token.accessor_id.clone(), token.clone());
        self.tokens_index = index;
        token
    }

    fn remove_token(&mut self, accessor_id: &str, index: u64) -> bool {
        match self.tokens.remove(accessor_id) {
            Some(t) => {
                self.secrets.remove(&t.secret_id);
                self.tokens_index = index;
                true
            }
            None => false,
        }
    }

    fn token_set(
        &mut self,
        mut token: AclToken,
        create: bool,
        now_ms: u64,
        index: u64,
    ) -> Result<AclToken, ApplyError> {
        let existing = self.tokens.get(&token.accessor_id);
        match (create, existing) {
            (true, Some(_)) => return Err(invalid("Invalid Token: AccessorID is already in use")),
            (true, None) => {
                if self.id_in_use(&token.secret_id) {
                    return Err(invalid("Invalid Token: SecretID is already in use"));
                }
                if self.tokens.values().any(|t| t.secret_id == token.accessor_id) {
                    return Err(invalid("Invalid Token: AccessorID is already in use"));
                }
            }
            (false, None) => return Err(invalid(format!("Cannot find token {:?}", token.accessor_id))),
            (false, Some(old)) => {
                if old.is_expired(now_ms) {
                    return Err(invalid(format!("Cannot find token {:?}", token.accessor_id)));
                }
                if token.secret_id.is_empty() {
                    token.secret_id = old.secret_id.clone();
                } else if token.secret_id != old.secret_id {
                    return Err(invalid("Changing a token's SecretID is not permitted"));
                }
                if token.local != old.local {
                    return Err(invalid(format!("Cannot toggle local mode of {}", token.accessor_id)));
                }
                if token.auth_method.is_empty() {
                    token.auth_method = old.auth_method.clone();
                } else if token.auth_method != old.auth_method {
                    return Err(invalid(format!("Cannot change AuthMethod of {}", token.accessor_id)));
                }
                match token.expiration_time_ms {
                    None => token.expiration_time_ms = old.expiration_time_ms,
                    Some(t) if Some(t) != old.expiration_time_ms => {
                        return Err(invalid(format!("Cannot change expiration time of {}", token.accessor_id)))
                    }
                    Some(_) => {}
                }
                token.create_time_ms = old.create_time_ms;
                token.expiration_ttl_ns = old.expiration_ttl_ns;
            }
        }
        if create && token.expiration_time_ms.is_some_and(|t| t <= now_ms) {
            return Err(invalid("ExpirationTime cannot be before CreateTime"));
        }
        token.policies = self.resolve_policies(&token.policies)?;
        token.roles = self.resolve_roles(&token.roles)?;
        if !token.auth_method.is_empty() && create && !self.auth_methods.contains_key(&token.auth_method) {
            return Err(invalid(format!("auth method {:?} not found", token.auth_method)));
        }
        Ok(self.insert_token(token, index))
    }

    fn policy_set(&mut self, mut policy: AclPolicy, index: u64) -> Result<AclPolicy, ApplyError> {
        if let Some(other) = self.policy_by_name(&policy.name).filter(|p| p.id != policy.id) {
            return Err(invalid(format!("Invalid Policy: A Policy with Name {:?} already exists", other.name)));
        }
        match self.policies.get(&policy.id) {
            Some(old) => {
                if policy.id == GLOBAL_MANAGEMENT_ID {
                    if !policy.datacenters.is_empty() {
                        return Err(invalid(
                            "Changing the Datacenters of the builtin global-management policy is not permitted",
                        ));
                    }
                    if policy.rules != old.rules {
                        return Err(invalid(
                            "Changing the Rules for the builtin global-management policy is not permitted",
                        ));
                    }
                }
                policy.create_index = old.create_index;
            }
            None => policy.create_index = index,
        }
        policy.modify_index = index;
        policy.hash = hash_of(&(&policy.name, &policy.description, &policy.rules, &policy.datacenters));
        self.policies.insert(policy.id.clone(), policy.clone());
        self.policies_index = index;
        Ok(policy)
    }

    fn role_set(&mut self, mut role: AclRole, index: u64) -> Result<AclRole, ApplyError> {
        if let Some(other) = self.role_by_name(&role.name).filter(|r| r.id != role.id) {
            return Err(invalid(format!("Invalid Role: A Role with Name {:?} already exists", other.name)));
        }
        role.policies = self.resolve_policies(&role.policies)?;
        role.create_index = self.roles.get(&role.id).map_or(index, |old| old.create_index);
        role.modify_index = index;
        role.hash = hash_of(&(
            &role.name,
            &role.description,
            &role.policies,
            &role.service_identities,
            &role.node_identities,
            &role.templated_policies,
        ));
        self.roles.insert(role.id.clone(), role.clone());
        self.roles_index = index;
        Ok(role)
    }

    fn auth_method_set(&mut self, mut method: AclAuthMethod, index: u64) -> Result<AclAuthMethod, ApplyError> {
        if let Some(old) = self.auth_methods.get(&method.name) {
            if old.method_type != method.method_type {
                return Err(invalid(format!(
                    "the Type field is immutable: {} != {}",
                    method.method_type, old.method_type
                )));
            }
            method.create_index = old.create_index;
        } else {
            method.create_index = index;
        }
        method.modify_index = index;
        self.auth_methods.insert(method.name.clone(), method.clone());
        self.auth_methods_index = index;
        Ok(method)
    }

    fn binding_rule_set(&mut self, mut rule: AclBindingRule, index: u64) -> Result<AclBindingRule, ApplyError> {
        if !self.auth_methods.contains_key(&rule.auth_method) {
            return Err(invalid(format!("Invalid Binding Rule: unknown auth method {:?}", rule.auth_method)));
        }
        if let Some(old) = self.binding_rules.get(&rule.id) {
            if old.auth_method != rule.auth_method {
                return Err(invalid("Invalid Binding Rule: AuthMethod field is immutable"));
            }
            rule.create_index = old.create_index;
        } else {
            rule.create_index = index;
        }
        rule.modify_index = index;
        self.binding_rules.insert(rule.id.clone(), rule.clone());
        self.binding_rules_index = index;
        Ok(rule)
    }

    /// Applies `op` at `index`. On error nothing changed (every check runs before any write).
    pub fn apply(&mut self, op: &AclOp, index: u64) -> Result<AclApplied, ApplyError> {
        Ok(match op {
            AclOp::Bootstrap { token, reset_index } => {
                if self.bootstrap.bootstrapped && *reset_index != self.bootstrap.reset_index {
                    return Err(ApplyError::AclBootstrapNotAllowed { reset_index: self.bootstrap.reset_index });
                }
                if self.id_in_use(&token.accessor_id) || self.id_in_use(&token.secret_id) {
                    return Err(invalid("Invalid Token: AccessorID is already in use"));
                }
                if !self.policies.contains_key(GLOBAL_MANAGEMENT_ID) {
                    return Err(invalid("ACL system must be initialized before bootstrapping (no leader yet?)"));
                }
                let mut token = (**token).clone();
                token.policies = vec![AclLink { id: GLOBAL_MANAGEMENT_ID.into(), name: String::new() }];
                let stored = self.insert_token(token, index);
                self.bootstrap = BootstrapState { bootstrapped: true, reset_index: index };
                AclApplied::Token(Box::new(stored))
            }
            AclOp::TokenSet { token, create, now_ms } => {
                AclApplied::Token(Box::new(self.token_set((**token).clone(), *create, *now_ms, index)?))
            }
            AclOp::TokenDelete { accessor_id } => {
                if accessor_id == ANONYMOUS_ACCESSOR_ID {
                    return Err(invalid("Delete operation not permitted on the anonymous token"));
                }
                self.remove_token(accessor_id, index);
                AclApplied::Done
            }
            AclOp::PolicySet(p) => AclApplied::Policy(Box::new(self.policy_set((**p).clone(), index)?)),
            AclOp::PolicyDelete { id } => {
                if id == GLOBAL_MANAGEMENT_ID {
                    return Err(invalid("Delete operation not permitted on the builtin global-management policy"));
                }
                if self.policies.remove(id).is_some() {
                    self.policies_index = index;
                }
                AclApplied::Done
            }
            AclOp::RoleSet(r) => AclApplied::Role(Box::new(self.role_set((**r).clone(), index)?)),
            AclOp::RoleDelete { id } => {
                if self.roles.remove(id).is_some() {
                    self.roles_index = index;
                }
                AclApplied::Done
            }
            AclOp::AuthMethodSet(m) => AclApplied::AuthMethod(Box::new(self.auth_method_set((**m).clone(), index)?)),
            AclOp::AuthMethodDelete { name } => {
                if self.auth_methods.remove(name).is_some() {
                    self.auth_methods_index = index;
                    let before = self.binding_rules.len();
                    self.binding_rules.retain(|_, r| &r.auth_method != name);
                    if self.binding_rules.len() != before {
                        self.binding_rules_index = index;
                    }
                    let doomed: Vec<String> = self
                        .tokens
                        .values()
                        .filter(|t| &t.auth_method == name)
                        .map(|t| t.accessor_id.clone())
                        .collect();
                    for accessor in doomed {
                        self.remove_token(&accessor, index);
                    }
                }
                AclApplied::Done
            }
            AclOp::BindingRuleSet(r) => AclApplied::BindingRule(Box::new(self.binding_rule_set((**r).clone(), index)?)),
            AclOp::BindingRuleDelete { id } => {
                if self.binding_rules.remove(id).is_some() {
                    self.binding_rules_index = index;
                }
                AclApplied::Done
            }
            AclOp::ReapExpired { now_ms } => {
                let doomed: Vec<String> =
                    self.tokens.values().filter(|t| t.is_expired(*now_ms)).map(|t| t.accessor_id.clone()).collect();
                for accessor in doomed {
                    self.remove_token(&accessor, index);
                }
                AclApplied::Done
            }
            AclOp::Initialize { policies, anonymous, initial_management } => {
                for p in policies {
                    if !self.policies.contains_key(&p.id) && self.policy_by_name(&p.name).is_none() {
                        self.policy_set(p.clone(), index)?;
                    }
                }
                if !self.tokens.contains_key(ANONYMOUS_ACCESSOR_ID) {
                    self.insert_token((**anonymous).clone(), index);
                }
                if let Some(t) = initial_management {
                    if !self.secrets.contains_key(&t.secret_id) && !self.tokens.contains_key(&t.accessor_id) {
                        let mut t = (**t).clone();
                        t.policies = vec![AclLink { id: GLOBAL_MANAGEMENT_ID.into(), name: String::new() }];
                        self.insert_token(t, index);
                        // As in Consul, a configured initial management token is the bootstrap:
                        // `PUT /v1/acl/bootstrap` is refused from then on.
                        if !self.bootstrap.bootstrapped {
                            self.bootstrap = BootstrapState { bootstrapped: true, reset_index: index };
                        }
                    }
                }
                AclApplied::Done
            }
        })
    }
}

/// Applies `op` to the ACL tables of `data`. Every op checks before it writes, so a refusal
/// changes nothing.
pub fn apply(data: &mut StateData, op: &AclOp, index: u64) -> Result<AclApplied, ApplyError> {
    data.acl.apply(op, index)
}

/// The built-in policies, which the leader makes sure exist (see `replication::acl_upkeep`).
pub fn builtin_policies() -> Vec<AclPolicy> {
    vec![AclPolicy {
        id: GLOBAL_MANAGEMENT_ID.into(),
        name: GLOBAL_MANAGEMENT_NAME.into(),
        description: "Builtin Policy that grants unlimited access".into(),
        rules: GLOBAL_MANAGEMENT_RULES.into(),
        ..AclPolicy::default()
    }]
}

/// The anonymous token (used for requests without a token).
pub fn anonymous_token() -> AclToken {
    AclToken {
        accessor_id: ANONYMOUS_ACCESSOR_ID.into(),
        secret_id: ANONYMOUS_SECRET_ID.into(),
        description: "Anonymous Token".into(),
        ..AclToken::default()
    }
}

/// The rules of `global-management` (`structs.ACLPolicyGlobalManagement`).
const GLOBAL_MANAGEMENT_RULES: &str = "\nacl = \"write\"\nagent_prefix \"\" {\n\tpolicy = \"write\"\n}\nevent_prefix \"\" {\n\tpolicy = \"write\"\n}\nidentity_prefix \"\" {\n\tpolicy = \"write\"\n\tintentions = \"write\"\n}\nkey_prefix \"\" {\n\tpolicy = \"write\"\n}\nkeyring = \"write\"\nnode_prefix \"\" {\n\tpolicy = \"write\"\n}\noperator = \"write\"\nmesh = \"write\"\npeering = \"write\"\nquery_prefix \"\" {\n\tpolicy = \"write\"\n}\nservice_prefix \"\" {\n\tpolicy = \"write\"\n\tintentions = \"write\"\n}\nsession_prefix \"\" {\n\tpolicy = \"write\"\n}";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::command::{Command, CommandResponse};
    use crate::state::{deserialize_state, StateStore};

    fn gm() -> AclPolicy {
        AclPolicy {
            id: GLOBAL_MANAGEMENT_ID.into(),
            name: GLOBAL_MANAGEMENT_NAME.into(),
            rules: "acl = \"write\"".into(),
            ..AclPolicy::default()
        }
    }

    fn anon() -> AclToken {
        AclToken {
            accessor_id: ANONYMOUS_ACCESSOR_ID.into(),
            secret_id: ANONYMOUS_SECRET_ID.into(),
            ..Default::default()
        }
    }

    fn init(store: &StateStore, index: u64) {
        let op = AclOp::Initialize { policies: vec![gm()], anonymous: Box::new(anon()), initial_management: None };
        assert!(matches!(store.apply(&Command::Acl(op), index), CommandResponse::Acl(_)));
    }

    fn token(accessor: &str, secret: &str) -> AclToken {
        AclToken { accessor_id: accessor.into(), secret_id: secret.into(), ..Default::default() }
    }

    fn set_token(store: &StateStore, t: AclToken, now_ms: u64, index: u64) -> CommandResponse {
        store.apply(&Command::Acl(AclOp::TokenSet { token: Box::new(t), create: true, now_ms }), index)
    }

    fn policy(id: &str, name: &str) -> AclPolicy {
        AclPolicy { id: id.into(), name: name.into(), ..Default::default() }
    }

    #[test]
    fn initialize_is_idempotent() {
        let store = StateStore::new();
        init(&store, 2);
        let first = store.read(|d| d.acl.clone());
        init(&store, 3);
        store.read(|d| {
            assert_eq!(d.acl, first);
            assert_eq!(
                d.acl.token_by_secret(ANONYMOUS_SECRET_ID, 0).map(|t| t.accessor_id.as_str()),
                Some(ANONYMOUS_ACCESSOR_ID)
            );
        });
    }

    #[test]
    fn bootstrap_once_then_reset_index() {
        let store = StateStore::new();
        init(&store, 2);
        let boot = |acc: &str, reset: u64, index: u64| {
            let op = AclOp::Bootstrap { token: Box::new(token(acc, &format!("s-{acc}"))), reset_index: reset };
            store.apply(&Command::Acl(op), index)
        };
        assert!(
            matches!(boot("a1", 0, 5), CommandResponse::Acl(AclApplied::Token(t)) if t.policies[0].id == GLOBAL_MANAGEMENT_ID)
        );
        let before = store.read(|d| d.acl.clone());
        assert_eq!(boot("a2", 0, 6), CommandResponse::Failed(ApplyError::AclBootstrapNotAllowed { reset_index: 5 }));
        assert_eq!(store.read(|d| d.acl.clone()), before);
        assert!(matches!(boot("a3", 5, 7), CommandResponse::Acl(_)));
        store.read(|d| assert_eq!(d.acl.bootstrap.reset_index, 7));
    }

    #[test]
    fn token_links_resolve_names_and_refusals_change_nothing() {
        let store = StateStore::new();
        init(&store, 2);
        store.apply(&Command::Acl(AclOp::PolicySet(Box::new(policy("p1", "web")))), 3);
        let mut t = token("a1", "s1");
        t.policies =
            vec![AclLink { id: String::new(), name: "web".into() }, AclLink { id: "p1".into(), name: String::new() }];
        assert!(
            matches!(set_token(&store, t, 0, 4), CommandResponse::Acl(AclApplied::Token(t)) if t.policies == vec![AclLink { id: "p1".into(), name: String::new() }])
        );
        let before = store.read(|d| d.acl.clone());
        let mut bad = token("a2", "s2");
        bad.policies = vec![AclLink { id: String::new(), name: "nope".into() }];
        assert_eq!(
            set_token(&store, bad, 0, 5),
            CommandResponse::Failed(ApplyError::AclInvalid("No such ACL policy with name \"nope\"".into()))
        );
        assert!(matches!(set_token(&store, token("a1", "s9"), 0, 6), CommandResponse::Failed(_)));
        assert!(matches!(set_token(&store, token("a9", "s1"), 0, 7), CommandResponse::Failed(_)));
        let mut past = token("a3", "s3");
        past.expiration_time_ms = Some(1000);
        assert!(matches!(set_token(&store, past, 2000, 8), CommandResponse::Failed(_)));
        assert_eq!(store.read(|d| d.acl.clone()), before);
    }

    #[test]
    fn builtins_are_protected() {
        let store = StateStore::new();
        init(&store, 2);
        let before = store.read(|d| d.acl.clone());
        let del = store.apply(&Command::Acl(AclOp::PolicyDelete { id: GLOBAL_MANAGEMENT_ID.into() }), 3);
        assert!(
            matches!(del, CommandResponse::Failed(ApplyError::AclInvalid(m)) if m.contains("builtin global-management"))
        );
        let mut changed = gm();
        changed.rules = "key_prefix \"\" { policy = \"read\" }".into();
        assert!(matches!(
            store.apply(&Command::Acl(AclOp::PolicySet(Box::new(changed))), 4),
            CommandResponse::Failed(_)
        ));
        let del = store.apply(&Command::Acl(AclOp::TokenDelete { accessor_id: ANONYMOUS_ACCESSOR_ID.into() }), 5);
        assert!(matches!(del, CommandResponse::Failed(_)));
        assert!(matches!(
            store.apply(&Command::Acl(AclOp::PolicySet(Box::new(policy("p2", GLOBAL_MANAGEMENT_NAME)))), 6),
            CommandResponse::Failed(_)
        ));
        assert_eq!(store.read(|d| d.acl.clone()), before);
    }

    #[test]
    fn expired_tokens_are_invisible_and_reaped() {
        let store = StateStore::new();
        init(&store, 2);
        let mut t = token("a1", "s1");
        t.expiration_time_ms = Some(10_000);
        assert!(matches!(set_token(&store, t, 1_000, 3), CommandResponse::Acl(_)));
        store.read(|d| {
            assert!(d.acl.token_by_secret("s1", 9_999).is_some());
            assert!(d.acl.token_by_secret("s1", 10_000).is_none());
            assert!(d.acl.token_by_secret("nope", 0).is_none());
        });
        store.apply(&Command::Acl(AclOp::ReapExpired { now_ms: 5_000 }), 4);
        store.read(|d| assert!(d.acl.tokens.contains_key("a1")));
        store.apply(&Command::Acl(AclOp::ReapExpired { now_ms: 10_000 }), 5);
        store.read(|d| {
            assert!(!d.acl.tokens.contains_key("a1") && !d.acl.secrets.contains_key("s1"));
            assert_eq!(d.acl.tokens_index, 5);
        });
    }

    #[test]
    fn update_keeps_secret_and_reindexes() {
        let store = StateStore::new();
        init(&store, 2);
        set_token(&store, token("a1", "s1"), 0, 3);
        let mut upd = token("a1", "");
        upd.description = "d".into();
        let r = store.apply(&Command::Acl(AclOp::TokenSet { token: Box::new(upd), create: false, now_ms: 0 }), 4);
        assert!(
            matches!(r, CommandResponse::Acl(AclApplied::Token(t)) if t.secret_id == "s1" && t.create_index == 3 && t.modify_index == 4)
        );
        let mut bad = token("a1", "s2");
        bad.description = "x".into();
        let r = store.apply(&Command::Acl(AclOp::TokenSet { token: Box::new(bad), create: false, now_ms: 0 }), 5);
        assert!(matches!(r, CommandResponse::Failed(_)));
    }

    #[test]
    fn auth_method_delete_cascades() {
        let store = StateStore::new();
        init(&store, 2);
        let m = AclAuthMethod { name: "jwt".into(), method_type: "jwt".into(), ..Default::default() };
        store.apply(&Command::Acl(AclOp::AuthMethodSet(Box::new(m))), 3);
        let rule = AclBindingRule {
            id: "r1".into(),
            auth_method: "jwt".into(),
            bind_type: "service".into(),
            bind_name: "x".into(),
            ..Default::default()
        };
        assert!(matches!(
            store.apply(&Command::Acl(AclOp::BindingRuleSet(Box::new(rule))), 4),
            CommandResponse::Acl(_)
        ));
        let mut t = token("a1", "s1");
        t.auth_method = "jwt".into();
        assert!(matches!(set_token(&store, t, 0, 5), CommandResponse::Acl(_)));
        store.apply(&Command::Acl(AclOp::AuthMethodDelete { name: "jwt".into() }), 6);
        store.read(|d| {
            assert!(
                d.acl.auth_methods.is_empty()
                    && d.acl.binding_rules.is_empty()
                    && d.acl.token_by_secret("s1", 0).is_none()
            )
        });
    }

    #[test]
    fn snapshot_round_trip() {
        let store = StateStore::new();
        init(&store, 2);
        set_token(&store, token("a1", "s1"), 0, 3);
        let bytes = store.serialize().expect("serialize");
        let back = deserialize_state(&bytes).expect("deserialize");
        assert_eq!(back.acl, store.read(|d| d.acl.clone()));
        assert_eq!(back.acl.token_by_secret("s1", 0).map(|t| t.accessor_id.as_str()), Some("a1"));
    }

    /// `/v1/snapshot` restore brings the ACL tables back, secret index included, with every
    /// table index moved to the restore's.
    #[test]
    fn restore_brings_acl_back() {
        let source = StateStore::new();
        init(&source, 2);
        set_token(&source, token("a1", "s1"), 0, 3);
        let snap = source.read(|d| d.clone());
        let bytes = postcard::to_allocvec(&Command::Restore(Box::new(snap))).expect("encode");
        let cmd: Command = postcard::from_bytes(&bytes).expect("decode");
        let target = StateStore::new();
        init(&target, 2);
        set_token(&target, token("b1", "t1"), 0, 3);
        target.apply(&cmd, 20);
        target.read(|d| {
            assert!(d.acl.token_by_secret("s1", 0).is_some());
            assert!(d.acl.token_by_secret("t1", 0).is_none());
            assert_eq!((d.acl.tokens_index, d.acl.policies_index), (20, 20));
        });
    }
}
