//! Access control: Consul's ACL rules language and the authorizer that applies it.
//!
//! A token's permissions come from rules text — the `Rules` of its policies, plus rules
//! synthesised from its service identities, node identities and templated policies. This
//! module turns that text into [`Rules`] (HCL or JSON, [`rules`]), merges the rule sets of one
//! token ([`Rules::merge`]: deny > write > list > read on the same segment), and decides
//! requests with an [`Authorizer`] over the agent's `acl.default_policy` ([`authorizer`]).
//! [`builtin`] holds Consul's built-in policies, the anonymous token and the templates.
//!
//! Pure code, no I/O and no shared state: token and policy storage, resolution of a SecretID
//! to its policies, caching and enforcement at the HTTP/DNS/RPC doors live in the layers that
//! call this one.
//!
//! Layer: a leaf, like `error` — it may use only [`crate::error`] and std/dependencies, never
//! `state`, `api` or any other layer, so every layer can depend on it.

pub mod authorizer;
pub mod builtin;
pub mod rules;

pub use authorizer::{Authorizer, DefaultPolicy, DefaultPolicyError, Denied};
pub use builtin::{
    node_identity_rules, service_identity_rules, templated_policies, templated_policy, BuiltinPolicy, TemplatedPolicy,
};
pub use rules::{Access, Need, Resource, Rule, Rules, RulesError, Scalar, Segments};
