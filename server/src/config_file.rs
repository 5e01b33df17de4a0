//! Consul-style agent configuration files: JSON and HCL, single files and `-config-dir`s, merged
//! in order onto [`Settings`].
//!
//! The key-by-key walk over a parsed source lives in the core
//! ([`consul_core::config_file::Settings::apply_value`]), shared with embedders such as the C
//! library; this module adds reading files, HCL and the directory rules of the binary.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context as _, Result};
pub(crate) use consul_core::config_file::Settings;
use serde_json::{Map, Value};

/// Loading configuration files into [`Settings`].
pub(crate) trait LoadFiles {
    /// Parses one file (format from its extension unless `format` is given) and merges it in.
    fn apply_file(&mut self, path: &Path, format: Option<Format>) -> Result<()>;
    /// Loads a `-config-dir`: its `.json` and `.hcl` files in lexical order.
    fn apply_dir(&mut self, dir: &Path, format: Option<Format>) -> Result<()>;
}

impl LoadFiles for Settings {
    /// Parses one file (format from its extension unless `format` is given) and merges it in.
    fn apply_file(&mut self, path: &Path, format: Option<Format>) -> Result<()> {
        let format = match format {
            Some(f) => f,
            None => Format::from_path(path).ok_or_else(|| {
                anyhow!(
                    "config: {}: unknown file format; the name must end in .json or .hcl (or pass -config-format)",
                    path.display()
                )
            })?,
        };
        let text = std::fs::read_to_string(path).with_context(|| format!("config: cannot read {}", path.display()))?;
        let value = parse_text(&text, format).with_context(|| format!("config: cannot parse {}", path.display()))?;
        Ok(self.apply_value(&value, &path.display().to_string())?)
    }

    /// Loads a `-config-dir`: the files [`dir_files`] lists, in its order.
    fn apply_dir(&mut self, dir: &Path, format: Option<Format>) -> Result<()> {
        for file in dir_files(dir, format)? {
            self.apply_file(&file, format)?;
        }
        Ok(())
    }
}

