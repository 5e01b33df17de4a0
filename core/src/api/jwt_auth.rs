//! The `jwt` auth method (Consul's `agent/consul/authmethod/jwtauth` over go-sso's
//! `oidcauth/jwt.go`): checks a bearer JWT against the method's public keys, bound issuer and
//! audiences and its time claims, and turns claims into the `value.*` / `list.*` variables
//! binding rules select on.
//!
//! Keys come from `JWTValidationPubKeys` (PEM) or from the JSON Web Key Set at `JWKSURL`
//! (fetched over HTTPS trusting `JWKSCACert`, or the public web's CAs without it), kept per
//! agent in a [`JwksCache`] and fetched again when a token names a key id the cached set lacks
//! (the issuer rotated its keys). `OIDCDiscoveryURL` is refused: no OIDC discovery yet.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use jsonwebtoken::jwk::{AlgorithmParameters, Jwk};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use parking_lot::Mutex;
use rustls::{ClientConfig, RootCertStore};
use serde_json::{Map, Value};

use crate::duration::parse_go_duration;
use crate::wire::selector::Vars;

/// Leeway for `exp`/`nbf` when the config leaves it at 0 (go-sso's `claimDefaultLeeway`).
const DEFAULT_CLAIM_LEEWAY: Duration = Duration::from_secs(150);
/// Clock skew allowed when the config leaves it at 0.
const DEFAULT_CLOCK_SKEW: Duration = Duration::from_secs(60);
/// How long fetching a key set may take (connect included).
const JWKS_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest key set accepted.
const MAX_JWKS: usize = 1024 * 1024;

/// A public key a token may be signed with.
#[derive(Clone)]
pub struct VerifyKey {
    /// The JWK's `kid` (keys from PEM have none and are tried for every token).
    kid: Option<String>,
    key: DecodingKey,
    /// RSA (RS*/PS*) rather than EC or EdDSA: a key is only tried for its algorithm family.
    rsa: bool,
}

/// Where a `JWKSURL` method's keys come from.
#[derive(Clone)]
struct JwksSource {
    url: reqwest::Url,
    /// `JWKSCACert`'s CAs; `None` trusts the public web's CAs.
    roots: Option<Arc<RootCertStore>>,
    /// Identifies the source in the cache (URL and CA: a method changed to another CA must
    /// not reuse keys fetched under the old one).
    cache_key: String,
}

/// The key sets fetched from `JWKSURL`s, per agent (no process-wide state), by URL and CA.
#[derive(Default)]
pub struct JwksCache {
    sets: Mutex<HashMap<String, Arc<Vec<VerifyKey>>>>,
}

impl std::fmt::Debug for JwksCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwksCache").field("sets", &self.sets.lock().len()).finish()
    }
}

/// Why a token was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum JwtError {
    /// The token is not valid for the method (HTTP 403).
    #[error("{0}")]
    Rejected(String),
    /// The key set could not be fetched (HTTP 500).
    #[error("{0}")]
    KeysUnavailable(String),
}

/// A validated `jwt` auth method config.
#[derive(Clone)]
pub struct JwtConfig {
    keys: Vec<VerifyKey>,
    jwks: Option<JwksSource>,
    bound_issuer: String,
    bound_audiences: Vec<String>,
    claim_mappings: BTreeMap<String, String>,
    list_claim_mappings: BTreeMap<String, String>,
    algs: Vec<Algorithm>,
    expiration_leeway: Option<Duration>,
    not_before_leeway: Option<Duration>,
    clock_skew: Option<Duration>,
}

impl std::fmt::Debug for JwtConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtConfig")
            .field("keys", &self.keys.len())
            .field("jwks", &self.jwks.as_ref().map(|j| j.url.as_str()))
            .field("bound_issuer", &self.bound_issuer)
            .finish()
    }
}

fn field<'a>(m: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    m.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v).filter(|v| !v.is_null())
}

