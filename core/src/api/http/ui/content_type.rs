//! The Content-Type of a console file, by extension. Shared by the build script (which types
//! the embedded assets) and `ui_config.dir` serving (which types files at request time), so
//! both agree; it uses nothing but `std` so `build.rs` can include it by path.

/// The Content-Type a browser needs for a file whose name ends in `.ext` (any case).
pub(crate) fn for_extension(ext: &str) -> &'static str {
    match ext.to_ascii_lowercase().as_str() {
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "html" | "htm" => "text/html; charset=utf-8",
        "json" | "map" => "application/json",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "ico" => "image/x-icon",
        "woff2" => "font/woff2",
        "woff" => "font/woff",
        "ttf" => "font/ttf",
        "txt" | "md" => "text/plain; charset=utf-8",
        "xml" => "application/xml",
        "wasm" => "application/wasm",
        _ => "application/octet-stream",
    }
}
