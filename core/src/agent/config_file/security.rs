//! The security keys: `acl { … }` with the legacy `acl_*` spellings Consul still reads, and
//! `tls { … }` with the pre-1.12 top-level TLS spellings. Their sub-keys that are not honoured
//! go through [`Settings::apply_classified`]: accepted with no effect or refused by their class.

use serde_json::{Map, Value};

use super::{Ctx, Result, Settings};
use crate::api::authz::DownPolicy;

impl Settings {
    /// `acl { … }`.
    pub(super) fn apply_acl(&mut self, ctx: &Ctx<'_>, block: &Map<String, Value>) -> Result<()> {
        for (k, v) in block {
            let key = format!("acl.{k}");
            let acl = &mut self.agent.acl;
            match k.as_str() {
                "enabled" => acl.enabled = ctx.bool(&key, v)?,
                "default_policy" => acl.default_allow = default_policy(ctx, &key, v)?,
                "down_policy" => acl.down_policy = down_policy(ctx, &key, v)?,
                "token_ttl" => acl.token_ttl = ctx.duration(&key, v)?,
                "policy_ttl" => acl.policy_ttl = ctx.duration(&key, v)?,
                "role_ttl" => acl.role_ttl = ctx.duration(&key, v)?,
                "enable_key_list_policy" => acl.enable_key_list_policy = ctx.bool(&key, v)?,
                "enable_token_persistence" => acl.enable_token_persistence = ctx.bool(&key, v)?,
                // Replication pulls tokens from the primary datacenter; with one datacenter
                // there is nothing to replicate, so "false" is the only honest value.
                "enable_token_replication" => {
                    if ctx.bool(&key, v)? {
                        return Err(ctx.bad(
                            &key,
                            "ACL token replication needs a secondary datacenter; multiple datacenters are not \
                             supported yet",
                        ));
                    }
                }
                "tokens" => {
                    for tokens in ctx.blocks(&key, v)? {
                        self.apply_acl_tokens(ctx, tokens)?;
                    }
                }
                // Deprecated no-ops in Consul itself (1.4 removed what they tuned).
                "disabled_ttl" => {
                    ctx.duration(&key, v)?;
                    self.note_no_effect(&key);
                }
                _ => self.apply_classified(ctx, &key, v)?,
            }
        }
        Ok(())
    }

    fn apply_acl_tokens(&mut self, ctx: &Ctx<'_>, block: &Map<String, Value>) -> Result<()> {
        for (k, v) in block {
            let key = format!("acl.tokens.{k}");
            let t = &mut self.agent.acl.tokens;
            let slot = match k.as_str() {
                "initial_management" | "master" => &mut t.initial_management,
                "agent" => &mut t.agent,
                "agent_recovery" | "agent_master" => &mut t.agent_recovery,
                "default" => &mut t.default,
                "replication" => &mut t.replication,
                "config_file_service_registration" => &mut t.config_file_service_registration,
                "dns" => &mut t.dns,
                _ => {
                    self.apply_classified(ctx, &key, v)?;
                    continue;
                }
            };
            *slot = Some(ctx.string(&key, v)?).filter(|s| !s.is_empty());
        }
        Ok(())
    }

