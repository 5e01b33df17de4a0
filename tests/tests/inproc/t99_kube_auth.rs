//! The `kubernetes` auth method against a stand-in Kubernetes API server over TLS: the method's
//! config is validated at create, a login asks the API server for a TokenReview and reads the
//! service account's annotations (authenticated with the method's `ServiceAccountJWT`, trusting
//! only its `CACert`), and the binding rules select on and interpolate `serviceaccount.*`.
//! A rejected token is 403; an API server whose certificate the CA does not vouch for, or one
//! that is down, is 500 naming the host; neither creates a token.

use std::convert::Infallible;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use consul_tests::client::{Api, Resp};
use consul_tests::eventually;
use consul_tests::inproc::{Cluster, Options};
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response};
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair, SanType};
use reqwest::Method;
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::agent_api::{ok, refused};

const ROOT: &str = "6a1a4d3c-1f7e-4bde-9d2e-3b9a40c8e111";

/// A compact-JWS-shaped token whose subject tells the stand-in API server who it is.
fn token(sub: &str) -> String {
    let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
    format!("{}.{}.{}", b64(r#"{"alg":"RS256","typ":"JWT"}"#), b64(&json!({"sub": sub}).to_string()), b64("sig"))
}

/// The stand-in API server's record of the `Authorization` headers it was sent.
#[derive(Default)]
struct ApiServer {
    authorizations: Mutex<Vec<String>>,
    reviews: Mutex<Vec<Value>>,
}

pub(crate) fn reply(status: u16, body: Value) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header("Content-Type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .expect("response")
}

/// The two Kubernetes API calls a login makes. Service accounts: `default/web` (no
/// annotation), `default/api-sa` (annotated service name `api`), `other/web`.
async fn serve(
    server: Arc<ApiServer>,
    reviewer: String,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let (parts, body) = req.into_parts();
    let body = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    let auth = parts.headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    server.authorizations.lock().expect("lock").push(auth.clone());
    if auth != format!("Bearer {reviewer}") {
        return Ok(reply(401, json!({"kind": "Status", "message": "Unauthorized", "code": 401})));
    }
    let path = parts.uri.path().to_string();
    let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    Ok(match (parts.method.as_str(), segs.as_slice()) {
        ("POST", ["apis", "authentication.k8s.io", "v1", "tokenreviews"]) => {
            let review: Value = serde_json::from_slice(&body).unwrap_or_default();
            server.reviews.lock().expect("lock").push(review.clone());
            if review["apiVersion"] != "authentication.k8s.io/v1" || review["kind"] != "TokenReview" {
                return Ok(reply(400, json!({"kind": "Status", "message": "bad TokenReview"})));
            }
            let presented = review["spec"]["token"].as_str().unwrap_or_default();
            let user =
                |username: &str, uid: &str| json!({"authenticated": true, "user": {"username": username, "uid": uid}});
            let status = if presented == token("default-web") {
                user("system:serviceaccount:default:web", "uid-web")
            } else if presented == token("default-api") {
                user("system:serviceaccount:default:api-sa", "uid-api")
            } else if presented == token("other-web") {
                user("system:serviceaccount:other:web", "uid-other")
            } else if presented == token("a-node") {
                user("system:node:default:worker-1", "uid-node")
            } else if presented == token("expired") {
                json!({"authenticated": false, "error": "token has expired"})
            } else {
                json!({"authenticated": false, "user": {}})
            };
            reply(
                201,
                json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": review["spec"], "status": status}),
            )
        }
        ("GET", ["api", "v1", "namespaces", ns, "serviceaccounts", name]) => match (*ns, *name) {
            ("default", "web") | ("other", "web") => {
                reply(200, json!({"kind": "ServiceAccount", "metadata": {"name": name, "namespace": ns}}))
            }
            ("default", "api-sa") => reply(
                200,
                json!({"kind": "ServiceAccount", "metadata": {"name": "api-sa", "namespace": "default",
                    "annotations": {"consul.hashicorp.com/service-name": "api", "other": "x"}}}),
            ),
            _ => reply(404, json!({"kind": "Status", "message": "serviceaccounts not found", "code": 404})),
        },
        _ => reply(404, json!({"kind": "Status", "message": "the server could not find the requested resource"})),
    })
}

/// A CA (its PEM) and a server certificate for 127.0.0.1 it signed (DER chain and key).
pub(crate) fn pki() -> (String, rustls::pki_types::CertificateDer<'static>, rustls::pki_types::PrivateKeyDer<'static>) {
    let ca_key = KeyPair::generate().expect("key");
    let mut ca = CertificateParams::new(Vec::<String>::new()).expect("params");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_pem = ca.self_signed(&ca_key).expect("CA").pem();
    let issuer = Issuer::new(ca, ca_key);
    let key = KeyPair::generate().expect("key");
    let mut leaf = CertificateParams::new(vec!["kubernetes.default.svc".to_string()]).expect("params");
    leaf.subject_alt_names.push(SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)));
    let cert = leaf.signed_by(&key, &issuer).expect("sign");
    let der = rustls::pki_types::CertificateDer::from(cert.der().to_vec());
    let key = rustls::pki_types::PrivateKeyDer::try_from(key.serialize_der()).expect("key");
    (ca_pem, der, key)
}

