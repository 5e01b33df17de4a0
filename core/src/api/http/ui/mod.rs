//! The web console, served at `ui_config.content_path` (`/ui/`) as Consul serves its own.
//!
//! Every page path under the content path (`/ui/dc1/services`, `/ui/dc1/kv/a.b/edit`, the
//! content path itself) answers the one HTML page, which the front end routes client-side, so
//! Consul's bookmarks carry over. The page's scripts, styles and images live under
//! `<content_path>assets/<asset-version>/`, a prefix that changes with every build of the
//! assets, so they are cached for a year; the page itself is `no-cache`. The files are
//! compiled into the binary ([`assets`]) unless `ui_config.dir` names a directory to read them
//! from at request time ([`dir`]).
//!
//! These routes are served by every agent itself (client agents too) and need no token: the
//! data the console loads goes through the API and its ACLs.

mod assets;
mod content_type;
mod dir;
mod encoding;
mod first_visit;
mod metrics_proxy;
mod page;
pub mod settings;

use std::path::PathBuf;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use self::encoding::{negotiate, none_match, Encoding};
pub use self::first_visit::{first_visit, Fetched};
pub use self::settings::{MetricsProxySettings, UiSettings};
use super::{ApiSettings, Ctx};

/// Consul's answer on `/` when the console is off (scripts look for "Consul Agent").
pub const UI_DISABLED_TEXT: &str =
    "Consul Agent: UI disabled. To enable, set ui_config.enabled=true in the agent configuration and restart.";

/// How long the hashed assets may be cached: they never change under their URL.
const IMMUTABLE: &str = "public, max-age=31536000, immutable";

/// The version segment of the assets' prefix when they are read from `ui_config.dir` (they
/// change without a build, so there is no hash to name them by; they are served `no-cache`).
const DIR_VERSION: &str = "dir";

/// Where the files come from.
#[derive(Debug)]
enum Source {
    /// Compiled in; the page rendered once.
    Embedded(RenderedPage),
    /// `ui_config.dir` (canonical), read at request time.
    Dir(PathBuf),
}

/// The page, rendered for this agent, with its gzip variant.
#[derive(Debug)]
struct RenderedPage {
    identity: bytes::Bytes,
    gzip: Option<bytes::Bytes>,
    etag: String,
}

/// The console as one agent serves it.
#[derive(Debug)]
pub(crate) struct Console {
    /// `ui_config.content_path`, with both slashes.
    content_path: String,
    /// `<content_path>assets/<version>/`.
    assets_prefix: String,
    /// The front end's settings (before escaping).
    config: serde_json::Value,
    source: Source,
    /// `ui_config.metrics_provider_files`, concatenated, with its ETag (`None`: no files).
    providers: Option<(bytes::Bytes, String)>,
}

/// Where the console loads `ui_config.metrics_provider_files` from (Consul's path, under the
/// content path but outside the hashed assets: the files can change without a new build).
const PROVIDERS_PATH: &str = "assets/compiled-metrics-providers.js";

impl Console {
    fn new(api: &ApiSettings) -> Console {
        let ui = &api.ui;
        let facts =
            page::PageFacts { datacenter: &api.datacenter, node_name: &api.node_name, acls_enabled: api.acl.enabled };
        let config = page::config_json(ui, &facts);
        let version = if ui.dir.is_some() { DIR_VERSION } else { assets::version() };
        let assets_prefix = format!("{}assets/{version}/", ui.content_path);
        let source = match &ui.dir {
            // A directory that cannot be resolved serves nothing (404s) rather than failing:
            // the configuration check at start refuses a missing one, so this only happens
            // when it disappears in between.
            Some(d) => Source::Dir(std::fs::canonicalize(d).unwrap_or_else(|_| d.clone())),
            None => {
                let template = assets::index_template()
                    .map(|t| String::from_utf8_lossy(t).into_owned())
                    .unwrap_or_else(|| page::FALLBACK_TEMPLATE.to_string());
                Source::Embedded(RenderedPage::new(page::render(&template, &assets_prefix, &config)))
            }
        };
        let providers = (!ui.metrics_provider_js.is_empty()).then(|| {
            let etag = format!("\"{}\"", content_tag(ui.metrics_provider_js.as_bytes()));
            (bytes::Bytes::from(ui.metrics_provider_js.clone()), etag)
        });
        Console { content_path: ui.content_path.clone(), assets_prefix, config, source, providers }
    }

    fn render(&self, template: &str) -> String {
        page::render(template, &self.assets_prefix, &self.config)
    }
}

impl RenderedPage {
    fn new(html: String) -> RenderedPage {
        let etag = content_tag(html.as_bytes());
        let gzip = gzip(html.as_bytes()).filter(|g| g.len() < html.len());
        RenderedPage { identity: html.into(), gzip: gzip.map(Into::into), etag }
    }
}

