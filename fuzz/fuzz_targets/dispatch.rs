//! The one libFuzzer binary: runs the `consul_core::fuzzing` target named by the
//! `CONSUL_FUZZ_TARGET` environment variable (so a new target needs no new binary and no new
//! build). `scripts/fuzz.sh <target>` sets it.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;

fn chosen() -> consul_core::fuzzing::Target {
    static CHOSEN: OnceLock<consul_core::fuzzing::Target> = OnceLock::new();
    *CHOSEN.get_or_init(|| {
        let names: Vec<&str> = consul_core::fuzzing::TARGETS.iter().map(|(n, _)| *n).collect();
        let name = std::env::var("CONSUL_FUZZ_TARGET")
            .unwrap_or_else(|_| panic!("set CONSUL_FUZZ_TARGET to one of: {}", names.join(" ")));
        consul_core::fuzzing::target(&name)
            .unwrap_or_else(|| panic!("unknown target {name:?}; one of: {}", names.join(" ")))
    })
}

fuzz_target!(|data: &[u8]| {
    chosen()(data);
});
