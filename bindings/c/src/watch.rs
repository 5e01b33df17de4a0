//! `consul_watch`: results of a blocking-query loop (the SDK's [`consul_sdk::Watch`]), delivered
//! to C either pulled (`consul_watch_next` with a timeout, or poll/select on `consul_watch_fd`)
//! or pushed (`consul_watch_set_callback`).
//!
//! A pump task on the SDK runtime moves each result of the SDK watch into a one-slot mailbox
//! (latest result wins, like the SDK's own delivery: a slow reader gets the newest state, never
//! a backlog). C threads wait on the mailbox's condition variable, not on tokio, and callbacks run
//! on a plain thread the library owns — never on a tokio worker, never with the mailbox lock
//! held, so a callback may call any `consul_*` function, including blocking ones and
//! `consul_watch_close`/`consul_watch_free` on its own watch.

use std::cell::Cell;
use std::ffi::{c_char, c_void, CString};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use base64::Engine;
use consul_sdk::{UserEvent, Watch, WatchEvent, WatchOptions, WatchSpec, WatchValue};
use serde_json::{json, Value};

use crate::client::{client, consul_client};
use crate::error::{consul_error, consul_status, error_on_stack, CError, CResult, ErrorInner};
use crate::ffi::{self, Handle, Tagged};
use crate::types::{consul_kv_list, consul_kv_pair, KvListC, KvPairC};

/// What a watch follows (`consul_watch_new`'s `kind`).
#[repr(C)]
#[allow(non_camel_case_types)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum consul_watch_kind {
    /// One key (`target` = the key). Events carry a `consul_kv_pair` (NULL when absent).
    CONSUL_WATCH_KEY = 0,
    /// Every key under a prefix (`target` = the prefix, `""` = all). Events carry a
    /// `consul_kv_list`.
    CONSUL_WATCH_KEY_PREFIX = 1,
    /// Instances of a service (`target` = its name): `/v1/health/service` JSON.
    CONSUL_WATCH_SERVICE = 2,
    /// Checks of a service (`target` = its name): `/v1/health/checks` JSON.
    CONSUL_WATCH_CHECKS = 3,
    /// Service names and tags (`target` ignored): `/v1/catalog/services` JSON.
    CONSUL_WATCH_SERVICES = 4,
    /// Nodes (`target` ignored): `/v1/catalog/nodes` JSON.
    CONSUL_WATCH_NODES = 5,
    /// User events (`target` = an event name, or NULL for all): `/v1/event/list` JSON.
    CONSUL_WATCH_EVENTS = 6,
}

/// Options of a watch. Pass NULL for the defaults; zero-initialise and set what you need.
#[repr(C)]
#[allow(non_camel_case_types)]
#[derive(Debug, Clone, Copy)]
pub struct consul_watch_options {
    /// Longest single blocking query in ms (0 = 5 minutes).
    pub wait_ms: u32,
    /// A `consul_consistency` value for the queries.
    pub consistency: u32,
    /// `CONSUL_WATCH_SERVICE`: only instances whose every check passes.
    pub passing_only: bool,
    /// `CONSUL_WATCH_SERVICE`: only instances with this tag (NULL = any).
    pub tag: *const c_char,
}

/// Called for each result of a watch in callback mode, on the watch's own library thread.
/// Exactly one of `event` and `error` is non-NULL; both are borrowed for the call only. After an
/// error the watch has ended and the callback is not called again. The callback may call any
/// `consul_*` function (also `consul_watch_close`/`consul_watch_free` on this watch) and must
/// not unwind (C++ exceptions, longjmp) out of itself.
#[allow(non_camel_case_types)]
pub type consul_watch_cb =
    Option<unsafe extern "C" fn(user_data: *mut c_void, event: *const consul_watch_event, error: *const consul_error)>;

/// Releases a callback's `user_data`; called exactly once, on the watch's thread, after the last
/// callback.
#[allow(non_camel_case_types)]
pub type consul_free_fn = Option<unsafe extern "C" fn(user_data: *mut c_void)>;

// ---- events ----

/// One result of a watch: its index, kind and value. Immutable; readable from any thread. An
/// event from `consul_watch_next` is yours to free with `consul_watch_event_free`; one passed
/// to a callback is borrowed for the call.
pub struct consul_watch_event {
    _opaque: [u8; 0],
}

