//! The console on a client agent: served by the client itself (pages and assets), while the
//! `/v1/internal/ui/*` summaries it loads are forwarded to a server. Embedded agents leave the
//! console off unless asked.

use std::time::Duration;

use consul_core::agent::Agent;
use consul_core::config::AgentConfig;
use consul_tests::client::Api;
use consul_tests::inproc::client_agent_config;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t98_client_agents_serve_the_console_and_forward_its_data() {
    let server =
        Agent::start(AgentConfig { node_name: "srv".into(), ..AgentConfig::dev_any_port() }).await.expect("server");
    let server_api = Api::new(server.http_addr());
    // Embedded agents (bindings, tests) have no console unless they ask for one.
    let root = server_api.get("/").await.expect("root");
    assert_eq!((root.status, root.text()), (200, consul_core::api::http::ui::UI_DISABLED_TEXT.to_string()));
    assert_eq!(server_api.get("/ui/").await.expect("ui").status, 404);

    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = client_agent_config("cli", dir.path(), server.serf_addr());
    config.ui.enabled = true;
    let client = Agent::start(config).await.expect("client");
    client.wait_for_leader(Duration::from_secs(30)).await.expect("the client reaches a leader");
    let api = Api::new(client.http_addr());

    let page = api.get("/ui/dc1/services").await.expect("page");
    assert_eq!(page.status, 200);
    let html = page.text();
    assert!(html.contains("&quot;NodeName&quot;:&quot;cli&quot;"), "the client renders its own page: {html}");
    let start = html.find("src=\"").expect("script") + 5;
    let src = &html[start..start + html[start..].find('"').expect("quote")];
    let asset = api.get(src).await.expect("asset");
    assert_eq!(asset.status, 200);
    assert_eq!(asset.header("Cache-Control").as_deref(), Some("public, max-age=31536000, immutable"));

    let reg = json!({"Node": "ext", "Address": "10.1.1.1", "Service": {"ID": "api1", "Service": "api"}});
    let r = api.request(reqwest::Method::PUT, "/v1/catalog/register", Some(reg.to_string().into_bytes())).await;
    assert_eq!(r.expect("register").status, 200);
    let services = api.get("/v1/internal/ui/services").await.expect("services");
    assert_eq!(services.status, 200, "{}", services.text());
    let list = services.json();
    let line = list.as_array().and_then(|l| l.iter().find(|s| s["Name"] == "api")).expect("api summarised");
    assert_eq!((&line["InstanceCount"], &line["Nodes"]), (&json!(1), &json!(["ext"])));
    let node = api.get("/v1/internal/ui/node/ext").await.expect("node");
    assert_eq!((node.status, &node.json()["Address"]), (200, &json!("10.1.1.1")));

    client.shutdown().await.expect("client shutdown");
    server.shutdown().await.expect("server shutdown");
}