/// Serves `handler` over TLS on 127.0.0.1 with a certificate from a fresh CA; returns the
/// port, the CA's PEM and the accept task (aborting it closes the listener).
pub(crate) async fn tls_server<F, Fut>(handler: F) -> (u16, String, JoinHandle<()>)
where
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<Response<Full<Bytes>>, Infallible>> + Send + 'static,
{
    let (ca_pem, der, key) = pki();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(vec![der], key)
        .expect("server config");
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let task = tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, handler) = (acceptor.clone(), handler.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else { return };
                let svc = hyper::service::service_fn(handler);
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(tls), svc)
                    .await;
            });
        }
    });
    (port, ca_pem, task)
}

/// Starts the stand-in API server; returns its port, its CA and the task.
async fn start_api_server(server: Arc<ApiServer>, reviewer: &str) -> (u16, String, JoinHandle<()>) {
    let reviewer = reviewer.to_string();
    tls_server(move |req| serve(server.clone(), reviewer.clone(), req)).await
}

async fn call(api: &Api, method: Method, path: &str, body: Value) -> Resp {
    api.request(method, path, Some(body.to_string().into_bytes())).await.expect("request")
}

async fn login_tokens(api: &Api, method: &str) -> usize {
    let r = api.get(&format!("/v1/acl/tokens?authmethod={method}")).await.expect("tokens");
    ok(&r).as_array().map_or(0, Vec::len)
}