fn strings(m: &Map<String, Value>, name: &str) -> Result<Vec<String>, String> {
    match field(m, name) {
        None => Ok(Vec::new()),
        Some(Value::Array(a)) => a
            .iter()
            .map(|v| v.as_str().map(str::to_string).ok_or(format!("{name} must be a list of strings")))
            .collect(),
        Some(_) => Err(format!("{name} must be a list of strings")),
    }
}

fn string_map(m: &Map<String, Value>, name: &str) -> Result<BTreeMap<String, String>, String> {
    match field(m, name) {
        None => Ok(BTreeMap::new()),
        Some(Value::Object(o)) => o
            .iter()
            .map(|(k, v)| {
                v.as_str().map(|s| (k.clone(), s.to_string())).ok_or(format!("{name} values must be strings"))
            })
            .collect(),
        Some(_) => Err(format!("{name} must be an object of strings")),
    }
}

/// A leeway: `None` for a negative value (no leeway), else the duration (0 → default later).
fn leeway(m: &Map<String, Value>, name: &str) -> Result<Duration, String> {
    match field(m, name) {
        None => Ok(Duration::ZERO),
        Some(Value::String(s)) if s.starts_with('-') => Ok(Duration::MAX),
        Some(Value::String(s)) => parse_go_duration(s).map_err(|e| format!("{name}: {e}")),
        Some(Value::Number(n)) => match n.as_i64() {
            Some(v) if v < 0 => Ok(Duration::MAX),
            Some(v) => Ok(Duration::from_nanos(v as u64)),
            None => Err(format!("{name} must be a duration")),
        },
        Some(_) => Err(format!("{name} must be a duration")),
    }
}

/// Turns the parsed leeway into what applies: MAX (negative) → none, 0 → `default`.
fn effective(d: Duration, default: Duration) -> Option<Duration> {
    if d == Duration::MAX {
        None
    } else if d.is_zero() {
        Some(default)
    } else {
        Some(d)
    }
}

impl JwtConfig {
    /// Validates an auth method's `Config` (Consul's messages where it has them).
    pub fn parse(config: &Value) -> Result<JwtConfig, String> {
        let empty = Map::new();
        let m = match config {
            Value::Object(m) => m,
            Value::Null => &empty,
            _ => return Err("Config must be a JSON object".into()),
        };
        if field(m, "OIDCDiscoveryURL").and_then(Value::as_str).is_some_and(|s| !s.is_empty()) {
            return Err("OIDCDiscoveryURL is not supported yet: give JWKSURL or JWTValidationPubKeys".into());
        }
        let pems = strings(m, "JWTValidationPubKeys")?;
        let jwks_url = field(m, "JWKSURL").and_then(Value::as_str).unwrap_or_default();
        let ca_pem = field(m, "JWKSCACert").and_then(Value::as_str).unwrap_or_default();
        if pems.is_empty() == jwks_url.is_empty() {
            return Err(
                "exactly one of 'JWTValidationPubKeys', 'JWKSURL', or 'OIDCDiscoveryURL' must be set for type \"jwt\""
                    .into(),
            );
        }
        let jwks = if jwks_url.is_empty() {
            if !ca_pem.is_empty() {
                return Err("'JWKSCACert' should not be set unless 'JWKSURL' is set".into());
            }
            None
        } else {
            Some(jwks_source(jwks_url, ca_pem)?)
        };
        let mut keys = Vec::new();
        for (i, pem) in pems.iter().enumerate() {
            let key = DecodingKey::from_rsa_pem(pem.as_bytes())
                .map(|key| VerifyKey { kid: None, key, rsa: true })
                .or_else(|_| {
                    DecodingKey::from_ec_pem(pem.as_bytes()).map(|key| VerifyKey { kid: None, key, rsa: false })
                })
                .map_err(|e| format!("error parsing public key JWTValidationPubKeys[{i}]: {e}"))?;
            keys.push(key);
        }
        let mut algs = Vec::new();
        for a in strings(m, "JWTSupportedAlgs")? {
            let alg = match a.as_str() {
                "RS256" => Algorithm::RS256,
                "RS384" => Algorithm::RS384,
                "RS512" => Algorithm::RS512,
                "ES256" => Algorithm::ES256,
                "ES384" => Algorithm::ES384,
                "PS256" => Algorithm::PS256,
                "PS384" => Algorithm::PS384,
                "PS512" => Algorithm::PS512,
                "EdDSA" => Algorithm::EdDSA,
                other => return Err(format!("Invalid supported algorithm: {other}")),
            };
            algs.push(alg);
        }
        if algs.is_empty() {
            algs.push(Algorithm::RS256);
        }
        let claim_mappings = string_map(m, "ClaimMappings")?;
        let list_claim_mappings = string_map(m, "ListClaimMappings")?;
        let mut targets = HashSet::new();
        for v in claim_mappings.values().chain(list_claim_mappings.values()) {
            if !targets.insert(v.as_str()) {
                return Err(format!("claim mapping target {v:?} is used more than once"));
            }
        }
        let audiences = strings(m, "BoundAudiences")?;
        let bound_issuer = field(m, "BoundIssuer").and_then(Value::as_str).unwrap_or_default().to_string();
        Ok(JwtConfig {
            keys,
            jwks,
            bound_issuer,
            bound_audiences: audiences,
            claim_mappings,
            list_claim_mappings,
            algs,
            expiration_leeway: effective(leeway(m, "ExpirationLeeway")?, DEFAULT_CLAIM_LEEWAY),
            not_before_leeway: effective(leeway(m, "NotBeforeLeeway")?, DEFAULT_CLAIM_LEEWAY),
            clock_skew: effective(leeway(m, "ClockSkewLeeway")?, DEFAULT_CLOCK_SKEW),
        })
    }

