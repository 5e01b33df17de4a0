//! Generates `consul_rs.h` with cbindgen into `OUT_DIR`, and copies it over the committed
//! `c/include/consul_rs.h` when `CONSUL_RS_UPDATE_HEADER=1` (`make -C c header`). The C test run
//! diffs the committed header against the fresh one, so the two cannot drift apart unnoticed.
//! Also gives the shared library its soname.

use std::path::PathBuf;

fn main() {
    let crate_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let out_dir = PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR"));
    println!("cargo:rerun-if-changed=src");
    println!("cargo:rerun-if-changed=cbindgen.toml");
    println!("cargo:rerun-if-env-changed=CONSUL_RS_UPDATE_HEADER");

    // The soname carries the ABI version: binaries linked today keep loading libconsul_rs.so.0.
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux") {
        println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libconsul_rs.so.0");
    }

    let mut config = cbindgen::Config::from_file(crate_dir.join("cbindgen.toml")).expect("cbindgen.toml");
    let version = |k: &str| std::env::var(k).expect("cargo package version");
    config.after_includes = Some(format!(
        "\n#define CONSUL_RS_VERSION_MAJOR {}\n#define CONSUL_RS_VERSION_MINOR {}\n#define CONSUL_RS_VERSION_PATCH {}\n\
         #define CONSUL_RS_VERSION_STRING \"{}\"\n",
        version("CARGO_PKG_VERSION_MAJOR"),
        version("CARGO_PKG_VERSION_MINOR"),
        version("CARGO_PKG_VERSION_PATCH"),
        version("CARGO_PKG_VERSION"),
    ));
    let header = out_dir.join("consul_rs.h");
    match cbindgen::Builder::new().with_crate(&crate_dir).with_config(config).generate() {
        Ok(bindings) => {
            bindings.write_to_file(&header);
        }
        Err(e) => panic!("cbindgen failed: {e}"),
    }
    if std::env::var("CONSUL_RS_UPDATE_HEADER").as_deref() == Ok("1") {
        let committed = crate_dir.join("../../c/include/consul_rs.h");
        if let Some(dir) = committed.parent() {
            std::fs::create_dir_all(dir).expect("create c/include");
        }
        std::fs::copy(&header, &committed).expect("copy the header to c/include");
    }
}
