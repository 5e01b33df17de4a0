//! `GET /v1/agent/host`: facts about the machine the agent runs on, in the shape Consul's
//! `debug.CollectHostInfo` returns (go-psutil's structs: `Memory`, `CPU`, `Host`, `Disk`,
//! `CollectionTime` in unix nanoseconds, `Errors`). Read from `/proc` and `statvfs("/")`;
//! fields we have no source for are zero, and what could not be read is named in `Errors`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::State;
use axum::http::Uri;
use axum::response::{IntoResponse, Response};
use axum::Extension;
use serde_json::{json, Value};

use super::query::QueryParams;
use super::{json, Ctx};
use crate::acl::rules::{Need, Scalar};
use crate::api::authz::RequestAcl;

/// `GET /v1/agent/host`: needs `operator:read`.
pub(super) async fn host(State(_ctx): State<Ctx>, Extension(acl): Extension<Arc<RequestAcl>>, uri: Uri) -> Response {
    if let Err(e) = acl.require_scalar(Scalar::Operator, Need::Read) {
        return e.into_response();
    }
    let q = QueryParams::from_uri(&uri);
    // /proc reads are small but blocking file I/O.
    let info = tokio::task::spawn_blocking(collect).await.unwrap_or_else(|e| json!({"Errors": [e.to_string()]}));
    json(axum::http::StatusCode::OK, &info, q.pretty())
}

fn read(path: &str, errors: &mut Vec<String>) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| {
        errors.push(format!("{path}: {e}"));
        String::new()
    })
}

/// `key: value kB` lines of `/proc/meminfo`, in bytes.
fn meminfo(text: &str) -> HashMap<String, u64> {
    text.lines()
        .filter_map(|l| {
            let (k, rest) = l.split_once(':')?;
            let mut parts = rest.split_whitespace();
            let n: u64 = parts.next()?.parse().ok()?;
            let unit = if parts.next() == Some("kB") { 1024 } else { 1 };
            Some((k.trim().to_string(), n * unit))
        })
        .collect()
}

fn percent(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 / whole as f64 * 100.0
    }
}

/// go-psutil's `mem.VirtualMemoryStat` on Linux.
fn memory(m: &HashMap<String, u64>) -> Value {
    let g = |k: &str| m.get(k).copied().unwrap_or(0);
    let total = g("MemTotal");
    let free = g("MemFree");
    let buffers = g("Buffers");
    let cached = g("Cached") + g("SReclaimable");
    let used = total.saturating_sub(free + buffers + cached);
    json!({
        "total": total, "available": g("MemAvailable"), "used": used, "usedPercent": percent(used, total),
        "free": free, "active": g("Active"), "inactive": g("Inactive"), "wired": 0, "laundry": 0,
        "buffers": buffers, "cached": cached, "writeBack": g("Writeback"), "dirty": g("Dirty"),
        "writeBackTmp": g("WritebackTmp"), "shared": g("Shmem"), "slab": g("Slab"),
        "sreclaimable": g("SReclaimable"), "sunreclaim": g("SUnreclaim"), "pageTables": g("PageTables"),
        "swapCached": g("SwapCached"), "commitLimit": g("CommitLimit"), "committedAS": g("Committed_AS"),
        "highTotal": g("HighTotal"), "highFree": g("HighFree"), "lowTotal": g("LowTotal"), "lowFree": g("LowFree"),
        "swapTotal": g("SwapTotal"), "swapFree": g("SwapFree"), "mapped": g("Mapped"),
        "vmallocTotal": g("VmallocTotal"), "vmallocUsed": g("VmallocUsed"), "vmallocChunk": g("VmallocChunk"),
        "hugePagesTotal": g("HugePages_Total"), "hugePagesFree": g("HugePages_Free"),
        "hugePagesRsvd": g("HugePages_Rsvd"), "hugePagesSurp": g("HugePages_Surp"), "hugePageSize": g("Hugepagesize"),
        "anonHugePages": g("AnonHugePages"),
    })
}

/// go-psutil's `[]cpu.InfoStat`: one per `processor` block of `/proc/cpuinfo`.
fn cpus(text: &str) -> Value {
    let blocks = text.split("\n\n").filter(|b| b.contains("processor"));
    Value::Array(
        blocks
            .map(|b| {
                let f: HashMap<&str, &str> =
                    b.lines().filter_map(|l| l.split_once(':')).map(|(k, v)| (k.trim(), v.trim())).collect();
                let s = |k: &str| f.get(k).copied().unwrap_or("").to_string();
                let n = |k: &str| f.get(k).and_then(|v| v.split_whitespace().next()?.parse::<i64>().ok()).unwrap_or(0);
                let flags: Vec<&str> = f.get("flags").map(|v| v.split_whitespace().collect()).unwrap_or_default();
                json!({
                    "cpu": n("processor"), "vendorId": s("vendor_id"), "family": s("cpu family"), "model": s("model"),
                    "stepping": n("stepping"), "physicalId": s("physical id"), "coreId": s("core id"),
                    "cores": n("cpu cores").max(1), "modelName": s("model name"),
                    "mhz": f.get("cpu MHz").and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0),
                    "cacheSize": n("cache size"), "flags": flags, "microcode": s("microcode"),
                })
            })
            .collect(),
    )
}

