//! ACL objects over `/v1/acl/*` (Consul: api-docs/acl/*.mdx — bootstrap, tokens, policies,
//! roles, auth methods, binding rules, login/logout; docs "Reset ACL system" for the
//! `acl-bootstrap-reset` file).

use std::time::Duration;

use consul_tests::client::{Api, Resp};
use consul_tests::eventually;
use consul_tests::inproc::{Cluster, Options};
use reqwest::Method;
use serde_json::{json, Value};

use crate::agent_api::{ok, refused};

const GM: &str = "00000000-0000-0000-0000-000000000001";
const ROOT: &str = "6a1a4d3c-1f7e-4bde-9d2e-3b9a40c8e111";

fn acl_opts() -> Options {
    Options { acl: true, initial_management: Some(ROOT.into()), ..Options::default() }
}

async fn call(api: &Api, method: Method, path: &str, body: Option<Value>) -> Resp {
    api.request(method, path, body.map(|b| b.to_string().into_bytes())).await.expect("request")
}

async fn put(api: &Api, path: &str, body: Value) -> Resp {
    call(api, Method::PUT, path, Some(body)).await
}

/// Waits until the leader created the built-in policy and the initial management token.
async fn wait_initialized(api: &Api) {
    eventually(Duration::from_secs(20), "ACLs initialized", || async {
        let r = api.get(&format!("/v1/acl/token/self?token={ROOT}")).await.ok()?;
        (r.status == 200).then_some(())
    })
    .await;
}

fn len(api_resp: &Resp) -> usize {
    api_resp.json().as_array().map_or(0, Vec::len)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t99_acl_disabled_is_401() {
    let c = Cluster::start(1).await;
    let r = c.api(0).get("/v1/acl/policies").await.expect("get");
    refused(&r, 401, "ACL support disabled");
    c.shutdown().await;
}

/// The initial management token is the bootstrap, as in Consul: `PUT /v1/acl/bootstrap` is then
/// 403 with the reset index; writing that index to the reset file on the leader allows one
/// bootstrap, which is then refused again with its own index. The initial management token
/// exists with global-management.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t99_acl_bootstrap_and_reset_file() {
    let c = Cluster::start_with(1, acl_opts()).await;
    let anonymous = c.api(0);
    let api = c.api(0).with_token(ROOT);
    wait_initialized(&api).await;
    let me = ok(&api.get(&format!("/v1/acl/token/self?token={ROOT}")).await.expect("self"));
    assert_eq!(me["Policies"][0]["ID"], GM);
    assert_eq!(me["Policies"][0]["Name"], "global-management");
    refused(&api.get("/v1/acl/token/self?token=nope").await.expect("self"), 403, "ACL not found");
    let anon = ok(&anonymous.get("/v1/acl/token/self").await.expect("anonymous"));
    assert_eq!(anon["AccessorID"], "00000000-0000-0000-0000-000000000002");

    let reset_index_of = |r: &Resp| -> u64 {
        r.text()
            .rsplit("reset index: ")
            .next()
            .and_then(|s| s.trim().trim_end_matches(')').parse().ok())
            .unwrap_or_else(|| panic!("no reset index in {:?}", r.text()))
    };
    let refused_first = call(&api, Method::PUT, "/v1/acl/bootstrap", None).await;
    refused(&refused_first, 403, "Permission denied: ACL bootstrap no longer allowed (reset index: ");
    assert_eq!(reset_index_of(&refused_first), me["CreateIndex"].as_u64().expect("index"));
    // A wrong index in the file does not help.
    let file = c.data_dir(0).join("acl-bootstrap-reset");
    std::fs::write(&file, format!("{}\n", reset_index_of(&refused_first) + 100)).expect("write");
    refused(&call(&api, Method::PUT, "/v1/acl/bootstrap", None).await, 403, "no longer allowed");
    std::fs::write(&file, format!("{}\n", reset_index_of(&refused_first))).expect("write");
    let first = ok(&call(&api, Method::PUT, "/v1/acl/bootstrap", None).await);
    assert!(!file.exists(), "the reset file is used up");
    assert_eq!(first["Policies"][0]["Name"], "global-management");
    assert_eq!(first["Description"], "Bootstrap Token (Global Management)");
    let secret = first["SecretID"].as_str().expect("secret").to_string();
    ok(&api.get(&format!("/v1/acl/token/self?token={secret}")).await.expect("self"));
    let again = call(&api, Method::PUT, "/v1/acl/bootstrap", None).await;
    refused(&again, 403, "Permission denied: ACL bootstrap no longer allowed (reset index: ");
    assert_eq!(reset_index_of(&again), first["CreateIndex"].as_u64().expect("index"));
    std::fs::write(&file, format!("{}\n", reset_index_of(&again))).expect("write");
    let second = ok(&call(&api, Method::PUT, "/v1/acl/bootstrap", None).await);
    assert_ne!(second["SecretID"], first["SecretID"]);
    refused(&call(&api, Method::PUT, "/v1/acl/bootstrap", None).await, 403, "no longer allowed");
    c.shutdown().await;
}

