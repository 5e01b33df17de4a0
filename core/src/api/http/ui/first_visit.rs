//! What a browser fetches on its first visit to the console, and how many bytes that is: the
//! page, every asset the page names through `%CONSUL_RS_ASSETS%`, and every module those
//! scripts import statically (`import … from "./x.js"`, `import "./x.js"`, `export … from`),
//! each in its smallest encoding. Modules loaded with `import()` are left out: they load later.

use std::collections::BTreeSet;

use super::assets;

/// One file of the first visit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetched {
    /// `index.html`, or the asset's path relative to `ui/`.
    pub path: String,
    /// Bytes on the wire for a client that accepts brotli and gzip.
    pub bytes: usize,
}

/// Every file of the first visit with its size; an error names an asset that is referenced but
/// not embedded.
pub fn first_visit() -> Result<Vec<Fetched>, String> {
    let template = assets::index_template().ok_or("no ui/index.html was embedded")?;
    let template = String::from_utf8_lossy(template);
    let page_bytes = super::gzip(template.as_bytes()).map_or(template.len(), |g| g.len().min(template.len()));
    let mut out = vec![Fetched { path: "index.html".into(), bytes: page_bytes }];
    let mut queue: Vec<String> = referenced_assets(&template);
    let mut seen = BTreeSet::new();
    while let Some(path) = queue.pop() {
        if !seen.insert(path.clone()) {
            continue;
        }
        let asset = assets::find(&path).ok_or_else(|| format!("{path} is referenced but not in ui/"))?;
        let bytes = [asset.br, asset.gzip].into_iter().flatten().map(<[u8]>::len).min().unwrap_or(asset.identity.len());
        out.push(Fetched { path: path.clone(), bytes });
        if asset.content_type.starts_with("text/javascript") {
            let dir = path.rsplit_once('/').map_or("", |(d, _)| d);
            for spec in static_imports(&String::from_utf8_lossy(asset.identity)) {
                if let Some(p) = resolve(dir, &spec) {
                    queue.push(p);
                }
            }
        }
    }
    Ok(out)
}

/// The asset paths the page names as `%CONSUL_RS_ASSETS%<path>` (up to a quote).
fn referenced_assets(template: &str) -> Vec<String> {
    template
        .split("%CONSUL_RS_ASSETS%")
        .skip(1)
        .filter_map(|rest| rest.split(['"', '\'', ')', ' ', '>']).next())
        .filter(|p| !p.is_empty())
        .map(str::to_string)
        .collect()
}

/// The relative specifiers of a module's static imports and re-exports.
fn static_imports(js: &str) -> Vec<String> {
    let mut out = Vec::new();
    for keyword in ["from", "import"] {
        let mut rest = js;
        while let Some(i) = rest.find(keyword) {
            let after = &rest[i + keyword.len()..];
            rest = after;
            // `import(` is a dynamic import: not part of the first load.
            let trimmed = after.trim_start();
            let Some(quote) = trimmed.chars().next().filter(|c| *c == '"' || *c == '\'') else { continue };
            let body = &trimmed[1..];
            if let Some(end) = body.find(quote) {
                let spec = &body[..end];
                if spec.starts_with("./") || spec.starts_with("../") {
                    out.push(spec.to_string());
                }
            }
        }
    }
    out
}

/// `spec` (`./x.js`, `../y.js`) relative to directory `dir` of `ui/`; `None` if it leaves `ui/`.
fn resolve(dir: &str, spec: &str) -> Option<String> {
    let mut parts: Vec<&str> = dir.split('/').filter(|s| !s.is_empty()).collect();
    for seg in spec.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            s => parts.push(s),
        }
    }
    Some(parts.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn imports_are_followed_statically_only() {
        let js = "import { a } from './lib/a.js';\nimport './side.js';\nexport { b } from \"../b.js\";\n\
                  const lazy = () => import('./lazy.js');\nimport x from 'https://cdn/x.js';";
        let mut got = static_imports(js);
        got.sort();
        assert_eq!(got, ["../b.js", "./lib/a.js", "./side.js"]);
        assert_eq!(resolve("pages", "./kv.js").as_deref(), Some("pages/kv.js"));
        assert_eq!(resolve("pages", "../app.js").as_deref(), Some("app.js"));
        assert_eq!(resolve("", "../x.js"), None);
        assert_eq!(
            referenced_assets("<link href=\"%CONSUL_RS_ASSETS%style.css\"><script src='%CONSUL_RS_ASSETS%app.js'>"),
            ["style.css", "app.js"]
        );
    }

    /// The budget: the first page, everything included, under 300 KB on the wire.
    #[test]
    fn the_first_visit_transfers_less_than_300_kb() {
        let files = first_visit().expect("every referenced asset is embedded");
        assert!(files.iter().any(|f| f.path == "app.js"), "{files:?}");
        let total: usize = files.iter().map(|f| f.bytes).sum();
        assert!(total < 300 * 1024, "first visit is {total} bytes: {files:?}");
    }
}
