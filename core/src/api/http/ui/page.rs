//! The console's one HTML page: `ui/index.html` with the asset prefix and the settings the
//! front end needs filled in.

use serde_json::json;

use super::settings::UiSettings;

/// Replaced by the assets' URL prefix (with a trailing slash).
const ASSETS_PLACEHOLDER: &str = "%CONSUL_RS_ASSETS%";
/// Replaced by the settings as HTML-attribute-escaped JSON.
const CONFIG_PLACEHOLDER: &str = "%CONSUL_RS_UI_CONFIG%";

/// What the page tells the front end about this agent.
#[derive(Debug, Clone)]
pub(crate) struct PageFacts<'a> {
    pub(crate) datacenter: &'a str,
    pub(crate) node_name: &'a str,
    pub(crate) acls_enabled: bool,
}

/// The settings object the front end reads from `<meta name="consul-rs-ui-config">`.
pub(crate) fn config_json(ui: &UiSettings, facts: &PageFacts<'_>) -> serde_json::Value {
    json!({
        "ContentPath": ui.content_path,
        "Datacenter": facts.datacenter,
        "LocalDatacenter": facts.datacenter,
        "NodeName": facts.node_name,
        "Version": crate::VERSION,
        "ACLsEnabled": facts.acls_enabled,
        "MetricsProvider": ui.metrics_provider,
        "MetricsProviderOptions": ui.metrics_provider_options,
        "MetricsProxyEnabled": ui.metrics_proxy.base_url.is_some(),
        // Whether `<content_path>assets/compiled-metrics-providers.js` has scripts to load.
        "MetricsProviderFiles": !ui.metrics_provider_js.is_empty(),
        "DashboardURLTemplates": ui.dashboard_url_templates,
    })
}

/// Escapes text for a double- or single-quoted HTML attribute value.
pub(crate) fn escape_attribute(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + s.len() / 8);
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            c => out.push(c),
        }
    }
    out
}

/// The page: `template` with both placeholders filled. Only the placeholders are touched; the
/// values are inserted in one pass, so a value containing a placeholder is not expanded again.
pub(crate) fn render(template: &str, assets_prefix: &str, config: &serde_json::Value) -> String {
    let config = escape_attribute(&config.to_string());
    let mut out = String::with_capacity(template.len() + config.len());
    let mut rest = template;
    loop {
        let next = [(ASSETS_PLACEHOLDER, assets_prefix), (CONFIG_PLACEHOLDER, config.as_str())]
            .into_iter()
            .filter_map(|(p, v)| rest.find(p).map(|i| (i, p, v)))
            .min_by_key(|(i, _, _)| *i);
        match next {
            Some((i, placeholder, value)) => {
                out.push_str(&rest[..i]);
                out.push_str(value);
                rest = &rest[i + placeholder.len()..];
            }
            None => {
                out.push_str(rest);
                return out;
            }
        }
    }
}

/// The page when the build had no `ui/index.html`: enough to load `app.js`.
pub(crate) const FALLBACK_TEMPLATE: &str = "<!doctype html><html><head><meta charset=\"utf-8\">\
<meta name=\"consul-rs-ui-config\" content=\"%CONSUL_RS_UI_CONFIG%\"><title>Consul</title>\
<script type=\"module\" src=\"%CONSUL_RS_ASSETS%app.js\"></script></head><body></body></html>";

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(node: &str) -> PageFacts<'_> {
        PageFacts { datacenter: "dc1", node_name: node, acls_enabled: true }
    }

    /// The meta tag's attribute value, unescaped the way a browser does.
    fn meta_value(page: &str) -> String {
        let start = page.find("content=\"").expect("content attribute") + "content=\"".len();
        let end = page[start..].find('"').expect("closing quote") + start;
        page[start..end]
            .replace("&quot;", "\"")
            .replace("&#39;", "'")
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&amp;", "&")
    }

    #[test]
    fn a_hostile_node_name_stays_inside_the_attribute() {
        let node = "n\"><script>alert(1)</script>&amp;'%CONSUL_RS_ASSETS%";
        let ui = UiSettings::default();
        let page = render(FALLBACK_TEMPLATE, "/ui/assets/0123456789/", &config_json(&ui, &facts(node)));
        assert!(!page.contains("<script>alert"), "{page}");
        assert_eq!(page.matches("<script").count(), 1, "{page}");
        let config: serde_json::Value = serde_json::from_str(&meta_value(&page)).expect("JSON in the attribute");
        assert_eq!(config["NodeName"], node, "the value round-trips, placeholder text included");
        assert_eq!(config["Datacenter"], "dc1");
        assert_eq!(config["ContentPath"], "/ui/");
        assert_eq!(config["ACLsEnabled"], true);
        assert_eq!(config["MetricsProviderOptions"], json!({}));
        assert_eq!(config["MetricsProxyEnabled"], false);
        assert!(page.contains("src=\"/ui/assets/0123456789/app.js\""), "{page}");
    }

    #[test]
    fn every_placeholder_is_replaced() {
        let page = render("%CONSUL_RS_ASSETS%a %CONSUL_RS_ASSETS%b %CONSUL_RS_UI_CONFIG%", "/p/", &json!({"k": 1}));
        assert_eq!(page, "/p/a /p/b {&quot;k&quot;:1}");
        assert_eq!(escape_attribute("a&b<c>'\""), "a&amp;b&lt;c&gt;&#39;&quot;");
    }
}
