//! `consul-rs debug [-duration] [-interval] [-capture …] [-output] [-archive]`: records the
//! agent's state for operators into Consul's bundle layout (`command/debug`): a directory
//! (`consul-debug-<2006-01-02T15-04-05Z>` by default) with `agent.json`, `members.json`,
//! `host.json`, `metrics.json` (one `/v1/agent/metrics` sample per interval), `consul.log`
//! (the agent's log at TRACE for the duration) and `index.json`, then archived as
//! `<output>.tar.gz` (the directory removed) unless `-archive=false`.
//!
//! `pprof` (when the agent has `enable_debug` or ACLs, else dropped with Consul's warning):
//! `profile.prof` (a CPU profile over the whole duration) and `trace.out` (the agent's trace
//! over the duration) in the bundle, and `heap.prof` and `goroutine.prof` at the start and at
//! the end, each pair in a directory named by its time, as Consul lays them out.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, Context as _, Result};
use clap::{ArgAction, Args};
use consul_core::duration::{format_go_duration, parse_go_duration};
use serde_json::{json, Value};

use crate::api::{sdk_err, Client, ClientFlags, Verbatim};

/// Consul's `debugMinInterval`.
const MIN_INTERVAL: Duration = Duration::from_secs(5);
/// Consul's `debugMinDuration`.
const MIN_DURATION: Duration = Duration::from_secs(10);
/// Consul's `debugDurationGrace`: added to the duration so the last interval fits.
const GRACE: Duration = Duration::from_secs(2);
/// Consul's `debugProtocolVersion`.
const PROTOCOL_VERSION: u32 = 1;
/// Every target, in Consul's order (`cluster` is the deprecated name of `members`).
const TARGETS: &[&str] = &["metrics", "logs", "pprof", "host", "agent", "members"];

/// `debug` flags.
#[derive(Debug, Args)]
pub(crate) struct DebugArgs {
    #[command(flatten)]
    client: ClientFlags,
    /// How often to capture dynamic information (metrics). Go duration, at least 5s.
    #[arg(long, default_value = "30s", value_parser = go_duration)]
    interval: Duration,
    /// How long to record. Go duration, at least 10s.
    #[arg(long, default_value = "5m", value_parser = go_duration)]
    duration: Duration,
    /// What to capture (repeatable): metrics, logs, pprof, host, agent, members. Default: all.
    #[arg(long, action = ArgAction::Append, value_name = "TARGET")]
    capture: Vec<String>,
    /// The bundle's directory (and, archived, `<output>.tar.gz`).
    #[arg(long, value_name = "PATH")]
    output: Option<PathBuf>,
    /// Archive and compress the directory (then removed).
    #[arg(long, action = ArgAction::Set, num_args = 0..=1, require_equals = true,
          default_value = "true", default_missing_value = "true",
          value_parser = clap::builder::BoolishValueParser::new())]
    archive: bool,
}

fn go_duration(s: &str) -> std::result::Result<Duration, String> {
    parse_go_duration(s)
}

/// `consul-debug-2024-01-02T03-04-05Z`: RFC 3339 with hyphens for colons, as Consul names it.
fn default_output(unix_secs: i64) -> PathBuf {
    PathBuf::from(format!("consul-debug-{}", consul_core::wire::timestamp::format_secs(unix_secs).replace(':', "-")))
}

/// Consul's checks of the timing and the targets (`prepare`).
fn validate(interval: Duration, duration: Duration, capture: &[String]) -> Result<(), String> {
    if duration < MIN_DURATION {
        return Err(format!("duration must be longer than {}", format_go_duration(MIN_DURATION)));
    }
    if interval < MIN_INTERVAL {
        // Consul's message names the minimum duration here too.
        return Err(format!("interval must be longer than {}", format_go_duration(MIN_DURATION)));
    }
    if duration < interval {
        return Err(format!(
            "duration ({}) must be longer than interval ({})",
            format_go_duration(duration),
            format_go_duration(interval)
        ));
    }
    if let Some(t) = capture.iter().find(|t| !TARGETS.contains(&t.as_str()) && t.as_str() != "cluster") {
        return Err(format!("target not found: {t}"));
    }
    Ok(())
}