/// The value of an event, in the form its accessors hand out.
#[derive(Debug)]
enum Payload {
    Key(Option<Tagged<KvPairC>>),
    Prefix(Tagged<KvListC>),
    Other(WatchValue),
}

/// What a `consul_watch_event` holds. The JSON form is made on first request only, so callers
/// that read the typed KV accessors never pay for it.
#[derive(Debug)]
pub(crate) struct EventC {
    index: u64,
    kind: consul_watch_kind,
    payload: Payload,
    json: OnceLock<CString>,
}

impl Handle for consul_watch_event {
    type Target = EventC;
    const MAGIC: u64 = 0xC0_5E_E7_70_0E_77_00_20;
    const NAME: &'static str = "consul_watch_event";
}

/// Consul's JSON for a user event (`/v1/event/list` shape, payload in base64).
pub(crate) fn event_json(e: &UserEvent) -> Value {
    json!({
        "ID": e.id,
        "Name": e.name,
        "Payload": e.payload.as_ref().map(|p| base64::engine::general_purpose::STANDARD.encode(p)),
        "NodeFilter": e.node_filter,
        "ServiceFilter": e.service_filter,
        "TagFilter": e.tag_filter,
        "Version": e.version,
        "LTime": e.ltime,
    })
}

impl EventC {
    fn new(ev: WatchEvent, kind: consul_watch_kind) -> EventC {
        let payload = match ev.value {
            WatchValue::Kv(p) => Payload::Key(p.map(|p| Tagged::new::<consul_kv_pair>(KvPairC::from_pair(p)))),
            WatchValue::KvList(l) => Payload::Prefix(Tagged::new::<consul_kv_list>(KvListC::from_pairs(l))),
            other => Payload::Other(other),
        };
        EventC { index: ev.index, kind, payload, json: OnceLock::new() }
    }

    fn to_json(&self) -> CResult<String> {
        let v = match &self.payload {
            Payload::Key(p) => p.as_ref().map_or(Value::Null, |p| p.value.to_json()),
            Payload::Prefix(l) => l.value.to_json(),
            Payload::Other(WatchValue::Events(list)) => Value::Array(list.iter().map(event_json).collect()),
            Payload::Other(v) => match v {
                WatchValue::Service(x) => serde_json::to_value(x),
                WatchValue::Checks(x) => serde_json::to_value(x),
                WatchValue::Services(x) => serde_json::to_value(x),
                WatchValue::Nodes(x) => serde_json::to_value(x),
                _ => Ok(Value::Null),
            }
            .map_err(CError::internal)?,
        };
        serde_json::to_string(&v).map_err(CError::internal)
    }
}

unsafe fn event<'a>(ev: *const consul_watch_event) -> Option<&'a EventC> {
    // SAFETY: forwarded contract (NULL or a live event).
    unsafe { ffi::borrow::<consul_watch_event>(ev, "event") }.ok()
}

/// The `X-Consul-Index` the result was read at.
///
/// # Safety
/// `ev` is NULL or a live `consul_watch_event`.
#[no_mangle]
pub unsafe extern "C" fn consul_watch_event_index(ev: *const consul_watch_event) -> u64 {
    // SAFETY: forwarded contract.
    ffi::catch_or(0, || unsafe { event(ev) }.map_or(0, |e| e.index))
}

/// The event's kind: a `consul_watch_kind` value (`UINT32_MAX` for NULL).
///
/// # Safety
/// `ev` is NULL or a live `consul_watch_event`.
#[no_mangle]
pub unsafe extern "C" fn consul_watch_event_kind(ev: *const consul_watch_event) -> u32 {
    // SAFETY: forwarded contract.
    ffi::catch_or(u32::MAX, || unsafe { event(ev) }.map_or(u32::MAX, |e| e.kind as u32))
}

/// The result as Consul's JSON (a KV object or `null`, a KV array, health entries, checks, a
/// service map, nodes or events): borrowed, valid until the event is freed (or the callback
/// returns). Made on first call.
///
/// # Safety
/// `ev` is NULL or a live `consul_watch_event`.
#[no_mangle]
pub unsafe extern "C" fn consul_watch_event_json(ev: *const consul_watch_event) -> *const c_char {
    ffi::catch_or(std::ptr::null(), || {
        // SAFETY: forwarded contract.
        let Some(e) = (unsafe { event(ev) }) else { return std::ptr::null() };
        e.json.get_or_init(|| ffi::cstring_lossy(e.to_json().unwrap_or_else(|_| "null".into()))).as_ptr()
    })
}

