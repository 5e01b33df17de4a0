//! Prepared query templates (`name_prefix_match`): rendering a template's `Service` fields for
//! the name a client asked for.
//!
//! Every string of `Service` (the service name, `Near`, tags, ignored check IDs, failover
//! datacenters, metadata values) may hold `${...}` interpolations, Consul's HIL subset for
//! queries: `${name.full}` (the asked name), `${name.prefix}` (the template's name),
//! `${name.suffix}` (what follows it), `${agent.segment}` (the asking agent's network segment)
//! and `${match(N)}` (group N of `Template.Regexp` matched against the asked name; empty when
//! it did not match). `$${` is a literal `${`. A template is compiled (parsed, its regexp
//! built, test-rendered for its own name) when stored, so a bad one is refused up front.

use regex::Regex;

use super::{PreparedQuery, NAME_PREFIX_MATCH};

/// One piece of a parsed string.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    NameFull,
    NamePrefix,
    NameSuffix,
    AgentSegment,
    Match(usize),
    /// `match()` with a negative or huge index: renders empty, as Consul's safe `match`.
    NoMatch,
}

/// A template ready to render.
#[derive(Debug, Clone)]
pub struct Compiled {
    query: PreparedQuery,
    re: Option<Regex>,
}

/// Parses one string into parts; the error says what is wrong with it.
fn parse(s: &str) -> Result<Vec<Part>, String> {
    let mut parts = Vec::new();
    let mut text = String::new();
    let mut rest = s;
    while let Some(pos) = rest.find('$') {
        text.push_str(&rest[..pos]);
        let after = &rest[pos..];
        if let Some(tail) = after.strip_prefix("$${") {
            text.push_str("${");
            rest = tail;
        } else if let Some(tail) = after.strip_prefix("${") {
            let end = tail.find('}').ok_or_else(|| "missing closing '}' of an interpolation".to_string())?;
            if !text.is_empty() {
                parts.push(Part::Text(std::mem::take(&mut text)));
            }
            parts.push(parse_expr(tail[..end].trim())?);
            rest = &tail[end + 1..];
        } else {
            text.push('$');
            rest = &after[1..];
        }
    }
    text.push_str(rest);
    if !text.is_empty() {
        parts.push(Part::Text(text));
    }
    Ok(parts)
}

fn parse_expr(expr: &str) -> Result<Part, String> {
    Ok(match expr {
        "name.full" => Part::NameFull,
        "name.prefix" => Part::NamePrefix,
        "name.suffix" => Part::NameSuffix,
        "agent.segment" => Part::AgentSegment,
        _ => {
            let Some(arg) = expr.strip_prefix("match(").and_then(|a| a.strip_suffix(')')) else {
                return Err(format!("unknown variable accessed: {expr}"));
            };
            let arg = arg.trim();
            match arg.parse::<i64>() {
                Ok(n) => usize::try_from(n).map(Part::Match).unwrap_or(Part::NoMatch),
                Err(_) => return Err(format!("match: argument must be an integer, got {arg:?}")),
            }
        }
    })
}

/// Applies `f` to every string of the query's `Service`, with Consul's path for messages
/// (`.Service`, `.Tags[0]`, `.NodeMeta[key]`).
fn walk(q: &mut PreparedQuery, f: &mut dyn FnMut(&str, &mut String) -> Result<(), String>) -> Result<(), String> {
    let s = &mut q.service;
    f(".Service", &mut s.service)?;
    f(".Near", &mut s.near)?;
    for (list, name) in [(&mut s.tags, "Tags"), (&mut s.ignore_check_ids, "IgnoreCheckIDs")] {
        for (i, v) in list.iter_mut().flatten().enumerate() {
            f(&format!(".{name}[{i}]"), v)?;
        }
    }
    for (i, v) in s.failover.datacenters.iter_mut().flatten().enumerate() {
        f(&format!(".Failover.Datacenters[{i}]"), v)?;
    }
    for (map, name) in [(&mut s.node_meta, "NodeMeta"), (&mut s.service_meta, "ServiceMeta")] {
        for (k, v) in map.iter_mut().flatten() {
            f(&format!(".{name}[{k}]"), v)?;
        }
    }
    Ok(())
}

impl Compiled {
    /// Checks and prepares `q` (a template) for rendering: Consul's `Compile`.
    pub fn compile(q: &PreparedQuery) -> Result<Compiled, String> {
        if q.template.kind != NAME_PREFIX_MATCH {
            return Err(format!("Bad Template.Type '{}'", q.template.kind));
        }
        let mut copy = q.clone();
        walk(&mut copy, &mut |path, v| {
            parse(v).map(|_| ()).map_err(|e| format!("Bad format '{v}' in Service{path}: {e}"))
        })?;
        let re = match q.template.regexp.as_str() {
            "" => None,
            r => Some(Regex::new(r).map_err(|e| format!("Bad Regexp: {e}"))?),
        };
        let compiled = Compiled { query: q.clone(), re };
        compiled.render(&q.name, "")?;
        Ok(compiled)
    }

    /// The query for the asked `name`, from an agent in network segment `segment`.
    pub fn render(&self, name: &str, segment: &str) -> Result<PreparedQuery, String> {
        let matches: Vec<String> = match &self.re {
            Some(re) => re
                .captures(name)
                .map(|c| c.iter().map(|m| m.map(|m| m.as_str().to_string()).unwrap_or_default()).collect())
                .unwrap_or_default(),
            None => Vec::new(),
        };
        let prefix = self.query.name.clone();
        // The prefix matched without case: cut by length, not by spelling.
        let suffix = name.get(prefix.len()..).unwrap_or_default().to_string();
        let mut out = self.query.clone();
        walk(&mut out, &mut |path, v| {
            let parts = parse(v).map_err(|e| format!("Bad evaluation for '{v}' in Service{path}: {e}"))?;
            let mut rendered = String::new();
            for p in parts {
                match p {
                    Part::Text(t) => rendered.push_str(&t),
                    Part::NameFull => rendered.push_str(name),
                    Part::NamePrefix => rendered.push_str(&prefix),
                    Part::NameSuffix => rendered.push_str(&suffix),
                    Part::AgentSegment => rendered.push_str(segment),
                    Part::Match(i) => rendered.push_str(matches.get(i).map(String::as_str).unwrap_or("")),
                    Part::NoMatch => {}
                }
            }
            *v = rendered;
            Ok(())
        })?;
        if self.query.template.remove_empty_tags {
            if let Some(tags) = out.service.tags.as_mut() {
                tags.retain(|t| !t.is_empty());
            }
        }
        Ok(out)
    }
}