fn captures(capture: &[String], target: &str) -> bool {
    capture.iter().any(|t| t == target || (target == "members" && t == "cluster"))
}

fn write_json(path: &Path, v: &Value) -> Result<()> {
    let text = serde_json::to_string_pretty(v)?.replace("  ", "\t");
    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
}

async fn get_json(client: &Client, path: &str, query: &[(&str, Option<String>)]) -> Result<Value> {
    client.call("GET", path, query, None).await?.json()
}

/// Runs the command.
pub(crate) async fn run(a: DebugArgs) -> Result<u8> {
    let client = Client::new(&a.client)?;
    let fail = |m: String| anyhow!(Verbatim(format!("==> Capture validation failed: {m}")));
    validate(a.interval, a.duration, &a.capture).map_err(fail)?;
    let me = get_json(&client, "/v1/agent/self", &[])
        .await
        .map_err(|e| fail(format!("error querying target agent: {e:#}. verify connectivity and agent address")))?;
    let version =
        me["Config"]["Version"].as_str().ok_or_else(|| fail("agent response did not contain version key".into()))?;
    let mut capture: Vec<String> =
        if a.capture.is_empty() { TARGETS.iter().map(|t| t.to_string()).collect() } else { a.capture.clone() };
    let profiles_reachable =
        me["DebugConfig"]["EnableDebug"] == json!(true) || me["DebugConfig"]["ACLsEnabled"] == json!(true);
    if capture.iter().any(|t| t == "pprof") && !profiles_reachable {
        capture.retain(|t| t != "pprof");
        println!("==> [WARN] Unable to capture pprof. Set enable_debug to true on target agent to enable profiling.");
    }
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64);
    let output = a.output.clone().unwrap_or_else(|| default_output(now));
    if output.exists() {
        return Err(fail(format!("output directory already exists: {}", output.display())));
    }
    std::fs::create_dir_all(&output).map_err(|e| fail(format!("could not create output directory: {e}")))?;
    let archive_name = if a.archive { format!("{}.tar.gz", output.display()) } else { output.display().to_string() };

    println!("==> Starting debugger and capturing static information...");
    println!("     Agent Version: '{version}'");
    println!("          Interval: '{}'", format_go_duration(a.interval));
    println!("          Duration: '{}'", format_go_duration(a.duration));
    println!("            Output: '{archive_name}'");
    println!("           Capture: '{}'", capture.join(", "));

    let mut errors = Vec::new();
    if captures(&capture, "host") {
        match get_json(&client, "/v1/agent/host", &[]).await {
            Ok(v) => write_json(&output.join("host.json"), &v)?,
            Err(e) => errors.push(format!("{e:#}")),
        }
    }
    if captures(&capture, "agent") {
        write_json(&output.join("agent.json"), &me)?;
    }
    if captures(&capture, "members") {
        let wan = [("wan", Some("1".to_string()))];
        let members = match get_json(&client, "/v1/agent/members", &wan).await {
            Ok(v) => Ok(v),
            Err(_) => get_json(&client, "/v1/agent/members", &[]).await,
        };
        match members {
            Ok(v) => write_json(&output.join("members.json"), &v)?,
            Err(e) => errors.push(format!("{e:#}")),
        }
    }
    if !errors.is_empty() {
        println!("==> Static capture failed: {}", errors.join("; "));
    }

    let total = a.duration + GRACE;
    let logs = captures(&capture, "logs")
        .then(|| tokio::spawn(capture_logs(client.clone(), output.join("consul.log"), total)));
    let pprof =
        captures(&capture, "pprof").then(|| tokio::spawn(capture_pprof(client.clone(), output.clone(), a.duration)));
    if captures(&capture, "metrics") {
        capture_metrics(&client, &output.join("metrics.json"), a.interval, total).await?;
    } else if logs.is_some() {
        tokio::time::sleep(total).await;
    }
    for task in [logs, pprof].into_iter().flatten() {
        if let Ok(Err(e)) = task.await {
            println!("==> Error encountered during collection: {e:#}");
        }
    }

    let index = json!({
        "Version": PROTOCOL_VERSION,
        "AgentVersion": version,
        "Interval": format_go_duration(a.interval),
        "Duration": format_go_duration(total),
        "Targets": capture,
    });
    write_json(&output.join("index.json"), &index)?;
    if a.archive {
        archive(&output).map_err(|e| anyhow!(Verbatim(format!("==> Archive creation failed: {e:#}"))))?;
    }
    println!("    Saved debug archive: {archive_name}");
    Ok(0)
}

