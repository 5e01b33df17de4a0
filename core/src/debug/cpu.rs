//! `/debug/pprof/profile`: a CPU profile of the whole process, sampled by `SIGPROF` (the
//! `pprof` crate's profiler) at 100 Hz, as Go's CPU profiler samples.
//!
//! The profiler is the process's: only one profile can be taken at a time, whichever agent in
//! the process asks, as in Go (whose second request gets "cpu profiling already in use").

use std::time::Duration;

use super::profile::{Frame, ProfileBuilder};

/// Samples per second (Go's default rate).
const HZ: i32 = 100;

/// Frames of the unwinder and the signal trampoline, not of the program.
const BLOCKLIST: &[&str] = &["libc", "libgcc", "pthread", "vdso"];

/// Samples the process for `duration` (blocking the calling thread; cut short once `stop` says
/// so) and returns the profile, gzipped pprof. Errors name why profiling could not run
/// (another profile in progress).
pub fn profile(duration: Duration, stop: &dyn Fn() -> bool) -> Result<Vec<u8>, String> {
    let guard = pprof::ProfilerGuardBuilder::default()
        .frequency(HZ)
        .blocklist(BLOCKLIST)
        .build()
        .map_err(|e| format!("Could not enable CPU profiling: {e}"))?;
    let until = std::time::Instant::now() + duration;
    while !stop() {
        let left = until.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            break;
        }
        std::thread::sleep(left.min(Duration::from_millis(100)));
    }
    let report = guard.report().build().map_err(|e| format!("Could not build the CPU profile: {e}"))?;
    drop(guard);
    let period = 1_000_000_000 / i64::from(HZ);
    let mut b = ProfileBuilder::new(&[("samples", "count"), ("cpu", "nanoseconds")], ("cpu", "nanoseconds"), period);
    b.timing(report.timing.start_time, report.timing.duration);
    for (frames, count) in &report.data {
        let stack: Vec<Vec<Frame>> = frames
            .frames
            .iter()
            .map(|inlined| {
                inlined
                    .iter()
                    .map(|s| Frame {
                        // The full path (`<T as Trait>::method`), without the hash suffix:
                        // the crate's own `name()` keeps only the last segments.
                        function: format!("{:#}", rustc_demangle::demangle(&String::from_utf8_lossy(s.raw_name()))),
                        file: s.filename.as_ref().map(|f| f.display().to_string()).unwrap_or_default(),
                        line: i64::from(s.lineno.unwrap_or(0)),
                    })
                    .collect()
            })
            .filter(|inlined: &Vec<Frame>| !inlined.is_empty())
            .collect();
        let count = *count as i64;
        let thread = frames.thread_name_or_id();
        b.sample(&stack, &[count, count * period], &[("thread", &thread)]);
    }
    Ok(b.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_busy_thread_shows_in_the_profile_and_a_second_profile_is_refused_meanwhile() {
        // The first profile loads the unwinder's tables, which can take longer than the
        // second thread's head start below.
        profile(Duration::from_millis(1), &|| false).expect("warm-up profile");
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let spin = {
            let stop = stop.clone();
            std::thread::Builder::new()
                .name("busy-spinner".into())
                .spawn(move || {
                    let mut x = 0u64;
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
                    }
                    x
                })
                .expect("spawn")
        };
        let second = std::thread::spawn(|| {
            std::thread::sleep(Duration::from_millis(200));
            profile(Duration::from_millis(10), &|| false)
        });
        let gz = profile(Duration::from_millis(800), &|| false).expect("profile");
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        spin.join().expect("join");
        let refused = second.join().expect("join").expect_err("second profile while the first runs");
        assert!(refused.contains("Could not enable CPU profiling"), "{refused}");
        let (strings, samples) = super::super::profile::decode::profile(&gz);
        assert!(!samples.is_empty());
        assert!(strings.iter().any(|s| s == "busy-spinner"), "thread label: {strings:?}");
        assert!(strings.iter().any(|s| s == "cpu"));
    }
}
