//! The leader's Connect CA duty (Consul's `CAManager.Start` in `agent/consul/leader_connect_ca.go`):
//! when `connect.enabled`, make sure a CA root exists. The leader generates the root (its private
//! key included) and proposes it through Raft; apply ignores a second bootstrap, so a new leader
//! may propose without knowing whether its predecessor's proposal committed. A snapshot restore
//! without a CA is bootstrapped again the same way.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::duration::format_go_duration;
use crate::replication::consensus::Consensus;
use crate::state::command::Command;
use crate::state::connect_ca::{CaConfig, CaOp, CaRoot};
use crate::tls::connect_ca::{self, CaKeyType, ConnectSettings};

/// How often the leader looks while there is no CA (it should appear right after election:
/// clients and test harnesses wait for it) and once there is one.
const TICK_MISSING: Duration = Duration::from_millis(50);
const TICK_PRESENT: Duration = Duration::from_secs(1);

/// Runs until `shutdown`: the CA bootstrap of whichever server is leader.
pub async fn run(consensus: Arc<Consensus>, settings: ConnectSettings, shutdown: CancellationToken) {
    if !settings.enabled {
        return;
    }
    let key_type = match settings.key_type() {
        Ok(k) => k,
        Err(e) => {
            // validate() refused this at start; nothing to do if it slipped through.
            tracing::error!(error = %e, "Connect CA key settings unusable; no CA");
            return;
        }
    };
    let mut tick = TICK_MISSING;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(tick) => {}
            _ = shutdown.cancelled() => return,
        }
        let initialized = consensus.state().read(|d| d.connect_ca.initialized());
        tick = if initialized { TICK_PRESENT } else { TICK_MISSING };
        if initialized || !consensus.is_leader() {
            continue;
        }
        let cluster_id = settings.cluster_id.clone().unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        let now = std::time::UNIX_EPOCH + Duration::from_millis(consensus.clock().unix_ms());
        let root = match new_root(&cluster_id, key_type, settings.root_cert_ttl, now) {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %e, "generating the Connect CA root failed; will retry");
                tick = TICK_PRESENT;
                continue;
            }
        };
        let op = CaOp::Initialize { cluster_id, config: default_config(&settings), root: Box::new(root) };
        match consensus.write(Command::ConnectCa(op)).await {
            Ok(_) => tracing::info!("Connect CA initialized"),
            Err(e) => tracing::warn!(error = %e, "initializing the Connect CA failed; will retry"),
        }
    }
}

/// A new active root for `cluster_id`, as the state stores it.
pub fn new_root(
    cluster_id: &str,
    key_type: CaKeyType,
    ttl: Duration,
    now: std::time::SystemTime,
) -> Result<CaRoot, String> {
    let r = connect_ca::generate_root(cluster_id, key_type, ttl, now)?;
    let (kind, bits) = key_type.consul_names();
    Ok(CaRoot {
        id: r.id,
        name: "Consul CA Primary Cert".into(),
        serial_number: r.serial,
        signing_key_id: r.signing_key_id,
        not_before: r.not_before,
        not_after: r.not_after,
        root_cert: r.cert_pem,
        private_key: r.key_pem,
        private_key_type: kind.into(),
        private_key_bits: bits,
        active: true,
        create_index: 0,
        modify_index: 0,
    })
}

/// The configuration a new CA starts with: Consul's `Config` map for the `consul` provider
/// (its three TTLs, plus the key type when it is not the default).
pub fn default_config(s: &ConnectSettings) -> CaConfig {
    let mut m = serde_json::Map::new();
    m.insert("LeafCertTTL".into(), format_go_duration(s.leaf_cert_ttl).into());
    m.insert("IntermediateCertTTL".into(), format_go_duration(s.intermediate_cert_ttl).into());
    m.insert("RootCertTTL".into(), format_go_duration(s.root_cert_ttl).into());
    if (s.private_key_type.as_str(), s.private_key_bits) != ("ec", 256) {
        m.insert("PrivateKeyType".into(), s.private_key_type.clone().into());
        m.insert("PrivateKeyBits".into(), s.private_key_bits.into());
    }
    CaConfig { provider: "consul".into(), config_json: serde_json::Value::Object(m).to_string(), ..CaConfig::default() }
}
