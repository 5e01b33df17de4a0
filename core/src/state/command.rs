//! Commands: the payload of Raft log entries, and what applying one returns.
//!
//! Changing these types changes the on-disk log and snapshot format: new variants go at the end.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::state::txn::{TxnOp, TxnOutcome, TxnReport};
use crate::state::StateData;

/// A state-machine mutation, replicated through Raft.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// One KV operation (`PUT`/`DELETE /v1/kv/...`). Applies or fails as a whole; failure
    /// (CAS mismatch, lock held) answers `false` and changes nothing.
    Kv(KvOp),
    /// An atomic transaction (`PUT /v1/txn`).
    Txn(Vec<TxnOp>),
    /// Replace the whole state from a snapshot archive (`PUT /v1/snapshot`).
    Restore(Box<StateData>),
    /// Drop tombstones whose delete index is at or below `up_to` (issued by the leader once
    /// they are older than `tombstone_ttl`).
    ReapTombstones {
        /// Highest tombstone index to drop.
        up_to: u64,
    },
    /// Does nothing; used to commit an entry of the current term (e.g. a barrier).
    Noop,
    /// Several independent client commands proposed together as one Raft entry (see
    /// `consensus::Proposer`). Each applies on its own, in order, at the entry's index, and has
    /// its own response; one failing does not affect the others.
    Batch(Vec<Command>),
    /// Register a node, and optionally a service and checks on it (`/v1/catalog/register`).
    CatalogRegister(Box<crate::state::catalog::RegisterRequest>),
    /// Remove a node, a service or a check (`/v1/catalog/deregister`).
    CatalogDeregister(crate::state::catalog::DeregisterRequest),
    /// Create a session (`PUT /v1/session/create`); the ID was chosen before proposing.
    SessionCreate(Box<crate::state::session::Session>),
    /// Destroy (invalidate) a session: through the API, or by the leader when its TTL lapsed.
    /// Releases or deletes its locks; `now_ms` (unix ms, stamped by the proposer) starts their
    /// lock-delays.
    SessionDestroy {
        /// Session ID.
        id: String,
        /// The proposer's clock, unix ms.
        now_ms: u64,
    },
    /// Store network coordinates (agents' periodic sync, `PUT /v1/coordinate/update`). Updates
    /// for nodes not in the catalog are skipped.
    CoordinateBatchUpdate(Vec<crate::state::coordinate::CoordinateUpdate>),
    /// A client write with its request id: applied at most once however often it is proposed
    /// (see [`crate::state::dedup`]). Repeats answer [`CommandResponse::Replayed`].
    Tracked {
        /// Chosen once where the request entered the cluster; kept across retries and forwards.
        id: RequestId,
        /// The write itself.
        cmd: Box<Command>,
    },
    /// An ACL write (`/v1/acl/*`, or the leader's ACL upkeep); see [`crate::state::acl`].
    Acl(crate::state::acl::AclOp),
    /// A Connect CA write (the leader's bootstrap, `PUT /v1/connect/ca/configuration`); see
    /// [`crate::state::connect_ca`]. Appended last: earlier variants keep their log encoding.
    ConnectCa(crate::state::connect_ca::CaOp),
    /// An autopilot configuration write (the first leader's seed, `PUT
    /// /v1/operator/autopilot/configuration`); answers [`CommandResponse::Bool`]. Appended last.
    Autopilot(crate::state::autopilot::AutopilotOp),
    /// A prepared query write (`/v1/query`); answers [`CommandResponse::Ok`], or `Failed` with
    /// Consul's message for an invalid query.
    PreparedQuery(crate::state::prepared_query::PreparedQueryOp),
    /// `cmd` with the extras of the service instances and sessions it carries (fields added
    /// after their encoding settled; see [`crate::state::ext_fields`]), in
    /// [`crate::state::ext_fields::visit`] order. Proposed instead of `cmd` whenever an extra is
    /// set; applying it puts them back and applies `cmd`. Appended last.
    WithExt {
        /// The write (never a `Batch`, `Tracked` or `WithExt`).
        cmd: Box<Command>,
        /// Its records' extras, self-describing.
        ext: crate::state::ext_fields::JsonText<crate::state::ext_fields::CommandExt>,
    },
}

