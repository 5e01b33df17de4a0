//! `ui_config { … }` and the legacy `ui`, `ui_dir`, `ui_content_path` keys.
//!
//! As in Consul, a `ui_config` value wins over its legacy spelling whatever the order of the
//! sources, so both are remembered and settled in [`Settings::finish`].

use std::path::PathBuf;

use serde_json::{Map, Value};

use super::{Ctx, Result, Settings};
use crate::api::http::ui::settings as ui;
use crate::error::Error;

/// The keys whose legacy and current spellings are settled at the end.
#[derive(Debug, Clone, Default)]
pub(super) struct UiKeys {
    enabled: Option<bool>,
    dir: Option<String>,
    content_path: Option<(String, String)>,
    legacy_enabled: Option<bool>,
    legacy_dir: Option<String>,
    legacy_content_path: Option<(String, String)>,
}

impl Settings {
    /// Top-level UI keys; false when `key` is none of them.
    pub(super) fn apply_ui(&mut self, ctx: &Ctx<'_>, key: &str, v: &Value) -> Result<bool> {
        match key {
            "ui" => self.ui_keys.legacy_enabled = Some(ctx.bool(key, v)?),
            "ui_dir" => self.ui_keys.legacy_dir = Some(ctx.string(key, v)?),
            "ui_content_path" => {
                self.ui_keys.legacy_content_path = Some((key.to_string(), ctx.string(key, v)?));
            }
            "ui_config" => {
                for block in ctx.blocks(key, v)? {
                    self.apply_ui_config(ctx, block)?;
                }
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    fn apply_ui_config(&mut self, ctx: &Ctx<'_>, block: &Map<String, Value>) -> Result<()> {
        for (k, v) in block {
            let path = format!("ui_config.{k}");
            let ui = &mut self.agent.ui;
            match k.as_str() {
                "enabled" => self.ui_keys.enabled = Some(ctx.bool(&path, v)?),
                "dir" => self.ui_keys.dir = Some(ctx.string(&path, v)?),
                "content_path" => self.ui_keys.content_path = Some((path.clone(), ctx.string(&path, v)?)),
                "metrics_provider" => {
                    let name = ctx.string(&path, v)?;
                    let ok = name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
                    if !ok {
                        return Err(ctx.bad(&path, &format!("{name:?} may contain only letters, digits, - and _")));
                    }
                    ui.metrics_provider = name;
                }
                "metrics_provider_options_json" => {
                    let raw = ctx.string(&path, v)?;
                    ui.metrics_provider_options = ui::parse_provider_options(&raw).map_err(|e| ctx.bad(&path, &e))?;
                }
                "metrics_provider_files" => {
                    // Read once every source is applied (`settle_ui`), so a missing file is a
                    // start-up error naming it.
                    let files = if v.is_null() { Vec::new() } else { ctx.string_list(&path, v)? };
                    ui.metrics_provider_files.extend(files.into_iter().filter(|f| !f.is_empty()).map(PathBuf::from));
                }
                "dashboard_url_templates" => {
                    for block in ctx.blocks(&path, v)? {
                        for (name, url) in block {
                            let key = format!("{path}.{name}");
                            let url = ctx.string(&key, url)?;
                            if !(url.starts_with("http://") || url.starts_with("https://")) {
                                return Err(ctx.bad(&key, &format!("must be an http or https URL. received: {url:?}")));
                            }
                            self.agent.ui.dashboard_url_templates.insert(name.clone(), url);
                        }
                    }
                }
                "metrics_proxy" => {
                    for block in ctx.blocks(&path, v)? {
                        self.apply_metrics_proxy(ctx, block)?;
                    }
                }
                _ => return Err(ctx.unknown(&path)),
            }
        }
        Ok(())
    }

    fn apply_metrics_proxy(&mut self, ctx: &Ctx<'_>, block: &Map<String, Value>) -> Result<()> {
        let proxy = &mut self.agent.ui.metrics_proxy;
        for (k, v) in block {
            let path = format!("ui_config.metrics_proxy.{k}");
            match k.as_str() {
                "base_url" => {
                    let url = ctx.string(&path, v)?;
                    if url.is_empty() {
                        proxy.base_url = None;
                    } else {
                        ui::check_base_url(&url).map_err(|e| ctx.bad(&path, &e))?;
                        proxy.base_url = Some(url);
                    }
                }
                "add_headers" => {
                    let blocks = if v.is_null() { Vec::new() } else { ctx.blocks(&path, v)? };
                    for header in blocks {
                        let mut name = String::new();
                        let mut value = String::new();
                        for (hk, hv) in header {
                            let hpath = format!("{path}.{hk}");
                            match hk.as_str() {
                                "name" => name = ctx.string(&hpath, hv)?,
                                "value" => value = ctx.string(&hpath, hv)?,
                                _ => return Err(ctx.unknown(&hpath)),
                            }
                        }
                        let valid = axum::http::HeaderName::from_bytes(name.as_bytes()).is_ok()
                            && axum::http::HeaderValue::from_str(&value).is_ok();
                        if !valid {
                            return Err(ctx.bad(&path, &format!("{name:?}: {value:?} is not a valid HTTP header")));
                        }
                        proxy.add_headers.push((name, value));
                    }
                }
                "path_allowlist" => {
                    let list = if v.is_null() { Vec::new() } else { ctx.string_list(&path, v)? };
                    for p in &list {
                        ui::check_allowed_path(p).map_err(|e| ctx.bad(&path, &e))?;
                    }
                    proxy.path_allowlist.extend(list);
                }
                _ => return Err(ctx.unknown(&path)),
            }
        }
        Ok(())
    }

    /// Turns the console on by default (`consul-rs agent -dev`, as Consul's dev mode does).
    pub fn enable_ui_by_default(&mut self) {
        self.agent.ui.enabled = true;
    }

    /// Settles the UI keys once every source was applied: `ui_config` over the legacy keys,
    /// the content path normalised, and `dir` checked.
    pub(super) fn settle_ui(&mut self) -> Result<()> {
        let k = &self.ui_keys;
        let explicitly_enabled = k.enabled.or(k.legacy_enabled);
        if let Some(on) = explicitly_enabled {
            self.agent.ui.enabled = on;
        }
        let dir_key = if k.dir.is_some() { "ui_config.dir" } else { "ui_dir" };
        let dir = k.dir.clone().or(k.legacy_dir.clone()).filter(|d| !d.is_empty());
        if let Some((key, raw)) = k.content_path.clone().or(k.legacy_content_path.clone()) {
            self.agent.ui.content_path =
                ui::normalize_content_path(&raw).map_err(|e| Error::Config(format!("{key}: {e}")))?;
        }
        self.agent.ui.metrics_provider_js = ui::read_provider_files(&self.agent.ui.metrics_provider_files)
            .map_err(|e| Error::Config(format!("ui_config.metrics_provider_files: {e}")))?;
        if let Some(dir) = dir {
            if !self.agent.dev && explicitly_enabled == Some(true) {
                return Err(Error::Config(
                    "Both the ui_config.enabled and ui_config.dir (or -ui and -ui-dir) were specified, please \
                     provide only one. If trying to use your own web UI resources, use ui_config.dir or the -ui-dir \
                     flag. The web UI is included in the binary so use ui_config.enabled or the -ui flag to enable it"
                        .into(),
                ));
            }
            let path = PathBuf::from(&dir);
            if !path.is_dir() {
                return Err(Error::Config(format!("{dir_key}: {dir:?} is not a directory the agent can read")));
            }
            self.agent.ui.dir = Some(path);
        } else {
            self.agent.ui.dir = None;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use super::*;

    fn settle(v: Value) -> std::result::Result<Settings, String> {
        let mut s = Settings::new(false);
        s.apply_value(&v, "t.json").and_then(|()| s.finish()).map(|()| s).map_err(|e| e.to_string())
    }

    #[test]
    fn ui_config_wins_over_the_legacy_keys() {
        let s = settle(json!({"ui_config": {"enabled": false}, "ui": true})).expect("ok");
        assert!(!s.agent.ui.enabled);
        let s = settle(json!({"ui": true, "ui_content_path": "console"})).expect("ok");
        assert!(s.agent.ui.enabled);
        assert_eq!(s.agent.ui.content_path, "/console/");
        let s = settle(json!({"ui_content_path": "/a/", "ui_config": {"content_path": "/b"}})).expect("ok");
        assert_eq!(s.agent.ui.content_path, "/b/");
        assert!(!settle(json!({})).expect("ok").agent.ui.serves(), "off by default");
    }

    #[test]
    fn bad_values_are_refused_naming_the_key() {
        for (v, key) in [
            (json!({"ui_config": {"content_path": "/v1/"}}), "ui_config.content_path"),
            (json!({"ui_content_path": "/a b/"}), "ui_content_path"),
            (json!({"ui_config": {"metrics_provider_options_json": "[1]"}}), "ui_config.metrics_provider_options_json"),
            (json!({"ui_config": {"metrics_proxy": {"base_url": "prom:9090"}}}), "ui_config.metrics_proxy.base_url"),
            (
                json!({"ui_config": {"metrics_proxy": {"path_allowlist": ["x"]}}}),
                "ui_config.metrics_proxy.path_allowlist",
            ),
            (json!({"ui_config": {"dir": "/no/such/dir/here"}}), "ui_config.dir"),
            (json!({"ui_dir": "/no/such/dir/here"}), "ui_dir"),
            (json!({"ui_config": {"dashboard_url_templates": {"service": "javascript:x"}}}), "dashboard_url_templates"),
        ] {
            let e = settle(v.clone()).expect_err("refused");
            assert!(e.contains(key), "{v}: {e}");
        }
        let e = settle(json!({"ui_config": {"enabled": true, "dir": "/tmp"}})).expect_err("both");
        assert!(e.contains("ui_config.enabled and ui_config.dir"), "{e}");
    }

    #[test]
    fn every_setting_is_carried() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = settle(json!({"ui_config": {
            "dir": dir.path().to_str().expect("utf-8"),
            "metrics_provider": "prometheus",
            "metrics_provider_options_json": "{\"k\": \"v\"}",
            "metrics_proxy": {
                "base_url": "http://prom:9090",
                "add_headers": [{"name": "Authorization", "value": "Bearer x"}],
                "path_allowlist": ["/api/v1/query"],
            },
            "dashboard_url_templates": {"service": "https://grafana/{{Service.Name}}"},
        }}))
        .expect("ok");
        let ui = &s.agent.ui;
        assert!(ui.serves() && !ui.enabled);
        assert_eq!(ui.dir.as_deref(), Some(dir.path()));
        assert_eq!(ui.metrics_provider, "prometheus");
        assert_eq!(ui.metrics_provider_options["k"], "v");
        assert_eq!(ui.metrics_proxy.base_url.as_deref(), Some("http://prom:9090"));
        assert_eq!(ui.metrics_proxy.add_headers, [("Authorization".to_string(), "Bearer x".to_string())]);
        assert_eq!(ui.metrics_proxy.path_allowlist, ["/api/v1/query"]);
        assert_eq!(ui.dashboard_url_templates["service"], "https://grafana/{{Service.Name}}");
        let js = dir.path().join("provider.js");
        std::fs::write(&js, "consul.registerMetricsProvider('x', {})").expect("write");
        let s = settle(json!({"ui_config": {"metrics_provider_files": [js.to_str().expect("utf-8")]}})).expect("ok");
        assert!(!s.no_effect.contains_key("ui_config.metrics_provider_files"));
        assert!(s.agent.ui.metrics_provider_js.contains("registerMetricsProvider('x'"));
        let e =
            settle(json!({"ui_config": {"metrics_provider_files": ["/no/such/provider.js"]}})).expect_err("missing");
        assert!(e.contains("ui_config.metrics_provider_files") && e.contains("/no/such/provider.js"), "{e}");
    }
}
