//! Script checks (`Args`): exit 0 passing, 1 warning, anything else critical; stdout and stderr
//! become the output (capped at 4 KiB); a script running past its timeout is killed.

use std::process::Stdio;
use std::time::Duration;

use tokio::io::AsyncReadExt;

use super::Outcome;
use crate::local::def::MAX_OUTPUT;
use crate::state::catalog::{CRITICAL, PASSING, WARNING};

async fn read_capped(r: Option<impl tokio::io::AsyncRead + Unpin>) -> Vec<u8> {
    let mut out = Vec::new();
    if let Some(r) = r {
        // Keep reading past the cap (and drop the rest) so the script never blocks on a full pipe.
        let mut r = r;
        let mut buf = [0u8; 4096];
        while let Ok(n) = r.read(&mut buf).await {
            if n == 0 {
                break;
            }
            let room = MAX_OUTPUT.saturating_sub(out.len());
            out.extend_from_slice(&buf[..n.min(room)]);
        }
    }
    out
}

pub(super) async fn check(args: &[String], timeout: Duration) -> Outcome {
    let Some((program, rest)) = args.split_first() else {
        return (CRITICAL, "script check has no arguments".to_string());
    };
    let mut child = match tokio::process::Command::new(program)
        .args(rest)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
    {
        Ok(c) => c,
        Err(e) => return (CRITICAL, format!("Failed to start {program:?}: {e}")),
    };
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    let run = async {
        let (out, err, status) = tokio::join!(read_capped(stdout), read_capped(stderr), child.wait());
        (out, err, status)
    };
    match tokio::time::timeout(timeout, run).await {
        Err(_) => (CRITICAL, format!("Timed out ({timeout:?}) running check")),
        Ok((mut out, err, status)) => {
            out.extend_from_slice(&err);
            out.truncate(MAX_OUTPUT);
            let text = String::from_utf8_lossy(&out).into_owned();
            match status.map(|s| s.code()) {
                Ok(Some(0)) => (PASSING, text),
                Ok(Some(1)) => (WARNING, text),
                Ok(code) => {
                    (CRITICAL, format!("{text}{}exit status {code:?}", if text.is_empty() { "" } else { "\n" }))
                }
                Err(e) => (CRITICAL, format!("waiting for {program:?}: {e}")),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str) -> Vec<String> {
        vec!["/bin/sh".into(), "-c".into(), script.into()]
    }

    #[tokio::test]
    async fn exit_codes_map_to_statuses() {
        let t = Duration::from_secs(5);
        assert_eq!(check(&sh("echo ok"), t).await, (PASSING, "ok\n".to_string()));
        assert_eq!(check(&sh("exit 1"), t).await.0, WARNING);
        assert_eq!(check(&sh("exit 2"), t).await.0, CRITICAL);
        let (s, out) = check(&sh("sleep 5"), Duration::from_millis(200)).await;
        assert_eq!(s, CRITICAL);
        assert!(out.contains("Timed out"), "{out}");
        let (_, out) = check(&sh("head -c 10000 /dev/zero | tr '\\0' x"), t).await;
        assert_eq!(out.len(), MAX_OUTPUT);
    }
}
