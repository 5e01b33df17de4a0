//! Running the porcupine checker (`tests/linearizability`, Go) on a recorded history.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use serde_json::Value;

/// porcupine's answer for a history (or one key of it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckResult {
    /// Linearizable.
    Ok,
    /// Not linearizable: a real violation.
    Illegal,
    /// The checker gave up (timeout) without finding a violation.
    Unknown,
}

impl CheckResult {
    fn parse(s: &str) -> CheckResult {
        match s {
            "ok" => CheckResult::Ok,
            "illegal" => CheckResult::Illegal,
            _ => CheckResult::Unknown,
        }
    }
}

/// The checker's verdict on one key.
#[derive(Debug, Clone)]
pub struct KeyVerdict {
    /// The key.
    pub key: String,
    /// Operations on it.
    pub ops: usize,
    /// porcupine's result.
    pub result: CheckResult,
    /// For an illegal key: the longest linearizable prefix and what could not follow it.
    pub detail: String,
    /// For an illegal key with `html_dir`: porcupine's visualization.
    pub html: Option<PathBuf>,
}

/// The checker's verdict on a whole history.
#[derive(Debug, Clone)]
pub struct Verdict {
    /// The overall result (illegal if any key is, else unknown if any key timed out).
    pub result: CheckResult,
    /// One verdict per key.
    pub keys: Vec<KeyVerdict>,
    /// Total operations checked.
    pub ops: usize,
    /// The checker's output, verbatim (one JSON line per key, then the overall line).
    pub output: String,
}

impl Verdict {
    /// Whether the history is linearizable.
    pub fn ok(&self) -> bool {
        self.result == CheckResult::Ok
    }

    /// The keys found not linearizable.
    pub fn illegal(&self) -> Vec<&KeyVerdict> {
        self.keys.iter().filter(|k| k.result == CheckResult::Illegal).collect()
    }
}

/// Where the checker's Go module lives.
pub fn module_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("linearizability")
}

/// The `go` tool: on `PATH`, else the official tarball's location. Panics with what to install
/// when there is none: without Go the suite cannot check anything, and must not pass silently.
fn go() -> PathBuf {
    let on_path = Command::new("go").arg("version").output().is_ok_and(|o| o.status.success());
    if on_path {
        return PathBuf::from("go");
    }
    let tarball = PathBuf::from("/usr/local/go/bin/go");
    if tarball.exists() {
        return tarball;
    }
    panic!(
        "`go` not found (PATH or /usr/local/go/bin): the fault suite checks histories with porcupine, \
         a Go library (tests/linearizability); install Go >= 1.18, e.g. `apt-get install golang-go`"
    )
}

/// Builds the checker once per test process (Go's own build and module caches make repeat
/// builds cheap) and returns the binary's path, next to the test executable's target dir.
pub fn checker_binary() -> PathBuf {
    static BIN: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    BIN.get_or_init(|| {
        let exe = std::env::current_exe().map_err(|e| e.to_string())?;
        // target/<profile>/deps/<test> → target/<profile>/
        let dir = exe.parent().and_then(Path::parent).ok_or("no target dir")?.to_path_buf();
        let bin = dir.join("consul-rs-lincheck");
        // Build under a per-process name and rename, so concurrent test binaries never run a
        // half-written file.
        let tmp = dir.join(format!("consul-rs-lincheck.{}", std::process::id()));
        let out = Command::new(go())
            .args(["build", "-o"])
            .arg(&tmp)
            .arg(".")
            .current_dir(module_dir())
            .output()
            .map_err(|e| format!("running go build: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "go build of {} failed:\n{}",
                module_dir().display(),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        std::fs::rename(&tmp, &bin).map_err(|e| e.to_string())?;
        Ok(bin)
    })
    .clone()
    .unwrap_or_else(|e| panic!("cannot build the linearizability checker: {e}"))
}

/// Checks the history in `path` with porcupine (per-key timeout `timeout`); writes the
/// visualization of failing keys into `html_dir` when given. Panics on bad input (exit 2).
pub fn check_history_with(path: &Path, timeout: Duration, html_dir: Option<&Path>) -> Verdict {
    let mut cmd = Command::new(checker_binary());
    cmd.arg(format!("-timeout={}ms", timeout.as_millis()));
    if let Some(dir) = html_dir {
        cmd.arg("-html").arg(dir);
    }
    let out = cmd.arg(path).output().expect("run the linearizability checker");
    let output = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.code().is_some_and(|c| c != 2),
        "checker rejected {}: {}{}",
        path.display(),
        output,
        String::from_utf8_lossy(&out.stderr)
    );
    let mut keys = Vec::new();
    let mut overall = None;
    for line in output.lines() {
        let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("checker output {line:?}: {e}"));
        if let Some(key) = v.get("key").and_then(Value::as_str) {
            keys.push(KeyVerdict {
                key: key.to_string(),
                ops: v["ops"].as_u64().unwrap_or(0) as usize,
                result: CheckResult::parse(v["result"].as_str().unwrap_or("")),
                detail: v["detail"].as_str().unwrap_or("").to_string(),
                html: v["html"].as_str().map(PathBuf::from),
            });
        } else {
            overall = Some(v);
        }
    }
    let overall = overall.unwrap_or_else(|| panic!("no overall verdict from the checker: {output}"));
    let result = CheckResult::parse(overall["result"].as_str().unwrap_or(""));
    // The exit status and the printed verdict must agree.
    let expected_code = match result {
        CheckResult::Ok => 0,
        CheckResult::Illegal => 1,
        CheckResult::Unknown => 3,
    };
    assert_eq!(out.status.code(), Some(expected_code), "checker exit status vs verdict: {output}");
    Verdict { result, keys, ops: overall["ops"].as_u64().unwrap_or(0) as usize, output }
}

/// Checks the history in `path` with porcupine (60 s per key, no visualization).
pub fn check_history(path: &Path) -> Verdict {
    check_history_with(path, Duration::from_secs(60), None)
}
