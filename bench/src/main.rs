//! `consul-rs-bench`: a closed-loop KV load generator for consul-rs and etcd.
//!
//! Each of `--clients` tasks owns one keep-alive HTTP/1.1 connection and issues one request at a
//! time, the next as soon as the previous answers (closed loop). Latencies of operations that
//! complete inside the measured window go into an HDR-style histogram; throughput is the number
//! of those operations divided by the window. See `bench/README.md`.

mod args;
mod histogram;
mod load;
mod summary;

use std::io::Read as _;

use anyhow::{Context, Result};
use clap::Parser;

use crate::args::{Cli, Command, Target};

fn summarize(files: &[std::path::PathBuf]) -> Result<()> {
    let mut results = Vec::new();
    for f in files {
        let text = if f.as_os_str() == "-" {
            let mut s = String::new();
            std::io::stdin().read_to_string(&mut s)?;
            s
        } else {
            std::fs::read_to_string(f).with_context(|| format!("reading {}", f.display()))?
        };
        results.extend(summary::parse_lines(&text).with_context(|| f.display().to_string())?);
    }
    print!("{}", summary::render(&results));
    Ok(())
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    if let Some(Command::Summarize { files }) = &cli.command {
        return summarize(files);
    }
    let cfg = cli.run.validate()?;
    if let (Target::Etcd, Some(read)) = (cfg.target, cfg.read) {
        eprintln!(
            "etcd: --mode {} -> {} range (serializable={})",
            args::value_name(&cfg.mode),
            read.as_str(),
            read == args::ReadKind::Serializable
        );
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(cfg.threads).enable_all().build()?;
    let result = runtime.block_on(load::run(&cfg))?;
    if cfg.json {
        println!("{}", serde_json::to_string(&result)?);
    } else {
        print!("{}", load::render_text(&result));
    }
    if result.ops == 0 {
        anyhow::bail!(
            "no operation succeeded{}",
            result.first_error.map(|e| format!(" (first error: {e})")).unwrap_or_default()
        );
    }
    Ok(())
}
