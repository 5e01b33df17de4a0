//! What `/proc/<pid>/status` says about an agent under test, shared by the benchmark binaries
//! (`#[path]`-included: the bench crate has no library target).

/// The resident memory (`VmRSS`) of process `pid` in KiB, when there is one to read.
pub(crate) fn rss_kib(pid: Option<u32>) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{}/status", pid?)).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}
