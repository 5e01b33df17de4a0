//! Docker checks (`DockerContainerID` + `Args`) against a Docker Engine API on a unix socket:
//! the exec is created with the check's arguments, its multiplexed output becomes the check's
//! output and its exit code the status (0 passing, 1 warning, else critical); a missing
//! container is critical with the reason; registration is refused without script checks or
//! with a `DOCKER_HOST` that is not a unix socket, and accepted (critical, naming the socket)
//! while the socket does not exist, as in Consul.
//!
//! The engine here is a stand-in serving the three Engine API calls a check makes (create
//! exec, start it, inspect its exit code), since CI machines have no Docker daemon; it checks
//! the requests it gets as the real engine would need them.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use consul_core::agent::Agent;
use consul_core::config::AgentConfig;
use consul_tests::client::Api;
use consul_tests::eventually;
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response};
use reqwest::Method;
use serde_json::{json, Value};

/// The stand-in engine: containers it knows, and every exec command it was asked to create.
#[derive(Default)]
struct Engine {
    commands: Mutex<Vec<Vec<String>>>,
}

fn reply(status: u16, body: Vec<u8>) -> Response<Full<Bytes>> {
    Response::builder().status(status).body(Full::new(Bytes::from(body))).expect("response")
}

async fn serve(engine: Arc<Engine>, req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let (parts, body) = req.into_parts();
    let body = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    let path = parts.uri.path().to_string();
    let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    Ok(match (parts.method.as_str(), segs.as_slice()) {
        ("POST", ["containers", "web1", "exec"]) => {
            let v: Value = serde_json::from_slice(&body).unwrap_or_default();
            let cmd: Vec<String> = serde_json::from_value(v["Cmd"].clone()).unwrap_or_default();
            if v["AttachStdout"] != true || v["AttachStderr"] != true {
                return Ok(reply(400, b"{\"message\":\"attach stdout and stderr\"}".to_vec()));
            }
            let mut cmds = engine.commands.lock().expect("lock");
            cmds.push(cmd);
            reply(201, json!({"Id": format!("exec{}", cmds.len() - 1)}).to_string().into_bytes())
        }
        ("POST", ["containers", _, "exec"]) => reply(404, b"{\"message\":\"No such container\"}".to_vec()),
        ("POST", ["exec", id, "start"]) => {
            let n: usize = id.trim_start_matches("exec").parse().unwrap_or(0);
            let cmd = engine.commands.lock().expect("lock")[n].join(" ");
            // Docker's multiplexed stream: stdout then stderr frames.
            let mut out = vec![1, 0, 0, 0];
            let text = format!("ran {cmd}");
            out.extend_from_slice(&(text.len() as u32).to_be_bytes());
            out.extend_from_slice(text.as_bytes());
            out.extend_from_slice(&[2, 0, 0, 0, 0, 0, 0, 4]);
            out.extend_from_slice(b" err");
            reply(200, out)
        }
        ("GET", ["exec", id, "json"]) => {
            let n: usize = id.trim_start_matches("exec").parse().unwrap_or(0);
            let code = match engine.commands.lock().expect("lock")[n].first().map(String::as_str) {
                Some("ok") => 0,
                Some("warn") => 1,
                _ => 2,
            };
            reply(200, json!({"ExitCode": code, "Running": false}).to_string().into_bytes())
        }
        _ => reply(404, b"{\"message\":\"page not found\"}".to_vec()),
    })
}

