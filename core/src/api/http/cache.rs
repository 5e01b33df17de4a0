//! The agent cache (`?cached`; Consul's `agent/cache` and `setCacheMeta` in `agent/http.go`).
//!
//! Every agent keeps, per (endpoint path, result-affecting query parameters, token), the last
//! encoded response with its `X-Consul-Index` and when it was fetched. A `?cached` read of a
//! cacheable endpoint is answered from that entry (`X-Cache: HIT`, `Age`) or fetched through the
//! agent's own router as an ordinary read (`X-Cache: MISS`) and stored. While an entry is in use a
//! background task keeps a blocking query running for it, so entries stay current and a HIT never
//! waits on a server; a `?cached&index=N` read waits for that refresh to pass N.
//!
//! `Cache-Control` is honoured: `max-age=N` makes older entries a miss, `must-revalidate` always
//! fetches, `stale-if-error=N` answers an entry up to N seconds old when the fetch fails (servers
//! unreachable). Unlike Consul, which ignores `max-age`/`must-revalidate` for its background
//! refreshing types, they apply to every endpoint here: a client asking for them gets a fetch.
//!
//! Memory is bounded: at most [`MAX_ENTRIES`] entries and [`MAX_BYTES`] of bodies, and an entry unused for [`ENTRY_TTL`]
//! (Consul's 3 days) is dropped together with its refresh task. The bookkeeping
//! ([`CacheStore`]) is a plain struct fed `now`, so it is tested without clocks or sockets.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::query::{QueryParams, ReadParams};
use super::Ctx;
use crate::Error;

/// Most entries one agent keeps; past it the least recently used one goes.
pub const MAX_ENTRIES: usize = 4096;
/// Most response bytes one agent keeps; past it the least recently used entries go.
pub const MAX_BYTES: usize = 64 * 1024 * 1024;
/// How long an entry (and its background refresh) lives without being read (Consul: 3 days).
pub const ENTRY_TTL: Duration = Duration::from_secs(3 * 24 * 3600);
/// How long each background refresh blocks on the servers.
const REFRESH_WAIT: Duration = Duration::from_secs(300);
/// The longest pause between failed background refreshes.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Whether `path` is one of the endpoints Consul serves from its agent cache.
pub fn cacheable(path: &str) -> bool {
    path == "/v1/catalog/services"
        || path == "/v1/agent/connect/ca/roots"
        || ["/v1/catalog/service/", "/v1/health/service/", "/v1/agent/connect/ca/leaf/"]
            .iter()
            .any(|p| path.strip_prefix(p).is_some_and(|rest| !rest.is_empty()))
        || path
            .strip_prefix("/v1/query/")
            .and_then(|rest| rest.strip_suffix("/execute"))
            .is_some_and(|id| !id.is_empty() && !id.contains('/'))
}

/// A response as stored: everything needed to answer it again.
#[derive(Debug, Clone)]
pub struct CachedResponse {
    /// HTTP status (only successful responses are stored).
    pub status: StatusCode,
    /// The response headers, except the per-transfer ones.
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// The encoded body.
    pub body: bytes::Bytes,
    /// Its `X-Consul-Index`.
    pub index: u64,
}

/// The request's `Cache-Control` directives that bear on the agent cache.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheControl {
    /// `max-age=N`: an older entry is not good enough.
    pub max_age: Option<Duration>,
    /// `must-revalidate`: always fetch.
    pub must_revalidate: bool,
    /// `stale-if-error=N`: on a failed fetch, an entry up to N seconds old will do.
    pub stale_if_error: Option<Duration>,
}

impl CacheControl {
    /// Parses a `Cache-Control` header; unknown directives and bad numbers are ignored, as in
    /// Consul (which only reads the three directives it knows).
    pub fn parse(headers: &HeaderMap) -> Self {
        let mut cc = CacheControl::default();
        for value in headers.get_all(axum::http::header::CACHE_CONTROL) {
            let Ok(value) = value.to_str() else { continue };
            for directive in value.split(',').map(str::trim) {
                let (name, arg) = directive.split_once('=').unwrap_or((directive, ""));
                let secs = arg.trim().trim_matches('"').parse::<u64>().ok().map(Duration::from_secs);
                match name.trim().to_ascii_lowercase().as_str() {
                    "max-age" => cc.max_age = secs.or(cc.max_age),
                    "must-revalidate" => cc.must_revalidate = true,
                    "stale-if-error" => cc.stale_if_error = secs.or(cc.stale_if_error),
                    _ => {}
                }
            }
        }
        cc
    }
}