/// Without an initial management token nothing is bootstrapped: an unknown token is refused
/// with Consul's "must be bootstrapped" wording (which its tools look for), the anonymous token
/// is denied, and after `PUT /v1/acl/bootstrap` an unknown token is plain "ACL not found".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t99_acl_unknown_tokens_before_bootstrap() {
    let c = Cluster::start_with(1, Options { acl: true, ..Options::default() }).await;
    let api = c.api(0);
    let unknown = "7c3e9a4d-0000-4000-8000-00000000beef";
    let before = eventually(Duration::from_secs(20), "the cluster answers", || {
        let api = api.clone();
        async move {
            let r = api.get(&format!("/v1/acl/tokens?token={unknown}")).await.ok()?;
            (r.status == 403 && r.text().contains("must be bootstrapped")).then_some(r)
        }
    })
    .await;
    assert_eq!(
        before.text().trim(),
        "ACL system must be bootstrapped before making any requests that require authorization: ACL not found"
    );
    let anon = api.get("/v1/acl/tokens").await.expect("anonymous");
    refused(&anon, 403, "Permission denied: anonymous token lacks permission 'acl:read'");
    // The leader creates the built-in policies first; until then bootstrap is a 400.
    let root = eventually(Duration::from_secs(20), "bootstrap", || {
        let api = api.clone();
        async move {
            let r = call(&api, Method::PUT, "/v1/acl/bootstrap", None).await;
            (r.status == 200).then(|| r.json())
        }
    })
    .await;
    let list = api.get(&format!("/v1/acl/tokens?token={}", root["SecretID"].as_str().expect("secret"))).await;
    assert_eq!(ok(&list.expect("list")).as_array().map(Vec::len), Some(2), "management and anonymous");
    let after = api.get(&format!("/v1/acl/tokens?token={unknown}")).await.expect("unknown");
    assert_eq!((after.status, after.text().trim()), (403, "ACL not found"));
    c.shutdown().await;
}