/// The check once it ran (has output) with status `want`.
async fn status_of(api: &Api, id: &str, want: &str) -> Value {
    eventually(Duration::from_secs(10), &format!("check {id} {want}"), || async {
        let r = api.get("/v1/agent/checks").await.ok()?;
        let v: Value = serde_json::from_slice(&r.body).ok()?;
        (v[id]["Status"] == want && v[id]["Output"] != "").then(|| v[id].clone())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t94_docker_checks_through_the_engine_api() {
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("docker.sock");
    let listener = tokio::net::UnixListener::bind(&socket).expect("bind");
    let engine = Arc::new(Engine::default());
    let server = {
        let engine = engine.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let engine = engine.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req| serve(engine.clone(), req));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                        .await;
                });
            }
        })
    };
    let mut config = AgentConfig::dev_any_port();
    config.enable_script_checks = true;
    config.docker_host = Some(format!("unix://{}", socket.display()));
    let agent = Agent::start(config).await.expect("agent");
    let api = Api::new(agent.http_addr());
    let register = |body: Value| {
        let api = api.clone();
        async move {
            api.request(Method::PUT, "/v1/agent/check/register", Some(body.to_string().into_bytes()))
                .await
                .expect("put")
        }
    };
    for (id, container, args) in
        [("d-ok", "web1", vec!["ok", "-x"]), ("d-warn", "web1", vec!["warn"]), ("d-gone", "nope", vec!["ok"])]
    {
        let r = register(json!({"ID": id, "Name": id, "DockerContainerID": container, "Shell": "/bin/bash",
            "Args": args, "Interval": "100ms"}))
        .await;
        assert_eq!(r.status, 200, "{id}: {}", r.text());
    }
    let ok = status_of(&api, "d-ok", "passing").await;
    assert_eq!(ok["Output"], "ran ok -x err");
    assert_eq!(ok["Type"], "docker");
    let warn = status_of(&api, "d-warn", "warning").await;
    assert_eq!(warn["Output"], "ran warn err");
    let gone = status_of(&api, "d-gone", "critical").await;
    assert!(gone["Output"].as_str().expect("output").contains("no such container"), "{gone}");
    assert!(engine.commands.lock().expect("lock").iter().any(|c| c == &["ok", "-x"]));

    // Without Args: refused with the reason.
    let r = register(json!({"Name": "x", "DockerContainerID": "web1", "Interval": "1s"})).await;
    assert!(r.status == 400 && r.text().contains("Args"), "{}", r.text());
    agent.shutdown().await.expect("shutdown");

    // Script checks off: refused, as Consul does for Docker checks.
    let mut config = AgentConfig::dev_any_port();
    config.docker_host = Some(format!("unix://{}", socket.display()));
    let agent = Agent::start(config).await.expect("agent");
    let api = Api::new(agent.http_addr());
    let body = json!({"Name": "d", "DockerContainerID": "web1", "Args": ["ok"], "Interval": "1s"});
    let r =
        api.request(Method::PUT, "/v1/agent/check/register", Some(body.to_string().into_bytes())).await.expect("put");
    assert!(r.status == 400 && r.text().contains("enable_script_checks"), "{}", r.text());
    agent.shutdown().await.expect("shutdown");

    // No Docker engine socket: accepted as Consul does (Docker may start after the agent), and
    // critical with an output naming the socket and DOCKER_HOST until the engine is there.
    let mut config = AgentConfig::dev_any_port();
    config.enable_script_checks = true;
    config.docker_host = Some(format!("unix://{}", dir.path().join("absent.sock").display()));
    let agent = Agent::start(config).await.expect("agent");
    let api = Api::new(agent.http_addr());
    let r =
        api.request(Method::PUT, "/v1/agent/check/register", Some(body.to_string().into_bytes())).await.expect("put");
    assert_eq!(r.status, 200, "{}", r.text());
    let check = status_of(&api, "d", "critical").await;
    assert_eq!(check["Type"], "docker", "{check}");
    let output = check["Output"].as_str().unwrap_or("");
    assert!(output.contains("absent.sock") && output.contains("DOCKER_HOST"), "{check}");
    agent.shutdown().await.expect("shutdown");

    // A DOCKER_HOST that is not a unix socket: refused at registration, naming it.
    let mut config = AgentConfig::dev_any_port();
    config.enable_script_checks = true;
    config.docker_host = Some("tcp://127.0.0.1:2375".to_string());
    let agent = Agent::start(config).await.expect("agent");
    let api = Api::new(agent.http_addr());
    let r =
        api.request(Method::PUT, "/v1/agent/check/register", Some(body.to_string().into_bytes())).await.expect("put");
    assert!(r.status == 400 && r.text().contains("DOCKER_HOST") && r.text().contains("unix://"), "{}", r.text());
    agent.shutdown().await.expect("shutdown");
    server.abort();
}
