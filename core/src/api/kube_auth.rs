//! The `kubernetes` auth method (Consul's `agent/consul/authmethod/kubeauth`): a login's bearer
//! token is a Kubernetes service account JWT, which the cluster's own API server vouches for
//! through a TokenReview; the service account it names becomes the `serviceaccount.namespace`,
//! `serviceaccount.name` and `serviceaccount.uid` fields binding rules select on and
//! interpolate. The service account's `consul.hashicorp.com/service-name` annotation, when
//! present, replaces its name (a pod's service need not be named like its account).
//!
//! The API server is reached over HTTPS trusting only the method's `CACert`, authenticated with
//! the method's `ServiceAccountJWT`, with a bounded timeout so a dead `Host` fails a login
//! instead of hanging it.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use rustls::{ClientConfig, RootCertStore};
use serde_json::{json, Map, Value};

use crate::wire::selector::Vars;

/// The field naming the service account's namespace.
pub const FIELD_NAMESPACE: &str = "serviceaccount.namespace";
/// The field naming the service account (or its service-name annotation).
pub const FIELD_NAME: &str = "serviceaccount.name";
/// The field holding the service account's UID.
pub const FIELD_UID: &str = "serviceaccount.uid";
/// Every field a `kubernetes` login produces, in Consul's order.
pub const FIELDS: [&str; 3] = [FIELD_NAMESPACE, FIELD_NAME, FIELD_UID];

/// The annotation on a service account that overrides the name it logs in as.
const SERVICE_NAME_ANNOTATION: &str = "consul.hashicorp.com/service-name";
/// How long one call to the Kubernetes API may take (connect included).
const API_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest response body read from the Kubernetes API.
const MAX_RESPONSE: usize = 1024 * 1024;

/// The config keys the method accepts (matched case-insensitively, as Consul's decoder does).
/// Consul Enterprise adds `MapNamespaces`, `ConsulNamespacePrefix` and
/// `ConsulNamespaceOverrides`; Consul's community edition refuses them as unknown keys, and so
/// does this server.
const KEYS: [&str; 3] = ["Host", "CACert", "ServiceAccountJWT"];

/// Why a login failed.
#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    /// The bearer token is not a valid service account token (HTTP 403).
    #[error("{0}")]
    Rejected(String),
    /// The Kubernetes API could not be asked or answered wrongly (HTTP 500).
    #[error("{0}")]
    Unavailable(String),
}

/// A validated `kubernetes` auth method config.
#[derive(Clone)]
pub struct KubeConfig {
    /// The API server's base URL (`https://` added to a bare host or host:port).
    base: reqwest::Url,
    /// The only CAs trusted for the API server.
    roots: Arc<RootCertStore>,
    /// What the method authenticates to the API server with.
    service_account_jwt: String,
}

impl std::fmt::Debug for KubeConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeConfig").field("base", &self.base.as_str()).finish()
    }
}

/// Checks that `token` has the shape of a compact JWS (go-jose's `ParseSigned`): three
/// base64url parts, the first a JSON object. The signature is the API server's business.
pub fn check_jwt_shape(token: &str) -> Result<(), String> {
    let parts: Vec<&str> = token.split('.').collect();
    if parts.len() != 3 {
        return Err("compact JWS format must have three parts".into());
    }
    let decode = |p: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(p.trim_end_matches('='));
    let header = decode(parts[0]).map_err(|e| format!("illegal base64 data in the header: {e}"))?;
    serde_json::from_slice::<Map<String, Value>>(&header).map_err(|e| format!("invalid header: {e}"))?;
    decode(parts[1]).map_err(|e| format!("illegal base64 data in the payload: {e}"))?;
    decode(parts[2]).map_err(|e| format!("illegal base64 data in the signature: {e}"))?;
    Ok(())
}

/// Splits TokenReview's `system:serviceaccount:<namespace>:<name>` into namespace and name.
pub fn parse_username(username: &str) -> Result<(&str, &str), String> {
    let parts: Vec<&str> = username.split(':').collect();
    if parts.len() != 4 {
        return Err("lookup failed: unexpected username format".into());
    }
    if parts[0] != "system" || parts[1] != "serviceaccount" {
        return Err("lookup failed: username returned is not a service account".into());
    }
    Ok((parts[2], parts[3]))
}

/// A string config value (`None` when absent, null or empty).
fn string<'a>(m: &'a Map<String, Value>, name: &str) -> Result<Option<&'a str>, String> {
    match m.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.as_str()).filter(|s| !s.is_empty())),
        Some(_) => Err(format!("error decoding config: '{name}' expected type 'string'")),
    }
}

/// The API server's base URL: a URL, or a host / host:port reached over HTTPS.
fn base_url(host: &str) -> Result<reqwest::Url, String> {
    let with_scheme = if host.contains("://") { host.to_string() } else { format!("https://{host}") };
    let url = reqwest::Url::parse(&with_scheme)
        .map_err(|e| format!("host must be a URL or a host:port pair: {host:?}: {e}"))?;
    if !matches!(url.scheme(), "https" | "http") || url.host_str().is_none() {
        return Err(format!("host must be a URL or a host:port pair: {host:?}"));
    }
    Ok(url)
}