/// Identifies one client write across retries: `origin` is a random id drawn by each agent
/// when it starts (one incarnation of one agent), `seq` counts that origin's writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct RequestId {
    /// The agent incarnation that assigned the id.
    pub origin: u64,
    /// Position among that origin's writes (strictly increasing).
    pub seq: u64,
}

impl RequestId {
    /// Every id of `origin`, as a range for ordered maps.
    pub fn origin_range(origin: u64) -> std::ops::RangeInclusive<RequestId> {
        RequestId { origin, seq: 0 }..=RequestId { origin, seq: u64::MAX }
    }
}

/// Hands out [`RequestId`]s for one agent incarnation.
#[derive(Debug)]
pub struct RequestIds {
    origin: u64,
    next: std::sync::atomic::AtomicU64,
}

impl Default for RequestIds {
    fn default() -> Self {
        Self::new()
    }
}

impl RequestIds {
    /// A generator with a fresh random origin.
    pub fn new() -> Self {
        RequestIds { origin: rand::random(), next: std::sync::atomic::AtomicU64::new(1) }
    }

    /// The next id.
    pub fn next_id(&self) -> RequestId {
        RequestId { origin: self.origin, seq: self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) }
    }

    /// Wraps `cmd` with a fresh id, unless it already carries one (it was tracked where it
    /// entered the cluster, e.g. on a client agent).
    pub fn track(&self, cmd: Command) -> Command {
        match cmd {
            Command::Tracked { .. } => cmd,
            cmd => Command::Tracked { id: self.next_id(), cmd: Box::new(cmd) },
        }
    }
}

impl Command {
    /// Rough payload size, used to keep batches from growing into huge log entries.
    pub fn approx_size(&self) -> usize {
        match self {
            Command::Kv(op) => op.key.len() + op.value.len() + 32,
            Command::Txn(ops) => ops.iter().map(TxnOp::approx_size).sum(),
            Command::Restore(_) => usize::MAX / 2,
            Command::ReapTombstones { .. } | Command::Noop => 16,
            Command::Batch(cmds) => cmds.iter().map(Command::approx_size).sum(),
            Command::CatalogRegister(r) => 512 + r.checks.len() * 256,
            Command::CatalogDeregister(_) => 64,
            Command::SessionCreate(s) => 256 + s.node_checks.len() * 64 + s.service_checks.len() * 64,
            Command::SessionDestroy { .. } => 64,
            Command::CoordinateBatchUpdate(u) => u.iter().map(|u| u.node.len() + u.segment.len() + 96).sum(),
            Command::Tracked { cmd, .. } => cmd.approx_size().saturating_add(16),
            Command::Acl(_) => 1024,
            Command::ConnectCa(_) => 4096,
            Command::Autopilot(_) => 256,
            Command::PreparedQuery(_) => 1024,
            Command::WithExt { cmd, ext } => {
                cmd.approx_size().saturating_add(ext.0.services.len() * 256 + ext.0.sessions.len() * 64)
            }
        }
    }
}

/// The KV verbs (`api/txn.go` `KVOp`), shared by `/v1/kv` and `/v1/txn`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum KvVerb {
    /// Set the value unconditionally.
    Set,
    /// Set only if `ModifyIndex` equals `index` (0: only if absent).
    Cas,
    /// Acquire the lock with `session` and set the value.
    Lock,
    /// Release the lock held by `session` and set the value.
    Unlock,
    /// Read one key (txn only).
    Get,
    /// Read every key under a prefix (txn only).
    GetTree,
    /// Fail unless `ModifyIndex` equals `index` (txn only).
    CheckIndex,
    /// Fail unless the key is locked by `session` (txn only).
    CheckSession,
    /// Fail if the key exists (txn only).
    CheckNotExists,
    /// Delete one key.
    Delete,
    /// Delete every key under a prefix.
    DeleteTree,
    /// Delete only if `ModifyIndex` equals `index`.
    DeleteCas,
}