#[derive(Debug)]
struct Entry {
    resp: CachedResponse,
    fetched_at: Instant,
    last_used: Instant,
    /// Distinguishes this entry from a later one under the same key, so a refresh task of an
    /// evicted entry stops instead of feeding its successor.
    generation: u64,
}

/// The entries and their bookkeeping, without I/O: every call is given `now`.
#[derive(Debug)]
pub struct CacheStore {
    entries: HashMap<String, Entry>,
    max_entries: usize,
    max_bytes: usize,
    ttl: Duration,
    next_generation: u64,
}

impl CacheStore {
    /// An empty store holding at most `max_entries` entries, each for `ttl` after its last use.
    pub fn new(max_entries: usize, ttl: Duration) -> Self {
        Self::with_byte_limit(max_entries, MAX_BYTES, ttl)
    }

    /// [`CacheStore::new`] holding at most `max_bytes` of response bodies.
    pub fn with_byte_limit(max_entries: usize, max_bytes: usize, ttl: Duration) -> Self {
        CacheStore { entries: HashMap::new(), max_entries: max_entries.max(1), max_bytes, ttl, next_generation: 1 }
    }

    fn bytes(&self) -> usize {
        self.entries.values().map(|e| e.resp.body.len()).sum()
    }

    /// Drops least recently used entries (never `keep`) until both limits hold with `extra`
    /// more entries and `extra_bytes` more bytes.
    fn make_room(&mut self, keep: &str, extra: usize, extra_bytes: usize) {
        let mut bytes = self.bytes();
        while self.entries.len() + extra > self.max_entries || bytes + extra_bytes > self.max_bytes {
            let lru = self
                .entries
                .iter()
                .filter(|(k, _)| k.as_str() != keep)
                .min_by_key(|(_, e)| e.last_used)
                .map(|(k, _)| k.clone());
            let Some(k) = lru else { return };
            if let Some(e) = self.entries.remove(&k) {
                bytes = bytes.saturating_sub(e.resp.body.len());
            }
        }
    }

    /// How many entries are held.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the store is empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The entry for `key` if it may answer a request with `cc` waiting for an index past
    /// `min_index` (0: any), with its age; marks it used.
    pub fn lookup(
        &mut self,
        key: &str,
        cc: &CacheControl,
        min_index: u64,
        now: Instant,
    ) -> Option<(CachedResponse, Duration)> {
        let entry = self.entries.get_mut(key)?;
        entry.last_used = now;
        let age = now.saturating_duration_since(entry.fetched_at);
        let too_old = cc.max_age.is_some_and(|max| age > max);
        if too_old || cc.must_revalidate || (min_index > 0 && entry.resp.index <= min_index) {
            return None;
        }
        Some((entry.resp.clone(), age))
    }

    /// The entry for `key` when it is at most `within` old (for `stale-if-error`).
    pub fn stale(&mut self, key: &str, within: Duration, now: Instant) -> Option<(CachedResponse, Duration)> {
        let entry = self.entries.get_mut(key)?;
        let age = now.saturating_duration_since(entry.fetched_at);
        (age <= within).then(|| {
            entry.last_used = now;
            (entry.resp.clone(), age)
        })
    }

    /// Stores a freshly fetched response. Returns the entry's generation and whether it is a
    /// new entry (which then needs a refresh task).
    /// A body larger than the whole byte budget is not stored (generation 0, not new).
    pub fn insert(&mut self, key: &str, resp: CachedResponse, now: Instant) -> (u64, bool) {
        if resp.body.len() > self.max_bytes {
            self.entries.remove(key);
            return (0, false);
        }
        if let Some(e) = self.entries.get_mut(key) {
            let grow = resp.body.len().saturating_sub(e.resp.body.len());
            e.resp = resp;
            e.fetched_at = now;
            e.last_used = now;
            let generation = e.generation;
            self.make_room(key, 0, grow);
            return (generation, false);
        }
        self.evict(now);
        self.make_room(key, 1, resp.body.len());
        let generation = self.next_generation;
        self.next_generation += 1;
        self.entries.insert(key.to_string(), Entry { resp, fetched_at: now, last_used: now, generation });
        (generation, true)
    }