    /// The variable names binding rules may use (`value.<name>` and `list.<name>`).
    pub fn variable_names(&self) -> (Vec<String>, Vec<String>) {
        (self.claim_mappings.values().cloned().collect(), self.list_claim_mappings.values().cloned().collect())
    }

    /// Whether this method's keys come from a `JWKSURL`.
    pub fn uses_jwks(&self) -> bool {
        self.jwks.is_some()
    }

    /// Fetches the `JWKSURL` key set into `cache` (what creating the method checks, as Consul
    /// does); nothing for a method with static keys.
    pub async fn check_jwks(&self, cache: &JwksCache) -> Result<(), String> {
        match &self.jwks {
            Some(source) => cache.refresh(source).await.map(drop).map_err(|e| format!("error checking JWKSURL: {e}")),
            None => Ok(()),
        }
    }

    /// Checks `token` at unix time `now_s` against the method's keys (fetching a `JWKSURL` set
    /// when `cache` lacks it or lacks the token's key id) and returns the login's variables.
    /// No lock is held while fetching.
    pub async fn verify_login(&self, token: &str, now_s: u64, cache: &JwksCache) -> Result<Vars, JwtError> {
        let Some(source) = &self.jwks else {
            return self.verify(token, now_s).map_err(JwtError::Rejected);
        };
        let header =
            jsonwebtoken::decode_header(token).map_err(|e| JwtError::Rejected(format!("error parsing token: {e}")))?;
        let cached = cache.sets.lock().get(&source.cache_key).cloned();
        let known = |keys: &Vec<VerifyKey>| match &header.kid {
            Some(kid) => keys.iter().any(|k| k.kid.as_deref() == Some(kid.as_str())),
            None => true,
        };
        let keys = match cached {
            Some(keys) if known(&keys) => keys,
            _ => cache.refresh(source).await.map_err(|e| JwtError::KeysUnavailable(format!("fetching keys: {e}")))?,
        };
        self.verify_with(token, now_s, &keys).map_err(JwtError::Rejected)
    }

    /// Checks `token` at unix time `now_s` against the configured PEM keys and returns the
    /// login's variables.
    pub fn verify(&self, token: &str, now_s: u64) -> Result<Vars, String> {
        self.verify_with(token, now_s, &self.keys)
    }

