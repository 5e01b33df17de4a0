//! `ui_config.dir`: the console served from a directory, read at request time (for working on
//! the front end without rebuilding the agent).

use std::path::{Path, PathBuf};

/// Why a path under the directory is not served.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// Not there (or not a regular file).
    NotFound,
    /// `..`, an absolute path, or a symlink leading out of the directory.
    Outside,
}

/// The file `rel` (a `/`-separated path from the request, already percent-decoded) names
/// inside `root` (canonical). Dot segments, backslashes and NULs are refused outright; what is
/// left is resolved through any symlinks and must still lie inside `root`.
pub(crate) fn resolve(root: &Path, rel: &str) -> Result<PathBuf, Refusal> {
    if rel.contains(['\\', '\0']) {
        return Err(Refusal::Outside);
    }
    let mut path = root.to_path_buf();
    for segment in rel.split('/') {
        match segment {
            "" => continue,
            "." | ".." => return Err(Refusal::Outside),
            s => path.push(s),
        }
    }
    let real = match std::fs::canonicalize(&path) {
        Ok(p) => p,
        Err(_) => return Err(Refusal::NotFound),
    };
    if !real.starts_with(root) {
        return Err(Refusal::Outside);
    }
    if !real.is_file() {
        return Err(Refusal::NotFound);
    }
    Ok(real)
}

/// The Content-Type of a file served from the directory, by extension (as the build script
/// types the embedded ones).
pub(crate) fn content_type(path: &Path) -> &'static str {
    super::content_type::for_extension(path.extension().and_then(|e| e.to_str()).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traversal_and_escaping_symlinks_are_refused() {
        let outer = tempfile::tempdir().expect("tempdir");
        let root = outer.path().join("ui");
        std::fs::create_dir_all(root.join("pages")).expect("mkdir");
        std::fs::write(root.join("app.js"), "x").expect("write");
        std::fs::write(root.join("pages/kv.js"), "y").expect("write");
        std::fs::write(outer.path().join("secret"), "s").expect("write");
        std::os::unix::fs::symlink(outer.path().join("secret"), root.join("leak")).expect("symlink");
        std::os::unix::fs::symlink(root.join("app.js"), root.join("alias.js")).expect("symlink");
        let root = std::fs::canonicalize(&root).expect("canonical");

        assert_eq!(resolve(&root, "app.js"), Ok(root.join("app.js")));
        assert_eq!(resolve(&root, "pages/kv.js"), Ok(root.join("pages/kv.js")));
        assert_eq!(resolve(&root, "alias.js"), Ok(root.join("app.js")), "a symlink inside is fine");
        for bad in ["../secret", "pages/../../secret", "./app.js", "leak", "a\\..\\secret", "app.js\0"] {
            assert_eq!(resolve(&root, bad), Err(Refusal::Outside), "{bad:?}");
        }
        assert_eq!(resolve(&root, "nope.js"), Err(Refusal::NotFound));
        assert_eq!(resolve(&root, "pages"), Err(Refusal::NotFound), "a directory is not a file");
        assert_eq!(resolve(&root, "/etc/passwd"), Err(Refusal::NotFound), "absolute paths stay under root");
        assert_eq!(content_type(Path::new("a/b.js")), "text/javascript; charset=utf-8");
    }
}