/// The ETag (unquoted) of content made or read at run time: the first 8 bytes of its SHA-256,
/// as `core/build.rs` tags the embedded assets.
fn content_tag(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(&sha2::Sha256::digest(bytes)[..8])
}

fn gzip(bytes: &[u8]) -> Option<Vec<u8>> {
    use std::io::Write;
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(bytes).ok()?;
    enc.finish().ok()
}

/// The console's routes, and `/` (a redirect to the console, or Consul's "UI disabled" text).
/// Served by every agent; the caller leaves them out of request metrics, as Consul does.
pub(crate) fn routes(ctx: &Ctx) -> Router<Ctx> {
    let ui = &ctx.config.ui;
    // Answered here whatever the settings ("UI is not enabled" / "Metrics proxy is not
    // enabled" when off), so client agents do not forward it.
    let proxy = Arc::new(metrics_proxy::MetricsProxy::new(ui));
    let proxy: Router<Ctx> = Router::new()
        .route(&format!("{}/{{*path}}", metrics_proxy::PREFIX), get(metrics_proxy::forward))
        .with_state(proxy);
    if !ui.serves() {
        return Router::new().route("/", get(|| async { plain(StatusCode::OK, UI_DISABLED_TEXT) })).merge(proxy);
    }
    console_routes(Arc::new(Console::new(&ctx.config))).merge(proxy)
}

/// `/`, the content path with and without its slash, and everything under it.
fn console_routes<S: Clone + Send + Sync + 'static>(console: Arc<Console>) -> Router<S> {
    let bare = console.content_path.trim_end_matches('/').to_string();
    let router: Router<Arc<Console>> = Router::new()
        .route("/", get(redirect_to_console))
        .route(&bare, get(redirect_to_console))
        .route(&console.content_path, get(index))
        .route(&format!("{}{{*rest}}", console.content_path), get(page_or_asset));
    router.with_state(console)
}

/// Sizes of one embedded console file, for checks on what a first visit transfers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmbeddedFile {
    /// Path relative to `ui/` (`app.js`, `pages/kv.js`).
    pub path: &'static str,
    /// Its `Content-Type`.
    pub content_type: &'static str,
    /// Bytes as stored.
    pub identity: usize,
    /// Bytes sent to a client that accepts brotli (the smallest variant there is).
    pub smallest: usize,
    /// The bytes themselves, uncompressed (to follow imports).
    pub bytes: &'static [u8],
}

/// Every file compiled into the binary but `index.html`, sorted by path.
pub fn embedded_files() -> Vec<EmbeddedFile> {
    assets::all()
        .iter()
        .map(|a| EmbeddedFile {
            path: a.path,
            content_type: a.content_type,
            identity: a.identity.len(),
            smallest: [a.br, a.gzip]
                .into_iter()
                .flatten()
                .map(<[u8]>::len)
                .chain([a.identity.len()])
                .min()
                .unwrap_or(0),
            bytes: a.identity,
        })
        .collect()
}

/// `ui/index.html` as compiled in (the template, placeholders unfilled).
pub fn embedded_index_template() -> Option<&'static [u8]> {
    assets::index_template()
}

/// The hash naming the compiled-in assets' URL prefix (`<content_path>assets/<version>/`).
pub fn embedded_asset_version() -> &'static str {
    assets::version()
}

/// Whether the console answers `path` itself (no token needed).
pub(crate) fn is_console_path(ui: &UiSettings, path: &str) -> bool {
    path == "/"
        || (ui.serves()
            && (path.starts_with(ui.content_path.as_str()) || path == ui.content_path.trim_end_matches('/')))
}

async fn redirect_to_console(State(console): State<Arc<Console>>) -> Response {
    let mut resp = StatusCode::MOVED_PERMANENTLY.into_response();
    if let Ok(v) = HeaderValue::from_str(&console.content_path) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    resp
}

async fn index(State(console): State<Arc<Console>>, headers: HeaderMap) -> Response {
    serve_page(&console, &headers).await
}

async fn page_or_asset(State(console): State<Arc<Console>>, Path(rest): Path<String>, headers: HeaderMap) -> Response {
    if rest == PROVIDERS_PATH {
        return serve_providers(&console, &headers);
    }
    match rest.strip_prefix("assets/") {
        Some(asset) => serve_asset(&console, asset, &headers).await,
        None => serve_page(&console, &headers).await,
    }
}

fn accept_encoding(headers: &HeaderMap) -> Option<&str> {
    headers.get(header::ACCEPT_ENCODING).and_then(|v| v.to_str().ok())
}

fn if_none_match(headers: &HeaderMap) -> Option<&str> {
    headers.get(header::IF_NONE_MATCH).and_then(|v| v.to_str().ok())
}

