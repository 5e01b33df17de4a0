//! `ui_config { … }` (and the legacy `ui`, `ui_dir`, `ui_content_path`) as the console needs it.

use std::collections::BTreeMap;
use std::path::PathBuf;

/// The paths the metrics proxy forwards when `path_allowlist` is empty and the provider is
/// Prometheus (Consul's defaults for its built-in provider).
pub const PROMETHEUS_DEFAULT_ALLOWLIST: &[&str] = &["/api/v1/query", "/api/v1/query_range"];

/// The web console's settings.
#[derive(Debug, Clone, PartialEq)]
pub struct UiSettings {
    /// `ui_config.enabled` (`ui`, `-ui`; on in `-dev`): serve the embedded console.
    pub enabled: bool,
    /// `ui_config.dir` (`ui_dir`, `-ui-dir`): serve the console from this directory instead of
    /// the embedded one (read at request time). Setting it turns the console on, as in Consul.
    pub dir: Option<PathBuf>,
    /// `ui_config.content_path` (`ui_content_path`, `-ui-content-path`): where the console is
    /// served, with a leading and a trailing slash (`/ui/`).
    pub content_path: String,
    /// `ui_config.metrics_provider` ("" or e.g. `prometheus`).
    pub metrics_provider: String,
    /// `ui_config.metrics_provider_options_json`, parsed (always a JSON object).
    pub metrics_provider_options: serde_json::Map<String, serde_json::Value>,
    /// `ui_config.metrics_proxy { … }`.
    pub metrics_proxy: MetricsProxySettings,
    /// `ui_config.dashboard_url_templates`: link templates the console shows, by name.
    pub dashboard_url_templates: BTreeMap<String, String>,
    /// `ui_config.metrics_provider_files`: the scripts, as named in the configuration.
    pub metrics_provider_files: Vec<PathBuf>,
    /// Those files read at start and concatenated, each after a comment naming it: served as
    /// `<content_path>assets/compiled-metrics-providers.js` (empty: no files, a 404 there).
    pub metrics_provider_js: String,
}

impl Default for UiSettings {
    fn default() -> Self {
        UiSettings {
            enabled: false,
            dir: None,
            content_path: "/ui/".to_string(),
            metrics_provider: String::new(),
            metrics_provider_options: serde_json::Map::new(),
            metrics_proxy: MetricsProxySettings::default(),
            dashboard_url_templates: BTreeMap::new(),
            metrics_provider_files: Vec::new(),
            metrics_provider_js: String::new(),
        }
    }
}

impl UiSettings {
    /// Whether this agent serves the console at all (`enabled`, or a `dir` to serve).
    pub fn serves(&self) -> bool {
        self.enabled || self.dir.is_some()
    }

    /// The paths the metrics proxy may forward: `path_allowlist`, or Prometheus' query paths
    /// when the list is empty and the provider is `prometheus`.
    pub fn metrics_proxy_allowlist(&self) -> Vec<String> {
        if !self.metrics_proxy.path_allowlist.is_empty() {
            return self.metrics_proxy.path_allowlist.clone();
        }
        if self.metrics_provider == "prometheus" {
            return PROMETHEUS_DEFAULT_ALLOWLIST.iter().map(|s| s.to_string()).collect();
        }
        Vec::new()
    }
}

/// `ui_config.metrics_proxy { base_url, add_headers, path_allowlist }`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MetricsProxySettings {
    /// Where `/v1/internal/ui/metrics-proxy/…` requests go (`None`: the proxy is off).
    pub base_url: Option<String>,
    /// Headers added to every proxied request (`add_headers [{ name, value }]`).
    pub add_headers: Vec<(String, String)>,
    /// Upstream paths the proxy forwards; others answer 403.
    pub path_allowlist: Vec<String>,
}

/// Consul's `UIPathBuilder` and its checks: surrounding slashes trimmed and put back (`ui` and
/// `/ui` become `/ui/`; "" is the default `/ui/`), then only letters, digits, `-`, `_` and `/`,
/// and never an API version prefix (`/v1/…`), nor `/` alone, whose paths the API owns.
pub fn normalize_content_path(raw: &str) -> Result<String, String> {
    let trimmed = raw.trim_matches('/');
    if raw.is_empty() {
        return Ok("/ui/".to_string());
    }
    if trimmed.is_empty() {
        return Err(format!("cannot be {raw:?}: the HTTP API is served under /"));
    }
    let path = format!("/{trimmed}/");
    if !path.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '/')) {
        return Err(format!("can only contain alphanumeric, -, _, or /. received: {raw:?}"));
    }
    if path.contains("//") {
        return Err(format!("cannot contain empty segments. received: {raw:?}"));
    }
    let first = trimmed.split('/').next().unwrap_or_default();
    let versioned = first.len() > 1 && first.starts_with('v') && first[1..].chars().all(|c| c.is_ascii_digit());
    if versioned {
        return Err(format!("cannot have 'v[0-9]'. received: {raw:?}"));
    }
    Ok(path)
}

