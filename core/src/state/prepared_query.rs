//! Prepared queries (Consul's `prepared-queries` table): stored service queries that clients
//! run by ID or name over HTTP (`/v1/query/:id/execute`) and DNS (`<name>.query.consul`).
//!
//! A query is a static one (looked up by ID, or by its exact name) or a template
//! (`Template.Type = "name_prefix_match"`): the template whose name is the longest prefix of the
//! asked name answers, its `Service` fields rendered for that name (see [`template`]). Names
//! compare without case, as Consul's lowercase name index does. Writes go through
//! [`crate::state::command::Command::PreparedQuery`] and are validated here, at apply time, so
//! every server decides the same; the table is saved as the `prepared_queries` table of the
//! [`super::ext_tables`] envelope.

pub mod execute;
pub mod template;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::ext_tables::{self, ExtEntry, ExtError};
use super::StateData;

/// Watch key of the prepared query table (blocking `GET /v1/query`, `/v1/query/:id`).
pub const WATCH_QUERIES: &str = "\u{1}prepared-queries";

/// What Consul shows instead of a query's token to a caller without `acl:write`.
pub const REDACTED_TOKEN: &str = "<hidden>";

/// The one template type Consul knows.
pub const NAME_PREFIX_MATCH: &str = "name_prefix_match";

/// The table's name in the snapshot envelope.
const TABLE: &str = "prepared_queries";
/// The table's encoding version.
const TABLE_VERSION: u32 = 1;

/// `Failover.Targets[]` (kept and returned; there is no peering).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailoverTarget {
    /// `Peer`.
    pub peer: String,
    /// `Datacenter`.
    pub datacenter: String,
}

/// `Service.Failover` (`QueryFailoverOptions`): where execution goes when the local datacenter
/// has no instance (see `api::http::prepared_query`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failover {
    /// `NearestN`.
    pub nearest_n: i64,
    /// `Datacenters` (`None`: JSON null, as sent).
    pub datacenters: Option<Vec<String>>,
    /// `Targets` (`None`: JSON null, as sent).
    pub targets: Option<Vec<FailoverTarget>>,
}

/// `Service` (`ServiceQuery`). Lists and maps keep the difference between absent (`null`) and
/// empty that Consul's Go structs keep, so a definition reads back exactly as written.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceQuery {
    /// `Service`: the service to query (required).
    pub service: String,
    /// `SamenessGroup` (kept; no effect without partitions).
    pub sameness_group: String,
    /// `Failover`.
    pub failover: Failover,
    /// `OnlyPassing`: warning checks exclude an instance too.
    pub only_passing: bool,
    /// `IgnoreCheckIDs`: checks that do not count.
    pub ignore_check_ids: Option<Vec<String>>,
    /// `Near`: a node name, or `_agent`, to sort by distance from.
    pub near: String,
    /// `Tags`: required tags, and `!tag` forbidden ones (case-insensitive).
    pub tags: Option<Vec<String>>,
    /// `NodeMeta`: required node metadata.
    pub node_meta: Option<BTreeMap<String, String>>,
    /// `ServiceMeta`: required service metadata.
    pub service_meta: Option<BTreeMap<String, String>>,
    /// `Connect`: only Connect-capable instances.
    pub connect: bool,
    /// `Peer` (kept; no peering).
    pub peer: String,
}

/// `Template` (`QueryTemplateOptions`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueryTemplate {
    /// `Type`: empty for a static query, else `name_prefix_match`.
    pub kind: String,
    /// `Regexp`: matched against the asked name; `${match(N)}` reads its groups.
    pub regexp: String,
    /// `RemoveEmptyTags`: drop tags that rendered empty.
    pub remove_empty_tags: bool,
}

/// One prepared query (`structs.PreparedQuery`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PreparedQuery {
    /// `ID`: a UUID chosen by the server that received the create.
    pub id: String,
    /// `Name`: optional, unique without case.
    pub name: String,
    /// `Session`: the query is deleted when this session ends.
    pub session: String,
    /// `Token`: executions run with it when set.
    pub token: String,
    /// `Template`.
    pub template: QueryTemplate,
    /// `Service`.
    pub service: ServiceQuery,
    /// `DNS.TTL`: a Go duration, or empty.
    pub dns_ttl: String,
    /// Raft index of creation.
    pub create_index: u64,
    /// Raft index of the last change.
    pub modify_index: u64,
}

impl PreparedQuery {
    /// Whether this is a template.
    pub fn is_template(&self) -> bool {
        !self.template.kind.is_empty()
    }