    /// A background refresh of generation `generation` returned `resp`: store it (if the entry
    /// is still that one). Returns false when the entry is gone and the refresh should stop.
    pub fn refreshed(&mut self, key: &str, generation: u64, resp: CachedResponse, now: Instant) -> bool {
        if resp.body.len() > self.max_bytes {
            self.entries.remove(key);
            return false;
        }
        match self.entries.get_mut(key) {
            Some(e) if e.generation == generation => {
                let grow = resp.body.len().saturating_sub(e.resp.body.len());
                e.resp = resp;
                e.fetched_at = now;
                self.make_room(key, 0, grow);
                true
            }
            _ => false,
        }
    }

    /// The index a refresh of `generation` should block on, or `None` when the entry is gone or
    /// unused for longer than the TTL (it is dropped then).
    pub fn refresh_index(&mut self, key: &str, generation: u64, now: Instant) -> Option<u64> {
        let e = self.entries.get(key).filter(|e| e.generation == generation)?;
        if now.saturating_duration_since(e.last_used) > self.ttl {
            self.entries.remove(key);
            return None;
        }
        Some(e.resp.index)
    }

    /// Drops every entry unused for longer than the TTL.
    pub fn evict(&mut self, now: Instant) {
        let ttl = self.ttl;
        self.entries.retain(|_, e| now.saturating_duration_since(e.last_used) <= ttl);
    }
}

/// One agent's cache: the store, the way to fetch (the agent's own router), and a signal that
/// wakes blocking `?cached` reads when a refresh lands.
pub struct AgentCache {
    store: Mutex<CacheStore>,
    /// The agent's router, set once it is built; cleared at shutdown (the router holds this
    /// cache through its layer, so keeping it would keep both alive).
    fetcher: Mutex<Option<Router>>,
    changed: tokio::sync::watch::Sender<u64>,
    shutdown: CancellationToken,
}

impl std::fmt::Debug for AgentCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let len = self.store.lock().map(|s| s.len()).unwrap_or(0);
        f.debug_struct("AgentCache").field("entries", &len).finish_non_exhaustive()
    }
}

impl AgentCache {
    /// An empty cache whose refresh tasks end when `shutdown` is cancelled.
    pub fn new(shutdown: CancellationToken) -> Arc<Self> {
        Arc::new(AgentCache {
            store: Mutex::new(CacheStore::new(MAX_ENTRIES, ENTRY_TTL)),
            fetcher: Mutex::new(None),
            changed: tokio::sync::watch::channel(0).0,
            shutdown,
        })
    }

    /// Gives the cache the router to fetch through (called once the router is built).
    pub(super) fn set_fetcher(self: &Arc<Self>, router: Router) {
        if let Ok(mut f) = self.fetcher.lock() {
            *f = Some(router);
        }
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            let me = Arc::downgrade(self);
            let shutdown = self.shutdown.clone();
            handle.spawn(async move {
                shutdown.cancelled().await;
                if let Some(me) = me.upgrade() {
                    if let Ok(mut f) = me.fetcher.lock() {
                        *f = None;
                    }
                }
            });
        }
    }

    fn with_store<T>(&self, f: impl FnOnce(&mut CacheStore) -> T) -> T {
        // A poisoned lock only means another request panicked mid-update; the map is still usable.
        let mut guard = self.store.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut guard)
    }

    /// Fetches `uri` through the agent's router as `headers`' token; `Err` when the servers could
    /// not answer (a 5xx or no router).
    async fn fetch(&self, uri: &Uri, headers: &HeaderMap) -> Result<Result<CachedResponse, Response>, ()> {
        let router = self.fetcher.lock().ok().and_then(|f| f.clone()).ok_or(())?;
        let mut req = Request::builder().method(Method::GET).uri(uri.clone());
        for name in ["X-Consul-Token", "Authorization"] {
            if let Some(v) = headers.get(name) {
                req = req.header(name, v.clone());
            }
        }
        let req = req.body(Body::empty()).map_err(|_| ())?;
        use tower::ServiceExt;
        let resp = router.oneshot(req).await.map_err(|_| ())?;
        if resp.status().is_server_error() {
            return Err(());
        }
        if !resp.status().is_success() {
            // A 4xx (bad parameters, 403) is the answer, not a failure to fetch; never stored.
            return Ok(Err(resp));
        }
        let (parts, body) = resp.into_parts();
        use http_body_util::BodyExt;
        let body = body.collect().await.map_err(|_| ())?.to_bytes();
        let index = parts
            .headers
            .get("X-Consul-Index")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0);
        let headers = parts
            .headers
            .iter()
            .filter(|(n, _)| {
                !matches!(
                    n.as_str(),
                    "content-length" | "date" | "transfer-encoding" | "connection" | "age" | "x-cache"
                )
            })
            .map(|(n, v)| (n.clone(), v.clone()))
            .collect();
        Ok(Ok(CachedResponse { status: parts.status, headers, body, index }))
    }

    /// Keeps `key`'s entry current with blocking queries until it is dropped or the agent stops.
    fn spawn_refresh(self: &Arc<Self>, key: String, generation: u64, base: Uri, headers: HeaderMap) {
        let me = self.clone();
        tokio::spawn(async move {
            let mut backoff = Duration::from_millis(250);
            loop {
                let Some(index) = me.with_store(|s| s.refresh_index(&key, generation, Instant::now())) else {
                    return;
                };
                let Some(uri) = with_params(&base, &[("index", index.to_string()), ("wait", "300s".into())]) else {
                    return;
                };
                let started = Instant::now();
                let fetched = tokio::select! {
                    r = tokio::time::timeout(REFRESH_WAIT * 2, me.fetch(&uri, &headers)) => r,
                    _ = me.shutdown.cancelled() => return,
                };
                match fetched {
                    Ok(Ok(Ok(resp))) => {
                        backoff = Duration::from_millis(250);
                        let quick_and_same = resp.index <= index && started.elapsed() < Duration::from_secs(1);
                        if !me.with_store(|s| s.refreshed(&key, generation, resp, Instant::now())) {
                            return;
                        }
                        me.changed.send_modify(|n| *n = n.wrapping_add(1));
                        if quick_and_same {
                            // The endpoint did not block (index unchanged at once): do not spin.
                            tokio::time::sleep(Duration::from_secs(1)).await;
                        }
                    }
                    _ => {
                        tokio::select! {
                            _ = tokio::time::sleep(backoff) => {}
                            _ = me.shutdown.cancelled() => return,
                        }
                        backoff = (backoff * 2).min(MAX_BACKOFF);
                    }
                }
            }
        });
    }
}

