//! `consul-rs validate`: Consul's config check. Reads files and directories exactly as
//! `consul-rs agent -config-file/-config-dir` does, then runs the agent's own settings builder
//! in check-only mode (nothing is started), and reports every problem found — each bad key and
//! value with its file and line:column — rather than stopping at the first.
//!
//! Output follows Consul: `Configuration is valid!` and exit 0 (nothing with `-quiet`), or
//! `Config validation failed: …` on stderr and exit 1.

use std::path::{Path, PathBuf};

use anyhow::Result;
use clap::{ArgAction, Args};
use serde_json::Value;

use crate::config_file::{dir_files, parse_text, Format, Settings};

/// `validate` flags.
#[derive(Debug, Args)]
pub(crate) struct ValidateArgs {
    /// Format of the files, for names without a .json or .hcl extension: json or hcl.
    #[arg(long = "config-format", value_name = "FORMAT")]
    config_format: Option<String>,
    /// When given, a successful run prints nothing.
    #[arg(long, action = ArgAction::Set, num_args = 0..=1, require_equals = true,
          default_value = "false", default_missing_value = "true",
          value_parser = clap::builder::BoolishValueParser::new())]
    quiet: bool,
    /// Configuration files and directories, loaded in this order.
    paths: Vec<PathBuf>,
}

/// Runs `validate`; the exit code.
pub(crate) fn run(a: &ValidateArgs) -> u8 {
    if a.paths.is_empty() {
        eprintln!("Must specify at least one config file or directory");
        return 1;
    }
    let format = match a.config_format.as_deref().map(Format::from_flag).transpose() {
        Ok(f) => f,
        Err(e) => {
            eprintln!("{e:#}");
            return 1;
        }
    };
    let problems = check(&a.paths, format);
    if problems.is_empty() {
        if !a.quiet {
            println!("Configuration is valid!");
        }
        return 0;
    }
    eprintln!("Config validation failed: {} problem{}:", problems.len(), if problems.len() == 1 { "" } else { "s" });
    for p in &problems {
        eprintln!("  {p}");
    }
    1
}

/// Every problem in the configuration made of `paths` (files and directories, in order), each
/// as one line: `file:line:column: message` where the place is known.
pub(crate) fn check(paths: &[PathBuf], format: Option<Format>) -> Vec<String> {
    let mut problems = Vec::new();
    let mut files = Vec::new();
    for path in paths {
        if path.is_dir() {
            match dir_files(path, format) {
                Ok(f) => files.extend(f),
                Err(e) => problems.push(format!("{e:#}")),
            }
        } else {
            files.push(path.clone());
        }
    }
    let mut settings = Settings::new(false);
    for file in &files {
        check_file(&mut settings, file, format, &mut problems);
    }
    // The checks that need the whole configuration, as the agent runs them at start. After
    // key problems they would only repeat them in other words.
    if problems.is_empty() {
        if let Err(e) = settings.finish().and_then(|()| settings.agent.validate()) {
            problems.push(e.to_string());
        } else {
            // The certificate, key and CA files, read and checked as the agent reads them at start.
            let a = &settings.agent;
            if let Err(e) =
                consul_core::tls::AgentTls::load(&a.tls, a.ports.https.is_some(), &a.datacenter, &a.dns.domain)
            {
                problems.push(format!("config: tls: {e}"));
            }
        }
        if let Err(e) = crate::cmd_agent::parse_log_level(&settings.log_level) {
            problems.push(format!("{e:#}"));
        }
    }
    problems
}

/// Checks one file, merging what is good into `settings`.
fn check_file(settings: &mut Settings, file: &Path, format: Option<Format>, problems: &mut Vec<String>) {
    let shown = file.display().to_string();
    let Some(format) = format.or_else(|| Format::from_path(file)) else {
        problems
            .push(format!("{shown}: unknown file format; the name must end in .json or .hcl (or pass -config-format)"));
        return;
    };
    let text = match std::fs::read_to_string(file) {
        Ok(t) => t,
        Err(e) => {
            problems.push(format!("{shown}: cannot read: {e}"));
            return;
        }
    };
    let value = match parse(&text, format) {
        Ok(v) => v,
        Err((place, msg)) => {
            problems.push(match place {
                Some((line, col)) => format!("{shown}:{line}:{col}: cannot parse: {msg}"),
                None => format!("{shown}: cannot parse: {msg}"),
            });
            return;
        }
    };
    for p in settings.apply_value_collecting(&value, &shown) {
        // The line starts with the file: the message need not end with it as well.
        let message = p.message.strip_suffix(&format!(" (in {shown})")).unwrap_or(&p.message);
        let message = message.strip_suffix(&format!(" in {shown}")).unwrap_or(message);
        problems.push(match locate(&text, &p.key) {
            Some((line, col)) => format!("{shown}:{line}:{col}: {message}"),
            None => format!("{shown}: {message}"),
        });
    }
}

/// Parses like the agent ([`parse_text`]), keeping the place of a syntax error.
fn parse(text: &str, format: Format) -> std::result::Result<Value, (Option<(usize, usize)>, String)> {
    let place = match format {
        Format::Json => serde_json::from_str::<Value>(text).err().map(|e| (e.line(), e.column())),
        Format::Hcl => match hcl::from_str::<Value>(text) {
            Err(hcl::Error::Parse(e)) => Some((e.location().line(), e.location().column())),
            _ => None,
        },
    };
    // `parse_text` is the agent's own reading (an empty file is an empty configuration).
    let parsed: Result<Value> = parse_text(text, format);
    parsed.map_err(|e| (place.filter(|(l, _)| *l > 0), format!("{e:#}")))
}