    fn verify_with(&self, token: &str, now_s: u64, keys: &[VerifyKey]) -> Result<Vars, String> {
        let header = jsonwebtoken::decode_header(token).map_err(|e| format!("error parsing token: {e}"))?;
        if !self.algs.contains(&header.alg) {
            return Err(format!("unsupported signing algorithm: {:?}", header.alg));
        }
        let rsa_family = matches!(
            header.alg,
            Algorithm::RS256
                | Algorithm::RS384
                | Algorithm::RS512
                | Algorithm::PS256
                | Algorithm::PS384
                | Algorithm::PS512
        );
        let mut validation = Validation::new(header.alg);
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false;
        validation.required_spec_claims = HashSet::new();
        let claims = keys
            .iter()
            .filter(|k| k.rsa == rsa_family)
            .filter(|k| match (&k.kid, &header.kid) {
                (Some(have), Some(want)) => have == want,
                _ => true,
            })
            .find_map(|k| jsonwebtoken::decode::<Map<String, Value>>(token, &k.key, &validation).ok())
            .ok_or("failed to verify id token signature")?
            .claims;
        let skew = self.clock_skew.unwrap_or(Duration::ZERO).as_secs();
        let num = |name: &str| claims.get(name).and_then(Value::as_f64).map(|f| f.max(0.0) as u64);
        if let Some(exp) = num("exp") {
            let leeway = self.expiration_leeway.unwrap_or(Duration::ZERO).as_secs();
            if now_s > exp.saturating_add(leeway).saturating_add(skew) {
                return Err("token is expired (exp)".into());
            }
        }
        if let Some(nbf) = num("nbf") {
            let leeway = self.not_before_leeway.unwrap_or(Duration::ZERO).as_secs();
            if now_s.saturating_add(leeway).saturating_add(skew) < nbf {
                return Err("token not valid yet (nbf)".into());
            }
        }
        if let Some(iat) = num("iat") {
            if now_s.saturating_add(skew) < iat {
                return Err("token issued in the future (iat)".into());
            }
        }
        if !self.bound_issuer.is_empty() && claims.get("iss").and_then(Value::as_str) != Some(&self.bound_issuer) {
            return Err("invalid issuer (iss) claim".into());
        }
        if !self.bound_audiences.is_empty() {
            let auds: Vec<&str> = match claims.get("aud") {
                Some(Value::String(s)) => vec![s.as_str()],
                Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).collect(),
                _ => Vec::new(),
            };
            if !auds.iter().any(|a| self.bound_audiences.iter().any(|b| b == a)) {
                return Err("invalid audience (aud) claim: audience claim does not match any expected audience".into());
            }
        }
        let mut vars = Vars::default();
        for (claim, var) in &self.claim_mappings {
            match lookup(&claims, claim) {
                None => {}
                Some(Value::String(s)) => {
                    vars.values.insert(var.clone(), s.clone());
                }
                Some(v @ (Value::Number(_) | Value::Bool(_))) => {
                    vars.values.insert(var.clone(), v.to_string());
                }
                Some(_) => return Err(format!("error converting claim '{claim}' to string")),
            }
        }
        for (claim, var) in &self.list_claim_mappings {
            match lookup(&claims, claim) {
                None => {}
                Some(Value::Array(items)) => {
                    let list = items
                        .iter()
                        .map(|v| match v {
                            Value::String(s) => Ok(s.clone()),
                            Value::Number(_) | Value::Bool(_) => Ok(v.to_string()),
                            _ => Err(format!("error converting claim '{claim}' to list")),
                        })
                        .collect::<Result<Vec<_>, _>>()?;
                    vars.lists.insert(var.clone(), list);
                }
                Some(Value::String(s)) => {
                    vars.lists.insert(var.clone(), vec![s.clone()]);
                }
                Some(_) => return Err(format!("error converting claim '{claim}' to list")),
            }
        }
        Ok(vars)
    }
}