/// The configuration files of a `-config-dir`, in the order they are loaded: its `.json` and
/// `.hcl` files (any file when `format` is given) in lexical order; other entries
/// (subdirectories, editor backups, READMEs) are skipped like Consul skips them.
pub(crate) fn dir_files(dir: &Path, format: Option<Format>) -> Result<Vec<PathBuf>> {
    let entries =
        std::fs::read_dir(dir).with_context(|| format!("config: cannot read config dir {}", dir.display()))?;
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry.with_context(|| format!("config: cannot read config dir {}", dir.display()))?;
        let path = entry.path();
        // Follow symlinks (config management tools link files in) but skip directories.
        if !path.is_file() {
            continue;
        }
        if format.is_some() || Format::from_path(&path).is_some() {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// Configuration file syntax.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    /// JSON.
    Json,
    /// HCL (v2 syntax, as Consul reads it).
    Hcl,
}

impl Format {
    /// From a file name's extension; `None` for anything else.
    pub(crate) fn from_path(path: &Path) -> Option<Format> {
        match path.extension().and_then(|e| e.to_str()) {
            Some("json") => Some(Format::Json),
            Some("hcl") => Some(Format::Hcl),
            _ => None,
        }
    }

    /// From `-config-format`.
    pub(crate) fn from_flag(s: &str) -> Result<Format> {
        match s {
            "json" => Ok(Format::Json),
            "hcl" => Ok(Format::Hcl),
            other => bail!("config: -config-format: {other:?} is not one of json, hcl"),
        }
    }
}

/// Parses configuration text. An empty or whitespace-only file is an empty configuration.
pub(crate) fn parse_text(text: &str, format: Format) -> Result<Value> {
    if text.trim().is_empty() {
        return Ok(Value::Object(Map::new()));
    }
    let v: Value = match format {
        Format::Json => serde_json::from_str(text)?,
        Format::Hcl => hcl::from_str(text)?,
    };
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use consul_core::duration::parse_go_duration;
    use std::io::Write as _;
    use std::time::Duration;

    fn write(dir: &Path, name: &str, body: &str) -> PathBuf {
        let p = dir.join(name);
        let mut f = std::fs::File::create(&p).expect("create");
        f.write_all(body.as_bytes()).expect("write");
        p
    }

    #[test]
    fn durations() {
        let ms = Duration::from_millis;
        assert_eq!(parse_go_duration("300ms"), Ok(ms(300)));
        assert_eq!(parse_go_duration("1.5h"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_go_duration("2h45m"), Ok(Duration::from_secs(2 * 3600 + 45 * 60)));
        assert_eq!(parse_go_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_go_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_go_duration("500us"), Ok(Duration::from_micros(500)));
        assert_eq!(parse_go_duration("1µs"), Ok(Duration::from_micros(1)));
        assert_eq!(parse_go_duration("42ns"), Ok(Duration::from_nanos(42)));
        assert_eq!(parse_go_duration(".5s"), Ok(ms(500)));
        assert_eq!(parse_go_duration("0"), Ok(Duration::ZERO));
        assert_eq!(parse_go_duration("0s"), Ok(Duration::ZERO));
        for bad in ["", "10", "s", "1x", "-1s", "1.s.", "1..5s", "99999999999999999999h"] {
            assert!(parse_go_duration(bad).is_err(), "{bad:?} should fail");
        }
    }

    #[test]
    fn json_file_maps_keys() {
        let dir = tempfile::tempdir().expect("tempdir");
        let f = write(
            dir.path(),
            "a.json",
            r#"{
              "datacenter": "DC2", "node_name": "n1", "server": true, "bootstrap_expect": 3,
              "data_dir": "/tmp/d", "bind_addr": "127.0.0.1", "client_addr": "127.0.0.2 10.0.0.1",
              "advertise_addr": "10.1.1.1",
              "node_id": "adf4238a-882b-9ddc-4a9d-5b6758e4159e",
              "ports": {"http": 18500, "dns": -1, "server": 18300, "serf_lan": 18301, "grpc": 8502},
              "retry_join": ["10.0.0.2", "10.0.0.3"], "start_join": ["10.0.0.4"],
              "retry_interval": "5s", "retry_max": 7,
              "performance": {"raft_multiplier": 1, "rpc_hold_timeout": "3s", "leave_drain_time": "1s"},
              "raft_snapshot_threshold": 100, "raft_trailing_logs": 50, "raft_snapshot_interval": "5s",
              "limits": {"kv_max_value_size": 1024, "txn_max_req_len": 2048, "rpc_rate": -1},
              "default_query_time": "10s", "max_query_time": "20s",
              "log_level": "debug", "log_json": true, "pid_file": "/tmp/p", "acl": {"enabled": false}
            }"#,
        );
        let mut s = Settings::new(false);
        s.apply_file(&f, None).expect("apply");
        let a = &s.agent;
        assert_eq!(a.datacenter, "dc2");
        assert_eq!(a.node_name, "n1");
        assert!(a.server);
        assert_eq!(a.bootstrap_expect, 3);
        assert_eq!(a.data_dir.as_deref(), Some(Path::new("/tmp/d")));
        assert_eq!(a.bind_addr.to_string(), "127.0.0.1");
        assert_eq!(a.client_addr.to_string(), "127.0.0.2");
        assert_eq!(a.advertise_addr.map(|i| i.to_string()).as_deref(), Some("10.1.1.1"));
        assert_eq!(a.node_id.map(|u| u.to_string()).as_deref(), Some("adf4238a-882b-9ddc-4a9d-5b6758e4159e"));
        assert_eq!((a.ports.http, a.ports.server, a.ports.serf_lan), (Some(18500), 18300, 18301));
        assert!(s.dns_disabled);
        assert_eq!(a.retry_join, vec!["10.0.0.2", "10.0.0.3", "10.0.0.4"]);
        assert_eq!(a.retry_interval, Duration::from_secs(5));
        assert_eq!(a.retry_max, 7);
        assert_eq!(a.raft.raft_multiplier, 1);
        assert_eq!(a.rpc_hold_timeout, Duration::from_secs(3));
        assert_eq!((a.raft.snapshot_threshold, a.raft.trailing_logs), (100, 50));
        assert_eq!((a.limits.kv_max_value_size, a.limits.txn_max_req_len), (1024, 2048));
        assert_eq!(a.default_query_time, Duration::from_secs(10));
        assert_eq!(a.max_query_time, Duration::from_secs(20));
        assert_eq!(s.log_level, "debug");
        assert!(s.log_json);
        assert_eq!(s.pid_file.as_deref(), Some(Path::new("/tmp/p")));
        assert!(!s.agent.acl.enabled);
        assert!(s.no_effect.contains_key("ports.grpc"));
    }

    #[test]
    fn hcl_file_with_blocks_and_repeats() {
        let dir = tempfile::tempdir().expect("tempdir");
        let f = write(
            dir.path(),
            "a.hcl",
            r#"
              datacenter = "east"
              server = true
              bootstrap = true
              data_dir = "/var/consul"
              retry_join = ["a", "b"]
              ports {
                http = 9500
              }
              ports {
                dns = 9600
              }
              performance {
                raft_multiplier = 2
              }
              service {
                name = "web"
                port = 80
              }
              service {
                name = "db"
              }
              limits {
                kv_max_value_size = 4096
              }
            "#,
        );
        let mut s = Settings::new(false);
        s.apply_file(&f, None).expect("apply");
        assert_eq!(s.agent.datacenter, "east");
        assert!(s.agent.bootstrap);
        assert_eq!(s.agent.ports.http, Some(9500));
        assert_eq!(s.agent.ports.dns, 9600);
        assert_eq!(s.agent.raft.raft_multiplier, 2);
        assert_eq!(s.agent.limits.kv_max_value_size, 4096);
        assert_eq!(s.agent.retry_join, vec!["a", "b"]);
        let names: Vec<&str> = s.agent.services.iter().map(|d| d.service.service.as_str()).collect();
        assert_eq!(names, ["web", "db"]);
        assert_eq!(s.agent.services[0].service.port, 80);
    }

    /// A config file's connect proxy and sidecar, through the HCL reader: snake_case keys
    /// decoded, opaque `config` maps kept as written, the sidecar range read from `ports`.
    /// (Consul's docs write `connect { sidecar_service {} }` on one line, which HCL 2 does not
    /// allow for a nested block: the block is spelled over several lines here.)
    #[test]
    fn proxy_and_sidecar_service_blocks() {
        let dir = tempfile::tempdir().expect("tempdir");
        let f = write(
            dir.path(),
            "mesh.hcl",
            r#"
              ports {
                sidecar_min_port = 22000
                sidecar_max_port = 22010
              }
              service {
                name = "web"
                port = 8080
                connect {
                  sidecar_service {
                    proxy {
                      upstreams = [{ destination_name = "db", local_bind_port = 9191 }]
                    }
                  }
                }
              }
              service {
                name = "web-proxy"
                kind = "connect-proxy"
                port = 9999
                proxy {
                  destination_service_name = "web"
                  local_service_port = 8080
                  config {
                    some_key = "v"
                  }
                  mesh_gateway {
                    mode = "local"
                  }
                  expose {
                    checks = true
                    paths = [{ path = "/health", local_path_port = 8080, listener_port = 21500 }]
                  }
                }
              }
            "#,
        );
        let mut s = Settings::new(false);
        s.apply_file(&f, None).expect("apply");
        let range = s.agent.sidecar_ports.expect("range");
        assert_eq!((range.min, range.max), (22000, 22010));
        let web = &s.agent.services[0];
        let sidecar = consul_core::local::sidecar::build(web).expect("valid").expect("a sidecar");
        assert_eq!(sidecar.service.id, "web-sidecar-proxy");
        assert_eq!(
            sidecar.service.ext.proxy.as_ref().map(|p| p["Upstreams"][0]["DestinationName"].clone()),
            Some(Value::from("db"))
        );
        let proxy = s.agent.services[1].service.ext.proxy.clone().expect("proxy");
        assert_eq!(proxy["DestinationServiceName"], "web");
        assert_eq!(proxy["Config"], serde_json::json!({"some_key": "v"}));
        assert_eq!(proxy["MeshGateway"]["Mode"], "local");
        assert_eq!(proxy["Expose"]["Paths"][0]["ListenerPort"], 21500);
        assert_eq!(proxy["Upstreams"], Value::Null, "none given");
    }

    #[test]
    fn service_and_check_definitions() {
        let dir = tempfile::tempdir().expect("tempdir");
        let f = write(
            dir.path(),
            "svc.hcl",
            r#"
              enable_local_script_checks = true
              check_update_interval = "30s"
              service {
                name = "web"
                id = "web-1"
                port = 8080
                tags = ["a"]
                check {
                  http = "http://127.0.0.1:8080/health"
                  interval = "10s"
                  deregister_critical_service_after = "1m"
                }
              }
              check {
                id = "mem"
                name = "memory"
                args = ["/bin/true"]
                interval = "30s"
              }
            "#,
        );
        let mut s = Settings::new(false);
        s.apply_file(&f, None).expect("apply");
        let a = &s.agent;
        assert!(a.enable_local_script_checks && !a.enable_script_checks);
        assert_eq!(a.check_update_interval, Duration::from_secs(30));
        assert!(!a.disable_coordinates);
        let v: Value = serde_json::from_str(r#"{"disable_coordinates": true}"#).expect("json");
        let mut d = Settings::new(false);
        d.apply_value(&v, "t.json").expect("apply");
        assert!(d.agent.disable_coordinates);
        assert_eq!(a.services.len(), 1);
        assert_eq!(a.services[0].service.id, "web-1");
        assert_eq!(a.services[0].checks[0].id, "service:web-1");
        assert_eq!(a.services[0].checks[0].deregister_critical_service_after, Some(Duration::from_secs(60)));
        assert_eq!(a.checks[0].id, "mem");
        let j = write(dir.path(), "svcs.json", r#"{"services": [{"name": "a"}, {"name": "b", "port": 1}]}"#);
        s.apply_file(&j, None).expect("apply");
        assert_eq!(s.agent.services.len(), 3, "definitions from several files add up");

        for (json, want) in [
            (r#"{"service": {"port": 1}}"#, "service[0]: Missing service name"),
            (r#"{"services": [{"name": "x", "check": {"http": "http://a/"}}]}"#, "Interval is required"),
            (r#"{"check": {"name": "c"}}"#, "check[0]: Invalid check"),
            (r#"{"check_update_interval": "soon"}"#, "check_update_interval"),
            (r#"{"disable_coordinates": "maybe"}"#, "disable_coordinates"),
        ] {
            let v: Value = serde_json::from_str(json).expect("json");
            let err = Settings::new(false).apply_value(&v, "t.json").expect_err(json).to_string();
            assert!(err.contains(want), "{json}: {err}");
        }
    }

    #[test]
    fn dir_loads_in_lexical_order_and_later_wins() {
        let dir = tempfile::tempdir().expect("tempdir");
        write(dir.path(), "20-b.hcl", "node_name = \"second\"\nretry_join = [\"y\"]\n");
        write(dir.path(), "10-a.json", r#"{"node_name": "first", "datacenter": "a", "retry_join": ["x"]}"#);
        write(dir.path(), "README.md", "not config");
        std::fs::create_dir(dir.path().join("sub.json")).expect("mkdir");
        let mut s = Settings::new(true);
        s.apply_dir(dir.path(), None).expect("dir");
        assert_eq!(s.agent.node_name, "second");
        assert_eq!(s.agent.datacenter, "a");
        assert_eq!(s.agent.retry_join, vec!["x", "y"]);
        assert!(s.agent.dev, "dev defaults stay");
    }

    #[test]
    fn unknown_keys_are_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let f = write(dir.path(), "x.json", r#"{"bootstrap_expct": 3}"#);
        let err = Settings::new(false).apply_file(&f, None).expect_err("unknown").to_string();
        assert!(err.contains("unknown key \"bootstrap_expct\""), "{err}");
        assert!(err.contains("x.json"), "{err}");

        let f = write(dir.path(), "y.hcl", "ports {\n htp = 1\n}\n");
        let err = Settings::new(false).apply_file(&f, None).expect_err("unknown").to_string();
        assert!(err.contains("unknown key \"ports.htp\""), "{err}");
        assert!(err.contains("y.hcl"), "{err}");
    }

    #[test]
    fn bad_values_are_named() {
        let cases = [
            (r#"{"ports": {"http": "abc"}}"#, "ports.http: expected a number, got \"abc\""),
            (r#"{"ports": {"https": "x"}}"#, "ports.https: expected a number"),
            (r#"{"ports": {"server": 70000}}"#, "ports.server: 70000 is not a valid port"),
            (r#"{"server": "yes"}"#, "server: expected a boolean"),
            (r#"{"retry_interval": 30}"#, "retry_interval: expected a duration string"),
            (r#"{"max_query_time": "10"}"#, "max_query_time: invalid duration"),
            (r#"{"bind_addr": "nope"}"#, "bind_addr: \"nope\" is not an IP address"),
            (r#"{"bind_addr": "{{ GetPrivateIP }}"}"#, "go-sockaddr templates are not supported"),
            (r#"{"node_id": "abc"}"#, "node_id:"),
            (r#"{"bootstrap_expect": -2}"#, "bootstrap_expect: must not be negative"),
            (r#"{"retry_join": [1]}"#, "retry_join[0]: expected a string"),
            (r#"{"limits": 5}"#, "limits: expected a block"),
            (r#"[1]"#, "top level must be an object"),
        ];
        for (json, want) in cases {
            let v: Value = serde_json::from_str(json).expect("json");
            let err = Settings::new(false).apply_value(&v, "t.json").expect_err(json).to_string();
            assert!(err.contains(want), "{json}: {err}");
        }
    }

    #[test]
    fn lenient_scalars() {
        let v: Value = serde_json::from_str(
            r#"{"ports": {"http": "8501"}, "server": "true", "retry_join": "one", "retry_interval": 0}"#,
        )
        .expect("json");
        let mut s = Settings::new(false);
        s.apply_value(&v, "t").expect("apply");
        assert_eq!(s.agent.ports.http, Some(8501));
        assert!(s.agent.server);
        assert_eq!(s.agent.retry_join, vec!["one"]);
        assert_eq!(s.agent.retry_interval, Duration::ZERO);
    }

    #[test]
    fn parse_errors_name_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let f = write(dir.path(), "broken.json", "{\"a\": ");
        let err = format!("{:#}", Settings::new(false).apply_file(&f, None).expect_err("broken"));
        assert!(err.contains("broken.json"), "{err}");
        let f = write(dir.path(), "conf.txt", "{}");
        let err = Settings::new(false).apply_file(&f, None).expect_err("ext").to_string();
        assert!(err.contains(".json or .hcl"), "{err}");
        Settings::new(false).apply_file(&f, Some(Format::Json)).expect("explicit format");
        let f = write(dir.path(), "empty.hcl", "\n");
        Settings::new(false).apply_file(&f, None).expect("empty file is fine");
    }
}