/// Policies, roles and tokens: Consul's JSON, bad input refused with Consul's messages and
/// nothing changed, blocking reads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t99_acl_policy_role_token_crud() {
    let c = Cluster::start_with(1, acl_opts()).await;
    let api = c.api(0).with_token(ROOT);
    wait_initialized(&api).await;

    // Policies.
    let rules = r#"key_prefix "web/" { policy = "read" }"#;
    let p = ok(&put(&api, "/v1/acl/policy", json!({"Name": "web-read", "Description": "d", "Rules": rules})).await);
    let pid = p["ID"].as_str().expect("ID").to_string();
    assert_eq!((p["Name"].as_str(), p["Rules"].as_str()), (Some("web-read"), Some(rules)));
    assert!(p["Hash"].as_str().is_some_and(|h| !h.is_empty()) && p["CreateIndex"].as_u64().is_some());
    let before = api.get("/v1/acl/policies").await.expect("list");
    let count = len(&before);
    refused(
        &put(&api, "/v1/acl/policy", json!({"Name": "bad name!", "Rules": ""})).await,
        400,
        "Invalid Policy: invalid Name. Only alphanumeric characters, '-' and '_' are allowed",
    );
    refused(
        &put(&api, "/v1/acl/policy", json!({"Name": "broken", "Rules": "key_prefix {"})).await,
        400,
        "Failed to parse ACL rules: ",
    );
    refused(&put(&api, "/v1/acl/policy", json!({"Name": "web-read"})).await, 400, "already exists");
    refused(&put(&api, "/v1/acl/policy", json!({"ID": pid, "Name": "x"})).await, 400, "Cannot specify the ID");
    refused(&call(&api, Method::PUT, "/v1/acl/policy", Some(json!([1]))).await, 400, "Policy decoding failed: ");
    assert_eq!(len(&api.get("/v1/acl/policies").await.expect("list")), count, "refusals changed nothing");
    let list = api.get("/v1/acl/policies").await.expect("list");
    assert!(list.index().is_some());
    assert!(
        list.json().as_array().expect("array").iter().all(|p| p.get("Rules").is_none()),
        "list stubs carry no Rules"
    );
    assert_eq!(ok(&api.get("/v1/acl/policy/name/web-read").await.expect("by name"))["ID"], pid.as_str());
    // A blocking read wakes on a write.
    let idx = list.index().expect("index");
    let waiter = {
        let api = api.clone();
        tokio::spawn(async move { api.get(&format!("/v1/acl/policies?index={idx}&wait=10s")).await.expect("block") })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let upd = ok(&put(
        &api,
        &format!("/v1/acl/policy/{pid}"),
        json!({"Name": "web-read", "Description": "d2", "Rules": rules}),
    )
    .await);
    assert_eq!(upd["Description"], "d2");
    let woke = waiter.await.expect("join");
    assert!(woke.index().expect("index") > idx);
    refused(
        &call(&api, Method::DELETE, &format!("/v1/acl/policy/{GM}"), None).await,
        400,
        "Delete operation not permitted on the builtin global-management policy",
    );
    refused(
        &put(&api, &format!("/v1/acl/policy/{GM}"), json!({"Name": "global-management", "Rules": rules})).await,
        400,
        "Changing the Rules for the builtin global-management policy is not permitted",
    );

    // Roles.
    let role = ok(&put(
        &api,
        "/v1/acl/role",
        json!({"Name": "web", "Policies": [{"Name": "web-read"}],
        "ServiceIdentities": [{"ServiceName": "web"}]}),
    )
    .await);
    let rid = role["ID"].as_str().expect("ID").to_string();
    assert_eq!(role["Policies"], json!([{"ID": pid, "Name": "web-read"}]));
    assert_eq!(role["ServiceIdentities"], json!([{"ServiceName": "web"}]));
    refused(
        &put(&api, "/v1/acl/role", json!({"Name": "r2", "Policies": [{"Name": "nope"}]})).await,
        400,
        "No such ACL policy with name \"nope\"",
    );
    assert_eq!(len(&api.get("/v1/acl/roles").await.expect("roles")), 1);
    assert_eq!(len(&api.get(&format!("/v1/acl/roles?policy={pid}")).await.expect("roles")), 1);
    assert_eq!(len(&api.get(&format!("/v1/acl/roles?policy={GM}")).await.expect("roles")), 0);
    assert_eq!(ok(&api.get("/v1/acl/role/name/web").await.expect("role"))["ID"], rid.as_str());

    // Tokens.
    let t = ok(&put(
        &api,
        "/v1/acl/token",
        json!({"Description": "app", "Policies": [{"Name": "web-read"}],
        "Roles": [{"Name": "web"}], "ServiceIdentities": [{"ServiceName": "api", "Datacenters": ["dc1"]}],
        "NodeIdentities": [{"NodeName": "n1", "Datacenter": "dc1"}], "ExpirationTTL": "1h"}),
    )
    .await);
    let (acc, sec) =
        (t["AccessorID"].as_str().expect("acc").to_string(), t["SecretID"].as_str().expect("sec").to_string());
    assert_eq!(t["Policies"], json!([{"ID": pid, "Name": "web-read"}]));
    assert_eq!(t["Roles"], json!([{"ID": rid, "Name": "web"}]));
    assert_eq!(t["Local"], false);
    assert!(t["ExpirationTime"].as_str().is_some() && t["CreateTime"].as_str().is_some());
    let tokens_before = len(&api.get("/v1/acl/tokens").await.expect("tokens"));
    for (body, msg) in [
        (json!({"ExpirationTTL": "30s"}), "ExpirationTime cannot be less than 1m0s in the future"),
        (json!({"ExpirationTTL": "25h"}), "ExpirationTime cannot be more than 24h0m0s in the future"),
        (
            json!({"ExpirationTTL": "1h", "ExpirationTime": "2099-01-01T00:00:00Z"}),
            "Token Expiration TTL and Expiration Time cannot both be set",
        ),
        (json!({"ExpirationTime": "2001-01-01T00:00:00Z"}), "ExpirationTime cannot be before CreateTime"),
        (json!({"SecretID": "abc"}), "Invalid Token: SecretID - not a valid UUID"),
        (json!({"AccessorID": "00000000-0000-0000-0000-000000000099"}), "are reserved"),
        (json!({"SecretID": sec}), "Invalid Token: SecretID is already in use"),
        (json!({"Policies": [{"Name": "nope"}]}), "No such ACL policy with name \"nope\""),
        (json!({"Roles": [{"ID": "9c0c4d4b-8b57-4d2e-9a39-2f6f0e5a1c11"}]}), "No such ACL role with ID"),
        (json!({"ServiceIdentities": [{"ServiceName": "Bad Name"}]}), "has an invalid name"),
        (json!({"AuthMethod": "x"}), "AuthMethod field is disallowed outside of login"),
    ] {
        refused(&put(&api, "/v1/acl/token", body.clone()).await, 400, msg);
    }
    assert_eq!(len(&api.get("/v1/acl/tokens").await.expect("tokens")), tokens_before, "refusals changed nothing");
    let read = ok(&api.get(&format!("/v1/acl/token/{acc}")).await.expect("read"));
    assert_eq!(read["SecretID"], sec.as_str());
    let expanded = ok(&api.get(&format!("/v1/acl/token/{acc}?expanded")).await.expect("expanded"));
    assert_eq!(expanded["ExpandedPolicies"][0]["ID"], pid.as_str());
    assert_eq!(expanded["ExpandedRoles"][0]["ID"], rid.as_str());
    let me = ok(&api.get(&format!("/v1/acl/token/self?token={sec}")).await.expect("self"));
    assert_eq!(me["AccessorID"], acc.as_str());
    let upd = ok(&put(
        &api,
        &format!("/v1/acl/token/{acc}"),
        json!({"Description": "app2", "Policies": [{"ID": pid}], "Roles": [{"Name": "web"}]}),
    )
    .await);
    assert_eq!((upd["Description"].as_str(), upd["SecretID"].as_str()), (Some("app2"), Some(sec.as_str())));
    assert_eq!(upd["ExpirationTime"], t["ExpirationTime"], "an update keeps the expiry");
    refused(&put(&api, &format!("/v1/acl/token/{acc}"), json!({"AccessorID": pid})).await, 400, "do not match");
    let clone = ok(&put(&api, &format!("/v1/acl/token/{acc}/clone"), json!({"Description": "copy"})).await);
    assert_ne!(clone["AccessorID"], acc.as_str());
    assert_eq!((clone["Description"].as_str(), &clone["Policies"]), (Some("copy"), &upd["Policies"]));
    assert_eq!(len(&api.get(&format!("/v1/acl/tokens?policy={pid}")).await.expect("tokens")), 2);
    // An update replaces the links (the clone copies the updated token).
    assert_eq!(len(&api.get(&format!("/v1/acl/tokens?role={rid}")).await.expect("tokens")), 2);
    assert_eq!(len(&api.get("/v1/acl/tokens?servicename=api").await.expect("tokens")), 0);
    assert_eq!(ok(&call(&api, Method::DELETE, &format!("/v1/acl/token/{acc}"), None).await), json!(true));
    refused(&api.get(&format!("/v1/acl/token/{acc}")).await.expect("read"), 403, "ACL not found");
    refused(&api.get(&format!("/v1/acl/token/self?token={sec}")).await.expect("self"), 403, "ACL not found");
    refused(
        &call(&api, Method::DELETE, "/v1/acl/token/00000000-0000-0000-0000-000000000002", None).await,
        400,
        "anonymous",
    );
    // A token may not delete itself; the management token is still there afterwards.
    let root_acc = ok(&api.get(&format!("/v1/acl/token/self?token={ROOT}")).await.expect("self"))["AccessorID"]
        .as_str()
        .expect("accessor")
        .to_string();
    refused(
        &call(&api, Method::DELETE, &format!("/v1/acl/token/{root_acc}?token={ROOT}"), None).await,
        400,
        "Deletion of the request's authorization token is not permitted",
    );
    ok(&api.get(&format!("/v1/acl/token/self?token={ROOT}")).await.expect("self"));

    // Deleting the policy drops it from what links to it.
    ok(&call(&api, Method::DELETE, &format!("/v1/acl/policy/{pid}"), None).await);
    refused(&api.get(&format!("/v1/acl/policy/{pid}")).await.expect("read"), 403, "ACL not found");
    assert!(ok(&api.get(&format!("/v1/acl/role/{rid}")).await.expect("role")).get("Policies").is_none());
    ok(&call(&api, Method::DELETE, &format!("/v1/acl/role/{rid}"), None).await);

    // Templated policies, replication, the removed translate endpoint.
    let templates = ok(&api.get("/v1/acl/templated-policies").await.expect("templates"));
    assert!(templates["builtin/service"]["Schema"].as_str().is_some());
    ok(&api.get("/v1/acl/templated-policy/name/builtin/service").await.expect("template"));
    let preview =
        ok(&call(&api, Method::POST, "/v1/acl/templated-policy/preview/builtin/service", Some(json!({"Name": "api"})))
            .await);
    assert!(preview["Rules"].as_str().is_some_and(|r| r.contains("service \"api\"")));
    let repl = ok(&api.get("/v1/acl/replication").await.expect("replication"));
    assert_eq!((repl["Running"].as_bool(), repl["SourceDatacenter"].as_str()), (Some(false), Some("dc1")));
    assert_eq!(call(&api, Method::POST, "/v1/acl/rules/translate", Some(json!("x"))).await.status, 404);
    c.shutdown().await;
}

