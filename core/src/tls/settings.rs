//! What the configuration asks of TLS: Consul's `tls { defaults, internal_rpc, https, grpc }`
//! layers, each protocol's settings resolved over the defaults.

use std::path::PathBuf;

/// The TLS versions rustls speaks (Consul's `TLSv1_2` / `TLSv1_3`; the older ones are refused
/// at start — rustls has neither, and accepting them would be a promise not kept).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub enum TlsVersion {
    /// TLS 1.2 (Consul's default minimum).
    #[default]
    Tls12,
    /// TLS 1.3.
    Tls13,
}

impl TlsVersion {
    /// Parses Consul's spellings: `TLSv1_2`, `TLSv1_3` and the pre-1.12 `tls12`, `tls13`.
    pub fn parse(s: &str) -> Result<TlsVersion, String> {
        match s {
            "TLSv1_2" | "tls12" => Ok(TlsVersion::Tls12),
            "TLSv1_3" | "tls13" => Ok(TlsVersion::Tls13),
            "TLSv1_0" | "TLSv1_1" | "tls10" | "tls11" => Err(format!(
                "{s:?} is not supported: TLS 1.0 and 1.1 are insecure and not offered; use TLSv1_2 or TLSv1_3"
            )),
            _ => Err(format!("invalid TLS version {s:?}: use TLSv1_2 or TLSv1_3")),
        }
    }
}

/// One layer of settings as written (`tls.defaults`, `tls.https`, …): `None` where the layer
/// says nothing, so the protocol layers can fall back to the defaults key by key.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsLayer {
    /// `ca_file`: PEM bundle of the CAs that sign peers' certificates.
    pub ca_file: Option<PathBuf>,
    /// `ca_path`: a directory of PEM CA files.
    pub ca_path: Option<PathBuf>,
    /// `cert_file`: this agent's certificate chain (PEM).
    pub cert_file: Option<PathBuf>,
    /// `key_file`: its private key (PEM).
    pub key_file: Option<PathBuf>,
    /// `verify_incoming`: require peers to present a certificate signed by the CA.
    pub verify_incoming: Option<bool>,
    /// `verify_outgoing`: speak TLS to servers and check their certificates.
    pub verify_outgoing: Option<bool>,
    /// `verify_server_hostname` (internal RPC only): servers' certificates must name
    /// `server.<datacenter>.<domain>`.
    pub verify_server_hostname: Option<bool>,
    /// `tls_min_version`.
    pub min_version: Option<TlsVersion>,
    /// `tls_cipher_suites`: Consul's names of the TLS 1.2 suites to offer, in order.
    pub cipher_suites: Option<Vec<String>>,
    /// `tls_prefer_server_cipher_suites`.
    pub prefer_server_cipher_suites: Option<bool>,
}

impl TlsLayer {
    /// `self` over `under`: each key `self` sets wins.
    fn over(&self, under: &TlsLayer) -> TlsLayer {
        TlsLayer {
            ca_file: self.ca_file.clone().or_else(|| under.ca_file.clone()),
            ca_path: self.ca_path.clone().or_else(|| under.ca_path.clone()),
            cert_file: self.cert_file.clone().or_else(|| under.cert_file.clone()),
            key_file: self.key_file.clone().or_else(|| under.key_file.clone()),
            verify_incoming: self.verify_incoming.or(under.verify_incoming),
            verify_outgoing: self.verify_outgoing.or(under.verify_outgoing),
            verify_server_hostname: self.verify_server_hostname.or(under.verify_server_hostname),
            min_version: self.min_version.or(under.min_version),
            cipher_suites: self.cipher_suites.clone().or_else(|| under.cipher_suites.clone()),
            prefer_server_cipher_suites: self.prefer_server_cipher_suites.or(under.prefer_server_cipher_suites),
        }
    }
}

/// The whole `tls` block.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsConfig {
    /// `tls.defaults` (and the pre-1.12 top-level keys).
    pub defaults: TlsLayer,
    /// `tls.internal_rpc`: the server RPC port (Raft, forwarding, client agents' requests).
    pub internal_rpc: TlsLayer,
    /// `tls.https`: the HTTPS API.
    pub https: TlsLayer,
    /// `tls.grpc`: accepted, and without effect — this agent serves no gRPC port.
    pub grpc: TlsLayer,
}

/// The settings one protocol ends up with.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsSettings {
    /// CA bundle file.
    pub ca_file: Option<PathBuf>,
    /// CA directory.
    pub ca_path: Option<PathBuf>,
    /// Certificate chain.
    pub cert_file: Option<PathBuf>,
    /// Private key.
    pub key_file: Option<PathBuf>,
    /// Require and verify peer certificates.
    pub verify_incoming: bool,
    /// Use TLS to servers and verify them.
    pub verify_outgoing: bool,
    /// Verify servers' `server.<dc>.<domain>` name.
    pub verify_server_hostname: bool,
    /// Lowest version offered or accepted.
    pub min_version: TlsVersion,
    /// TLS 1.2 suites (Consul names); empty: rustls' defaults.
    pub cipher_suites: Vec<String>,
    /// Choose the suite by the server's order.
    pub prefer_server_cipher_suites: bool,
}

