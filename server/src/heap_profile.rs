//! The binary's allocator: jemalloc, built with heap profiling so `/debug/pprof/heap` has
//! something real to show (allocation samples with their stacks), as Go's runtime always has.
//!
//! Profiling is compiled in but sampling stays off (`prof_active:false`) until an agent whose
//! debug endpoints are reachable starts ([`activate`]); then one allocation per 512 KiB
//! allocated, on average, records its stack (`lg_prof_sample:19`, Go's `MemProfileRate`),
//! which costs little enough to leave on.

use consul_core::debug::{profile, HeapProfiler};

/// The allocator's entry points: `go tool pprof` hides them and everything they call
/// (jemalloc's sampling machinery), so stacks end where our code allocates.
const ALLOCATOR_FRAMES: &str = "__rustc::__rust_(re)?alloc(_zeroed)?|__rust_(re)?alloc(_zeroed)?|__rdl_.*|_rjem_.*";

#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's start-up options. It reads them from this symbol (its prefixed `malloc_conf`)
/// before the first allocation, which no code of ours can run early enough to set otherwise.
#[allow(unsafe_code, non_upper_case_globals)]
#[export_name = "_rjem_malloc_conf"]
pub(crate) static malloc_conf: &[u8] = b"prof:true,prof_active:false,lg_prof_sample:19\0";

/// jemalloc's profiling control (absent if jemalloc was built without profiling).
fn prof_ctl() -> Result<&'static tokio::sync::Mutex<jemalloc_pprof::JemallocProfCtl>, String> {
    jemalloc_pprof::PROF_CTL.as_deref().ok_or_else(|| "jemalloc was built without profiling".to_string())
}

/// Starts sampling allocations (once; later calls do nothing).
pub(crate) fn activate() -> Result<(), String> {
    let mut ctl = prof_ctl()?.try_lock().map_err(|_| "the heap profiler is busy".to_string())?;
    if !ctl.activated() {
        ctl.activate().map_err(|e| format!("could not start heap sampling: {e}"))?;
    }
    Ok(())
}

/// The heap profiler handed to the agent: a jemalloc dump, symbolised, as gzipped pprof.
pub(crate) fn profiler() -> HeapProfiler {
    HeapProfiler::new(|| {
        let mut ctl = prof_ctl()?.blocking_lock();
        if !ctl.activated() {
            return Err("heap sampling is off: it starts with an agent that has enable_debug or ACLs on".into());
        }
        let gz = ctl.dump_pprof().map_err(|e| format!("heap profile: {e:#}"))?;
        profile::with_drop_frames(&gz, ALLOCATOR_FRAMES).ok_or_else(|| "heap profile: unreadable dump".to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_once_active_and_dumps_a_pprof_profile() {
        activate().expect("activate");
        // Something to sample: far more than the 512 KiB average interval.
        let keep: Vec<Vec<u8>> = (0..64).map(|i| vec![i as u8; 256 * 1024]).collect();
        let gz = profiler().take().expect("profile");
        assert_eq!(&gz[..2], &[0x1f, 0x8b], "gzip");
        let mut raw = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&gz[..]), &mut raw).expect("gunzip");
        let text = String::from_utf8_lossy(&raw);
        assert!(text.contains("inuse_space"), "sample type");
        assert!(text.contains(ALLOCATOR_FRAMES), "drop_frames hides the allocator");
        // Symbolised: this test's own function is in some sampled stack.
        assert!(text.contains("samples_once_active_and_dumps_a_pprof_profile"), "stacks are symbolised");
        drop(keep);
    }
}