impl KubeConfig {
    /// Validates an auth method's `Config` with Consul's messages (`NewValidator`).
    pub fn parse(config: &Value) -> Result<KubeConfig, String> {
        let empty = Map::new();
        let m = match config {
            Value::Object(m) => m,
            Value::Null => &empty,
            _ => return Err("Config must be a JSON object".into()),
        };
        let mut unknown: Vec<&str> =
            m.keys().filter(|k| !KEYS.iter().any(|known| known.eq_ignore_ascii_case(k))).map(String::as_str).collect();
        if !unknown.is_empty() {
            unknown.sort_unstable();
            return Err(format!(
                "error decoding config: 1 error(s) decoding:\n\n* '' has invalid keys: {}",
                unknown.join(", ")
            ));
        }
        let host = string(m, "Host")?.ok_or("Config.Host is required")?;
        let ca_cert = string(m, "CACert")?.ok_or("Config.CACert is required")?;
        let roots =
            crate::tls::roots_from_pem(ca_cert).map_err(|e| format!("error parsing kubernetes ca cert: {e}"))?;
        if roots.is_empty() {
            return Err(
                "error parsing kubernetes ca cert: data does not contain any valid RSA or ECDSA certificates".into()
            );
        }
        let jwt = string(m, "ServiceAccountJWT")?.ok_or("Config.ServiceAccountJWT is required")?;
        check_jwt_shape(jwt).map_err(|e| format!("Config.ServiceAccountJWT is not a valid JWT: {e}"))?;
        Ok(KubeConfig { base: base_url(host)?, roots: Arc::new(roots), service_account_jwt: jwt.to_string() })
    }

    /// The API URL of `segments` below the base (each segment escaped).
    fn url(&self, segments: &[&str]) -> reqwest::Url {
        let mut url = self.base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(segments);
        }
        url
    }

    fn client(&self) -> Result<reqwest::Client, LoginError> {
        let tls = ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| LoginError::Unavailable(format!("TLS setup for the kubernetes API: {e}")))?
            .with_root_certificates(self.roots.clone())
            .with_no_client_auth();
        reqwest::Client::builder()
            .timeout(API_TIMEOUT)
            .connect_timeout(API_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .tls_backend_preconfigured(tls)
            .build()
            .map_err(|e| LoginError::Unavailable(format!("kubernetes API client: {e}")))
    }

    /// One call to the API server: the JSON body of a 2xx answer, else an error naming the
    /// method and URL (`POST https://host/...: why`, as Go's client puts it).
    async fn call(&self, req: reqwest::RequestBuilder, method: &str, url: &reqwest::Url) -> Result<Value, String> {
        let url = format!("{method} {url}");
        let mut resp = req
            .bearer_auth(&self.service_account_jwt)
            .header("Accept", "application/json")
            .send()
            .await
            .map_err(|e| format!("{url}: {}", error_chain(&e.without_url())))?;
        let status = resp.status();
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| format!("{url}: {}", error_chain(&e.without_url())))? {
            if body.len() + chunk.len() > MAX_RESPONSE {
                return Err(format!("{url}: response larger than {MAX_RESPONSE} bytes"));
            }
            body.extend_from_slice(&chunk);
        }
        let value: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        if !status.is_success() {
            // Kubernetes answers errors with a Status object whose `message` says why.
            let why = value
                .get("message")
                .and_then(Value::as_str)
                .map(str::to_string)
                .unwrap_or_else(|| String::from_utf8_lossy(&body).chars().take(200).collect());
            return Err(format!("{url}: {status}: {why}"));
        }
        if value.is_null() {
            return Err(format!("{url}: the answer is not JSON"));
        }
        Ok(value)
    }

    /// Logs `bearer` in: asks the API server who it is (TokenReview), then reads its service
    /// account's annotations. Runs no state lock: the caller holds none while awaiting this.
    pub async fn login(&self, bearer: &str) -> Result<Vars, LoginError> {
        check_jwt_shape(bearer).map_err(|e| LoginError::Rejected(format!("failed to parse and validate JWT: {e}")))?;
        let client = self.client()?;
        let review_url = self.url(&["apis", "authentication.k8s.io", "v1", "tokenreviews"]);
        let review = json!({
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenReview",
            "spec": {"token": bearer},
        });
        let req = client.post(review_url.clone()).json(&review);
        let answer = self.call(req, "POST", &review_url).await.map_err(LoginError::Unavailable)?;
        let status = &answer["status"];
        if let Some(err) = status.get("error").and_then(Value::as_str).filter(|e| !e.is_empty()) {
            return Err(LoginError::Rejected(format!("lookup failed: {err}")));
        }
        if status.get("authenticated").and_then(Value::as_bool) != Some(true) {
            return Err(LoginError::Rejected("lookup failed: service account jwt not valid".into()));
        }
        let user = &status["user"];
        let (namespace, account) =
            parse_username(user["username"].as_str().unwrap_or_default()).map_err(LoginError::Rejected)?;
        let uid = user["uid"].as_str().unwrap_or_default().to_string();

        let account_url = self.url(&["api", "v1", "namespaces", namespace, "serviceaccounts", account]);
        let req = client.get(account_url.clone());
        let sa = self
            .call(req, "GET", &account_url)
            .await
            .map_err(|e| LoginError::Unavailable(format!("annotation lookup failed: {e}")))?;
        let name = sa["metadata"]["annotations"][SERVICE_NAME_ANNOTATION].as_str().unwrap_or(account);

        let mut vars = Vars::default();
        vars.fields.insert(FIELD_NAMESPACE.into(), namespace.to_string());
        vars.fields.insert(FIELD_NAME.into(), name.to_string());
        vars.fields.insert(FIELD_UID.into(), uid);
        Ok(vars)
    }
}