impl TlsSettings {
    fn from_layer(l: TlsLayer) -> TlsSettings {
        let verify_server_hostname = l.verify_server_hostname.unwrap_or(false);
        TlsSettings {
            ca_file: l.ca_file.filter(|p| !p.as_os_str().is_empty()),
            ca_path: l.ca_path.filter(|p| !p.as_os_str().is_empty()),
            cert_file: l.cert_file.filter(|p| !p.as_os_str().is_empty()),
            key_file: l.key_file.filter(|p| !p.as_os_str().is_empty()),
            verify_incoming: l.verify_incoming.unwrap_or(false),
            // Consul 1.12+: checking the server's name implies checking the server.
            verify_outgoing: l.verify_outgoing.unwrap_or(false) || verify_server_hostname,
            verify_server_hostname,
            min_version: l.min_version.unwrap_or_default(),
            cipher_suites: l.cipher_suites.unwrap_or_default(),
            prefer_server_cipher_suites: l.prefer_server_cipher_suites.unwrap_or(false),
        }
    }

    /// Whether a CA is configured.
    pub fn has_ca(&self) -> bool {
        self.ca_file.is_some() || self.ca_path.is_some()
    }

    /// Whether this agent has a certificate of its own.
    pub fn has_cert(&self) -> bool {
        self.cert_file.is_some() && self.key_file.is_some()
    }
}

impl TlsConfig {
    /// The internal RPC settings (defaults under `tls.internal_rpc`).
    pub fn internal_rpc(&self) -> TlsSettings {
        TlsSettings::from_layer(self.internal_rpc.over(&self.defaults))
    }

    /// The HTTPS settings (defaults under `tls.https`). Outgoing and hostname checks mean nothing
    /// to a listener; Consul ignores them there too.
    pub fn https(&self) -> TlsSettings {
        let mut l = self.https.over(&self.defaults);
        l.verify_server_hostname = None;
        TlsSettings::from_layer(l)
    }

    /// Whether anything TLS is configured at all.
    pub fn is_empty(&self) -> bool {
        *self == TlsConfig::default()
    }

    /// Start-up checks Consul makes, so a half-configured agent refuses to start instead of
    /// running with less protection than asked: a key without a certificate (or the reverse),
    /// verification without a CA to verify with, an HTTPS port without a certificate.
    pub fn validate(&self, https_enabled: bool) -> Result<(), String> {
        for (name, s) in [("tls.internal_rpc", self.internal_rpc()), ("tls.https", self.https())] {
            if s.cert_file.is_some() != s.key_file.is_some() {
                return Err(format!("{name}: cert_file and key_file must be set together"));
            }
            if (s.verify_incoming || s.verify_outgoing) && !s.has_ca() {
                let what = if s.verify_incoming { "verify_incoming" } else { "verify_outgoing" };
                return Err(format!("{name}: {what} needs a CA: set ca_file or ca_path"));
            }
            if s.verify_incoming && !s.has_cert() {
                return Err(format!("{name}: verify_incoming needs this agent's cert_file and key_file"));
            }
        }
        if https_enabled && !self.https().has_cert() {
            return Err("ports.https needs tls.https (or tls.defaults) cert_file and key_file".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn protocol_layers_fall_back_to_defaults_key_by_key() {
        let cfg = TlsConfig {
            defaults: TlsLayer {
                ca_file: Some("/ca.pem".into()),
                cert_file: Some("/a.pem".into()),
                key_file: Some("/a-key.pem".into()),
                verify_incoming: Some(true),
                ..TlsLayer::default()
            },
            https: TlsLayer { verify_incoming: Some(false), ..TlsLayer::default() },
            internal_rpc: TlsLayer { verify_server_hostname: Some(true), ..TlsLayer::default() },
            ..TlsConfig::default()
        };
        let https = cfg.https();
        assert!(!https.verify_incoming, "the https layer overrides");
        assert_eq!(https.ca_file.as_deref(), Some(std::path::Path::new("/ca.pem")));
        let rpc = cfg.internal_rpc();
        assert!(rpc.verify_incoming && rpc.verify_server_hostname);
        assert!(rpc.verify_outgoing, "verify_server_hostname implies verify_outgoing");
        assert!(cfg.validate(true).is_ok());
    }

    #[test]
    fn half_configurations_are_refused() {
        let only_cert = TlsConfig {
            defaults: TlsLayer { cert_file: Some("/a.pem".into()), ..TlsLayer::default() },
            ..TlsConfig::default()
        };
        assert!(only_cert.validate(false).unwrap_err().contains("cert_file and key_file"));
        let no_ca = TlsConfig {
            defaults: TlsLayer { verify_outgoing: Some(true), ..TlsLayer::default() },
            ..TlsConfig::default()
        };
        assert!(no_ca.validate(false).unwrap_err().contains("needs a CA"));
        assert!(TlsConfig::default().validate(true).unwrap_err().contains("ports.https"));
        assert!(TlsConfig::default().validate(false).is_ok());
    }

    #[test]
    fn versions() {
        assert_eq!(TlsVersion::parse("TLSv1_3"), Ok(TlsVersion::Tls13));
        assert_eq!(TlsVersion::parse("tls12"), Ok(TlsVersion::Tls12));
        assert!(TlsVersion::parse("TLSv1_0").unwrap_err().contains("not supported"));
        assert!(TlsVersion::parse("ssl3").is_err());
    }
}