/// Where the dotted `key` is written in `text` (JSON or HCL), as 1-based line and column: each
/// segment is looked for after the previous one, as a key (`"seg":`, `seg =`, `seg {`); the
/// deepest segment found is the answer.
fn locate(text: &str, key: &str) -> Option<(usize, usize)> {
    if key.is_empty() {
        return None;
    }
    let mut from = 0;
    let mut found = None;
    for seg in key.split('.') {
        match find_key(text, seg, from) {
            Some(at) => {
                found = Some(at);
                from = at + seg.len();
            }
            None => break,
        }
    }
    let at = found?;
    let before = &text[..at];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    Some((line, col))
}

/// The byte offset of the first occurrence of `seg` at or after `from` that is written as a key:
/// not part of a longer name, and followed (past a closing quote and blanks) by `:`, `=`, `{` or
/// a block label. A quoted key's offset is its opening quote.
fn find_key(text: &str, seg: &str, from: usize) -> Option<usize> {
    let ident = |c: char| c.is_alphanumeric() || c == '_' || c == '-';
    let mut start = from;
    while let Some(rel) = text.get(start..)?.find(seg) {
        let at = start + rel;
        start = at + seg.len();
        let prev = text[..at].chars().next_back();
        if prev.is_some_and(ident) {
            continue;
        }
        let mut rest = text[at + seg.len()..].chars().peekable();
        let quoted = prev == Some('"');
        if quoted && rest.next() != Some('"') {
            continue;
        }
        if !quoted && rest.peek().copied().is_some_and(ident) {
            continue;
        }
        let next = rest.find(|c: &char| !c.is_whitespace());
        if matches!(next, Some(':' | '=' | '{')) || (!quoted && next == Some('"')) {
            return Some(if quoted { at - 1 } else { at });
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_located_in_json_and_hcl() {
        let json = "{\n  \"datacenter\": \"dc1\",\n  \"ports\": {\n    \"dns\": 1, \"http\": \"x\"\n  }\n}\n";
        assert_eq!(locate(json, "ports.http"), Some((4, 15)));
        assert_eq!(locate(json, "datacenter"), Some((2, 3)));
        assert_eq!(locate(json, "ports.nothing"), Some((3, 3)), "the deepest segment found");
        let hcl = "server = true\nports {\n  http = \"x\"\n}\nservice \"web\" {\n}\nhttp_config {}\n";
        assert_eq!(locate(hcl, "ports.http"), Some((3, 3)));
        assert_eq!(locate(hcl, "http_config"), Some((7, 1)));
        assert_eq!(locate(hcl, "service"), Some((5, 1)));
        assert_eq!(locate(hcl, "missing"), None);
        assert_eq!(locate("{\"a\": \"server\", \"server\": 1}", "server"), Some((1, 17)), "a value is not a key");
    }

    fn write(dir: &Path, name: &str, body: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, body).expect("write");
        p
    }

    #[test]
    fn every_problem_is_reported_with_file_and_place() {
        let dir = tempfile::tempdir().expect("tempdir");
        let good = write(dir.path(), "a.json", "{\"data_dir\": \"/tmp/x\", \"server\": true}\n");
        assert_eq!(check(std::slice::from_ref(&good), None), Vec::<String>::new());
        let bad_json = write(
            dir.path(),
            "b.json",
            "{\n  \"bootstrap_expct\": 3,\n  \"ports\": {\"http\": \"abc\", \"server\": 70000},\n  \"retry_interval\": 30\n}\n",
        );
        let bad_hcl = write(dir.path(), "c.hcl", "data_dir = \"/d\"\nlog_levl = \"info\"\n");
        let problems = check(&[good.clone(), bad_json.clone(), bad_hcl.clone()], None);
        let b = bad_json.display();
        let c = bad_hcl.display();
        assert_eq!(problems.len(), 5, "{problems:#?}");
        assert!(problems[0].starts_with(&format!("{b}:2:3: unknown key \"bootstrap_expct\"")), "{problems:#?}");
        assert!(problems[1].starts_with(&format!("{b}:3:13: ports.http: expected a number")), "{problems:#?}");
        assert!(problems[2].starts_with(&format!("{b}:3:28: ports.server: 70000")), "{problems:#?}");
        assert!(problems[3].starts_with(&format!("{b}:4:3: retry_interval:")), "{problems:#?}");
        assert_eq!(problems[4], format!("{c}:2:1: unknown key \"log_levl\""));

        let syntax = write(dir.path(), "d.json", "{\n  \"server\": true,,\n}\n");
        let problems = check(&[syntax], None);
        assert_eq!(problems.len(), 1);
        assert!(problems[0].contains("d.json:2:18: cannot parse"), "{problems:#?}");
        let syntax = write(dir.path(), "e.hcl", "server = \n ports {\n");
        let problems = check(&[syntax], None);
        assert!(problems[0].contains("e.hcl:") && problems[0].contains("cannot parse"), "{problems:#?}");

        // The TLS files are read as at start.
        let tls = write(
            dir.path(),
            "g.json",
            r#"{"data_dir": "/d", "ports": {"https": 8501},
                "tls": {"defaults": {"cert_file": "/nonexistent/c.pem", "key_file": "/nonexistent/k.pem"}}}"#,
        );
        let problems = check(&[tls], None);
        assert_eq!(problems.len(), 1, "{problems:#?}");
        assert!(problems[0].starts_with("config: tls:") && problems[0].contains("/nonexistent/c.pem"), "{problems:#?}");

        // The start-up checks on the whole configuration: no data_dir.
        let problems = check(&[write(dir.path(), "f.json", "{\"server\": true}")], None);
        assert_eq!(problems.len(), 1);
        assert!(problems[0].contains("data_dir"), "{problems:#?}");
    }
}