    /// The pre-1.4 top-level ACL keys. Returns false when `key` is not one of them.
    pub(super) fn apply_legacy_acl(&mut self, ctx: &Ctx<'_>, key: &str, v: &Value) -> Result<bool> {
        let acl = &mut self.agent.acl;
        match key {
            // Setting the ACL datacenter is how ACLs were turned on before the `acl` block.
            "acl_datacenter" => {
                let dc = ctx.string(key, v)?.to_lowercase();
                if !dc.is_empty() {
                    acl.enabled = true;
                    self.acl_primary_datacenter = Some(dc);
                }
            }
            "acl_default_policy" => acl.default_allow = default_policy(ctx, key, v)?,
            "acl_down_policy" => acl.down_policy = down_policy(ctx, key, v)?,
            "acl_ttl" => acl.token_ttl = ctx.duration(key, v)?,
            "acl_enable_key_list_policy" => acl.enable_key_list_policy = ctx.bool(key, v)?,
            "acl_master_token" => acl.tokens.initial_management = Some(ctx.string(key, v)?).filter(|s| !s.is_empty()),
            "acl_token" => acl.tokens.default = Some(ctx.string(key, v)?).filter(|s| !s.is_empty()),
            "acl_agent_token" => acl.tokens.agent = Some(ctx.string(key, v)?).filter(|s| !s.is_empty()),
            "acl_agent_master_token" => acl.tokens.agent_recovery = Some(ctx.string(key, v)?).filter(|s| !s.is_empty()),
            "acl_replication_token" => acl.tokens.replication = Some(ctx.string(key, v)?).filter(|s| !s.is_empty()),
            "primary_datacenter" => {
                let dc = ctx.string(key, v)?.to_lowercase();
                self.acl_primary_datacenter = Some(dc).filter(|d| !d.is_empty());
            }
            // Consul removed these; a file that still sets them was written for a Consul that
            // behaved differently, so say so rather than guess.
            "acl_enforce_version_8" => {
                return Err(ctx.bad(key, "was removed in Consul 1.4 (ACLs are always enforced when enabled)"))
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// After all sources: the ACL settings as a whole.
    pub(super) fn settle_acl(&self) -> Result<()> {
        self.settle_acl_datacenter()
    }

    /// The primary datacenter (the ACL authority) must be this one.
    fn settle_acl_datacenter(&self) -> Result<()> {
        if let Some(primary) = &self.acl_primary_datacenter {
            if *primary != self.agent.datacenter && self.agent.acl.enabled {
                return Err(crate::error::Error::Config(format!(
                    "primary_datacenter {primary:?} differs from datacenter {:?}: ACLs would have to be \
                     replicated from another datacenter, and multiple datacenters are not supported yet",
                    self.agent.datacenter
                )));
            }
        }
        Ok(())
    }

    /// A TLS key: the 1.12+ `tls { defaults, internal_rpc, https, grpc }` block or a pre-1.12
    /// top-level spelling (which sets `tls.defaults`, or the protocol its name says). Returns
    /// false when `key` is not a TLS key. `tls.grpc` is parsed and checked like the others but
    /// has no effect: nothing is served over gRPC.
    pub(super) fn apply_tls(&mut self, ctx: &Ctx<'_>, key: &str, v: &Value) -> Result<bool> {
        let tls = &mut self.agent.tls;
        match key {
            "tls" => {
                for block in ctx.blocks(key, v)? {
                    for (k, v) in block {
                        let path = format!("tls.{k}");
                        if !matches!(k.as_str(), "defaults" | "internal_rpc" | "https" | "grpc") {
                            return Err(
                                ctx.bad(&path, "unknown TLS section (known: defaults, internal_rpc, https, grpc)")
                            );
                        }
                        for b in ctx.blocks(&path, v)? {
                            for (name, v) in b {
                                self.apply_tls_layer_key(ctx, k, &format!("{path}.{name}"), name, v)?;
                            }
                        }
                    }
                }
            }
            "verify_incoming_rpc" => tls.internal_rpc.verify_incoming = Some(ctx.bool(key, v)?),
            "verify_incoming_https" => tls.https.verify_incoming = Some(ctx.bool(key, v)?),
            "verify_server_hostname" => tls.internal_rpc.verify_server_hostname = Some(ctx.bool(key, v)?),
            "verify_incoming"
            | "verify_outgoing"
            | "ca_file"
            | "ca_path"
            | "cert_file"
            | "key_file"
            | "tls_min_version"
            | "tls_cipher_suites"
            | "tls_prefer_server_cipher_suites" => {
                tls_layer_key(ctx, &mut tls.defaults, key, key, v)?;
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// One key of `tls.<section>`: honoured, or by its class where only some sections (or
    /// none) can act on it.
    fn apply_tls_layer_key(&mut self, ctx: &Ctx<'_>, section: &str, path: &str, name: &str, v: &Value) -> Result<()> {
        let tls = &mut self.agent.tls;
        let layer = match section {
            "defaults" => &mut tls.defaults,
            "internal_rpc" => &mut tls.internal_rpc,
            "https" => &mut tls.https,
            _ => &mut tls.grpc,
        };
        match (section, name) {
            (_, "use_auto_cert") | ("defaults" | "https" | "grpc", "verify_server_hostname") => {
                if ctx.bool(path, v)? {
                    let reason = super::classes::class_of(path).map_or("not supported", |(_, r)| r);
                    return Err(ctx.refused(path, reason));
                }
            }
            ("https", "verify_outgoing") => {
                ctx.bool(path, v)?;
                self.note_no_effect(path);
            }
            _ => {
                tls_layer_key(ctx, layer, path, name, v)?;
                if section == "grpc" {
                    self.note_no_effect(path);
                }
            }
        }
        Ok(())
    }
}

/// One honoured key of a `tls` layer (or a pre-1.12 top-level spelling of one).
fn tls_layer_key(ctx: &Ctx<'_>, layer: &mut crate::tls::TlsLayer, path: &str, name: &str, v: &Value) -> Result<()> {
    let file = |v: &Value| -> Result<Option<std::path::PathBuf>> {
        Ok(Some(ctx.string(path, v)?).filter(|s| !s.is_empty()).map(Into::into))
    };
    match name {
        "ca_file" => layer.ca_file = file(v)?,
        "ca_path" => layer.ca_path = file(v)?,
        "cert_file" => layer.cert_file = file(v)?,
        "key_file" => layer.key_file = file(v)?,
        "verify_incoming" => layer.verify_incoming = Some(ctx.bool(path, v)?),
        "verify_outgoing" => layer.verify_outgoing = Some(ctx.bool(path, v)?),
        "verify_server_hostname" => layer.verify_server_hostname = Some(ctx.bool(path, v)?),
        "tls_min_version" => {
            let s = ctx.string(path, v)?;
            layer.min_version = Some(crate::tls::TlsVersion::parse(&s).map_err(|e| ctx.bad(path, &e))?);
        }
        "tls_cipher_suites" => {
            // Consul writes them comma-separated in one string; a list is accepted too.
            let mut suites = Vec::new();
            for item in ctx.string_list(path, v)? {
                for name in item.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                    crate::tls::check_cipher_suite(name).map_err(|e| ctx.bad(path, &e))?;
                    suites.push(name.to_string());
                }
            }
            layer.cipher_suites = Some(suites);
        }
        "tls_prefer_server_cipher_suites" => layer.prefer_server_cipher_suites = Some(ctx.bool(path, v)?),
        _ => return Err(ctx.unknown(path)),
    }
    Ok(())
}

fn default_policy(ctx: &Ctx<'_>, key: &str, v: &Value) -> Result<bool> {
    match ctx.string(key, v)?.as_str() {
        "allow" => Ok(true),
        "deny" => Ok(false),
        other => Err(ctx.bad(key, &format!("invalid default policy {other:?}: use \"allow\" or \"deny\""))),
    }
}

fn down_policy(ctx: &Ctx<'_>, key: &str, v: &Value) -> Result<DownPolicy> {
    ctx.string(key, v)?.parse().map_err(|e: String| ctx.bad(key, &e))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn apply(v: Value) -> Result<Settings> {
        let mut s = Settings::new(false);
        s.apply_value(&v, "test.json")?;
        s.finish()?;
        Ok(s)
    }

    fn err(v: Value) -> String {
        apply(v).err().map(|e| e.to_string()).unwrap_or_default()
    }

    #[test]
    fn acl_block_and_tokens() {
        let s = apply(json!({"acl": {
            "enabled": true, "default_policy": "deny", "down_policy": "async-cache", "token_ttl": "10s",
            "enable_key_list_policy": true, "enable_token_persistence": true,
            "tokens": {"initial_management": "root", "agent": "a", "default": "d", "agent_recovery": "r", "dns": "n"}
        }}))
        .expect("valid");
        let acl = &s.agent.acl;
        assert!(acl.enabled && !acl.default_allow && acl.enable_key_list_policy && acl.enable_token_persistence);
        assert_eq!(acl.down_policy, DownPolicy::AsyncCache);
        assert_eq!(acl.token_ttl, std::time::Duration::from_secs(10));
        assert_eq!(acl.tokens.initial_management.as_deref(), Some("root"));
        assert_eq!(acl.tokens.agent.as_deref(), Some("a"));
        assert_eq!(acl.tokens.default.as_deref(), Some("d"));
        assert_eq!(acl.tokens.agent_recovery.as_deref(), Some("r"));
        assert_eq!(acl.tokens.dns.as_deref(), Some("n"));
    }

    #[test]
    fn legacy_spellings() {
        let s = apply(json!({"acl_datacenter": "dc1", "acl_default_policy": "deny", "acl_master_token": "m",
            "acl_agent_master_token": "am", "acl_token": "t"}))
        .expect("valid");
        let acl = &s.agent.acl;
        assert!(acl.enabled, "acl_datacenter turns ACLs on");
        assert!(!acl.default_allow);
        assert_eq!(acl.tokens.initial_management.as_deref(), Some("m"));
        assert_eq!(acl.tokens.agent_recovery.as_deref(), Some("am"));
        assert_eq!(acl.tokens.default.as_deref(), Some("t"));
        let s = apply(json!({"acl": {"tokens": {"master": "m2", "agent_master": "am2"}}})).expect("valid");
        assert_eq!(s.agent.acl.tokens.initial_management.as_deref(), Some("m2"));
        assert_eq!(s.agent.acl.tokens.agent_recovery.as_deref(), Some("am2"));
    }

    #[test]
    fn bad_acl_settings_are_refused_by_name() {
        assert!(err(json!({"acl": {"default_policy": "maybe"}})).contains("acl.default_policy"));
        assert!(err(json!({"acl": {"down_policy": "x"}})).contains("acl.down_policy"));
        assert!(err(json!({"acl": {"bogus": true}})).contains("acl.bogus"));
        assert!(err(json!({"acl": {"tokens": {"bogus": "x"}}})).contains("acl.tokens.bogus"));
        assert!(err(json!({"acl": {"enable_token_replication": true}})).contains("enable_token_replication"));
        assert!(err(json!({"acl_enforce_version_8": true})).contains("acl_enforce_version_8"));
        let other_dc = err(json!({"primary_datacenter": "dc0", "acl": {"enabled": true}}));
        assert!(other_dc.contains("primary_datacenter"), "{other_dc}");
        apply(json!({"primary_datacenter": "dc1", "acl": {"enabled": true}})).expect("same datacenter is fine");
    }

    #[test]
    fn tls_block_and_legacy_spellings() {
        let s = apply(json!({"tls": {
            "defaults": {"ca_file": "/ca.pem", "cert_file": "/a.pem", "key_file": "/a-key.pem",
                         "verify_incoming": true, "tls_min_version": "TLSv1_3",
                         "tls_cipher_suites": "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384"},
            "internal_rpc": {"verify_server_hostname": true},
            "https": {"verify_incoming": false}
        }}))
        .expect("valid");
        let t = &s.agent.tls;
        assert_eq!(t.defaults.ca_file.as_deref(), Some(std::path::Path::new("/ca.pem")));
        assert_eq!(t.defaults.min_version, Some(crate::tls::TlsVersion::Tls13));
        assert_eq!(t.defaults.cipher_suites.as_ref().map(Vec::len), Some(2));
        assert!(t.internal_rpc().verify_server_hostname && t.internal_rpc().verify_incoming);
        assert!(!t.https().verify_incoming);

        let s = apply(json!({"verify_incoming_rpc": true, "verify_outgoing": true, "ca_file": "/ca.pem",
            "verify_server_hostname": true, "cert_file": "/c.pem", "key_file": "/k.pem", "tls_min_version": "tls12"}))
        .expect("pre-1.12 spellings");
        let rpc = s.agent.tls.internal_rpc();
        assert!(rpc.verify_incoming && rpc.verify_outgoing && rpc.verify_server_hostname);
        assert!(!s.agent.tls.https().verify_incoming, "verify_incoming_rpc is the RPC port's only");
        assert_eq!(rpc.cert_file.as_deref(), Some(std::path::Path::new("/c.pem")));
    }

    #[test]
    fn tls_settings_it_cannot_honour_are_refused() {
        for (v, want) in [
            (json!({"auto_encrypt": {"tls": true}}), "auto_encrypt.tls"),
            (json!({"tls": {"defaults": {"tls_min_version": "TLSv1_1"}}}), "not supported"),
            (
                json!({"tls": {"defaults": {"tls_cipher_suites": "TLS_RSA_WITH_AES_128_CBC_SHA"}}}),
                "unsupported TLS cipher",
            ),
            (json!({"tls": {"grpc": {"use_auto_cert": true}}}), "tls.grpc.use_auto_cert"),
            (json!({"tls": {"defaults": {"verify_server_hostname": true}}}), "tls.defaults.verify_server_hostname"),
            (json!({"tls": {"rpc": {}}}), "unknown TLS section"),
        ] {
            let e = err(v.clone());
            assert!(e.contains(want), "{v}: {e}");
        }
        apply(json!({"verify_incoming": false, "tls": {"defaults": {"verify_outgoing": false}}, "ca_file": "",
            "auto_encrypt": {"tls": false}}))
        .expect("settings that ask for nothing are accepted");
    }

    #[test]
    fn restrictions_the_agent_cannot_honour_are_refused_unless_off() {
        let e = err(json!({"audit": {"enabled": true}}));
        assert!(e.contains("audit.enabled") && e.contains("Enterprise"), "{e}");
        let e = err(json!({"http_config": {"allow_write_http_from": ["127.0.0.0/8"]}}));
        assert!(e.contains("http_config.allow_write_http_from"), "{e}");
        let e = err(json!({"http_config": {"block_endpoints": ["/v1/acl"]}}));
        assert!(e.contains("http_config.block_endpoints"), "{e}");
        let e = err(json!({"addresses": {"http": "10.0.0.1"}}));
        assert!(e.contains("addresses.http") && e.contains("client_addr"), "{e}");
        apply(json!({"audit": {"enabled": false}, "http_config": {"response_headers": {"X-A": "b"},
            "allow_write_http_from": []}, "addresses": {"http": "127.0.0.1"}}))
        .expect("settings that restrict nothing are accepted");
    }
}