/// A fresh P-256 key: (PKCS#8 DER, SPKI PEM).
fn p256() -> (Vec<u8>, String) {
    use base64::Engine as _;
    use ring::signature::KeyPair as _;
    let rng = ring::rand::SystemRandom::new();
    let alg = &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING;
    let pkcs8 = ring::signature::EcdsaKeyPair::generate_pkcs8(alg, &rng).expect("generate");
    let pair = ring::signature::EcdsaKeyPair::from_pkcs8(alg, pkcs8.as_ref(), &rng).expect("parse");
    // SubjectPublicKeyInfo header for an uncompressed P-256 point.
    let mut spki = vec![
        0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a, 0x86, 0x48,
        0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
    ];
    spki.extend_from_slice(pair.public_key().as_ref());
    let b64 = base64::engine::general_purpose::STANDARD.encode(&spki);
    (pkcs8.as_ref().to_vec(), format!("-----BEGIN PUBLIC KEY-----\n{b64}\n-----END PUBLIC KEY-----\n"))
}

fn sign(der: &[u8], claims: &Value) -> String {
    let key = jsonwebtoken::EncodingKey::from_ec_der(der);
    jsonwebtoken::encode(&jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256), claims, &key).expect("sign")
}

/// Login with a signed JWT gives a token with what the binding rules bind; logout deletes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t99_acl_jwt_login_logout() {
    let c = Cluster::start_with(1, acl_opts()).await;
    let api = c.api(0).with_token(ROOT);
    wait_initialized(&api).await;
    let pid = ok(&put(&api, "/v1/acl/policy", json!({"Name": "admin-read", "Rules": ""})).await)["ID"].clone();
    let (der, pem) = p256();
    let config = json!({"JWTValidationPubKeys": [pem], "JWTSupportedAlgs": ["ES256"], "BoundIssuer": "https://idp",
        "BoundAudiences": ["consul"], "ClaimMappings": {"sub": "name"}, "ListClaimMappings": {"groups": "groups"}});
    refused(
        &put(&api, "/v1/acl/auth-method", json!({"Name": "k8s", "Type": "kubernetes", "Config": {}})).await,
        400,
        "Invalid Auth Method: Config.Host is required",
    );
    refused(
        &put(
            &api,
            "/v1/acl/auth-method",
            json!({"Name": "oidc", "Type": "jwt", "Config": {"OIDCDiscoveryURL": "https://idp/"}}),
        )
        .await,
        400,
        "OIDCDiscoveryURL is not supported",
    );
    let m = ok(&put(
        &api,
        "/v1/acl/auth-method",
        json!({"Name": "idp", "Type": "jwt", "MaxTokenTTL": "1h",
        "TokenLocality": "global", "Config": config}),
    )
    .await);
    assert_eq!((m["Type"].as_str(), m["MaxTokenTTL"].as_str()), (Some("jwt"), Some("1h0m0s")));
    assert_eq!(len(&api.get("/v1/acl/auth-methods").await.expect("methods")), 1);
    ok(&put(
        &api,
        "/v1/acl/binding-rule",
        json!({"AuthMethod": "idp", "BindType": "policy", "BindName": "admin-read",
        "Selector": "\"admins\" in list.groups"}),
    )
    .await);
    ok(&put(
        &api,
        "/v1/acl/binding-rule",
        json!({"AuthMethod": "idp", "BindType": "service", "BindName": "svc-${value.name}"}),
    )
    .await);
    refused(
        &put(&api, "/v1/acl/binding-rule", json!({"AuthMethod": "idp", "BindType": "cat", "BindName": "x"})).await,
        400,
        "unknown BindType",
    );
    refused(
        &put(
            &api,
            "/v1/acl/binding-rule",
            json!({"AuthMethod": "idp", "BindType": "service", "BindName": "x", "Selector": "value.name =="}),
        )
        .await,
        400,
        "Selector is invalid",
    );
    refused(
        &put(
            &api,
            "/v1/acl/binding-rule",
            json!({"AuthMethod": "idp", "BindType": "service", "BindName": "${value.nope}"}),
        )
        .await,
        400,
        "invalid BindName",
    );
    assert_eq!(len(&api.get("/v1/acl/binding-rules?authmethod=idp").await.expect("rules")), 2);

    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("time").as_secs();
    let jwt = sign(
        &der,
        &json!({"iss": "https://idp", "aud": "consul", "sub": "web", "groups": ["admins"], "exp": now + 300}),
    );
    let login = |bearer: String| {
        let api = api.clone();
        async move {
            call(
                &api,
                Method::POST,
                "/v1/acl/login",
                Some(json!({"AuthMethod": "idp", "BearerToken": bearer, "Meta": {"host": "h1"}})),
            )
            .await
        }
    };
    let t = ok(&login(jwt.clone()).await);
    assert_eq!(t["AuthMethod"], "idp");
    assert_eq!(t["Policies"], json!([{"ID": pid, "Name": "admin-read"}]));
    assert_eq!(t["ServiceIdentities"], json!([{"ServiceName": "svc-web"}]));
    assert_eq!(t["Local"], false);
    assert!(t["ExpirationTime"].as_str().is_some(), "MaxTokenTTL sets the expiry");
    assert_eq!(t["Description"], "token created via login: {\"host\":\"h1\"}");
    assert_eq!(len(&api.get("/v1/acl/tokens?authmethod=idp").await.expect("tokens")), 1);

    let (other, _) = p256();
    refused(
        &login(sign(&other, &json!({"iss": "https://idp", "aud": "consul", "sub": "web"}))).await,
        403,
        "Permission denied",
    );
    refused(&login(sign(&der, &json!({"iss": "https://evil", "aud": "consul", "sub": "web"}))).await, 403, "issuer");
    refused(
        &login(sign(&der, &json!({"iss": "https://idp", "aud": "consul", "exp": now - 3600}))).await,
        403,
        "expired",
    );
    refused(
        &call(&api, Method::POST, "/v1/acl/login", Some(json!({"AuthMethod": "idp"}))).await,
        400,
        "Missing auth method bearer token",
    );

    let secret = t["SecretID"].as_str().expect("secret");
    refused(
        &call(&api, Method::POST, &format!("/v1/acl/logout?token={ROOT}"), None).await,
        403,
        "token wasn't created via login",
    );
    ok(&call(&api, Method::POST, &format!("/v1/acl/logout?token={secret}"), None).await);
    refused(&api.get(&format!("/v1/acl/token/self?token={secret}")).await.expect("self"), 403, "ACL not found");
    refused(&call(&api, Method::POST, &format!("/v1/acl/logout?token={secret}"), None).await, 403, "ACL not found");

    // Deleting the auth method deletes its rules and tokens.
    ok(&login(jwt).await);
    ok(&call(&api, Method::DELETE, "/v1/acl/auth-method/idp", None).await);
    assert_eq!(len(&api.get("/v1/acl/binding-rules").await.expect("rules")), 0);
    assert_eq!(len(&api.get("/v1/acl/tokens?authmethod=idp").await.expect("tokens")), 0);
    c.shutdown().await;
}