/// The HTML page for any page path.
async fn serve_page(console: &Console, headers: &HeaderMap) -> Response {
    match &console.source {
        Source::Embedded(page) => {
            let available: &[Encoding] = if page.gzip.is_some() { &[Encoding::Gzip] } else { &[] };
            let enc = negotiate(accept_encoding(headers), available);
            let body = match (enc, &page.gzip) {
                (Encoding::Gzip, Some(g)) => g.clone(),
                _ => page.identity.clone(),
            };
            let etag = format!("\"{}{}\"", page.etag, enc.etag_suffix());
            respond(headers, "text/html; charset=utf-8", "no-cache", &etag, enc, body)
        }
        Source::Dir(root) => {
            let template = match dir::resolve(root, "index.html") {
                Ok(p) => tokio::fs::read_to_string(p).await.ok(),
                Err(_) => None,
            };
            let Some(template) = template else {
                return plain(StatusCode::NOT_FOUND, "ui_config.dir has no readable index.html");
            };
            let page = RenderedPage::new(console.render(&template));
            let etag = format!("\"{}\"", page.etag);
            respond(headers, "text/html; charset=utf-8", "no-cache", &etag, Encoding::Identity, page.identity)
        }
    }
}

/// `ui_config.metrics_provider_files`, read at start and concatenated; revalidated on every
/// load (`no-cache` with an ETag), and a 404 when none are configured, as in Consul.
fn serve_providers(console: &Console, headers: &HeaderMap) -> Response {
    match &console.providers {
        Some((body, etag)) => {
            respond(headers, "text/javascript; charset=utf-8", "no-cache", etag, Encoding::Identity, body.clone())
        }
        None => plain(StatusCode::NOT_FOUND, "No provider JS files configured"),
    }
}

/// A file under `<content_path>assets/` (`rest` is what follows that).
async fn serve_asset(console: &Console, rest: &str, headers: &HeaderMap) -> Response {
    let not_found = || plain(StatusCode::NOT_FOUND, "Not found: no console asset at this path");
    let Some((version, path)) = rest.split_once('/') else {
        return not_found();
    };
    match &console.source {
        Source::Embedded(_) => {
            let Some(asset) = (version == assets::version()).then(|| assets::find(path)).flatten() else {
                return not_found();
            };
            let mut available = Vec::with_capacity(2);
            if asset.br.is_some() {
                available.push(Encoding::Brotli);
            }
            if asset.gzip.is_some() {
                available.push(Encoding::Gzip);
            }
            let enc = negotiate(accept_encoding(headers), &available);
            let body = match enc {
                Encoding::Brotli => asset.br.unwrap_or(asset.identity),
                Encoding::Gzip => asset.gzip.unwrap_or(asset.identity),
                Encoding::Identity => asset.identity,
            };
            let etag = format!("\"{}{}\"", asset.etag, enc.etag_suffix());
            respond(headers, asset.content_type, IMMUTABLE, &etag, enc, bytes::Bytes::from_static(body))
        }
        Source::Dir(root) => {
            if version != DIR_VERSION || path == "index.html" {
                return not_found();
            }
            let Ok(file) = dir::resolve(root, path) else {
                return not_found();
            };
            let Ok(body) = tokio::fs::read(&file).await else {
                return not_found();
            };
            let etag = format!("\"{}\"", content_tag(&body));
            respond(headers, dir::content_type(&file), "no-cache", &etag, Encoding::Identity, body.into())
        }
    }
}

/// A 200 with the body, or a 304 when the client's `If-None-Match` names `etag`.
fn respond(
    req: &HeaderMap,
    content_type: &'static str,
    cache_control: &'static str,
    etag: &str,
    enc: Encoding,
    body: bytes::Bytes,
) -> Response {
    let not_modified = none_match(if_none_match(req), etag);
    let mut resp = if not_modified {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        let mut r = (StatusCode::OK, Body::from(body)).into_response();
        r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
        if let Some(coding) = enc.header() {
            r.headers_mut().insert(header::CONTENT_ENCODING, HeaderValue::from_static(coding));
        }
        r
    };
    let h = resp.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache_control));
    h.insert(header::VARY, HeaderValue::from_static("Accept-Encoding"));
    if let Ok(v) = HeaderValue::from_str(etag) {
        h.insert(header::ETAG, v);
    }
    resp
}

/// A plain-text answer without the trailing newline [`super::text`] adds (Consul's `/` text
/// has none).
fn plain(status: StatusCode, body: &'static str) -> Response {
    (status, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], body).into_response()
}

#[cfg(test)]
mod tests {
    use axum::http::Request;
    use tower::ServiceExt as _;

    use super::*;

    fn console(content_path: &str) -> Router {
        let mut config = crate::agent::config::AgentConfig { node_name: "n\"<1>".into(), ..Default::default() };
        config.ui.enabled = true;
        config.ui.content_path = content_path.into();
        console_routes(Arc::new(Console::new(&config.api_settings())))
    }