/// A `CONSUL_WATCH_KEY` event's pair (borrowed from the event), or NULL when the key does not
/// exist or the event is of another kind.
///
/// # Safety
/// `ev` is NULL or a live `consul_watch_event`.
#[no_mangle]
pub unsafe extern "C" fn consul_watch_event_kv_pair(ev: *const consul_watch_event) -> *const consul_kv_pair {
    ffi::catch_or(std::ptr::null(), || {
        // SAFETY: forwarded contract.
        match unsafe { event(ev) }.map(|e| &e.payload) {
            Some(Payload::Key(Some(p))) => p.as_handle::<consul_kv_pair>(),
            _ => std::ptr::null(),
        }
    })
}

/// A `CONSUL_WATCH_KEY_PREFIX` event's list (borrowed from the event), or NULL for other kinds.
///
/// # Safety
/// `ev` is NULL or a live `consul_watch_event`.
#[no_mangle]
pub unsafe extern "C" fn consul_watch_event_kv_list(ev: *const consul_watch_event) -> *const consul_kv_list {
    ffi::catch_or(std::ptr::null(), || {
        // SAFETY: forwarded contract.
        match unsafe { event(ev) }.map(|e| &e.payload) {
            Some(Payload::Prefix(l)) => l.as_handle::<consul_kv_list>(),
            _ => std::ptr::null(),
        }
    })
}

/// Frees an event from `consul_watch_next` (never one passed to a callback). NULL-safe.
///
/// # Safety
/// `ev` is NULL or an event you own, not used afterwards.
#[no_mangle]
pub unsafe extern "C" fn consul_watch_event_free(ev: *mut consul_watch_event) {
    // SAFETY: forwarded contract.
    ffi::catch_or((), || drop(unsafe { ffi::take::<consul_watch_event>(ev) }))
}

// ---- the mailbox ----

#[derive(Debug)]
enum Delivery {
    Event(WatchEvent),
    Failed(consul_sdk::Error),
}

/// A self-pipe that is readable while a delivery (or the end) is pending, for poll/select.
#[derive(Debug)]
struct Notifier {
    read: OwnedFd,
    write: OwnedFd,
}

impl Notifier {
    fn new() -> std::io::Result<Notifier> {
        let mut fds = [0 as libc::c_int; 2];
        // SAFETY: `fds` is a writable array of two ints, as pipe(2) requires.
        if unsafe { libc::pipe(fds.as_mut_ptr()) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: pipe(2) succeeded, so both descriptors are open and now owned here.
        let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        for fd in [read.as_raw_fd(), write.as_raw_fd()] {
            // Non-blocking (a full pipe is still readable; draining must not block) and
            // close-on-exec (children of the host must not inherit the watch's descriptors).
            // SAFETY: fcntl on descriptors we own, with integer arguments only.
            unsafe {
                let fl = libc::fcntl(fd, libc::F_GETFL);
                libc::fcntl(fd, libc::F_SETFL, fl | libc::O_NONBLOCK);
                libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC);
            }
        }
        Ok(Notifier { read, write })
    }

    fn signal(&self) {
        let b = 1u8;
        // SAFETY: writes one byte from a live local to a descriptor we own; EAGAIN (pipe full,
        // so already readable) is fine to ignore.
        let _ = unsafe { libc::write(self.write.as_raw_fd(), (&b as *const u8).cast(), 1) };
    }