/// `base` with the parameters `set` replacing any of the same names.
fn with_params(base: &Uri, set: &[(&str, String)]) -> Option<Uri> {
    let q = QueryParams::from_uri(base);
    let mut ser = form_urlencoded::Serializer::new(String::new());
    for (k, v) in q.pairs() {
        if !set.iter().any(|(n, _)| *n == k) {
            ser.append_pair(k, v);
        }
    }
    for (k, v) in set {
        ser.append_pair(k, v);
    }
    let query = ser.finish();
    let pq = if query.is_empty() { base.path().to_string() } else { format!("{}?{query}", base.path()) };
    pq.parse().ok()
}

/// The request as the cache fetches it (without `cached`, `index`, `wait`), and its cache key:
/// that path and query, and the token it is read as.
fn key_and_base(uri: &Uri, headers: &HeaderMap) -> Option<(String, Uri)> {
    let q = QueryParams::from_uri(uri);
    let mut pairs: Vec<(&str, &str)> = q.pairs().filter(|(k, _)| !matches!(*k, "cached" | "index" | "wait")).collect();
    let mut ser = form_urlencoded::Serializer::new(String::new());
    for (k, v) in &pairs {
        ser.append_pair(k, v);
    }
    let query = ser.finish();
    let base: Uri =
        if query.is_empty() { uri.path().to_string() } else { format!("{}?{query}", uri.path()) }.parse().ok()?;
    // Parameter order does not change the answer; the token does.
    pairs.sort();
    let token = super::token(&q, headers).unwrap_or_default();
    let key = format!("{}\u{0}{:?}\u{0}{token}", uri.path(), pairs);
    Some((key, base))
}

fn respond(resp: CachedResponse, hit: Option<Duration>) -> Response {
    let mut out = (resp.status, Body::from(resp.body)).into_response();
    let headers = out.headers_mut();
    for (n, v) in resp.headers {
        headers.append(n, v);
    }
    match hit {
        Some(age) => {
            headers.insert("X-Cache", HeaderValue::from_static("HIT"));
            headers.insert("Age", HeaderValue::from(age.as_secs()));
        }
        None => {
            headers.insert("X-Cache", HeaderValue::from_static("MISS"));
        }
    }
    out
}