    async fn call(app: &Router, path: &str, headers: &[(&str, &str)]) -> (StatusCode, HeaderMap, Vec<u8>) {
        let mut req = Request::get(path);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = app.clone().oneshot(req.body(Body::empty()).expect("request")).await.expect("infallible");
        let (parts, body) = resp.into_parts();
        let body = axum::body::to_bytes(body, usize::MAX).await.expect("body").to_vec();
        (parts.status, parts.headers, body)
    }

    #[tokio::test]
    async fn page_paths_get_the_page_and_unknown_assets_a_404() {
        let app = console("/ui/");
        let (status, headers, page) = call(&app, "/ui/", &[]).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(headers[header::CACHE_CONTROL], "no-cache");
        let html = String::from_utf8(page.clone()).expect("utf-8");
        assert!(html.contains("n\\&quot;&lt;1&gt;"), "the node name is escaped: {html}");
        for path in ["/ui/dc1/kv/a.b/edit", "/ui/dc1/services/web/instances", "/ui/assets", "/ui/x.js"] {
            let (status, _, body) = call(&app, path, &[]).await;
            assert_eq!((status, &body), (StatusCode::OK, &page), "{path}");
        }
        let prefix = format!("/ui/assets/{}/", assets::version());
        for path in ["/ui/assets/", "/ui/assets/app.js", "/ui/assets/0000000000/app.js", &format!("{prefix}nope.js")] {
            let (status, headers, _) = call(&app, path, &[]).await;
            assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
            assert!(headers[header::CONTENT_TYPE].to_str().is_ok_and(|t| t.starts_with("text/plain")));
        }
        let (status, headers, _) = call(&app, "/ui", &[]).await;
        assert_eq!(
            (status, &headers[header::LOCATION]),
            (StatusCode::MOVED_PERMANENTLY, &HeaderValue::from_static("/ui/"))
        );
    }

    #[tokio::test]
    async fn metrics_provider_files_are_served_at_consuls_path() {
        let app = console("/ui/");
        let (status, _, body) = call(&app, "/ui/assets/compiled-metrics-providers.js", &[]).await;
        assert_eq!((status, &body[..]), (StatusCode::NOT_FOUND, &b"No provider JS files configured"[..]));

        let mut config = crate::agent::config::AgentConfig::default();
        config.ui.enabled = true;
        config.ui.metrics_provider_js = "// p.js\nconsul.registerMetricsProvider('p', {})\n;\n".into();
        let app = console_routes(Arc::new(Console::new(&config.api_settings())));
        let (status, headers, body) = call(&app, "/ui/assets/compiled-metrics-providers.js", &[]).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(headers[header::CONTENT_TYPE], "text/javascript; charset=utf-8");
        assert_eq!(headers[header::CACHE_CONTROL], "no-cache");
        assert_eq!(body, config.ui.metrics_provider_js.as_bytes());
        let etag = headers[header::ETAG].to_str().expect("etag").to_string();
        let (status, _, _) = call(&app, "/ui/assets/compiled-metrics-providers.js", &[("if-none-match", &etag)]).await;
        assert_eq!(status, StatusCode::NOT_MODIFIED);
        let (_, _, page) = call(&app, "/ui/", &[]).await;
        assert!(String::from_utf8_lossy(&page).contains("&quot;MetricsProviderFiles&quot;:true"));
    }

    #[tokio::test]
    async fn assets_are_negotiated_and_revalidated() {
        let app = console("/console/");
        let path = format!("/console/assets/{}/app.js", assets::version());
        let (status, headers, plain) = call(&app, &path, &[]).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(headers[header::CACHE_CONTROL], IMMUTABLE);
        assert_eq!(headers[header::VARY], "Accept-Encoding");
        assert!(headers.get(header::CONTENT_ENCODING).is_none());
        let app_js = assets::find("app.js").expect("embedded");
        assert_eq!(plain, app_js.identity);
        if let Some(br) = app_js.br {
            let (_, headers, body) = call(&app, &path, &[("accept-encoding", "gzip, br")]).await;
            assert_eq!((headers[header::CONTENT_ENCODING].to_str().ok(), &body[..]), (Some("br"), br));
            let etag = headers[header::ETAG].to_str().expect("etag").to_string();
            let (status, _, body) = call(&app, &path, &[("accept-encoding", "br"), ("if-none-match", &etag)]).await;
            assert_eq!((status, body.len()), (StatusCode::NOT_MODIFIED, 0));
            // The identity ETag differs: a 200 for a client holding the brotli copy but not asking for it.
            let (status, _, _) = call(&app, &path, &[("if-none-match", &etag)]).await;
            assert_eq!(status, StatusCode::OK);
        }
    }
}
