//! The web console's serving half: `/ui/` on a real `consul-rs agent -dev` (the page with its
//! settings, hashed immutable assets in brotli or gzip, 304s, SPA paths, redirects, 405),
//! `-ui-content-path`, `-ui-dir`, no token needed with ACLs on, and Consul's "UI disabled" text
//! on an agent without `-ui`.

use std::process::{Command, Stdio};

use consul_tests::process::{binary, DevAgent, ProcCluster};
use reqwest::header::HeaderMap;
use serde_json::Value;

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .tls_backend_preconfigured(consul_core::tls::plain_client_tls())
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("reqwest client")
}

/// One answer, read whole.
struct Got {
    status: u16,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl Got {
    fn header(&self, name: &str) -> &str {
        self.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

async fn request(method: reqwest::Method, port: u16, path: &str, headers: &[(&str, &str)]) -> Got {
    let mut req = client().request(method, format!("http://127.0.0.1:{port}{path}"));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.send().await.expect("request");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.bytes().await.expect("body").to_vec();
    Got { status, headers, body }
}

async fn get(port: u16, path: &str, headers: &[(&str, &str)]) -> Got {
    request(reqwest::Method::GET, port, path, headers).await
}

/// The settings the page carries in `<meta name="consul-rs-ui-config" content="…">`.
fn page_config(html: &str) -> Value {
    let tag = html.find("name=\"consul-rs-ui-config\"").expect("config meta tag");
    let start = html[tag..].find("content=\"").expect("content attribute") + tag + "content=\"".len();
    let end = html[start..].find('"').expect("closing quote") + start;
    let raw = html[start..end].replace("&quot;", "\"").replace("&#39;", "'").replace("&lt;", "<").replace("&gt;", ">");
    serde_json::from_str(&raw.replace("&amp;", "&")).expect("config JSON")
}

/// The `src` of the page's module script (`<prefix>app.js`).
fn script_src(html: &str) -> String {
    let start = html.find("src=\"").expect("script src") + "src=\"".len();
    let end = html[start..].find('"').expect("closing quote") + start;
    html[start..end].to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_agent_serves_the_console_with_cached_compressed_assets() {
    let agent = DevAgent::start_with(&["-node", "ui-node"]).await;
    let port = agent.http;

    let page = get(port, "/ui/", &[]).await;
    assert_eq!(page.status, 200);
    assert_eq!(page.header("content-type"), "text/html; charset=utf-8");
    assert_eq!(page.header("cache-control"), "no-cache");
    let html = page.text();
    let config = page_config(&html);
    assert_eq!(config["Datacenter"], "dc1");
    assert_eq!(config["LocalDatacenter"], "dc1");
    assert_eq!(config["NodeName"], "ui-node");
    assert_eq!(config["ContentPath"], "/ui/");
    assert_eq!(config["ACLsEnabled"], false);
    assert!(config["Version"].as_str().is_some_and(|v| !v.is_empty()), "{config}");
    let src = script_src(&html);
    assert!(src.starts_with("/ui/assets/") && src.ends_with("/app.js"), "{src}");

    // The page again, gzip-compressed when asked.
    let gz = get(port, "/ui/", &[("accept-encoding", "gzip")]).await;
    assert_eq!((gz.status, gz.header("content-encoding")), (200, "gzip"));
    assert_eq!(gz.header("vary"), "Accept-Encoding");

    // Client-side routes, KV keys with dots included, all answer the page.
    for path in ["/ui/dc1/services", "/ui/dc1/services/web/instances", "/ui/dc1/kv/a.b/edit", "/ui/dc1/nodes/n.1"] {
        let got = get(port, path, &[]).await;
        assert_eq!((got.status, got.text()), (200, html.clone()), "{path}");
    }

    // The hashed asset: immutable, brotli when preferred, gzip when only that is accepted.
    let plain = get(port, &src, &[]).await;
    assert_eq!(plain.status, 200);
    assert_eq!(plain.header("content-type"), "text/javascript; charset=utf-8");
    assert_eq!(plain.header("cache-control"), "public, max-age=31536000, immutable");
    assert_eq!(plain.header("content-encoding"), "");
    let br = get(port, &src, &[("accept-encoding", "gzip, deflate, br")]).await;
    assert_eq!((br.status, br.header("content-encoding")), (200, "br"));
    assert!(br.body.len() < plain.body.len());
    let gz = get(port, &src, &[("accept-encoding", "gzip;q=1, br;q=0")]).await;
    assert_eq!((gz.status, gz.header("content-encoding")), (200, "gzip"));
    let mut decoded = String::new();
    std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(&gz.body[..]), &mut decoded).expect("gunzip");
    assert_eq!(decoded.as_bytes(), &plain.body[..]);

    // Revalidation.
    let etag = br.header("etag").to_string();
    assert!(etag.starts_with('"'), "{etag}");
    let again = get(port, &src, &[("accept-encoding", "br"), ("if-none-match", &etag)]).await;
    assert_eq!(again.status, 304);
    assert!(again.body.is_empty());
    let page_etag = page.header("etag").to_string();
    assert_eq!(get(port, "/ui/dc1/services", &[("if-none-match", &page_etag)]).await.status, 304);

    // Unknown assets are 404s, not the page.
    for path in ["/ui/assets/0000000000/app.js", &src.replace("app.js", "nope.js"), "/ui/assets/"] {
        let got = get(port, path, &[]).await;
        assert_eq!(got.status, 404, "{path}");
        assert!(got.header("content-type").starts_with("text/plain"), "{path}");
    }

    // Redirects, HEAD, and other methods.
    let bare = get(port, "/ui", &[]).await;
    assert_eq!((bare.status, bare.header("location")), (301, "/ui/"));
    let root = get(port, "/", &[]).await;
    assert_eq!((root.status, root.header("location")), (301, "/ui/"));
    let head = request(reqwest::Method::HEAD, port, "/ui/dc1/services", &[]).await;
    assert_eq!((head.status, head.header("content-type")), (200, "text/html; charset=utf-8"));
    assert!(head.body.is_empty());
    assert_eq!(request(reqwest::Method::POST, port, "/ui/", &[]).await.status, 405);
    assert_eq!(request(reqwest::Method::PUT, port, "/ui/dc1/services", &[]).await.status, 405);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn content_path_moves_the_console() {
    let agent = DevAgent::start_with(&["-ui-content-path", "console"]).await;
    let page = get(agent.http, "/console/dc1/kv/x/", &[]).await;
    assert_eq!(page.status, 200);
    let html = page.text();
    assert_eq!(page_config(&html)["ContentPath"], "/console/");
    let src = script_src(&html);
    assert!(src.starts_with("/console/assets/"), "{src}");
    assert_eq!(get(agent.http, &src, &[]).await.status, 200);
    let root = get(agent.http, "/", &[]).await;
    assert_eq!((root.status, root.header("location")), (301, "/console/"));
    assert_eq!(get(agent.http, "/ui/", &[]).await.status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ui_dir_serves_files_from_disk_at_request_time() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("console");
    std::fs::create_dir_all(dir.join("pages")).expect("mkdir");
    std::fs::write(
        dir.join("index.html"),
        "<html><head><meta name=\"consul-rs-ui-config\" content=\"%CONSUL_RS_UI_CONFIG%\">\
         <script type=\"module\" src=\"%CONSUL_RS_ASSETS%app.js\"></script></head><body>from-disk</body></html>",
    )
    .expect("write");
    std::fs::write(dir.join("app.js"), "export const v = 1;").expect("write");
    std::fs::write(dir.join("pages/kv.js"), "export const kv = 1;").expect("write");
    std::fs::write(tmp.path().join("secret.txt"), "secret").expect("write");
    std::os::unix::fs::symlink(tmp.path().join("secret.txt"), dir.join("leak.txt")).expect("symlink");

    let agent = DevAgent::start_with(&["-ui-dir", dir.to_str().expect("utf-8")]).await;
    let page = get(agent.http, "/ui/dc1/services", &[]).await;
    assert_eq!((page.status, page.header("cache-control")), (200, "no-cache"));
    let html = page.text();
    assert!(html.contains("from-disk"), "{html}");
    assert_eq!(page_config(&html)["Datacenter"], "dc1");
    let src = script_src(&html);
    let app = get(agent.http, &src, &[]).await;
    assert_eq!(
        (app.status, app.text().as_str(), app.header("cache-control")),
        (200, "export const v = 1;", "no-cache")
    );

    // Read at request time: a change shows without a restart.
    std::fs::write(dir.join("pages/kv.js"), "export const kv = 2;").expect("write");
    let kv = get(agent.http, &src.replace("app.js", "pages/kv.js"), &[]).await;
    assert_eq!((kv.status, kv.text().as_str()), (200, "export const kv = 2;"));

    // A symlink out of the directory and a missing file are 404s.
    assert_eq!(get(agent.http, &src.replace("app.js", "leak.txt"), &[]).await.status, 404);
    assert_eq!(get(agent.http, &src.replace("app.js", "missing.js"), &[]).await.status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_ui_dir_is_refused_at_start() {
    let out = Command::new(binary())
        .args(["agent", "-dev", "-ui-dir", "/nonexistent/console-dir"])
        .stdin(Stdio::null())
        .output()
        .expect("run agent");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("ui_config.dir") && stderr.contains("/nonexistent/console-dir"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_needs_no_token_when_acls_deny_by_default() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let config = tmp.path().join("acl.json");
    std::fs::write(
        &config,
        r#"{"acl": {"enabled": true, "default_policy": "deny", "tokens": {"initial_management": "root-secret"}}}"#,
    )
    .expect("write");
    let agent = DevAgent::start_with(&["-config-file", config.to_str().expect("utf-8")]).await;
    let page = get(agent.http, "/ui/dc1/acls/tokens", &[]).await;
    assert_eq!(page.status, 200);
    assert_eq!(page_config(&page.text())["ACLsEnabled"], true);
    assert_eq!(get(agent.http, &script_src(&page.text()), &[]).await.status, 200);
    assert_eq!(get(agent.http, "/", &[]).await.status, 301);
    // The API behind it still wants a token.
    assert_eq!(get(agent.http, "/v1/agent/self", &[]).await.status, 403);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_without_ui_answers_consuls_disabled_text() {
    let cluster = ProcCluster::start(1).await;
    let port: u16 = cluster.http_addr(0).rsplit(':').next().and_then(|p| p.parse().ok()).expect("http port");
    let root = get(port, "/", &[]).await;
    assert_eq!(root.status, 200);
    assert_eq!(root.text(), consul_core::api::http::ui::UI_DISABLED_TEXT);
    assert!(root.text().starts_with("Consul Agent: UI disabled."));
    assert_eq!(get(port, "/ui/", &[]).await.status, 404);
}

/// Registers the catalog the internal-endpoint tests read: `web` on n1 and n2 (n1's has a
/// passing check and an external source, n2's a critical one), `db` on n2, a proxy for `web`
/// on n1, and a warning node check on n1.
async fn seed_catalog(api: &consul_tests::client::Api) {
    let regs = [
        serde_json::json!({
            "Node": "n1", "Address": "10.0.0.1",
            "Service": {"ID": "web1", "Service": "web", "Tags": ["b", "a"], "Meta": {"external-source": "k8s"}},
            "Checks": [
                {"CheckID": "web1-http", "Name": "http", "Status": "passing", "ServiceID": "web1"},
                {"CheckID": "disk", "Name": "disk", "Status": "warning"},
            ],
        }),
        serde_json::json!({
            "Node": "n1", "Address": "10.0.0.1",
            "Service": {"ID": "web-proxy1", "Service": "web-proxy", "Kind": "connect-proxy", "Port": 21000,
                        "Proxy": {"DestinationServiceName": "web"}},
        }),
        serde_json::json!({
            "Node": "n2", "Address": "10.0.0.2",
            "Service": {"ID": "web2", "Service": "web", "Tags": ["a", "c"]},
            "Checks": [{"CheckID": "web2-http", "Name": "http", "Status": "critical", "ServiceID": "web2"}],
        }),
        serde_json::json!({"Node": "n2", "Address": "10.0.0.2", "Service": {"ID": "db1", "Service": "db"}}),
    ];
    for r in regs {
        let resp = api.request(reqwest::Method::PUT, "/v1/catalog/register", Some(r.to_string().into_bytes())).await;
        let resp = resp.expect("register");
        assert_eq!(resp.status, 200, "{}", resp.text());
    }
}

/// The summary line of service `name`.
fn line<'a>(list: &'a Value, name: &str) -> &'a Value {
    list.as_array().and_then(|l| l.iter().find(|s| s["Name"] == name)).unwrap_or_else(|| panic!("{name} in {list}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn internal_ui_endpoints_summarise_the_catalog() {
    let agent = DevAgent::start_with(&["-node", "dev-node"]).await;
    let api = agent.api.clone();
    seed_catalog(&api).await;

    let resp = api.get("/v1/internal/ui/services").await.expect("services");
    assert_eq!(resp.status, 200, "{}", resp.text());
    let list = resp.json();
    let names: Vec<&str> = list.as_array().expect("list").iter().filter_map(|s| s["Name"].as_str()).collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted, "sorted by name");
    assert!(names.contains(&"db") && names.contains(&"web-proxy"), "{names:?}");
    let web = line(&list, "web");
    assert_eq!(web["Datacenter"], "dc1");
    assert_eq!(web["InstanceCount"], 2);
    assert_eq!(web["Nodes"], serde_json::json!(["n1", "n2"]));
    assert_eq!(web["Tags"], serde_json::json!(["a", "b", "c"]));
    assert_eq!(web["ExternalSources"], serde_json::json!(["k8s"]));
    // n1's node check counts once although both web1 and the proxy sit on n1.
    assert_eq!(
        (&web["ChecksPassing"], &web["ChecksWarning"], &web["ChecksCritical"]),
        (&1.into(), &1.into(), &1.into())
    );
    assert_eq!(web["ConnectedWithProxy"], true);
    assert_eq!(web["GatewayConfig"], serde_json::json!({}));
    assert!(web.get("Kind").is_none(), "Kind omitted for typical services: {web}");
    assert_eq!(line(&list, "web-proxy")["Kind"], "connect-proxy");
    assert_eq!(line(&list, "db")["InstanceCount"], 1);
    assert_eq!(line(&list, "db")["ConnectedWithProxy"], false);

    // ?filter= selects instances before they are summarised.
    let filtered = api.get("/v1/internal/ui/services?filter=Service.Tags%20contains%20c").await.expect("filter").json();
    assert_eq!(filtered.as_array().map(Vec::len), Some(1), "{filtered}");
    assert_eq!((&filtered[0]["Name"], &filtered[0]["InstanceCount"]), (&"web".into(), &1.into()));
    let bad = api.get("/v1/internal/ui/services?filter=Bogus%20==%201").await.expect("bad filter");
    assert_eq!(bad.status, 400, "{}", bad.text());

    // Blocking: a query at the current index returns once the catalog changes. The agent's
    // own start-up syncs may still be landing: first wait for a second with no change.
    let mut index = resp.index().expect("X-Consul-Index");
    for _ in 0..30 {
        let r = api.get(&format!("/v1/internal/ui/services?index={index}&wait=1s")).await.expect("settle");
        let now = r.index().expect("X-Consul-Index");
        if now == index {
            break;
        }
        index = now;
    }
    let waiter = {
        let api = api.clone();
        tokio::spawn(async move { api.get(&format!("/v1/internal/ui/services?index={index}&wait=60s")).await })
    };
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let reg = serde_json::json!({"Node": "n3", "Address": "10.0.0.3", "Service": {"ID": "cache1", "Service": "cache"}});
    let r = api.request(reqwest::Method::PUT, "/v1/catalog/register", Some(reg.to_string().into_bytes())).await;
    assert_eq!(r.expect("register").status, 200);
    let woke = waiter.await.expect("join").expect("blocking query");
    assert!(woke.index().expect("index") > index);
    line(&woke.json(), "cache");

    // Nodes, one node, a missing node.
    let nodes = api.get("/v1/internal/ui/nodes").await.expect("nodes");
    assert_eq!(nodes.status, 200);
    let nodes = nodes.json();
    let n1 = nodes.as_array().and_then(|l| l.iter().find(|n| n["Node"] == "n1")).expect("n1 in the dump");
    assert_eq!(n1["Address"], "10.0.0.1");
    assert_eq!(n1["Services"].as_array().map(Vec::len), Some(2), "{n1}");
    assert_eq!(n1["Checks"].as_array().map(Vec::len), Some(2), "{n1}");
    let only_n2 = api.get("/v1/internal/ui/nodes?filter=Node%20==%20n2").await.expect("filter").json();
    assert_eq!(only_n2.as_array().map(Vec::len), Some(1), "{only_n2}");
    let one = api.get("/v1/internal/ui/node/n2").await.expect("node");
    assert_eq!((one.status, one.json()["Services"].as_array().map(Vec::len)), (200, Some(2)));
    assert!(one.index().is_some());
    assert_eq!(api.get("/v1/internal/ui/node/nope").await.expect("missing").status, 404);

    // The overview: service instances by their own checks, nodes by their node checks.
    let overview = api.get("/v1/internal/ui/catalog-overview").await.expect("overview");
    assert_eq!(overview.status, 200, "{}", overview.text());
    let overview = overview.json();
    let web = overview["Services"].as_array().and_then(|l| l.iter().find(|s| s["Name"] == "web")).expect("web");
    assert_eq!(*web, serde_json::json!({"Name": "web", "Total": 2, "Passing": 1, "Warning": 0, "Critical": 1}));
    let nodes = &overview["Nodes"][0];
    assert_eq!((&nodes["Total"], &nodes["Warning"]), (&4.into(), &1.into()), "{overview}");
    let http = overview["Checks"].as_array().and_then(|l| l.iter().find(|s| s["Name"] == "http")).expect("http");
    assert_eq!((&http["Total"], &http["Passing"], &http["Critical"]), (&2.into(), &1.into(), &1.into()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn internal_ui_endpoints_show_only_what_the_token_may_read() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let config = tmp.path().join("acl.json");
    std::fs::write(
        &config,
        r#"{"acl": {"enabled": true, "default_policy": "deny", "tokens": {"initial_management": "root-secret"}}}"#,
    )
    .expect("write");
    let agent = DevAgent::start_with(&["-config-file", config.to_str().expect("utf-8")]).await;
    let root = agent.api.with_token("root-secret");
    seed_catalog(&root).await;
    let policy = serde_json::json!({"Name": "nodes-only", "Rules": "node_prefix \"\" { policy = \"read\" }"});
    let r = root.request(reqwest::Method::PUT, "/v1/acl/policy", Some(policy.to_string().into_bytes())).await;
    assert_eq!(r.expect("policy").status, 200);
    let token = serde_json::json!({"Policies": [{"Name": "nodes-only"}]});
    let r = root.request(reqwest::Method::PUT, "/v1/acl/token", Some(token.to_string().into_bytes())).await;
    let secret = r.expect("token").json()["SecretID"].as_str().expect("secret").to_string();
    let nodes_only = agent.api.with_token(&secret);

    let all = root.get("/v1/internal/ui/services").await.expect("services");
    line(&all.json(), "web");
    let none = nodes_only.get("/v1/internal/ui/services").await.expect("services");
    assert_eq!(none.status, 200);
    assert_eq!(none.json(), serde_json::json!([]));
    assert_eq!(none.header("X-Consul-Results-Filtered-By-ACLs").as_deref(), Some("true"));
    // Nodes are readable, their services are not.
    let n1 = nodes_only.get("/v1/internal/ui/node/n1").await.expect("node").json();
    assert_eq!(n1["Services"], serde_json::json!([]), "{n1}");
    assert_eq!(agent.api.get("/v1/internal/ui/node/n1").await.expect("anonymous").status, 404);
    assert_eq!(nodes_only.get("/v1/internal/ui/catalog-overview").await.expect("overview").status, 403);
    assert_eq!(root.get("/v1/internal/ui/catalog-overview").await.expect("overview").status, 200);
}

/// A one-request-at-a-time HTTP backend that answers `200 {"status":"success"}` and sends
/// each request's head (request line and headers, lower-cased) on the channel.
async fn fake_metrics_backend() -> (u16, tokio::sync::mpsc::UnboundedReceiver<String>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            let mut head = Vec::new();
            let mut buf = [0u8; 4096];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                match conn.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => head.extend_from_slice(&buf[..n]),
                }
            }
            let _ = tx.send(String::from_utf8_lossy(&head).to_ascii_lowercase());
            let body = r#"{"status":"success"}"#;
            let resp = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = conn.write_all(resp.as_bytes()).await;
        }
    });
    (port, rx)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_proxy_forwards_allowed_paths_without_the_token() {
    let (backend, mut seen) = fake_metrics_backend().await;
    let tmp = tempfile::tempdir().expect("tempdir");
    let config = tmp.path().join("ui.json");
    let json = serde_json::json!({
        "acl": {"enabled": true, "default_policy": "deny", "tokens": {"initial_management": "root-secret"}},
        "ui_config": {
            "metrics_provider": "prometheus",
            "metrics_proxy": {
                "base_url": format!("http://127.0.0.1:{backend}"),
                "add_headers": [{"name": "X-Scope-OrgID", "value": "tenant-1"}],
            },
        },
    });
    std::fs::write(&config, json.to_string()).expect("write");
    let agent = DevAgent::start_with(&["-config-file", config.to_str().expect("utf-8")]).await;
    let root = agent.api.with_token("root-secret");

    let page = get(agent.http, "/ui/", &[]).await;
    let ui_config = page_config(&page.text());
    assert_eq!(
        (&ui_config["MetricsProvider"], &ui_config["MetricsProxyEnabled"]),
        (&"prometheus".into(), &true.into())
    );

    let resp = root.get("/v1/internal/ui/metrics-proxy/api/v1/query?query=up").await.expect("proxied");
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(resp.json()["status"], "success");
    let head = seen.recv().await.expect("the backend saw the request");
    assert!(head.starts_with("get /api/v1/query?query=up http/1.1"), "{head}");
    assert!(head.contains("x-scope-orgid: tenant-1"), "{head}");
    assert!(!head.contains("root-secret") && !head.contains("x-consul-token"), "token forwarded: {head}");

    // Outside Prometheus' query paths: 403, nothing forwarded.
    let denied = root.get("/v1/internal/ui/metrics-proxy/api/v1/admin/tsdb/delete_series").await.expect("denied");
    assert_eq!(denied.status, 403);
    // Without a token that reads every node and service: 403.
    let anonymous = agent.api.get("/v1/internal/ui/metrics-proxy/api/v1/query?query=up").await.expect("anonymous");
    assert_eq!(anonymous.status, 403);
    assert!(seen.try_recv().is_err(), "nothing else reached the backend");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_proxy_is_404_when_not_configured() {
    let agent = DevAgent::start().await;
    let resp = agent.api.get("/v1/internal/ui/metrics-proxy/api/v1/query").await.expect("request");
    assert_eq!(resp.status, 404);
    assert!(resp.text().contains("Metrics proxy is not enabled"), "{}", resp.text());
}