/// `ui_config.metrics_provider_files` read and concatenated (what the console loads as
/// `assets/compiled-metrics-providers.js`), or an error naming the file that could not be read.
pub fn read_provider_files(files: &[PathBuf]) -> Result<String, String> {
    let mut out = String::new();
    for f in files {
        let text = std::fs::read_to_string(f).map_err(|e| format!("cannot read {:?}: {e}", f.display().to_string()))?;
        let name = f.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        // The name goes into a line comment: a newline in it would end the comment.
        out.push_str(&format!("// {}\n", name.replace(['\n', '\r'], " ")));
        out.push_str(&text);
        out.push_str("\n;\n");
    }
    Ok(out)
}

/// `ui_config.metrics_provider_options_json`: "" or a JSON object.
pub fn parse_provider_options(raw: &str) -> Result<serde_json::Map<String, serde_json::Value>, String> {
    if raw.is_empty() {
        return Ok(serde_json::Map::new());
    }
    match serde_json::from_str::<serde_json::Value>(raw) {
        Ok(serde_json::Value::Object(m)) => Ok(m),
        _ => Err(format!("must be empty or a string containing a valid JSON object. received: {raw:?}")),
    }
}

/// `ui_config.metrics_proxy.base_url`: an http or https URL.
pub fn check_base_url(raw: &str) -> Result<(), String> {
    let ok = raw
        .parse::<axum::http::Uri>()
        .is_ok_and(|u| matches!(u.scheme_str(), Some("http" | "https")) && u.host().is_some());
    if ok {
        Ok(())
    } else {
        Err(format!("must be a valid http or https URL. received: {raw:?}"))
    }
}

/// An entry of `ui_config.metrics_proxy.path_allowlist`: an absolute URL path.
pub fn check_allowed_path(raw: &str) -> Result<(), String> {
    if !raw.starts_with('/') || raw.contains(['?', '#']) || raw.split('/').any(|s| s == ".." || s == ".") {
        return Err(format!("path {raw:?} must be an absolute path with no query, fragment or dot segments"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_path_is_normalised_as_consul_does() {
        for (raw, want) in [
            ("", "/ui/"),
            ("ui", "/ui/"),
            ("/ui", "/ui/"),
            ("/console/", "/console/"),
            ("//deep/er//", "/deep/er/"),
            ("a-b_c/d", "/a-b_c/d/"),
            ("/v/", "/v/"),
            ("/version/", "/version/"),
        ] {
            assert_eq!(normalize_content_path(raw).as_deref(), Ok(want), "{raw:?}");
        }
        for bad in ["/", "//", "/v1/", "v2", "/v1/ui/", "/ui.x/", "/a b/", "/ui/%2e/", "/a//b/"] {
            assert!(normalize_content_path(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn provider_options_must_be_an_object() {
        assert!(parse_provider_options("").is_ok_and(|m| m.is_empty()));
        assert_eq!(parse_provider_options(r#"{"a":1}"#).expect("object")["a"], 1);
        for bad in ["[]", "1", "{", "\"x\""] {
            assert!(parse_provider_options(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn provider_files_are_concatenated_or_refused_by_name() {
        let dir = tempfile::tempdir().expect("tempdir");
        let a = dir.path().join("a.js");
        let b = dir.path().join("b.js");
        std::fs::write(&a, "one()").expect("write");
        std::fs::write(&b, "two()").expect("write");
        let js = read_provider_files(&[a.clone(), b]).expect("read");
        assert_eq!(js, "// a.js\none()\n;\n// b.js\ntwo()\n;\n");
        assert_eq!(read_provider_files(&[]).as_deref(), Ok(""));
        let missing = dir.path().join("missing.js");
        let e = read_provider_files(&[a, missing.clone()]).expect_err("missing");
        assert!(e.contains(&missing.display().to_string()), "{e}");
    }

    #[test]
    fn allowlist_defaults_to_prometheus_query_paths() {
        let mut s = UiSettings::default();
        assert!(s.metrics_proxy_allowlist().is_empty());
        s.metrics_provider = "prometheus".into();
        assert_eq!(s.metrics_proxy_allowlist(), ["/api/v1/query", "/api/v1/query_range"]);
        s.metrics_proxy.path_allowlist = vec!["/x".into()];
        assert_eq!(s.metrics_proxy_allowlist(), ["/x"]);
        assert!(check_base_url("http://prom:9090").is_ok());
        assert!(check_base_url("ftp://prom").is_err() && check_base_url("prom:9090").is_err());
        assert!(check_allowed_path("/api/v1/query").is_ok() && check_allowed_path("api").is_err());
    }
}