/// The middleware: answers `?cached` GETs of cacheable endpoints from the agent cache and
/// passes every other request through.
pub(super) async fn layer(State(ctx): State<Ctx>, req: Request, next: Next) -> Response {
    // `http_config.use_cache = false`: `?cached` is ignored, as in Consul.
    if !ctx.config.use_cache || req.method() != Method::GET || !cacheable(req.uri().path()) {
        return next.run(req).await;
    }
    let q = QueryParams::from_uri(req.uri());
    if !q.has("cached") {
        return next.run(req).await;
    }
    match cached_read(&ctx, &q, req.uri(), req.headers()).await {
        Ok(resp) => resp,
        Err(e) => e.into_response(),
    }
}

async fn cached_read(ctx: &Ctx, q: &QueryParams, uri: &Uri, headers: &HeaderMap) -> Result<Response, Error> {
    if q.has("consistent") {
        return Err(Error::BadRequest("Cannot specify ?cached with ?consistent".into()));
    }
    let params = ReadParams::parse(q, ctx.config.default_query_time, ctx.config.max_query_time)?;
    let cc = CacheControl::parse(headers);
    let cache = &ctx.cache;
    let (key, base) = key_and_base(uri, headers).ok_or_else(|| Error::BadRequest("Invalid request URI".into()))?;
    let deadline = Instant::now() + params.wait;
    let mut changed = cache.changed.subscribe();
    let mut fetched_once = false;
    loop {
        if let Some((resp, age)) = cache.with_store(|s| s.lookup(&key, &cc, params.index, Instant::now())) {
            return Ok(respond(resp, Some(age)));
        }
        let exists = cache.with_store(|s| s.entries.contains_key(&key));
        // A blocking read of an entry being refreshed waits for the refresh, not a new fetch.
        if (params.index > 0 && exists && !cc.must_revalidate && cc.max_age.is_none()) || fetched_once {
            tokio::select! {
                _ = changed.changed() => continue,
                _ = tokio::time::sleep_until(deadline) => {
                    // Timed out: answer what there is, as a blocking query does.
                    let current = cache.with_store(|s| s.lookup(&key, &CacheControl::default(), 0, Instant::now()));
                    if let Some((resp, age)) = current {
                        return Ok(respond(resp, Some(age)));
                    }
                    return Err(Error::Rpc("no answer from the servers before the wait ran out".into()));
                }
                _ = ctx.shutdown.cancelled() => return Err(Error::ShuttingDown),
            }
        }
        match cache.fetch(&base, headers).await {
            Ok(Ok(resp)) => {
                let (generation, new) = cache.with_store(|s| s.insert(&key, resp.clone(), Instant::now()));
                cache.changed.send_modify(|n| *n = n.wrapping_add(1));
                if new {
                    cache.spawn_refresh(key.clone(), generation, base.clone(), headers.clone());
                }
                // Too big to keep (generation 0): answered as fetched, like an uncached read.
                if params.index == 0 || resp.index > params.index || generation == 0 {
                    return Ok(respond(resp, None));
                }
                fetched_once = true;
            }
            Ok(Err(answer)) => return Ok(answer),
            Err(()) => {
                let stale =
                    cc.stale_if_error.and_then(|within| cache.with_store(|s| s.stale(&key, within, Instant::now())));
                return match stale {
                    Some((resp, age)) => Ok(respond(resp, Some(age))),
                    None => Err(Error::Rpc("no server answered the cached read".into())),
                };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resp(index: u64) -> CachedResponse {
        CachedResponse { status: StatusCode::OK, headers: Vec::new(), body: bytes::Bytes::from_static(b"[]"), index }
    }

    #[test]
    fn miss_then_hit_with_age() {
        let t0 = Instant::now();
        let mut s = CacheStore::new(10, ENTRY_TTL);
        let cc = CacheControl::default();
        assert!(s.lookup("k", &cc, 0, t0).is_none());
        assert_eq!(s.insert("k", resp(5), t0), (1, true));
        let (r, age) = s.lookup("k", &cc, 0, t0 + Duration::from_secs(7)).expect("hit");
        assert_eq!((r.index, age), (5, Duration::from_secs(7)));
        assert!(s.lookup("k", &cc, 5, t0).is_none(), "a blocking read past the entry's index waits");
        assert!(s.lookup("k", &cc, 4, t0).is_some());
    }

    #[test]
    fn max_age_and_must_revalidate_force_a_fetch() {
        let t0 = Instant::now();
        let mut s = CacheStore::new(10, ENTRY_TTL);
        s.insert("k", resp(1), t0);
        let later = t0 + Duration::from_secs(10);
        let max5 = CacheControl { max_age: Some(Duration::from_secs(5)), ..Default::default() };
        assert!(s.lookup("k", &max5, 0, later).is_none());
        let max20 = CacheControl { max_age: Some(Duration::from_secs(20)), ..Default::default() };
        assert!(s.lookup("k", &max20, 0, later).is_some());
        let reval = CacheControl { must_revalidate: true, ..Default::default() };
        assert!(s.lookup("k", &reval, 0, t0).is_none());
        assert!(s.stale("k", Duration::from_secs(10), later).is_some());
        assert!(s.stale("k", Duration::from_secs(9), later).is_none());
    }

    #[test]
    fn eviction_by_ttl_and_size() {
        let t0 = Instant::now();
        let mut s = CacheStore::new(2, Duration::from_secs(60));
        s.insert("a", resp(1), t0);
        s.insert("b", resp(1), t0 + Duration::from_secs(1));
        s.lookup("a", &CacheControl::default(), 0, t0 + Duration::from_secs(2));
        s.insert("c", resp(1), t0 + Duration::from_secs(3));
        assert_eq!(s.len(), 2);
        assert!(s.entries.contains_key("a") && !s.entries.contains_key("b"), "least recently used goes");
        s.evict(t0 + Duration::from_secs(63));
        assert!(s.entries.contains_key("c") && s.len() == 1, "unused past the TTL goes");
        let (generation, _) = s.insert("c", resp(2), t0 + Duration::from_secs(63));
        assert_eq!(s.refresh_index("c", generation, t0 + Duration::from_secs(64)), Some(2));
        assert_eq!(s.refresh_index("c", generation, t0 + Duration::from_secs(200)), None, "refresh stops");
        assert!(s.is_empty());
        assert!(!s.refreshed("c", generation, resp(3), t0), "a refresh of a dropped entry stops");
    }

    #[test]
    fn byte_budget() {
        let t0 = Instant::now();
        let big = |n: usize| CachedResponse { body: bytes::Bytes::from(vec![b'x'; n]), ..resp(1) };
        let mut s = CacheStore::with_byte_limit(10, 100, ENTRY_TTL);
        s.insert("a", big(40), t0);
        s.insert("b", big(40), t0 + Duration::from_secs(1));
        s.insert("c", big(40), t0 + Duration::from_secs(2));
        assert!(!s.entries.contains_key("a") && s.bytes() == 80, "oldest dropped to fit");
        assert_eq!(s.insert("d", big(101), t0), (0, false), "larger than the budget: not stored");
        assert!(!s.entries.contains_key("d"));
        let generation = s.entries["c"].generation;
        assert!(s.refreshed("c", generation, big(90), t0 + Duration::from_secs(3)));
        assert!(s.entries.contains_key("c") && !s.entries.contains_key("b") && s.bytes() == 90);
    }

    #[test]
    fn cache_control_and_keys() {
        let mut h = HeaderMap::new();
        h.insert("Cache-Control", HeaderValue::from_static("max-age=30, must-revalidate, stale-if-error=600, x=1"));
        let cc = CacheControl::parse(&h);
        assert_eq!(cc.max_age, Some(Duration::from_secs(30)));
        assert!(cc.must_revalidate);
        assert_eq!(cc.stale_if_error, Some(Duration::from_secs(600)));
        h.insert("Cache-Control", HeaderValue::from_static("max-age=banana"));
        assert_eq!(CacheControl::parse(&h), CacheControl::default());

        let u = |s: &str| s.parse::<Uri>().expect("uri");
        let (k1, base) =
            key_and_base(&u("/v1/health/service/web?cached&index=4&tag=a&passing"), &HeaderMap::new()).expect("key");
        let (k2, _) = key_and_base(&u("/v1/health/service/web?passing&tag=a&cached"), &HeaderMap::new()).expect("key");
        assert_eq!(k1, k2);
        assert_eq!(base.to_string(), "/v1/health/service/web?tag=a&passing=");
        let mut tok = HeaderMap::new();
        tok.insert("X-Consul-Token", HeaderValue::from_static("t"));
        assert_ne!(key_and_base(&u("/v1/health/service/web?cached"), &tok).expect("key").0, k1);
        assert!(cacheable("/v1/catalog/service/web") && !cacheable("/v1/catalog/service/"));
        assert!(!cacheable("/v1/kv/x") && cacheable("/v1/catalog/services"));
        assert!(cacheable("/v1/query/geo-db/execute") && !cacheable("/v1/query/geo-db"));
        assert!(!cacheable("/v1/query//execute") && !cacheable("/v1/query/a/b/execute"));
    }
}