    /// The name `query`/`query_prefix` ACL rules are checked against, when they apply
    /// (Consul's `GetACLPrefix`: named queries and templates; an unnamed static query is
    /// governed by its session and ID alone).
    pub fn acl_prefix(&self) -> Option<&str> {
        (!self.name.is_empty() || self.is_template()).then_some(self.name.as_str())
    }
}

/// A prepared query write.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum PreparedQueryOp {
    /// Store a new query (its ID was chosen before proposing).
    Create(Box<PreparedQuery>),
    /// Replace an existing query (refused when it no longer exists).
    Update(Box<PreparedQuery>),
    /// Delete a query (a missing one is not an error).
    Delete {
        /// The query's ID.
        id: String,
    },
}

/// The table: queries by ID, plus the lookups rebuilt from them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PreparedQueries {
    /// Queries by ID.
    pub by_id: BTreeMap<String, PreparedQuery>,
    /// Index of the last change to the table (`X-Consul-Index` of its reads).
    pub index: u64,
    /// Lower-cased name → ID, for every named query (templates included).
    #[serde(skip)]
    by_name: BTreeMap<String, String>,
    /// Lower-cased name prefix → ID, for templates.
    #[serde(skip)]
    templates: BTreeMap<String, String>,
}

impl PreparedQueries {
    /// Rebuilds the name and template lookups from `by_id` (after decoding).
    pub fn rebuild(&mut self) {
        self.by_name.clear();
        self.templates.clear();
        for q in self.by_id.values() {
            if !q.name.is_empty() {
                self.by_name.insert(q.name.to_lowercase(), q.id.clone());
            }
            if q.is_template() {
                self.templates.insert(q.name.to_lowercase(), q.id.clone());
            }
        }
    }

    /// The query with exactly this name (ignoring case).
    pub fn by_name(&self, name: &str) -> Option<&PreparedQuery> {
        self.by_name.get(&name.to_lowercase()).and_then(|id| self.by_id.get(id))
    }

    /// The template whose name is the longest prefix of `name` (ignoring case).
    pub fn template_for(&self, name: &str) -> Option<&PreparedQuery> {
        let lower = name.to_lowercase();
        // Only prefixes of `name` can match; walk them from the longest down.
        let mut end = lower.len();
        loop {
            if lower.is_char_boundary(end) {
                if let Some(q) = self.templates.get(&lower[..end]).and_then(|id| self.by_id.get(id)) {
                    return Some(q);
                }
            }
            if end == 0 {
                return None;
            }
            end -= 1;
        }
    }

    fn insert(&mut self, q: PreparedQuery) {
        self.remove(&q.id);
        if !q.name.is_empty() {
            self.by_name.insert(q.name.to_lowercase(), q.id.clone());
        }
        if q.is_template() {
            self.templates.insert(q.name.to_lowercase(), q.id.clone());
        }
        self.by_id.insert(q.id.clone(), q);
    }

    fn remove(&mut self, id: &str) -> bool {
        let Some(old) = self.by_id.remove(id) else { return false };
        let lower = old.name.to_lowercase();
        if self.by_name.get(&lower).is_some_and(|i| i == id) {
            self.by_name.remove(&lower);
        }
        if self.templates.get(&lower).is_some_and(|i| i == id) {
            self.templates.remove(&lower);
        }
        true
    }
}

/// Whether `s` looks like a query ID (Consul's `isUUID`: 8-4-4-4-12 hex digits).
pub fn is_uuid(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 36
        && b.iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => c.is_ascii_hexdigit(),
        })
}

/// The checks Consul makes of a definition before storing it (`parseQuery`), with its
/// messages (prefixed "Invalid prepared query: " by the caller).
pub fn validate_definition(q: &PreparedQuery) -> Result<(), String> {
    if q.name.is_empty() && !q.is_template() && q.session.is_empty() {
        return Err("Must be bound to a session".into());
    }
    if q.token == REDACTED_TOKEN {
        return Err(format!(
            "Bad Token '{}', it looks like a query definition with a redacted token was submitted",
            q.token
        ));
    }
    let svc = &q.service;
    if svc.service.is_empty() {
        return Err("Must provide a Service name to query".into());
    }
    if svc.failover.nearest_n < 0 {
        return Err(format!("Bad NearestN '{}', must be >= 0", svc.failover.nearest_n));
    }
    let has_targets = svc.failover.targets.as_ref().is_some_and(|t| !t.is_empty());
    let has_dcs = svc.failover.datacenters.as_ref().is_some_and(|d| !d.is_empty());
    if has_targets && (svc.failover.nearest_n != 0 || has_dcs) {
        return Err("Targets cannot be populated with NearestN or Datacenters".into());
    }
    if !q.dns_ttl.is_empty() {
        crate::duration::parse_go_duration(&q.dns_ttl).map_err(|e| format!("Bad DNS TTL '{}': {e}", q.dns_ttl))?;
    }
    Ok(())
}

