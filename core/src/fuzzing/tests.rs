//! The CI half of the fuzzing harness (stable Rust, no extra build): replay every committed
//! corpus and regression input, then a bounded seeded mutation run per target.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::{generated_seeds, target, Target, TARGETS};

/// `fuzz/` at the top of the workspace.
fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join("fuzz")
}

/// The files of `fuzz/<kind>/<name>/` (none when the directory does not exist).
fn files(kind: &str, name: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = fuzz_dir().join(kind).join(name);
    let Ok(entries) = std::fs::read_dir(&dir) else { return Vec::new() };
    let mut out: Vec<(PathBuf, Vec<u8>)> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .filter_map(|p| std::fs::read(&p).ok().map(|b| (p, b)))
        .collect();
    out.sort();
    out
}

/// Runs one input, turning a panic into a description of it.
fn run(f: Target, input: &[u8]) -> Result<(), String> {
    std::panic::catch_unwind(|| f(input)).map_err(|e| {
        e.downcast_ref::<String>()
            .cloned()
            .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "panic".into())
    })
}

/// The directory names under `fuzz/<kind>/`.
fn dirs(kind: &str) -> Vec<String> {
    std::fs::read_dir(fuzz_dir().join(kind))
        .map(|rd| {
            rd.filter_map(Result::ok)
                .filter(|e| e.path().is_dir())
                .filter_map(|e| e.file_name().into_string().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// Every target has seeds; every corpus and regression directory names a target; every
/// committed input (and every generated seed) runs without a panic.
#[test]
fn corpus_and_regressions_replay() {
    for kind in ["corpus", "regressions"] {
        for d in dirs(kind) {
            assert!(target(&d).is_some(), "fuzz/{kind}/{d}/ names no target in fuzzing::TARGETS");
        }
    }
    let mut failures = Vec::new();
    for (name, f) in TARGETS {
        let corpus = files("corpus", name);
        assert!(!corpus.is_empty(), "fuzz/corpus/{name}/ has no seeds");
        for (path, input) in corpus.iter().chain(files("regressions", name).iter()) {
            if let Err(e) = run(*f, input) {
                failures.push(format!("{name}: {}: {e}", path.display()));
            }
        }
    }
    for (name, file, input) in generated_seeds() {
        let f = target(name).unwrap_or_else(|| panic!("generated seed for unknown target {name}"));
        if let Err(e) = run(f, &input) {
            failures.push(format!("{name}: generated seed {file}: {e}"));
        }
    }
    assert!(failures.is_empty(), "inputs that panic:\n{}", failures.join("\n"));
}

/// Fragments worth splicing into text formats (JSON, HCL, query strings, rules, durations).
const TOKENS: &[&[u8]] = &[
    b"{",
    b"}",
    b"[",
    b"]",
    b"\"",
    b":",
    b",",
    b"=",
    b"&",
    b"?",
    b"%",
    b"%ff",
    b"\n",
    b"\\u0000",
    b"\\ud800",
    b"null",
    b"true",
    b"-1",
    b"0",
    b"1e400",
    b"-0",
    b"18446744073709551616",
    b"9223372036854775807",
    b"-9223372036854775808",
    b"1.5",
    b"h",
    b"ms",
    b"\xc3\xa9",
    b"\xff",
    b"${",
    b"${value.",
    b"${ ",
    b"==",
    b"!=",
    b" in ",
    b" not ",
    b" and ",
    b" or ",
    b"(",
    b")",
    b"prefix",
    b"key",
    b"service",
    b"\"\"",
    b"*",
    b"/",
    b"..",
    b"Z",
    b"T",
    b"-",
    b"::",
];

/// One random edit of `input` (`others`: inputs to splice from).
fn mutate(rng: &mut StdRng, input: &mut Vec<u8>, others: &[Vec<u8>]) {
    let len = input.len();
    match rng.gen_range(0..9) {
        0 if len > 0 => {
            let i = rng.gen_range(0..len);
            input[i] ^= 1 << rng.gen_range(0..8);
        }
        1 if len > 0 => {
            let i = rng.gen_range(0..len);
            input[i] = rng.gen();
        }
        2 => {
            let i = rng.gen_range(0..=len);
            let n = rng.gen_range(1..=8);
            let bytes: Vec<u8> = (0..n).map(|_| rng.gen()).collect();
            input.splice(i..i, bytes);
        }
        3 if len > 0 => {
            let i = rng.gen_range(0..len);
            let n = rng.gen_range(1..=(len - i).min(16));
            input.drain(i..i + n);
        }
        4 if len > 0 => {
            // Repeat a slice (deep nesting, long strings).
            let i = rng.gen_range(0..len);
            let n = rng.gen_range(1..=(len - i).min(32));
            let times = rng.gen_range(1..=64);
            let chunk: Vec<u8> = input[i..i + n].repeat(times);
            input.splice(i..i, chunk);
        }
        5 | 6 => {
            let i = rng.gen_range(0..=len);
            let tok = TOKENS[rng.gen_range(0..TOKENS.len())];
            input.splice(i..i, tok.iter().copied());
        }
        7 if !others.is_empty() => {
            // Splice the tail of another input after a prefix of this one.
            let other = &others[rng.gen_range(0..others.len())];
            let cut = rng.gen_range(0..=len);
            let from = rng.gen_range(0..=other.len());
            input.truncate(cut);
            input.extend_from_slice(&other[from..]);
        }
        _ if len > 1 => {
            // Overwrite a byte with an interesting value.
            let i = rng.gen_range(0..len);
            input[i] = [0, 1, 0x7f, 0x80, 0xff, b'0', b'a', b' '][rng.gen_range(0..8)];
        }
        _ => input.push(rng.gen()),
    }
    // Inputs past this size stop telling us anything new and slow the run down.
    input.truncate(64 * 1024);
}

/// Runs `f` on mutants of `seeds` for `budget`; returns (iterations, first panic).
fn mutate_target(name: &str, f: Target, seeds: &[Vec<u8>], seed: u64, budget: Duration) -> (u64, Option<String>) {
    // Each target's stream depends only on the run seed and the target's name.
    let salt = name.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3));
    let mut rng = StdRng::seed_from_u64(seed ^ salt);
    let start = Instant::now();
    let mut iterations = 0u64;
    while start.elapsed() < budget {
        let mut input = seeds[rng.gen_range(0..seeds.len())].clone();
        for _ in 0..rng.gen_range(1..=4) {
            mutate(&mut rng, &mut input, seeds);
        }
        iterations += 1;
        if let Err(e) = run(f, &input) {
            let dir = fuzz_dir().join("artifacts").join(name);
            let _ = std::fs::create_dir_all(&dir);
            let path = dir.join(format!("crash-seed{seed}-iter{iterations}"));
            let _ = std::fs::write(&path, &input);
            return (
                iterations,
                Some(format!(
                    "{name}: iteration {iterations}: {e}\n  input ({} bytes) saved to {}",
                    input.len(),
                    path.display()
                )),
            );
        }
    }
    (iterations, None)
}

/// A bounded random-mutation run per target, seeded from the corpus: `FUZZ_SECONDS` per
/// target (default 2), `FUZZ_SEED` to repeat a run (default fixed; printed either way).
#[test]
fn seeded_mutation_run() {
    let secs: f64 = std::env::var("FUZZ_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(2.0);
    let seed: u64 = std::env::var("FUZZ_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(0x00C0_05E1);
    println!("fuzzing: FUZZ_SEED={seed} FUZZ_SECONDS={secs} ({} targets)", TARGETS.len());
    let mut seeds: BTreeMap<&str, Vec<Vec<u8>>> = BTreeMap::new();
    for (name, _) in TARGETS {
        let mut s: Vec<Vec<u8>> = files("corpus", name).into_iter().map(|(_, b)| b).collect();
        s.extend(files("regressions", name).into_iter().map(|(_, b)| b));
        if s.is_empty() {
            s.push(Vec::new());
        }
        seeds.insert(name, s);
    }
    for (name, _, bytes) in generated_seeds() {
        seeds.entry(name).or_default().push(bytes);
    }
    // The targets share the machine's cores; the panic messages of caught panics are noise.
    let next = AtomicUsize::new(0);
    let failures = Mutex::new(Vec::new());
    let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1).min(TARGETS.len());
    let budget = Duration::from_secs_f64(secs);
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some((name, f)) = TARGETS.get(i) else { break };
                let (n, failure) = mutate_target(name, *f, &seeds[name], seed, budget);
                println!("fuzzing: {name}: {n} inputs");
                if let Some(msg) = failure {
                    failures.lock().unwrap_or_else(|e| e.into_inner()).push(msg);
                }
            });
        }
    });
    let failures = failures.into_inner().unwrap_or_else(|e| e.into_inner());
    assert!(
        failures.is_empty(),
        "fuzzing found panics (FUZZ_SEED={seed}); move each saved input to fuzz/regressions/<target>/ once fixed:\n{}",
        failures.join("\n")
    );
}

/// Writes [`generated_seeds`] under `fuzz/corpus/<target>/` (run after changing a format:
/// `cargo test -p consul-core fuzzing::tests::write_seed_corpus -- --ignored`).
#[test]
#[ignore]
fn write_seed_corpus() {
    for (name, file, bytes) in generated_seeds() {
        let dir = fuzz_dir().join("corpus").join(name);
        std::fs::create_dir_all(&dir).expect("corpus dir");
        std::fs::write(dir.join(file), bytes).expect("write seed");
    }
}