/// Validates `JWKSURL` and `JWKSCACert`.
fn jwks_source(url: &str, ca_pem: &str) -> Result<JwksSource, String> {
    let parsed = reqwest::Url::parse(url).map_err(|e| format!("error checking JWKSURL: {url:?}: {e}"))?;
    if !matches!(parsed.scheme(), "https" | "http") {
        return Err(format!("error checking JWKSURL: {url:?} is not an http(s) URL"));
    }
    let roots = if ca_pem.is_empty() {
        None
    } else {
        let roots = crate::tls::roots_from_pem(ca_pem).map_err(|e| format!("error checking JWKSCACert: {e}"))?;
        if roots.is_empty() {
            return Err("error checking JWKSCACert: could not parse any PEM certificates".into());
        }
        Some(Arc::new(roots))
    };
    Ok(JwksSource { url: parsed, roots, cache_key: format!("{url}\n{ca_pem}") })
}

/// The asymmetric keys of a JWK Set document; keys of other kinds (shared secrets) or that do
/// not parse are skipped, as a key set may hold keys for other uses.
pub fn parse_jwks(doc: &Value) -> Result<Vec<VerifyKey>, String> {
    let list = doc.get("keys").and_then(Value::as_array).ok_or("the key set has no \"keys\" list")?;
    let keys = list
        .iter()
        .filter_map(|v| serde_json::from_value::<Jwk>(v.clone()).ok())
        .filter_map(|jwk| {
            let rsa = match &jwk.algorithm {
                AlgorithmParameters::RSA(_) => true,
                AlgorithmParameters::EllipticCurve(_) | AlgorithmParameters::OctetKeyPair(_) => false,
                AlgorithmParameters::OctetKey(_) => return None,
            };
            let key = DecodingKey::from_jwk(&jwk).ok()?;
            Some(VerifyKey { kid: jwk.common.key_id.clone(), key, rsa })
        })
        .collect();
    Ok(keys)
}

impl JwksCache {
    /// Fetches `source`'s key set and caches it. The lock is taken only to store the result.
    async fn refresh(&self, source: &JwksSource) -> Result<Arc<Vec<VerifyKey>>, String> {
        let tls = match &source.roots {
            None => crate::tls::plain_client_tls(),
            Some(roots) => ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .map_err(|e| format!("TLS setup: {e}"))?
                .with_root_certificates(roots.clone())
                .with_no_client_auth(),
        };
        let client = reqwest::Client::builder()
            .timeout(JWKS_TIMEOUT)
            .connect_timeout(JWKS_TIMEOUT)
            .tls_backend_preconfigured(tls)
            .build()
            .map_err(|e| format!("HTTP client: {e}"))?;
        let url = &source.url;
        let chain = |e: reqwest::Error| {
            let e = e.without_url();
            let mut out = e.to_string();
            let mut cur = std::error::Error::source(&e);
            while let Some(c) = cur {
                out.push_str(&format!(": {c}"));
                cur = c.source();
            }
            format!("GET {url}: {out}")
        };
        let mut resp = client.get(url.clone()).header("Accept", "application/json").send().await.map_err(chain)?;
        if !resp.status().is_success() {
            return Err(format!("GET {url}: {}", resp.status()));
        }
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(chain)? {
            if body.len() + chunk.len() > MAX_JWKS {
                return Err(format!("GET {url}: key set larger than {MAX_JWKS} bytes"));
            }
            body.extend_from_slice(&chunk);
        }
        let doc: Value = serde_json::from_slice(&body).map_err(|e| format!("GET {url}: not JSON: {e}"))?;
        let keys = Arc::new(parse_jwks(&doc).map_err(|e| format!("GET {url}: {e}"))?);
        self.sets.lock().insert(source.cache_key.clone(), keys.clone());
        Ok(keys)
    }
}

