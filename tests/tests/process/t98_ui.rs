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
