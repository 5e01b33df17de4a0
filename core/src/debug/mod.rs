//! Profiles of the running process for `/debug/pprof/*` (served when `enable_debug` is set, or
//! to operator-read tokens when ACLs are on, as in Consul), in the pprof format Go's tools read:
//!
//! - [`cpu`]: a CPU profile sampled by `SIGPROF` for the requested seconds;
//! - heap: an allocation-sampling heap profile, which only the allocator can take — the host
//!   program supplies it as a [`HeapProfiler`] (the `consul-rs` binary runs on jemalloc with
//!   profiling built in; embedding programs keep their allocator and have none);
//! - [`threads`]: where Go lists goroutines, the process's threads and what they wait on;
//! - [`trace`]: where Go records an execution trace, the agent's TRACE-level events as a
//!   Chrome trace.
//!
//! [`profile`] writes the format.

pub mod cpu;
pub mod profile;
pub mod threads;
pub mod trace;

use std::sync::Arc;

/// Takes a heap profile of the whole process (gzipped pprof). Supplied by the host program,
/// which owns the allocator (see the module docs); errors say why no profile could be taken.
#[derive(Clone)]
pub struct HeapProfiler(Arc<dyn Fn() -> Result<Vec<u8>, String> + Send + Sync>);

impl HeapProfiler {
    /// A profiler calling `take` (from a blocking thread: it may write and read a dump file).
    pub fn new(take: impl Fn() -> Result<Vec<u8>, String> + Send + Sync + 'static) -> HeapProfiler {
        HeapProfiler(Arc::new(take))
    }

    /// Takes one profile.
    pub fn take(&self) -> Result<Vec<u8>, String> {
        (self.0)()
    }
}

impl std::fmt::Debug for HeapProfiler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HeapProfiler")
    }
}