    fn drain(&self) {
        let mut buf = [0u8; 64];
        loop {
            // SAFETY: reads into a live local buffer of the given size from a descriptor we own.
            let n = unsafe { libc::read(self.read.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
            if n <= 0 {
                break;
            }
        }
    }
}

#[derive(Debug, Default)]
struct State {
    /// The latest undelivered result.
    pending: Option<Delivery>,
    /// The SDK watch ended (closed or failed): nothing more will come.
    ended: bool,
    /// `consul_watch_close` was called.
    closed: bool,
    /// Results go to a callback; `consul_watch_next` is refused.
    callback: bool,
    /// The callback thread has made its last call and released `user_data`.
    dispatch_done: bool,
    notifier: Option<Notifier>,
}

impl State {
    fn readable(&self) -> bool {
        self.pending.is_some() || self.ended || self.closed
    }
}

#[derive(Debug)]
struct Shared {
    watch: Watch,
    kind: consul_watch_kind,
    state: Mutex<State>,
    cond: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A poisoned lock means a panic elsewhere already reported; the state is still sound.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn deliver(&self, d: Delivery) {
        let mut st = self.lock();
        if st.closed {
            return;
        }
        let was_readable = st.readable();
        st.pending = Some(d);
        if !was_readable {
            if let Some(n) = &st.notifier {
                n.signal();
            }
        }
        drop(st);
        self.cond.notify_all();
    }

    fn end(&self) {
        let mut st = self.lock();
        let was_readable = st.readable();
        st.ended = true;
        if !was_readable {
            if let Some(n) = &st.notifier {
                n.signal();
            }
        }
        drop(st);
        self.cond.notify_all();
    }

    /// Waits for the next delivery: `Ok(None)` once closed or ended, `Err(())` on timeout.
    fn take(&self, timeout: Option<Duration>) -> Result<Option<Delivery>, ()> {
        let deadline = timeout.map(|t| Instant::now() + t);
        let mut st = self.lock();
        loop {
            if st.closed {
                return Ok(None);
            }
            if let Some(d) = st.pending.take() {
                if !st.ended {
                    if let Some(n) = &st.notifier {
                        n.drain();
                    }
                }
                return Ok(Some(d));
            }
            if st.ended {
                return Ok(None);
            }
            st = match deadline {
                None => self.cond.wait(st).unwrap_or_else(|p| p.into_inner()),
                Some(d) => {
                    let now = Instant::now();
                    if now >= d {
                        return Err(());
                    }
                    self.cond.wait_timeout(st, d - now).unwrap_or_else(|p| p.into_inner()).0
                }
            };
        }
    }

    fn close(&self) {
        let mut st = self.lock();
        if !st.closed {
            st.closed = true;
            st.pending = None;
            if let Some(n) = &st.notifier {
                n.signal();
            }
        }
        drop(st);
        self.cond.notify_all();
        self.watch.close();
    }
}

/// Moves the SDK watch's results into the mailbox until it ends.
async fn pump(shared: Arc<Shared>) {
    loop {
        match shared.watch.next().await {
            Ok(Some(ev)) => shared.deliver(Delivery::Event(ev)),
            Ok(None) => break,
            Err(e) => {
                shared.deliver(Delivery::Failed(e));
                break;
            }
        }
    }
    shared.end();
}

// ---- the watch handle ----

/// A running watch. Thread-safe: `consul_watch_next` may be called from several threads (each
/// result goes to one of them), `consul_watch_close` from any thread (also from the watch's
/// callback). `consul_watch_free` once, when no other thread uses the handle any more (a
/// running callback is fine: free waits for it).
pub struct consul_watch {
    _opaque: [u8; 0],
}

/// What a `consul_watch` holds.
#[derive(Debug)]
pub(crate) struct WatchC {
    shared: Arc<Shared>,
    dispatcher: Mutex<Option<JoinHandle<()>>>,
}

impl Handle for consul_watch {
    type Target = WatchC;
    const MAGIC: u64 = 0xC0_5E_E7_70_0E_77_00_21;
    const NAME: &'static str = "consul_watch";
}

thread_local! {
    /// The watch whose callbacks this thread delivers (null on every other thread), so that a
    /// close from inside a callback does not wait for itself.
    static DISPATCHING: Cell<*const Shared> = const { Cell::new(std::ptr::null()) };
}

impl WatchC {
    /// Stops the watch and waits for a running callback (unless called from it).
    fn close(&self) {
        self.shared.close();
        if DISPATCHING.with(|d| d.get() == Arc::as_ptr(&self.shared)) {
            // Called from the callback: the thread finishes (and frees user_data) when the
            // callback returns; it cannot wait for itself. Its handle is dropped (detached).
            drop(self.dispatcher.lock().unwrap_or_else(|p| p.into_inner()).take());
            return;
        }
        // Every closing thread waits for the last callback, not only the one that reaps the
        // thread.
        let mut st = self.shared.lock();
        while st.callback && !st.dispatch_done {
            st = self.shared.cond.wait(st).unwrap_or_else(|p| p.into_inner());
        }
        drop(st);
        if let Some(h) = self.dispatcher.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = h.join();
        }
    }
}

/// Starts a watch of `kind` on `target` (see `consul_watch_kind`) and returns at once; the first
/// result (the current state) follows as soon as the agent answers. Pull results with
/// `consul_watch_next`, or hand them to a callback with `consul_watch_set_callback`.
///
/// # Safety
/// `c` is a live client; `target` is NULL or NUL-terminated; `options` is NULL or readable (its
/// `tag` NULL or NUL-terminated); `out` is writable; `err` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn consul_watch_new(
    c: *const consul_client,
    kind: u32,
    target: *const c_char,
    options: *const consul_watch_options,
    out: *mut *mut consul_watch,
    err: *mut *mut consul_error,
) -> consul_status {
    ffi::boundary(err, || {
        // SAFETY: forwarded contract.
        let cl = unsafe { client(c) }?.clone();
        // SAFETY: forwarded contract.
        let target = unsafe { ffi::opt_str_arg(target, "target") }?;
        let mut opts = WatchOptions::default();
        let (mut passing_only, mut tag) = (false, None);
        if !options.is_null() {
            // SAFETY: non-NULL and readable per the contract.
            let o = unsafe { *options };
            if o.wait_ms > 0 {
                opts.wait = Duration::from_millis(u64::from(o.wait_ms));
            }
            opts.consistency = crate::types::consistency(o.consistency)?;
            passing_only = o.passing_only;
            // SAFETY: forwarded contract on `tag`.
            tag = unsafe { ffi::opt_str_arg(o.tag, "options.tag") }?.map(str::to_string);
        }
        // An empty target is named as the Python and Node packages name it (`key: must not be
        // empty`), so the three refuse it with one message.
        let need = |what: &str| -> CResult<String> {
            match target {
                None => Err(CError::null("target")),
                Some("") => Err(CError::invalid(what, "must not be empty")),
                Some(t) => Ok(t.to_string()),
            }
        };
        let (kind, spec) = match kind {
            0 => (consul_watch_kind::CONSUL_WATCH_KEY, WatchSpec::Key(need("key")?)),
            1 => (
                consul_watch_kind::CONSUL_WATCH_KEY_PREFIX,
                WatchSpec::KeyPrefix(target.ok_or_else(|| CError::null("target"))?.to_string()),
            ),
            2 => {
                (consul_watch_kind::CONSUL_WATCH_SERVICE, WatchSpec::Service { name: need("name")?, passing_only, tag })
            }
            3 => (consul_watch_kind::CONSUL_WATCH_CHECKS, WatchSpec::Checks { service: need("service")? }),
            4 => (consul_watch_kind::CONSUL_WATCH_SERVICES, WatchSpec::Services),
            5 => (consul_watch_kind::CONSUL_WATCH_NODES, WatchSpec::Nodes),
            6 => (consul_watch_kind::CONSUL_WATCH_EVENTS, WatchSpec::Events { name: target.map(str::to_string) }),
            n => return Err(CError::invalid("kind", format!("{n} is not a consul_watch_kind"))),
        };
        ffi::need_out(out, "out")?;
        let rt = consul_sdk::runtime::runtime()?;
        let watch = {
            let _enter = rt.enter();
            cl.watch(spec, opts)
        };
        let shared = Arc::new(Shared { watch, kind, state: Mutex::new(State::default()), cond: Condvar::new() });
        rt.spawn(pump(shared.clone()));
        let handle = ffi::into_handle::<consul_watch>(WatchC { shared, dispatcher: Mutex::new(None) });
        // SAFETY: checked non-NULL.
        unsafe { ffi::write_out(out, handle) };
        Ok(())
    })
}