/// The checks that need the stored state (Consul's `preparedQuerySetTxn`): the name is unique,
/// does not alias another query's ID, at most one template has the empty name, the session
/// exists, and a template compiles.
fn validate_against(data: &StateData, q: &PreparedQuery) -> Result<(), String> {
    let table = &data.prepared_queries;
    if !q.name.is_empty() {
        if table.by_name(&q.name).is_some_and(|other| other.id != q.id) {
            return Err(format!("name '{}' aliases an existing query name", q.name));
        }
    } else if q.is_template() && table.templates.get("").is_some_and(|id| *id != q.id) {
        return Err("a query template with an empty name already exists".into());
    }
    if is_uuid(&q.name) && table.by_id.contains_key(&q.name.to_lowercase()) {
        return Err(format!("name '{}' aliases an existing query ID", q.name));
    }
    if !q.session.is_empty() && !data.sessions.contains_key(&q.session) {
        return Err(format!("invalid session {:?}", q.session));
    }
    if q.is_template() {
        template::Compiled::compile(q).map_err(|e| format!("failed compiling template: {e}"))?;
    }
    Ok(())
}

/// Applies `op` at `index`; an invalid write changes nothing and says why.
pub fn apply(data: &mut StateData, op: &PreparedQueryOp, index: u64) -> Result<bool, String> {
    match op {
        PreparedQueryOp::Create(q) | PreparedQueryOp::Update(q) => {
            if q.id.is_empty() {
                return Err("Missing query ID".into());
            }
            let existing = data.prepared_queries.by_id.get(&q.id).map(|e| e.create_index);
            if matches!(op, PreparedQueryOp::Update(_)) && existing.is_none() {
                return Err(format!("Cannot modify non-existent prepared query: '{}'", q.id));
            }
            validate_definition(q).map_err(|e| format!("Invalid prepared query: {e}"))?;
            validate_against(data, q)?;
            let mut q = (**q).clone();
            q.create_index = existing.unwrap_or(index);
            q.modify_index = index;
            data.prepared_queries.insert(q);
            data.prepared_queries.index = index;
            Ok(true)
        }
        PreparedQueryOp::Delete { id } => {
            if data.prepared_queries.remove(id) {
                data.prepared_queries.index = index;
            }
            Ok(true)
        }
    }
}

/// Deletes the queries bound to sessions that no longer exist (Consul deletes a session's
/// queries with it); returns whether any was.
pub fn drop_orphans(data: &mut StateData, index: u64) -> bool {
    let gone: Vec<String> = data
        .prepared_queries
        .by_id
        .values()
        .filter(|q| !q.session.is_empty() && !data.sessions.contains_key(&q.session))
        .map(|q| q.id.clone())
        .collect();
    for id in &gone {
        data.prepared_queries.remove(id);
    }
    if !gone.is_empty() {
        data.prepared_queries.index = index;
    }
    !gone.is_empty()
}

/// The table as an envelope entry for a snapshot (`None` when empty).
pub fn save(data: &StateData) -> Result<Option<ExtEntry>, postcard::Error> {
    if data.prepared_queries.by_id.is_empty() && data.prepared_queries.index == 0 {
        return Ok(None);
    }
    ext_tables::entry(TABLE, TABLE_VERSION, &data.prepared_queries).map(Some)
}

/// Puts a saved table back into `data`.
pub fn load(data: &mut StateData, entry: &ExtEntry) -> Result<(), ExtError> {
    let mut table: PreparedQueries = ext_tables::decode(entry, TABLE_VERSION)?;
    table.rebuild();
    data.prepared_queries = table;
    Ok(())
}

/// The table's name in the envelope (for [`super::ext_tables::scatter`]).
pub const TABLE_NAME: &str = TABLE;

/// The restored table with every index moved to the restore's (`restore()` in the state
/// module: indexes never go backwards).
pub fn restored(saved: &PreparedQueries, index: u64) -> PreparedQueries {
    let mut table = saved.clone();
    for q in table.by_id.values_mut() {
        q.modify_index = index;
        q.create_index = q.create_index.min(index);
    }
    table.index = index;
    table.rebuild();
    table
}

#[cfg(test)]
mod tests;
