//! Embeds the web console (`core/ui/`, inside the crate so `cargo package` and a Python sdist
//! carry it) into the core at compile time.
//!
//! Every file under `ui/` becomes an entry of a generated table (`$OUT_DIR/ui_assets.rs`,
//! included by `src/api/http/ui/assets.rs`): its path relative to `ui/`, its content type, an
//! ETag, the bytes, and pre-compressed gzip and brotli variants for text types where compression
//! pays. One hash over every path and byte is the "asset version" that goes into the assets' URL
//! prefix, so the assets can be cached forever and a new build is fetched under a new prefix.
//! Nothing runs at serve time and no Node.js is needed: the front end ships as plain files.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

// The same table `ui_config.dir` serving uses (std only, so it builds here too).
#[path = "src/api/http/ui/content_type.rs"]
mod content_type;

fn main() {
    let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let out_dir = PathBuf::from(std::env::var_os("OUT_DIR").expect("OUT_DIR"));
    let ui_dir = manifest.join("ui");
    println!("cargo:rerun-if-changed={}", ui_dir.display());
    println!("cargo:rerun-if-changed=src/api/http/ui/content_type.rs");

    let mut files = Vec::new();
    if ui_dir.is_dir() {
        walk(&ui_dir, &ui_dir, &mut files);
    } else {
        // Still builds (the agent then answers /ui/ with a bare page), but says why.
        println!("cargo:warning=no {} directory: the web console is not embedded", ui_dir.display());
    }
    files.sort();

    let mut version = Sha256::new();
    let mut table = String::new();
    let mut index = None;
    for (i, rel) in files.iter().enumerate() {
        let abs = ui_dir.join(rel);
        println!("cargo:rerun-if-changed={}", abs.display());
        let bytes = std::fs::read(&abs).unwrap_or_else(|e| panic!("reading {}: {e}", abs.display()));
        version.update((rel.len() as u64).to_le_bytes());
        version.update(rel.as_bytes());
        version.update((bytes.len() as u64).to_le_bytes());
        version.update(&bytes);
        if rel == "index.html" {
            index = Some(abs);
            continue;
        }
        let content_type = content_type(rel);
        let etag = hex(&Sha256::digest(&bytes)[..8]);
        let (gzip, br) = if compressible(content_type) {
            let gz = write_if_smaller(&out_dir, &format!("ui-{i}.gz"), &bytes, gzip(&bytes));
            let br = write_if_smaller(&out_dir, &format!("ui-{i}.br"), &bytes, brotli(&bytes));
            (gz, br)
        } else {
            (None, None)
        };
        let include = |p: Option<PathBuf>| match p {
            Some(p) => format!("Some(include_bytes!({:?}))", p.display().to_string()),
            None => "None".to_string(),
        };
        writeln!(
            table,
            "    EmbeddedAsset {{ path: {rel:?}, content_type: {content_type:?}, etag: {etag:?}, \
             identity: include_bytes!({:?}), gzip: {}, br: {} }},",
            abs.display().to_string(),
            include(gzip),
            include(br),
        )
        .expect("write to string");
    }
    let version = hex(&version.finalize()[..5]);
    let index = match index {
        Some(p) => format!("Some(include_bytes!({:?}))", p.display().to_string()),
        None => "None".to_string(),
    };
    let generated = format!(
        "/// One hash over every embedded path and byte (10 hex digits).\n\
         pub(super) const ASSET_VERSION: &str = {version:?};\n\
         /// `ui/index.html`, the template of every page (`None`: there was no `ui/`).\n\
         pub(super) const INDEX_TEMPLATE: Option<&[u8]> = {index};\n\
         /// Every other file of `ui/`, sorted by path.\n\
         pub(super) static EMBEDDED: &[EmbeddedAsset] = &[\n{table}];\n"
    );
    std::fs::write(out_dir.join("ui_assets.rs"), generated).expect("write ui_assets.rs");
}

/// Collects the files under `dir` as `/`-separated paths relative to `root`, skipping dotfiles.
fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
    println!("cargo:rerun-if-changed={}", dir.display());
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()));
    for entry in entries {
        let entry = entry.expect("directory entry");
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') {
            continue;
        }
        let path = entry.path();
        if path.is_dir() {
            walk(root, &path, out);
        } else if path.is_file() {
            let rel = path.strip_prefix(root).expect("under root");
            let parts: Vec<String> = rel.components().map(|c| c.as_os_str().to_string_lossy().into_owned()).collect();
            out.push(parts.join("/"));
        }
    }
}

/// The Content-Type a browser needs for a file, by extension.
fn content_type(path: &str) -> &'static str {
    content_type::for_extension(path.rsplit_once('.').map(|(_, e)| e).unwrap_or_default())
}

/// Text types shrink under compression; images and fonts are compressed already.
fn compressible(content_type: &str) -> bool {
    content_type.starts_with("text/")
        || matches!(content_type, "application/json" | "image/svg+xml" | "application/xml" | "image/x-icon")
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    enc.write_all(bytes).expect("gzip");
    enc.finish().expect("gzip")
}

fn brotli(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    {
        let mut enc = brotli::CompressorWriter::new(&mut out, 4096, 11, 22);
        enc.write_all(bytes).expect("brotli");
    }
    out
}

/// Writes a compressed variant when it saves at least a tenth of the size; else `None`
/// (serving it would cost the client decompression for nothing).
fn write_if_smaller(out_dir: &Path, name: &str, raw: &[u8], compressed: Vec<u8>) -> Option<PathBuf> {
    if compressed.len() * 10 > raw.len() * 9 {
        return None;
    }
    let path = out_dir.join(name);
    std::fs::write(&path, compressed).expect("write compressed asset");
    Some(path)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}