/// Watches one key: `consul_watch_new(c, CONSUL_WATCH_KEY, key, NULL, out, err)`.
///
/// # Safety
/// As for `consul_watch_new`.
#[no_mangle]
pub unsafe extern "C" fn consul_watch_key(
    c: *const consul_client,
    key: *const c_char,
    out: *mut *mut consul_watch,
    err: *mut *mut consul_error,
) -> consul_status {
    // SAFETY: forwarded contract.
    unsafe { consul_watch_new(c, 0, key, std::ptr::null(), out, err) }
}

/// Watches every key under `prefix`: `consul_watch_new(c, CONSUL_WATCH_KEY_PREFIX, …)`.
///
/// # Safety
/// As for `consul_watch_new`.
#[no_mangle]
pub unsafe extern "C" fn consul_watch_prefix(
    c: *const consul_client,
    prefix: *const c_char,
    out: *mut *mut consul_watch,
    err: *mut *mut consul_error,
) -> consul_status {
    // SAFETY: forwarded contract.
    unsafe { consul_watch_new(c, 1, prefix, std::ptr::null(), out, err) }
}

/// Watches the instances of `service` (only passing ones with `passing_only`).
///
/// # Safety
/// As for `consul_watch_new`.
#[no_mangle]
pub unsafe extern "C" fn consul_watch_service(
    c: *const consul_client,
    service: *const c_char,
    passing_only: bool,
    out: *mut *mut consul_watch,
    err: *mut *mut consul_error,
) -> consul_status {
    let o = consul_watch_options { wait_ms: 0, consistency: 0, passing_only, tag: std::ptr::null() };
    // SAFETY: forwarded contract; `o` lives through the call.
    unsafe { consul_watch_new(c, 2, service, &o, out, err) }
}