/// `consul.log`: the agent's log at TRACE for `total`.
async fn capture_logs(client: Client, path: PathBuf, total: Duration) -> Result<()> {
    use std::io::Write as _;
    let mut file = std::fs::File::create(&path).with_context(|| format!("cannot create {}", path.display()))?;
    let mut stream = client
        .sdk()
        .call_streaming("GET", "/v1/agent/monitor", &[("loglevel", Some("TRACE"))])
        .await
        .map_err(sdk_err)?;
    if !(200..300).contains(&stream.status) {
        return Err(anyhow!("monitor: unexpected response code {}", stream.status));
    }
    let deadline = tokio::time::Instant::now() + total;
    loop {
        let chunk = tokio::select! {
            c = stream.chunk() => c.map_err(sdk_err)?,
            _ = tokio::time::sleep_until(deadline) => return Ok(()),
        };
        match chunk {
            Some(bytes) => file.write_all(&bytes)?,
            None => return Ok(()),
        }
    }
}

/// The `pprof` target: the CPU profile and the trace over `duration`, while heap and thread
/// profiles are taken at the start and at the end, each pair in a `<time>/` directory.
async fn capture_pprof(client: Client, output: PathBuf, duration: Duration) -> Result<()> {
    let secs = duration.as_secs().max(1).to_string();
    let long = [("profile", "profile.prof"), ("trace", "trace.out")].map(|(name, file)| {
        let (client, path, secs) = (client.clone(), output.join(file), secs.clone());
        tokio::spawn(async move { save_profile(&client, name, &[("seconds", Some(secs))], &path).await })
    });
    snapshot_profiles(&client, &output).await?;
    for task in long {
        task.await.map_err(|e| anyhow!("profile task: {e}"))??;
    }
    snapshot_profiles(&client, &output).await
}

/// `heap.prof` and `goroutine.prof` now, in `<output>/<time>/`.
async fn snapshot_profiles(client: &Client, output: &Path) -> Result<()> {
    let dir = output.join(consul_core::wire::timestamp::format_secs(now_secs()).replace(':', "-"));
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    save_profile(client, "heap", &[], &dir.join("heap.prof")).await?;
    save_profile(client, "goroutine", &[], &dir.join("goroutine.prof")).await
}

/// One `/debug/pprof/<name>` download into `path`.
async fn save_profile(client: &Client, name: &str, query: &[(&str, Option<String>)], path: &Path) -> Result<()> {
    let resp = client.send("GET", &format!("/debug/pprof/{name}"), query, None).await?;
    if !(200..300).contains(&resp.status) {
        let why = String::from_utf8_lossy(&resp.body);
        return Err(anyhow!("pprof {name}: unexpected response code {}: {}", resp.status, why.trim()));
    }
    std::fs::write(path, &resp.body).with_context(|| format!("cannot write {}", path.display()))
}

