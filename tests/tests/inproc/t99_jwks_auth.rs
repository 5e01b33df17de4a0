//! The `jwt` auth method with `JWKSURL`: the key set is fetched over HTTPS trusting only
//! `JWKSCACert` when the method is created (an unreachable or untrusted URL refuses the
//! method), kept by the agent, and fetched again when a token names a key id the kept set
//! lacks (the issuer rotated its keys); a key set that cannot be fetched fails the login with
//! 500 naming the URL.

use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use consul_tests::client::{Api, Resp};
use consul_tests::free_port;
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response};
use reqwest::Method;
use serde_json::{json, Value};

use crate::t99_kube_auth::{acl_cluster, pki, reply, tls_server};

use crate::agent_api::{ok, refused};

const ROOT: &str = "6a1a4d3c-1f7e-4bde-9d2e-3b9a40c8e111";

/// A P-256 signing key and its public JWK under `kid`.
struct Key {
    pkcs8: Vec<u8>,
    jwk: Value,
    kid: String,
}

fn key(kid: &str) -> Key {
    use ring::signature::KeyPair as _;
    let rng = ring::rand::SystemRandom::new();
    let alg = &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING;
    let pkcs8 = ring::signature::EcdsaKeyPair::generate_pkcs8(alg, &rng).expect("generate");
    let pair = ring::signature::EcdsaKeyPair::from_pkcs8(alg, pkcs8.as_ref(), &rng).expect("parse");
    let point = pair.public_key().as_ref();
    let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
    let jwk = json!({"kty": "EC", "crv": "P-256", "use": "sig", "alg": "ES256", "kid": kid,
        "x": b64(&point[1..33]), "y": b64(&point[33..65])});
    Key { pkcs8: pkcs8.as_ref().to_vec(), jwk, kid: kid.to_string() }
}

fn sign(k: &Key, sub: &str) -> String {
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
    header.kid = Some(k.kid.clone());
    let claims = json!({"iss": "https://idp", "sub": sub});
    jsonwebtoken::encode(&header, &claims, &jsonwebtoken::EncodingKey::from_ec_der(&k.pkcs8)).expect("sign")
}

/// The stand-in issuer: the key set it serves at `/keys`, and how often it was fetched.
#[derive(Default)]
struct Issuer {
    keys: Mutex<Vec<Value>>,
    fetches: AtomicUsize,
}

async fn serve(issuer: Arc<Issuer>, req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    Ok(match (req.method().as_str(), req.uri().path()) {
        ("GET", "/keys") => {
            issuer.fetches.fetch_add(1, Ordering::SeqCst);
            reply(200, json!({"keys": issuer.keys.lock().expect("lock").clone()}))
        }
        _ => reply(404, json!({"error": "not found"})),
    })
}

async fn call(api: &Api, method: Method, path: &str, body: Value) -> Resp {
    api.request(method, path, Some(body.to_string().into_bytes())).await.expect("request")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t99_jwks_keys_fetched_cached_and_refetched_on_rotation() {
    let (a, b, c_key) = (key("a"), key("b"), key("c"));
    let issuer = Arc::new(Issuer::default());
    *issuer.keys.lock().expect("lock") = vec![a.jwk.clone()];
    let (port, ca_pem, server) = {
        let issuer = issuer.clone();
        tls_server(move |req| serve(issuer.clone(), req)).await
    };
    let fetches = || issuer.fetches.load(Ordering::SeqCst);
    let (c, api) = acl_cluster(ROOT).await;
    let url = format!("https://127.0.0.1:{port}/keys");
    let method = |name: &str, url: &str, ca: &str| {
        json!({"Name": name, "Type": "jwt", "Config": {"JWKSURL": url, "JWKSCACert": ca,
            "JWTSupportedAlgs": ["ES256"], "BoundIssuer": "https://idp", "ClaimMappings": {"sub": "name"}}})
    };

    // Creating fetches the key set: an untrusted or unreachable URL refuses the method.
    let (other_ca, _, _) = pki();
    refused(
        &call(&api, Method::PUT, "/v1/acl/auth-method", method("bad-ca", &url, &other_ca)).await,
        400,
        "Invalid Auth Method: error checking JWKSURL",
    );
    let dead = format!("https://127.0.0.1:{}/keys", free_port());
    refused(
        &call(&api, Method::PUT, "/v1/acl/auth-method", method("dead", &dead, &ca_pem)).await,
        400,
        "error checking JWKSURL",
    );
    assert_eq!(ok(&api.get("/v1/acl/auth-methods").await.expect("methods")), json!([]));
    ok(&call(&api, Method::PUT, "/v1/acl/auth-method", method("idp", &url, &ca_pem)).await);
    assert_eq!(fetches(), 1);
    ok(&call(
        &api,
        Method::PUT,
        "/v1/acl/binding-rule",
        json!({"AuthMethod": "idp", "BindType": "service", "BindName": "${value.name}"}),
    )
    .await);

    let login = |bearer: String| {
        let api = api.clone();
        async move { call(&api, Method::POST, "/v1/acl/login", json!({"AuthMethod": "idp", "BearerToken": bearer})).await }
    };
    // The key set fetched at create serves the first login.
    let t = ok(&login(sign(&a, "web")).await);
    assert_eq!(t["ServiceIdentities"], json!([{"ServiceName": "web"}]));
    assert_eq!(fetches(), 1, "served from the agent's copy");

    // The issuer rotates in key b: a token under b makes the agent fetch again.
    issuer.keys.lock().expect("lock").push(b.jwk.clone());
    let t = ok(&login(sign(&b, "api")).await);
    assert_eq!(t["ServiceIdentities"], json!([{"ServiceName": "api"}]));
    assert_eq!(fetches(), 2);
    ok(&login(sign(&a, "web")).await);
    assert_eq!(fetches(), 2);

    // A key id the issuer does not have either: fetched again, still unknown, refused.
    refused(&login(sign(&c_key, "evil")).await, 403, "failed to verify id token signature");
    assert_eq!(fetches(), 3);
    // A token claiming key a but signed with c.
    let mut forged = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
    forged.kid = Some("a".into());
    let forged = jsonwebtoken::encode(
        &forged,
        &json!({"iss": "https://idp", "sub": "web"}),
        &jsonwebtoken::EncodingKey::from_ec_der(&c_key.pkcs8),
    )
    .expect("sign");
    refused(&login(forged).await, 403, "Permission denied");

    // The issuer is down: a login needing a fetch fails with 500 naming the URL.
    server.abort();
    let _ = server.await;
    refused(&login(sign(&c_key, "web")).await, 500, &format!("127.0.0.1:{port}"));
    let tokens = ok(&api.get("/v1/acl/tokens?authmethod=idp").await.expect("tokens"));
    assert_eq!(tokens.as_array().map(Vec::len), Some(3));
    c.shutdown().await;
}