/// go-psutil's `host.InfoStat`.
fn host_stat(errors: &mut Vec<String>) -> Value {
    let trim = |s: String| s.trim().to_string();
    let hostname = trim(read("/proc/sys/kernel/hostname", errors));
    let kernel = trim(read("/proc/sys/kernel/osrelease", errors));
    let uptime = read("/proc/uptime", errors)
        .split_whitespace()
        .next()
        .and_then(|u| u.parse::<f64>().ok())
        .map_or(0, |u| u as u64);
    let stat = read("/proc/stat", errors);
    let boot_time = stat.lines().find_map(|l| l.strip_prefix("btime ")?.trim().parse::<u64>().ok()).unwrap_or(0);
    let procs = std::fs::read_dir("/proc")
        .map(|d| {
            d.filter_map(|e| e.ok())
                .filter(|e| e.file_name().to_string_lossy().bytes().all(|b| b.is_ascii_digit()))
                .count()
        })
        .unwrap_or(0);
    let os_release = std::fs::read_to_string("/etc/os-release").unwrap_or_default();
    let field = |k: &str| {
        os_release
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{k}=")).map(|v| v.trim_matches('"').to_string()))
            .unwrap_or_default()
    };
    let host_id = std::fs::read_to_string("/sys/class/dmi/id/product_uuid")
        .or_else(|_| std::fs::read_to_string("/etc/machine-id"))
        .map(|s| s.trim().to_lowercase())
        .unwrap_or_default();
    json!({
        "hostname": hostname, "uptime": uptime, "bootTime": boot_time, "procs": procs,
        "os": std::env::consts::OS, "platform": field("ID"), "platformFamily": field("ID_LIKE"),
        "platformVersion": field("VERSION_ID"), "kernelVersion": kernel, "kernelArch": kernel_arch(),
        "virtualizationSystem": "", "virtualizationRole": "", "hostId": host_id,
    })
}

/// `uname -m`'s spelling of the architecture.
fn kernel_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86" => "i686",
        "arm" => "armv7l",
        other => other,
    }
}

/// go-psutil's `disk.UsageStat` for `/`.
fn disk(errors: &mut Vec<String>) -> Value {
    let fstype = std::fs::read_to_string("/proc/self/mounts")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let mut p = l.split_whitespace();
            let (_, mount, fs) = (p.next()?, p.next()?, p.next()?);
            (mount == "/").then(|| fs.to_string())
        })
        .next_back()
        .unwrap_or_default();
    match rustix::fs::statvfs("/") {
        Ok(s) => {
            let total = s.f_blocks * s.f_frsize;
            let free = s.f_bavail * s.f_frsize;
            let used = (s.f_blocks - s.f_bfree.min(s.f_blocks)) * s.f_frsize;
            let inodes_used = s.f_files.saturating_sub(s.f_ffree);
            json!({
                "path": "/", "fstype": fstype, "total": total, "free": free, "used": used,
                "usedPercent": percent(used, used + free), "inodesTotal": s.f_files, "inodesUsed": inodes_used,
                "inodesFree": s.f_ffree, "inodesUsedPercent": percent(inodes_used, s.f_files),
            })
        }
        Err(e) => {
            errors.push(format!("statvfs /: {e}"));
            Value::Null
        }
    }
}

/// Everything `/v1/agent/host` answers.
pub(super) fn collect() -> Value {
    let mut errors = Vec::new();
    let mem = meminfo(&read("/proc/meminfo", &mut errors));
    let cpu = cpus(&read("/proc/cpuinfo", &mut errors));
    let host = host_stat(&mut errors);
    let disk = disk(&mut errors);
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
    json!({
        "Memory": memory(&mem), "CPU": cpu, "Host": host, "Disk": disk,
        "CollectionTime": now, "Errors": errors,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meminfo_and_memory_shape() {
        let m = meminfo(
            "MemTotal:       1000 kB\nMemFree:         200 kB\nBuffers: 100 kB\nCached: 100 kB\nHugePages_Total: 0\n",
        );
        assert_eq!(m["MemTotal"], 1_024_000);
        assert_eq!(m["HugePages_Total"], 0);
        let v = memory(&m);
        assert_eq!(v["used"], 600 * 1024);
        assert_eq!(v["usedPercent"], 60.0);
    }

    #[test]
    fn cpuinfo_blocks() {
        let v = cpus("processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: X\ncpu MHz\t\t: 2400.5\nflags\t\t: fpu sse\n\nprocessor\t: 1\n");
        assert_eq!(v.as_array().map(Vec::len), Some(2));
        assert_eq!(v[0]["vendorId"], "GenuineIntel");
        assert_eq!(v[0]["mhz"], 2400.5);
        assert_eq!(v[0]["flags"], json!(["fpu", "sse"]));
        assert_eq!(v[1]["cpu"], 1);
    }

    #[test]
    fn collect_has_consul_keys() {
        let v = collect();
        for k in ["Memory", "CPU", "Host", "Disk", "CollectionTime", "Errors"] {
            assert!(v.get(k).is_some(), "{k} missing: {v}");
        }
        assert!(v["Memory"]["total"].as_u64().unwrap_or(0) > 0);
        assert!(v["Host"]["hostname"].is_string());
    }
}