/// `metrics.json`: one `/v1/agent/metrics` sample per interval, one JSON document per line.
/// An agent without the endpoint (404) gets one `{"Error": …}` line saying so; the bundle is
/// still written.
async fn capture_metrics(client: &Client, path: &Path, interval: Duration, total: Duration) -> Result<()> {
    use std::io::Write as _;
    let mut file = std::fs::File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
    let deadline = tokio::time::Instant::now() + total;
    let mut ticker = tokio::time::interval(interval);
    let mut count = 0u64;
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = tokio::time::sleep_until(deadline) => return Ok(()),
        }
        let resp = client.send("GET", "/v1/agent/metrics", &[], None).await?;
        if resp.status == 404 {
            let note = json!({"Error": "metrics unavailable: GET /v1/agent/metrics answered 404"});
            writeln!(file, "{note}")?;
            tokio::time::sleep_until(deadline).await;
            return Ok(());
        }
        let sample: Value = serde_json::from_slice(&resp.body)
            .unwrap_or_else(|_| json!({"Error": format!("metrics: status {}", resp.status)}));
        writeln!(file, "{sample}")?;
        println!("==> Capture successful {} ({count})", consul_core::wire::timestamp::format_secs(now_secs()));
        count += 1;
    }
}

fn now_secs() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

/// Writes `<dir>.tar.gz` (entries under the directory's base name) through a temporary file,
/// then removes the directory, as Consul does.
fn archive(dir: &Path) -> Result<()> {
    let path = PathBuf::from(format!("{}.tar.gz", dir.display()));
    let base = dir.file_name().ok_or_else(|| anyhow!("output path has no name"))?;
    let tmp = PathBuf::from(format!("{}.tmp", path.display()));
    let result = (|| -> Result<()> {
        let file = std::fs::File::create(&tmp)?;
        let gz = flate2::write::GzEncoder::new(file, flate2::Compression::default());
        let mut tar = tar::Builder::new(gz);
        tar.append_dir_all(base, dir)?;
        let gz = tar.into_inner()?;
        let file = gz.finish()?;
        file.sync_all()?;
        Ok(())
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    std::fs::rename(&tmp, &path)?;
    std::fs::remove_dir_all(dir).context("failed to remove archived directory")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timing_and_targets_as_consul_checks_them() {
        let s = Duration::from_secs;
        assert!(validate(s(30), s(120), &[]).is_ok());
        assert_eq!(validate(s(5), s(9), &[]).expect_err("invalid"), "duration must be longer than 10s");
        assert_eq!(validate(s(1), s(10), &[]).expect_err("invalid"), "interval must be longer than 10s");
        assert_eq!(
            validate(s(20), s(10), &[]).expect_err("invalid"),
            "duration (10s) must be longer than interval (20s)"
        );
        assert_eq!(validate(s(5), s(10), &["nope".into()]).expect_err("invalid"), "target not found: nope");
        assert!(validate(s(5), s(10), &["cluster".into(), "agent".into()]).is_ok());
        assert!(captures(&["cluster".into()], "members"));
    }

    #[test]
    fn default_output_has_no_colons() {
        assert_eq!(default_output(1_700_000_000), PathBuf::from("consul-debug-2023-11-14T22-13-20Z"));
    }

    #[test]
    fn archive_holds_the_directory_and_removes_it() {
        let tmp = tempfile::tempdir().expect("tmp");
        let dir = tmp.path().join("bundle");
        std::fs::create_dir_all(&dir).expect("mkdir");
        std::fs::write(dir.join("agent.json"), "{}").expect("write");
        archive(&dir).expect("archive");
        assert!(!dir.exists());
        let f = std::fs::File::open(tmp.path().join("bundle.tar.gz")).expect("open");
        let mut t = tar::Archive::new(flate2::read::GzDecoder::new(f));
        let names: Vec<String> = t
            .entries()
            .expect("entries")
            .map(|e| e.expect("entry").path().expect("path").to_string_lossy().into_owned())
            .collect();
        assert!(names.contains(&"bundle/agent.json".to_string()), "{names:?}");
    }
}