impl KvVerb {
    /// Parses the wire spelling used by `/v1/txn` (`"set"`, `"get-tree"`, …).
    pub fn parse(s: &str) -> Option<KvVerb> {
        Some(match s {
            "set" => KvVerb::Set,
            "cas" => KvVerb::Cas,
            "lock" => KvVerb::Lock,
            "unlock" => KvVerb::Unlock,
            "get" => KvVerb::Get,
            "get-tree" => KvVerb::GetTree,
            "check-index" => KvVerb::CheckIndex,
            "check-session" => KvVerb::CheckSession,
            "check-not-exists" => KvVerb::CheckNotExists,
            "delete" => KvVerb::Delete,
            "delete-tree" => KvVerb::DeleteTree,
            "delete-cas" => KvVerb::DeleteCas,
            _ => return None,
        })
    }

    /// Whether the verb only reads.
    pub fn is_read(self) -> bool {
        matches!(
            self,
            KvVerb::Get | KvVerb::GetTree | KvVerb::CheckIndex | KvVerb::CheckSession | KvVerb::CheckNotExists
        )
    }

    /// The wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            KvVerb::Set => "set",
            KvVerb::Cas => "cas",
            KvVerb::Lock => "lock",
            KvVerb::Unlock => "unlock",
            KvVerb::Get => "get",
            KvVerb::GetTree => "get-tree",
            KvVerb::CheckIndex => "check-index",
            KvVerb::CheckSession => "check-session",
            KvVerb::CheckNotExists => "check-not-exists",
            KvVerb::Delete => "delete",
            KvVerb::DeleteTree => "delete-tree",
            KvVerb::DeleteCas => "delete-cas",
        }
    }
}

/// One KV operation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KvOp {
    /// What to do.
    pub verb: KvVerb,
    /// The key (or prefix, for the `*-tree` verbs).
    pub key: String,
    /// The value for writes.
    pub value: Bytes,
    /// Client flags stored with the value.
    pub flags: u64,
    /// The index for `cas`, `check-index`, `delete-cas`.
    pub index: u64,
    /// The session for `lock`, `unlock`, `check-session`.
    pub session: Option<String>,
    /// The proposer's clock (unix ms) for `lock`: a lock-delay still running at this time makes
    /// the acquire fail. `None` skips the lock-delay check.
    pub now_ms: Option<u64>,
}

impl KvOp {
    /// An operation with no value, flags, index or session.
    pub fn new(verb: KvVerb, key: impl Into<String>) -> Self {
        KvOp { verb, key: key.into(), value: Bytes::new(), flags: 0, index: 0, session: None, now_ms: None }
    }

    /// Sets the value.
    pub fn with_value(mut self, value: impl Into<Bytes>) -> Self {
        self.value = value.into();
        self
    }

    /// Sets the flags.
    pub fn with_flags(mut self, flags: u64) -> Self {
        self.flags = flags;
        self
    }

    /// Sets the index.
    pub fn with_index(mut self, index: u64) -> Self {
        self.index = index;
        self
    }

    /// Sets the session.
    pub fn with_session(mut self, session: impl Into<String>) -> Self {
        self.session = Some(session.into());
        self
    }

    /// Stamps the proposer's clock (unix ms), checked against lock-delays by `lock`.
    pub fn with_now_ms(mut self, now_ms: u64) -> Self {
        self.now_ms = Some(now_ms);
        self
    }
}

/// What applying a [`Command`] returned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum CommandResponse {
    /// Nothing to report.
    Ok,
    /// The `true`/`false` answer of a KV write.
    Bool(bool),
    /// The outcome of a transaction.
    Txn(TxnOutcome),
    /// One response per command of a [`Command::Batch`], in order.
    Batch(Vec<CommandResponse>),
    /// The command was refused by the state machine (deterministically, on every server) and
    /// changed nothing.
    Failed(crate::error::ApplyError),
    /// A [`Command::Tracked`] whose id was applied before: nothing changed now; this is the
    /// first application's index and result.
    Replayed {
        /// Raft index of the first application.
        index: u64,
        /// Its result.
        response: Box<CommandResponse>,
    },
    /// A [`Command::Tracked`] whose id is older than the dedup window remembers: it may or may
    /// not have been applied before, so it was not applied now.
    Expired,
    /// What an ACL write stored.
    Acl(crate::state::acl::AclApplied),
    /// The outcome of a transaction holding catalog or session operations (KV-only ones answer
    /// [`CommandResponse::Txn`]). Appended last: earlier variants keep their encoding.
    TxnReport(TxnReport),
}
