//! Running a prepared query against the catalog: finding the query by ID or name (rendering a
//! template) and picking the healthy instances it matches (Consul's `PreparedQueryResolve` and
//! `PreparedQuery.execute`). Ordering (shuffle, distance sort), ACL filtering and the limit
//! belong to the caller, which knows who asks.

use super::template::Compiled;
use super::{is_uuid, PreparedQuery};
use crate::state::catalog::{service_entries, HealthCheck, Node, ServiceInstance, CRITICAL, PASSING};
use crate::state::StateData;

/// One instance a query answers: its node, the instance and all its checks (node checks
/// included), as `/v1/health/service` shows them.
pub type Entry<'a> = (&'a Node, &'a ServiceInstance, Vec<&'a HealthCheck>);

/// The Connect-capable instances of service `name` (Consul's `CheckConnectServiceNodes`): the
/// connect proxies whose `Proxy.DestinationServiceName` is `name`, and the instances of `name`
/// that are Connect-native (`Connect.Native`).
pub fn connect_entries<'a>(data: &'a StateData, name: &str) -> Vec<Entry<'a>> {
    fn field<'v>(v: &'v Option<serde_json::Value>, camel: &str, snake: &str) -> Option<&'v serde_json::Value> {
        let o = v.as_ref()?.as_object()?;
        o.get(camel).or_else(|| o.get(snake))
    }
    let proxies_for = |s: &ServiceInstance| {
        s.kind == "connect-proxy"
            && field(&s.ext.proxy, "DestinationServiceName", "destination_service_name").and_then(|v| v.as_str())
                == Some(name)
    };
    let native = |s: &ServiceInstance| {
        field(&s.ext.connect, "Native", "native").and_then(serde_json::Value::as_bool) == Some(true)
    };
    let proxy_names: std::collections::BTreeSet<&str> =
        data.catalog.services.values().filter(|s| proxies_for(s)).map(|s| s.service.as_str()).collect();
    let mut out: Vec<Entry<'a>> = proxy_names
        .into_iter()
        .flat_map(|proxy| service_entries(data, proxy))
        .filter(|(_, s, _)| proxies_for(s))
        .collect();
    out.extend(service_entries(data, name).into_iter().filter(|(_, s, _)| native(s)));
    out
}

/// Why a query could not be resolved.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    /// Nothing has that ID or name (Consul's `ErrQueryNotFound`, a 404).
    #[error("Query not found")]
    NotFound,
    /// A template asked for by ID (templates answer to names only).
    #[error("prepared query templates can only be resolved up by name, not by ID")]
    TemplateById,
    /// A template that failed to render for the asked name.
    #[error("{0}")]
    Render(String),
}

/// The query `id_or_name` names, rendered when it is a template: by ID first, then by exact
/// name, then the template with the longest matching name prefix. `segment` is the asking
/// agent's network segment (`${agent.segment}`).
pub fn resolve(data: &StateData, id_or_name: &str, segment: &str) -> Result<PreparedQuery, ResolveError> {
    if id_or_name.is_empty() {
        return Err(ResolveError::NotFound);
    }
    let table = &data.prepared_queries;
    if is_uuid(id_or_name) {
        if let Some(q) = table.by_id.get(&id_or_name.to_lowercase()).or_else(|| table.by_id.get(id_or_name)) {
            if q.is_template() {
                return Err(ResolveError::TemplateById);
            }
            return Ok(q.clone());
        }
    }
    let found = table.by_name(id_or_name).or_else(|| table.template_for(id_or_name)).ok_or(ResolveError::NotFound)?;
    if !found.is_template() {
        return Ok(found.clone());
    }
    let compiled = Compiled::compile(found).map_err(ResolveError::Render)?;
    compiled.render(id_or_name, segment).map_err(ResolveError::Render)
}

/// Whether an instance with `checks` counts as healthy for `q`: no critical check (warnings
/// too with `OnlyPassing`), ignoring the checks in `IgnoreCheckIDs`.
pub fn healthy(q: &PreparedQuery, checks: &[&HealthCheck]) -> bool {
    let ignored = q.service.ignore_check_ids.as_deref().unwrap_or_default();
    checks
        .iter()
        .filter(|c| !ignored.contains(&c.check_id))
        .all(|c| c.status != CRITICAL && !(q.service.only_passing && c.status != PASSING))
}

/// Whether `tags` satisfy the query's tag rules: every plain tag present, no `!tag` present,
/// compared without case.
pub fn tags_match(rules: &[String], tags: &[String]) -> bool {
    rules.iter().all(|rule| {
        let rule = rule.to_lowercase();
        match rule.strip_prefix('!') {
            Some(forbidden) => !tags.iter().any(|t| t.to_lowercase() == forbidden),
            None => tags.iter().any(|t| t.to_lowercase() == rule),
        }
    })
}

fn meta_match(
    want: &Option<std::collections::BTreeMap<String, String>>,
    have: &std::collections::BTreeMap<String, String>,
) -> bool {
    want.iter().flatten().all(|(k, v)| have.get(k) == Some(v))
}

/// The instances `q` answers with in this datacenter, in catalog order. `connect` (the query's
/// `Connect` or `?connect`) asks for Connect-capable instances: the catalog holds no Connect
/// proxy or native registrations yet, so that answer is empty.
pub fn instances<'a>(data: &'a StateData, q: &PreparedQuery, connect: bool) -> Vec<Entry<'a>> {
    let tags = q.service.tags.as_deref().unwrap_or_default();
    let entries = if connect || q.service.connect {
        connect_entries(data, &q.service.service)
    } else {
        service_entries(data, &q.service.service)
    };
    entries
        .into_iter()
        .filter(|(_, _, checks)| healthy(q, checks))
        .filter(|(n, s, _)| meta_match(&q.service.node_meta, &n.meta) && meta_match(&q.service.service_meta, &s.meta))
        .filter(|(_, s, _)| tags_match(tags, &s.tags))
        .collect()
}