/// A one-server cluster with ACLs on and `root` as its management token, once the token works;
/// with an API client carrying it.
pub(crate) async fn acl_cluster(root: &str) -> (Cluster, Api) {
    let c = Cluster::start_with(1, Options { acl: true, initial_management: Some(root.into()), ..Options::default() })
        .await;
    let api = c.api(0).with_token(root);
    eventually(Duration::from_secs(20), "ACLs initialized", || async {
        let r = api.get(&format!("/v1/acl/token/self?token={root}")).await.ok()?;
        (r.status == 200).then_some(())
    })
    .await;
    (c, api)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t99_kube_auth_login_through_token_review() {
    let reviewer = token("consul-reviewer");
    let server = Arc::new(ApiServer::default());
    let (port, ca_pem, api_task) = start_api_server(server.clone(), &reviewer).await;
    let (c, api) = acl_cluster(ROOT).await;
    let host = format!("https://127.0.0.1:{port}");
    let config = json!({"Host": host, "CACert": ca_pem, "ServiceAccountJWT": reviewer});

    // Config validation, Consul's messages.
    let create = |body: Value| {
        let api = api.clone();
        async move { call(&api, Method::PUT, "/v1/acl/auth-method", body).await }
    };
    refused(
        &create(
            json!({"Name": "k", "Type": "kubernetes", "Config": {"CACert": ca_pem, "ServiceAccountJWT": reviewer}}),
        )
        .await,
        400,
        "Invalid Auth Method: Config.Host is required",
    );
    refused(
        &create(json!({"Name": "k", "Type": "kubernetes", "Config": {"Host": host, "ServiceAccountJWT": reviewer}}))
            .await,
        400,
        "Invalid Auth Method: Config.CACert is required",
    );
    refused(
        &create(json!({"Name": "k", "Type": "kubernetes", "Config": {"Host": host, "CACert": "x", "ServiceAccountJWT": reviewer}}))
            .await,
        400,
        "Invalid Auth Method: error parsing kubernetes ca cert",
    );
    refused(
        &create(json!({"Name": "k", "Type": "kubernetes", "Config": {"Host": host, "CACert": ca_pem, "ServiceAccountJWT": "nope"}}))
            .await,
        400,
        "Invalid Auth Method: Config.ServiceAccountJWT is not a valid JWT",
    );
    refused(&create(json!({"Name": "k", "Type": "ldap"})).await, 400, "Type should be one of: [jwt kubernetes]");
    assert_eq!(ok(&api.get("/v1/acl/auth-methods").await.expect("methods")), json!([]));

    let m = ok(&create(json!({"Name": "kube", "Type": "kubernetes", "Config": config})).await);
    assert_eq!(m["Type"], "kubernetes");
    assert_eq!(m["Config"]["Host"], host);

    // Binding rules on the method's fields.
    let policy = ok(&call(&api, Method::PUT, "/v1/acl/policy", json!({"Name": "web-extra", "Rules": ""})).await);
    let rule = |body: Value| {
        let api = api.clone();
        async move { call(&api, Method::PUT, "/v1/acl/binding-rule", body).await }
    };
    ok(&rule(json!({"AuthMethod": "kube", "BindType": "service", "BindName": "${serviceaccount.name}",
        "Selector": "serviceaccount.namespace==default"}))
    .await);
    ok(&rule(json!({"AuthMethod": "kube", "BindType": "policy", "BindName": "web-extra",
        "Selector": "serviceaccount.name == web and serviceaccount.namespace == default and serviceaccount.uid != \"\""}))
    .await);
    refused(
        &rule(json!({"AuthMethod": "kube", "BindType": "service", "BindName": "x", "Selector": "serviceaccount.team == a"}))
            .await,
        400,
        "Selector is invalid",
    );
    refused(
        &rule(json!({"AuthMethod": "kube", "BindType": "service", "BindName": "${value.name}"})).await,
        400,
        "invalid BindName",
    );

    let login = |method: &'static str, bearer: String| {
        let api = api.clone();
        async move { call(&api, Method::POST, "/v1/acl/login", json!({"AuthMethod": method, "BearerToken": bearer})).await }
    };
    let t = ok(&login("kube", token("default-web")).await);
    assert_eq!(t["AuthMethod"], "kube");
    assert_eq!(t["ServiceIdentities"], json!([{"ServiceName": "web"}]));
    assert_eq!(t["Policies"], json!([{"ID": policy["ID"], "Name": "web-extra"}]));
    assert_eq!(t["Local"], true, "TokenLocality defaults to local");
    // The service-name annotation names the service; the policy rule wants the account "web".
    let t = ok(&login("kube", token("default-api")).await);
    assert_eq!(t["ServiceIdentities"], json!([{"ServiceName": "api"}]));
    assert!(t.get("Policies").is_none_or(|p| p == &json!([])), "{t}");
    assert_eq!(login_tokens(&api, "kube").await, 2);

    // Authenticated but selected by no rule; and tokens the API server does not vouch for.
    refused(&login("kube", token("other-web")).await, 403, "Permission denied");
    refused(&login("kube", token("forged")).await, 403, "service account jwt not valid");
    refused(&login("kube", token("expired")).await, 403, "lookup failed: token has expired");
    refused(&login("kube", token("a-node")).await, 403, "not a service account");
    refused(&login("kube", "not-a-jwt".into()).await, 403, "failed to parse and validate JWT");
    assert_eq!(login_tokens(&api, "kube").await, 2);

    // Every call carried the method's own token, and the reviews were Kubernetes-shaped.
    let auths = server.authorizations.lock().expect("lock").clone();
    assert!(!auths.is_empty());
    assert!(auths.iter().all(|a| *a == format!("Bearer {reviewer}")), "{auths:?}");
    let first = server.reviews.lock().expect("lock")[0].clone();
    assert_eq!(
        first,
        json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": {"token": token("default-web")}})
    );

    // A CA that did not sign the API server's certificate: the login fails, naming the host.
    let (other_ca, _, _) = pki();
    ok(&create(json!({"Name": "wrong-ca", "Type": "kubernetes",
        "Config": {"Host": host, "CACert": other_ca, "ServiceAccountJWT": reviewer}}))
    .await);
    ok(&rule(json!({"AuthMethod": "wrong-ca", "BindType": "service", "BindName": "${serviceaccount.name}"})).await);
    let seen = server.reviews.lock().expect("lock").len();
    let r = login("wrong-ca", token("default-web")).await;
    refused(&r, 500, &format!("127.0.0.1:{port}"));
    assert_eq!(server.reviews.lock().expect("lock").len(), seen, "no review got through");
    assert_eq!(login_tokens(&api, "wrong-ca").await, 0);

    // The method's own token refused by the API server: 500 with Kubernetes' reason.
    ok(&create(json!({"Name": "bad-reviewer", "Type": "kubernetes",
        "Config": {"Host": host, "CACert": ca_pem, "ServiceAccountJWT": token("stranger")}}))
    .await);
    ok(&rule(json!({"AuthMethod": "bad-reviewer", "BindType": "service", "BindName": "x"})).await);
    refused(&login("bad-reviewer", token("default-web")).await, 500, "Unauthorized");
    assert_eq!(login_tokens(&api, "bad-reviewer").await, 0);

    // An API server that is down.
    api_task.abort();
    let _ = api_task.await;
    let r = login("kube", token("default-web")).await;
    refused(&r, 500, &format!("127.0.0.1:{port}"));
    assert_eq!(login_tokens(&api, "kube").await, 2);
    c.shutdown().await;
}