/// Waits for the next result that differs from the last one delivered (the first call gets the
/// current state). `timeout_ms`: -1 waits forever, 0 only checks. On `CONSUL_OK`, `*out` is the
/// event (free with `consul_watch_event_free`) or NULL once the watch is closed or has ended
/// (after reporting its error). No result in time: `CONSUL_E_TIMEOUT`. A watch in callback mode
/// refuses (`CONSUL_E_INVALID_ARGUMENT`). Errors the watch cannot ride out (a 403, a 400)
/// end it: that `next` returns the error, later ones `CONSUL_OK` with NULL.
///
/// # Safety
/// `w` is a live watch; `out` is writable; `err` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn consul_watch_next(
    w: *const consul_watch,
    timeout_ms: i32,
    out: *mut *mut consul_watch_event,
    err: *mut *mut consul_error,
) -> consul_status {
    ffi::boundary(err, || {
        // SAFETY: forwarded contract.
        let w = unsafe { ffi::borrow::<consul_watch>(w, "watch") }?;
        ffi::need_out(out, "out")?;
        if w.shared.lock().callback {
            return Err(CError::invalid("watch", "results go to its callback; consul_watch_next is not available"));
        }
        let timeout = ffi::timeout_ms(timeout_ms);
        let handle = match w.shared.take(timeout) {
            Err(()) => {
                return Err(CError::new(
                    consul_status::CONSUL_E_TIMEOUT,
                    format!("no change within {} ms", timeout_ms.max(0)),
                ))
            }
            Ok(None) => std::ptr::null_mut(),
            Ok(Some(Delivery::Event(ev))) => ffi::into_handle::<consul_watch_event>(EventC::new(ev, w.shared.kind)),
            Ok(Some(Delivery::Failed(e))) => return Err(e.into()),
        };
        // SAFETY: checked non-NULL.
        unsafe { ffi::write_out(out, handle) };
        Ok(())
    })
}

/// A file descriptor that is readable while a result (or the watch's end) is waiting for
/// `consul_watch_next` — for poll/select/epoll loops. Owned by the watch: do not close or read
/// it; it stays valid until `consul_watch_free`. -1 for NULL or when no descriptor can be made.
///
/// # Safety
/// `w` is NULL or a live watch.
#[no_mangle]
pub unsafe extern "C" fn consul_watch_fd(w: *const consul_watch) -> libc::c_int {
    ffi::catch_or(-1, || {
        // SAFETY: forwarded contract.
        let Ok(w) = (unsafe { ffi::borrow::<consul_watch>(w, "watch") }) else { return -1 };
        let mut st = w.shared.lock();
        if st.notifier.is_none() {
            match Notifier::new() {
                Ok(n) => {
                    if st.readable() {
                        n.signal();
                    }
                    st.notifier = Some(n);
                }
                Err(_) => return -1,
            }
        }
        st.notifier.as_ref().map_or(-1, |n| n.read.as_raw_fd())
    })
}

/// Where a callback's arguments live while its thread runs.
struct CallbackTarget {
    cb: unsafe extern "C" fn(*mut c_void, *const consul_watch_event, *const consul_error),
    user_data: *mut c_void,
    free: consul_free_fn,
}

// SAFETY: `user_data` is the caller's, handed over with the documented promise that the callback
// and `user_data_free` may run on the library's thread; the library only passes it back.
unsafe impl Send for CallbackTarget {}