/// An error with its causes (reqwest's own message omits the connect or TLS failure).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(cause) = cur {
        out.push_str(": ");
        out.push_str(&cause.to_string());
        cur = cause.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A CA certificate made for these tests.
    fn ca_pem() -> String {
        let key = rcgen::KeyPair::generate().expect("key");
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.self_signed(&key).expect("cert").pem()
    }

    /// An unsigned-looking but well-formed compact JWS.
    const JWT: &str = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln";

    fn parse(v: Value) -> Result<KubeConfig, String> {
        KubeConfig::parse(&v)
    }

    #[test]
    fn config_errors_are_consuls() {
        let ca = ca_pem();
        let err = |v: Value| parse(v).expect_err("refused");
        assert_eq!(err(json!({})), "Config.Host is required");
        assert_eq!(err(json!({"Host": "https://k8s:443"})), "Config.CACert is required");
        assert_eq!(
            err(json!({"Host": "https://k8s", "CACert": "not pem"})),
            "error parsing kubernetes ca cert: data does not contain any valid RSA or ECDSA certificates"
        );
        let garbage = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        assert!(err(json!({"Host": "https://k8s", "CACert": garbage})).starts_with("error parsing kubernetes ca cert"));
        assert_eq!(err(json!({"Host": "https://k8s", "CACert": ca})), "Config.ServiceAccountJWT is required");
        assert!(err(json!({"Host": "https://k8s", "CACert": ca, "ServiceAccountJWT": "abc"}))
            .starts_with("Config.ServiceAccountJWT is not a valid JWT: "));
        assert_eq!(
            err(json!({"Host": "h", "CACert": ca, "ServiceAccountJWT": JWT, "MapNamespaces": true})),
            "error decoding config: 1 error(s) decoding:\n\n* '' has invalid keys: MapNamespaces"
        );
        assert!(err(json!({"Host": "ftp://k8s", "CACert": ca, "ServiceAccountJWT": JWT})).contains("host must be"));
        assert!(err(json!({"Host": 7})).contains("'Host' expected type 'string'"));
        assert_eq!(err(json!([1])), "Config must be a JSON object");
    }

    #[test]
    fn config_accepts_hosts_and_keys_in_any_case() {
        let ca = ca_pem();
        let c = parse(json!({"host": "10.0.0.1:6443", "cacert": ca, "serviceaccountjwt": JWT})).expect("config");
        assert_eq!(c.base.as_str(), "https://10.0.0.1:6443/");
        assert_eq!(
            c.url(&["api", "v1", "namespaces", "default", "serviceaccounts", "web"]).as_str(),
            "https://10.0.0.1:6443/api/v1/namespaces/default/serviceaccounts/web"
        );
        let c = parse(json!({"Host": "https://k8s.example/prefix/", "CACert": ca, "ServiceAccountJWT": JWT}))
            .expect("config");
        assert_eq!(
            c.url(&["apis", "authentication.k8s.io", "v1", "tokenreviews"]).as_str(),
            "https://k8s.example/prefix/apis/authentication.k8s.io/v1/tokenreviews"
        );
    }

    #[test]
    fn usernames() {
        assert_eq!(parse_username("system:serviceaccount:default:web"), Ok(("default", "web")));
        assert_eq!(
            parse_username("system:serviceaccount:default"),
            Err("lookup failed: unexpected username format".into())
        );
        assert_eq!(parse_username("a:b:c:d:e"), Err("lookup failed: unexpected username format".into()));
        assert_eq!(
            parse_username("system:node:default:web"),
            Err("lookup failed: username returned is not a service account".into())
        );
        assert_eq!(
            parse_username("user:serviceaccount:default:web"),
            Err("lookup failed: username returned is not a service account".into())
        );
    }

    #[test]
    fn jwt_shapes() {
        assert!(check_jwt_shape(JWT).is_ok());
        assert!(check_jwt_shape("a.b").is_err());
        assert!(check_jwt_shape("a.b.c.d").is_err());
        assert!(check_jwt_shape("!!!.eyJ9.c2ln").is_err());
        // The header must be a JSON object.
        assert!(check_jwt_shape("WzFd.eyJ9.c2ln").is_err());
    }
}
