//! `consul-rs monitor [-log-level=<level>] [-log-json]`: prints the agent's log lines as they
//! happen (`/v1/agent/monitor`) until interrupted (exit 0) or the agent ends the stream
//! (exit 1, with Consul's "Remote side ended the monitor!" note), as `command/monitor` does.

use anyhow::{anyhow, Result};
use clap::{ArgAction, Args};
use tokio::signal::unix::{signal, SignalKind};

use crate::api::{sdk_err, Client, ClientFlags, Verbatim};

/// `monitor` flags.
#[derive(Debug, Args)]
pub(crate) struct MonitorArgs {
    #[command(flatten)]
    client: ClientFlags,
    /// Log level of the lines to stream: trace, debug, info, warn, err.
    #[arg(long = "log-level", default_value = "INFO", value_name = "LEVEL")]
    log_level: String,
    /// Stream hclog's JSON lines.
    #[arg(long = "log-json", action = ArgAction::Set, num_args = 0..=1, require_equals = true,
          default_value = "false", default_missing_value = "true",
          value_parser = clap::builder::BoolishValueParser::new())]
    log_json: bool,
}

/// Splits what arrived into whole lines, keeping a partial last line for the next chunk.
fn take_lines(pending: &mut Vec<u8>, chunk: &[u8]) -> Vec<String> {
    pending.extend_from_slice(chunk);
    let mut lines = Vec::new();
    while let Some(i) = pending.iter().position(|b| *b == b'\n') {
        let line: Vec<u8> = pending.drain(..=i).collect();
        lines.push(String::from_utf8_lossy(&line[..i]).into_owned());
    }
    lines
}

/// Runs the command; the exit code as Consul's.
pub(crate) async fn run(a: MonitorArgs) -> Result<u8> {
    let client = Client::new(&a.client)?;
    let mut query = vec![("loglevel", Some(a.log_level.as_str()))];
    if a.log_json {
        query.push(("logjson", None));
    }
    let starting = |e: String| anyhow!(Verbatim(format!("Error starting monitor: {e}")));
    let mut stream = client
        .sdk()
        .call_streaming("GET", "/v1/agent/monitor", &query)
        .await
        .map_err(|e| starting(format!("{:#}", sdk_err(e))))?;
    if !(200..300).contains(&stream.status) {
        let mut body = Vec::new();
        while let Ok(Some(c)) = stream.chunk().await {
            body.extend_from_slice(&c);
        }
        let text = String::from_utf8_lossy(&body).trim().to_string();
        return Err(starting(format!("Unexpected response code: {} ({text})", stream.status)));
    }
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut pending = Vec::new();
    loop {
        let chunk = tokio::select! {
            c = stream.chunk() => c,
            _ = term.recv() => return Ok(0),
            _ = int.recv() => return Ok(0),
        };
        match chunk {
            Ok(Some(bytes)) => {
                for line in take_lines(&mut pending, &bytes) {
                    println!("{line}");
                }
            }
            Ok(None) | Err(_) => break,
        }
    }
    println!();
    println!("Remote side ended the monitor! This usually means that the\nremote side has exited or crashed.");
    Ok(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_split_across_chunks() {
        let mut p = Vec::new();
        assert_eq!(take_lines(&mut p, b"one\ntw"), vec!["one"]);
        assert_eq!(take_lines(&mut p, b"o\nthree\n"), vec!["two", "three"]);
        assert!(p.is_empty());
    }
}