fn dispatch(shared: Arc<Shared>, target: CallbackTarget) {
    DISPATCHING.with(|d| d.set(Arc::as_ptr(&shared)));
    loop {
        let delivered = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| match shared.take(None) {
            Ok(Some(Delivery::Event(ev))) => {
                let ev = Box::new(Tagged::new::<consul_watch_event>(EventC::new(ev, shared.kind)));
                // SAFETY: the callback was given by the caller for exactly this; the event is
                // alive for the call.
                unsafe { (target.cb)(target.user_data, ev.as_handle::<consul_watch_event>(), std::ptr::null()) };
                true
            }
            Ok(Some(Delivery::Failed(e))) => {
                let e: Box<Tagged<ErrorInner>> = error_on_stack(e.into());
                // SAFETY: as above; the error is alive for the call.
                unsafe { (target.cb)(target.user_data, std::ptr::null(), e.as_handle::<consul_error>()) };
                true
            }
            Ok(None) | Err(()) => false,
        }));
        if !matches!(delivered, Ok(true)) {
            break;
        }
    }
    if let Some(free) = target.free {
        // SAFETY: called once, after the last callback, as documented.
        unsafe { free(target.user_data) };
    }
    shared.lock().dispatch_done = true;
    shared.cond.notify_all();
}

/// Delivers the watch's results to `cb` from now on, on a thread the library starts for this
/// watch (never a runtime worker; no library lock held during the call). `user_data` is passed
/// back to every call; `user_data_free` (may be NULL) is called exactly once, on that thread,
/// after the last callback — when the watch is closed, freed, or has ended after an error. A
/// watch takes one callback; a second is refused. On failure nothing is kept: `user_data` is
/// still yours.
///
/// # Safety
/// `w` is a live watch; `cb` and `user_data_free` are NULL or valid functions that may run on
/// another thread; `err` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn consul_watch_set_callback(
    w: *const consul_watch,
    cb: consul_watch_cb,
    user_data: *mut c_void,
    user_data_free: consul_free_fn,
    err: *mut *mut consul_error,
) -> consul_status {
    ffi::boundary(err, || {
        // SAFETY: forwarded contract.
        let w = unsafe { ffi::borrow::<consul_watch>(w, "watch") }?;
        let cb = cb.ok_or_else(|| CError::null("cb"))?;
        {
            let mut st = w.shared.lock();
            if st.callback {
                return Err(CError::invalid("watch", "already has a callback"));
            }
            if st.closed {
                return Err(CError::new(consul_status::CONSUL_E_CANCELLED, "the watch is closed"));
            }
            st.callback = true;
        }
        let target = CallbackTarget { cb, user_data, free: user_data_free };
        let shared = w.shared.clone();
        let spawned =
            std::thread::Builder::new().name("consul-watch-cb".into()).spawn(move || dispatch(shared, target));
        match spawned {
            Ok(h) => {
                *w.dispatcher.lock().unwrap_or_else(|p| p.into_inner()) = Some(h);
                Ok(())
            }
            Err(e) => {
                // The closure (and with it `user_data`) was dropped without being called.
                w.shared.lock().callback = false;
                w.shared.cond.notify_all();
                Err(CError::internal(format!("cannot start the callback thread: {e}")))
            }
        }
    })
}

/// Stops the watch: pending and later `consul_watch_next` calls return `CONSUL_OK` with NULL;
/// in callback mode, waits until a running callback has returned and `user_data_free` has run
/// (unless called from the callback itself). Idempotent; NULL-safe.
///
/// # Safety
/// `w` is NULL or a live watch.
#[no_mangle]
pub unsafe extern "C" fn consul_watch_close(w: *const consul_watch) {
    ffi::catch_or((), || {
        // SAFETY: forwarded contract.
        if let Ok(w) = unsafe { ffi::borrow::<consul_watch>(w, "watch") } {
            w.close();
        }
    })
}

/// Closes (see `consul_watch_close`) and frees a watch. NULL-safe. May be called from the
/// watch's own callback.
///
/// # Safety
/// `w` is NULL or a live watch that no other thread uses any more.
#[no_mangle]
pub unsafe extern "C" fn consul_watch_free(w: *mut consul_watch) {
    ffi::catch_or((), || {
        // SAFETY: forwarded contract.
        if let Some(w) = unsafe { ffi::take::<consul_watch>(w) } {
            w.value.close();
        }
    })
}