/// Three servers: two concurrent bootstraps, exactly one wins; a bootstrap sent to a follower
/// is answered by the leader (its reset file counts); a token created on the leader is readable
/// by secret on every follower.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t99_acl_three_servers() {
    let c = Cluster::start_with(3, acl_opts()).await;
    let leader = c.leader().await;
    let followers = c.followers().await;
    for i in 0..3 {
        wait_initialized(&c.api(i)).await;
    }
    let (a, b) = (c.api(followers[0]).with_token(ROOT), c.api(leader).with_token(ROOT));
    // The initial management token bootstrapped the cluster; the reset file on the leader
    // allows one more bootstrap, which the two race for.
    let initial = call(&a, Method::PUT, "/v1/acl/bootstrap", None).await;
    refused(&initial, 403, "no longer allowed");
    let initial_index =
        initial.text().rsplit("reset index: ").next().map(|s| s.trim().trim_end_matches(')').to_string());
    std::fs::write(c.data_dir(leader).join("acl-bootstrap-reset"), initial_index.expect("reset index")).expect("write");
    let (ra, rb) = tokio::join!(
        call(&a, Method::PUT, "/v1/acl/bootstrap", None),
        call(&b, Method::PUT, "/v1/acl/bootstrap", None)
    );
    let mut statuses = [ra.status, rb.status];
    statuses.sort_unstable();
    assert_eq!(statuses, [200, 403], "{} / {}", ra.text(), rb.text());
    // The reset file is read on the leader, wherever the bootstrap request arrives.
    let denied = call(&a, Method::PUT, "/v1/acl/bootstrap", None).await;
    refused(&denied, 403, "no longer allowed");
    let reset_index = denied.text().rsplit("reset index: ").next().map(|s| s.trim().trim_end_matches(')').to_string());
    let file = c.data_dir(leader).join("acl-bootstrap-reset");
    std::fs::write(&file, reset_index.expect("reset index")).expect("write");
    ok(&call(&a, Method::PUT, "/v1/acl/bootstrap", None).await);
    assert!(!file.exists(), "the leader used up its reset file");

    let t = ok(&put(&c.api(leader).with_token(ROOT), "/v1/acl/token", json!({"Description": "everywhere"})).await);
    let secret = t["SecretID"].as_str().expect("secret").to_string();
    for f in followers {
        let api = c.api(f).with_token(ROOT);
        let path = format!("/v1/acl/token/self?token={secret}");
        let got = eventually(Duration::from_secs(10), "token on follower", || async {
            let r = api.get(&path).await.ok()?;
            (r.status == 200).then(|| r.json())
        })
        .await;
        assert_eq!(got["AccessorID"], t["AccessorID"]);
    }
    c.shutdown().await;
}
