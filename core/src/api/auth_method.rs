//! ACL auth method types: what `/v1/acl/auth-method` validates and `/v1/acl/login` runs, by
//! the method's `Type` (Consul's `authmethod` registry: `jwt` and `kubernetes`).

use serde_json::Value;

use crate::api::jwt_auth::{JwksCache, JwtConfig, JwtError};
use crate::api::kube_auth::{self, KubeConfig};
use crate::wire::selector::Vars;

/// The accepted `Type` values, sorted as Consul lists them in its error message.
pub const TYPES: [&str; 2] = ["jwt", "kubernetes"];

/// A validated auth method config of one of the [`TYPES`].
#[derive(Debug, Clone)]
pub enum AuthMethodConfig {
    /// `jwt`: bearer JWTs checked against configured public keys.
    Jwt(Box<JwtConfig>),
    /// `kubernetes`: service account tokens checked by the cluster's API server.
    Kubernetes(Box<KubeConfig>),
}

/// Why a login failed.
#[derive(Debug, thiserror::Error)]
pub enum LoginFailure {
    /// The bearer token is not acceptable (HTTP 403).
    #[error("{0}")]
    Rejected(String),
    /// The method's identity provider could not be asked (HTTP 500).
    #[error("{0}")]
    Unavailable(String),
}

impl AuthMethodConfig {
    /// Validates `config` for a method of type `method_type`; the error is Consul's message
    /// (without its `Invalid Auth Method: ` prefix).
    pub fn parse(method_type: &str, config: &Value) -> Result<AuthMethodConfig, String> {
        match method_type {
            "jwt" => JwtConfig::parse(config).map(|c| AuthMethodConfig::Jwt(Box::new(c))),
            "kubernetes" => KubeConfig::parse(config).map(|c| AuthMethodConfig::Kubernetes(Box::new(c))),
            _ => Err(format!("Type should be one of: [{}]", TYPES.join(" "))),
        }
    }

    /// Every variable a login may produce, each set to a placeholder, so a binding rule's
    /// `BindName` and `Selector` can be checked against the method before any login.
    pub fn placeholder_vars(&self) -> Vars {
        let mut vars = Vars::default();
        match self {
            AuthMethodConfig::Jwt(cfg) => {
                let (values, lists) = cfg.variable_names();
                vars.values = values.into_iter().map(|v| (v, "fake".to_string())).collect();
                vars.lists = lists.into_iter().map(|v| (v, vec!["fake".to_string()])).collect();
            }
            AuthMethodConfig::Kubernetes(_) => {
                vars.fields = kube_auth::FIELDS.iter().map(|f| (f.to_string(), "fake".to_string())).collect();
            }
        }
        vars
    }

    /// What creating the method checks beyond its config's shape: a `jwt` method's `JWKSURL`
    /// must serve a key set (fetched into `jwks`, as Consul fetches it at create).
    pub async fn check_reachable(&self, jwks: &JwksCache) -> Result<(), String> {
        match self {
            AuthMethodConfig::Jwt(cfg) => cfg.check_jwks(jwks).await,
            AuthMethodConfig::Kubernetes(_) => Ok(()),
        }
    }

    /// Checks `bearer` at unix time `now_s` and returns the login's variables. The caller must
    /// hold no state lock: a `kubernetes` login calls the cluster's API server, a `JWKSURL`
    /// method may fetch its key set into `jwks`.
    pub async fn login(&self, bearer: &str, now_s: u64, jwks: &JwksCache) -> Result<Vars, LoginFailure> {
        match self {
            AuthMethodConfig::Jwt(cfg) => cfg.verify_login(bearer, now_s, jwks).await.map_err(|e| match e {
                JwtError::Rejected(m) => LoginFailure::Rejected(format!("invalid bearer token: {m}")),
                JwtError::KeysUnavailable(m) => LoginFailure::Unavailable(m),
            }),
            AuthMethodConfig::Kubernetes(cfg) => cfg.login(bearer).await.map_err(|e| match e {
                kube_auth::LoginError::Rejected(m) => LoginFailure::Rejected(m),
                kube_auth::LoginError::Unavailable(m) => LoginFailure::Unavailable(m),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn unknown_type_lists_both() {
        assert_eq!(
            AuthMethodConfig::parse("oidc", &json!({})).expect_err("refused"),
            "Type should be one of: [jwt kubernetes]"
        );
        assert_eq!(AuthMethodConfig::parse("kubernetes", &json!({})).expect_err("refused"), "Config.Host is required");
    }
}