/// A claim by name, or by JSON pointer (`/a/b`) into nested claims.
fn lookup<'a>(claims: &'a Map<String, Value>, claim: &str) -> Option<&'a Value> {
    if claim.starts_with('/') {
        let mut cur: Option<&Value> = None;
        for part in claim.trim_start_matches('/').split('/') {
            cur = match cur {
                None => claims.get(part),
                Some(Value::Object(o)) => o.get(part),
                Some(_) => None,
            };
            cur?;
        }
        cur
    } else {
        claims.get(claim)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use jsonwebtoken::{EncodingKey, Header};
    use serde_json::json;

    /// A fixed RSA key pair for tests (generated for this repository; not used anywhere else).
    pub(crate) const RSA_KEY: &str = include_str!("testdata/jwt-test-rsa.key");
    pub(crate) const RSA_PUB: &str = include_str!("testdata/jwt-test-rsa.pub");

    /// A fresh P-256 key pair: (PKCS#8 DER private key, SPKI PEM public key).
    pub(crate) fn p256() -> (Vec<u8>, String) {
        use base64::Engine as _;
        use ring::signature::KeyPair as _;
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 =
            ring::signature::EcdsaKeyPair::generate_pkcs8(&ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
                .expect("generate");
        let pair = ring::signature::EcdsaKeyPair::from_pkcs8(
            &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            pkcs8.as_ref(),
            &rng,
        )
        .expect("parse");
        let mut spki = hex::decode("3059301306072a8648ce3d020106082a8648ce3d030107034200").expect("hex");
        spki.extend_from_slice(pair.public_key().as_ref());
        let b64 = base64::engine::general_purpose::STANDARD.encode(&spki);
        (pkcs8.as_ref().to_vec(), format!("-----BEGIN PUBLIC KEY-----\n{b64}\n-----END PUBLIC KEY-----\n"))
    }

    fn rs256(claims: &Value) -> String {
        let key = EncodingKey::from_rsa_pem(RSA_KEY.as_bytes()).expect("key");
        jsonwebtoken::encode(&Header::new(Algorithm::RS256), claims, &key).expect("sign")
    }

    fn config(pubkey: &str, algs: &[&str]) -> JwtConfig {
        JwtConfig::parse(&json!({
            "JWTValidationPubKeys": [pubkey],
            "BoundIssuer": "https://issuer",
            "BoundAudiences": ["consul"],
            "ClaimMappings": {"sub": "name", "/org/team": "team"},
            "ListClaimMappings": {"groups": "groups"},
            "JWTSupportedAlgs": algs,
        }))
        .expect("config")
    }

    #[test]
    fn rs256_claims_become_variables() {
        let cfg = config(RSA_PUB, &[]);
        let now = 1_700_000_000;
        let jwt = rs256(&json!({"iss": "https://issuer", "aud": ["consul"], "sub": "web", "exp": now + 60,
            "org": {"team": "eng"}, "groups": ["a", "b"]}));
        let vars = cfg.verify(&jwt, now).expect("verify");
        assert_eq!(vars.values.get("name").map(String::as_str), Some("web"));
        assert_eq!(vars.values.get("team").map(String::as_str), Some("eng"));
        assert_eq!(vars.lists.get("groups"), Some(&vec!["a".to_string(), "b".to_string()]));
    }

    #[test]
    fn es256_verifies_and_wrong_key_fails() {
        let (der, pem) = p256();
        let cfg = config(&pem, &["ES256"]);
        let key = EncodingKey::from_ec_der(&der);
        let jwt = jsonwebtoken::encode(
            &Header::new(Algorithm::ES256),
            &json!({"iss": "https://issuer", "aud": "consul"}),
            &key,
        )
        .expect("sign");
        assert!(cfg.verify(&jwt, 0).is_ok());
        let (_, other) = p256();
        assert!(config(&other, &["ES256"]).verify(&jwt, 0).is_err());
        // RS256 is not among this method's algorithms.
        assert!(cfg.verify(&rs256(&json!({"iss": "https://issuer", "aud": "consul"})), 0).is_err());
    }

    #[test]
    fn bound_claims_and_times() {
        let cfg = config(RSA_PUB, &[]);
        let now = 1_700_000_000u64;
        let ok = json!({"iss": "https://issuer", "aud": "consul"});
        assert!(cfg.verify(&rs256(&ok), now).is_ok());
        assert!(cfg.verify(&rs256(&json!({"iss": "other", "aud": "consul"})), now).is_err());
        assert!(cfg.verify(&rs256(&json!({"iss": "https://issuer", "aud": "x"})), now).is_err());
        // exp + 150 s leeway + 60 s skew.
        let exp = |e: u64| rs256(&json!({"iss": "https://issuer", "aud": "consul", "exp": e}));
        assert!(cfg.verify(&exp(now - 200), now).is_ok());
        assert!(cfg.verify(&exp(now - 211), now).is_err());
        let nbf = rs256(&json!({"iss": "https://issuer", "aud": "consul", "nbf": now + 1000}));
        assert!(cfg.verify(&nbf, now).is_err());
        assert!(cfg.verify("not.a.jwt", now).is_err());
        assert!(cfg.verify("", now).is_err());
    }

    #[test]
    fn jwks_keys_by_kid() {
        use base64::Engine as _;
        use ring::signature::KeyPair as _;
        let rng = ring::rand::SystemRandom::new();
        let alg = &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING;
        let pkcs8 = ring::signature::EcdsaKeyPair::generate_pkcs8(alg, &rng).expect("generate");
        let pair = ring::signature::EcdsaKeyPair::from_pkcs8(alg, pkcs8.as_ref(), &rng).expect("parse");
        let point = pair.public_key().as_ref();
        let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
        let doc = json!({"keys": [
            {"kty": "EC", "crv": "P-256", "kid": "k1", "x": b64(&point[1..33]), "y": b64(&point[33..])},
            {"kty": "oct", "kid": "secret", "k": "c2VjcmV0"},
            {"kty": "weird"},
        ]});
        let keys = parse_jwks(&doc).expect("keys");
        assert_eq!(keys.len(), 1, "only the EC key");
        assert_eq!(keys[0].kid.as_deref(), Some("k1"));
        let cfg =
            JwtConfig::parse(&json!({"JWKSURL": "https://idp/keys", "JWTSupportedAlgs": ["ES256"]})).expect("cfg");
        let sign = |kid: &str| {
            let mut h = Header::new(Algorithm::ES256);
            h.kid = Some(kid.to_string());
            jsonwebtoken::encode(&h, &json!({"sub": "x"}), &EncodingKey::from_ec_der(pkcs8.as_ref())).expect("sign")
        };
        assert!(cfg.verify_with(&sign("k1"), 0, &keys).is_ok());
        assert!(cfg.verify_with(&sign("k2"), 0, &keys).is_err(), "another key id");
        assert!(parse_jwks(&json!({"nokeys": []})).is_err());
    }

    #[test]
    fn config_refusals() {
        assert!(JwtConfig::parse(&json!({})).is_err());
        assert!(JwtConfig::parse(&json!({"JWKSURL": "https://x"})).expect("jwks").uses_jwks());
        assert!(JwtConfig::parse(&json!({"JWKSURL": "https://x", "JWTValidationPubKeys": [RSA_PUB]}))
            .expect_err("both")
            .starts_with("exactly one of"));
        assert!(JwtConfig::parse(&json!({"JWKSURL": "ftp://x"})).is_err());
        assert!(JwtConfig::parse(&json!({"JWKSURL": "https://x", "JWKSCACert": "junk"}))
            .expect_err("ca")
            .starts_with("error checking JWKSCACert"));
        assert_eq!(
            JwtConfig::parse(&json!({"JWTValidationPubKeys": [RSA_PUB], "JWKSCACert": "junk"})).expect_err("ca"),
            "'JWKSCACert' should not be set unless 'JWKSURL' is set"
        );
        assert!(JwtConfig::parse(&json!({"OIDCDiscoveryURL": "https://x"})).is_err());
        assert!(JwtConfig::parse(&json!({"JWTValidationPubKeys": ["garbage"]})).is_err());
        assert!(JwtConfig::parse(&json!({"JWTValidationPubKeys": [RSA_PUB], "JWTSupportedAlgs": ["HS256"]})).is_err());
    }
}
