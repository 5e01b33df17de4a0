//! TLS for the HTTPS API and the server RPC port, as Consul's `tls` settings ask (rustls on
//! ring). [`AgentTls`] holds one agent's rustls configurations, built from the PEM files at
//! start and rebuilt from them on reload (certificate rotation without a restart). Nothing is
//! installed process-wide: several agents in one process each keep their own.

pub mod connect_ca;
mod settings;
pub mod verify;

pub use settings::{TlsConfig, TlsLayer, TlsSettings, TlsVersion};

use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::RwLock;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig, SupportedProtocolVersion};
use tokio_rustls::{TlsAcceptor, TlsConnector};

/// Why TLS could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A certificate, key or CA file could not be read or holds nothing usable.
    #[error("{}: {reason}", path.display())]
    File {
        /// The file (or `ca_path` directory).
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The settings do not make a working TLS configuration.
    #[error("{0}")]
    Settings(String),
}

/// What the RPC port does with a connection that does not start a TLS handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plaintext {
    /// Served (no `verify_incoming`).
    Allowed,
    /// Closed, with the reason logged (`verify_incoming`: every peer must prove who it is).
    Refused,
}

/// The rustls configurations of one agent, swapped whole on reload.
#[derive(Debug)]
pub struct AgentTls {
    config: TlsConfig,
    https_enabled: bool,
    /// `server.<datacenter>.<domain>`: the name servers' certificates carry and, with
    /// `verify_server_hostname`, must carry.
    server_name: ServerName<'static>,
    /// The DNS domain (`consul`), for the names of other datacenters' servers.
    domain: String,
    built: RwLock<Built>,
}

#[derive(Debug, Clone)]
struct Built {
    https: Option<Arc<ServerConfig>>,
    rpc_server: Option<Arc<ServerConfig>>,
    rpc_client: Option<Arc<ClientConfig>>,
}

impl AgentTls {
    /// Builds the agent's TLS from `config`; `None` when it asks for no TLS at all. Fails, naming
    /// the file or setting, when a file is missing or unusable or the settings contradict.
    pub fn load(
        config: &TlsConfig,
        https_enabled: bool,
        datacenter: &str,
        domain: &str,
    ) -> Result<Option<Arc<AgentTls>>, TlsError> {
        config.validate(https_enabled).map_err(TlsError::Settings)?;
        let name = format!("server.{datacenter}.{}", domain.trim_end_matches('.'));
        let server_name = ServerName::try_from(name.clone())
            .map_err(|e| TlsError::Settings(format!("cannot verify servers as {name:?}: {e}")))?;
        let domain = domain.trim_end_matches('.').to_string();
        let tls =
            AgentTls { config: config.clone(), https_enabled, server_name, domain, built: RwLock::new(Built::empty()) };
        let built = tls.build()?;
        if built.is_empty() {
            return Ok(None);
        }
        *tls.built.write() = built;
        Ok(Some(Arc::new(tls)))
    }

    /// Re-reads every certificate, key and CA file; the new configurations apply to new
    /// connections. All or nothing: if any file is unusable, the old ones stay and the error says
    /// which file.
    pub fn reload(&self) -> Result<(), TlsError> {
        let built = self.build()?;
        *self.built.write() = built;
        tracing::info!("TLS certificates reloaded");
        Ok(())
    }

    fn build(&self) -> Result<Built, TlsError> {
        let rpc = self.config.internal_rpc();
        let https = self.config.https();
        Ok(Built {
            https: match self.https_enabled {
                true => Some(server_config(&https)?),
                false => None,
            },
            rpc_server: match rpc.has_cert() {
                true => Some(server_config(&rpc)?),
                false => None,
            },
            rpc_client: match rpc.verify_outgoing {
                true => Some(client_config(&rpc)?),
                false => None,
            },
        })
    }

    /// The HTTPS listener's handshake, when HTTPS is on.
    pub fn https_acceptor(&self) -> Option<TlsAcceptor> {
        self.built.read().https.clone().map(TlsAcceptor::from)
    }

    /// The RPC port's handshake, when this agent has a certificate for it.
    pub fn rpc_acceptor(&self) -> Option<TlsAcceptor> {
        self.built.read().rpc_server.clone().map(TlsAcceptor::from)
    }

    /// What the RPC port does with plaintext connections.
    pub fn rpc_plaintext(&self) -> Plaintext {
        match self.config.internal_rpc().verify_incoming {
            true => Plaintext::Refused,
            false => Plaintext::Allowed,
        }
    }

    /// How to dial servers (`verify_outgoing`): the connector and the name to verify; `None`
    /// means plaintext.
    pub fn rpc_connector(&self) -> Option<(TlsConnector, ServerName<'static>)> {
        let client = self.built.read().rpc_client.clone()?;
        Some((TlsConnector::from(client), self.server_name.clone()))
    }

    /// How to dial the servers of another datacenter: as [`AgentTls::rpc_connector`], but their
    /// certificates name `server.<datacenter>.<domain>` (what `verify_server_hostname` checks).
    pub fn rpc_connector_for(&self, datacenter: &str) -> Option<(TlsConnector, ServerName<'static>)> {
        let client = self.built.read().rpc_client.clone()?;
        let name = format!("server.{datacenter}.{}", self.domain);
        match ServerName::try_from(name) {
            Ok(name) => Some((TlsConnector::from(client), name)),
            // A datacenter name that makes no DNS name cannot be verified; dial as for our own
            // servers, whose name then fails the check with a clear handshake error.
            Err(_) => Some((TlsConnector::from(client), self.server_name.clone())),
        }
    }
}

impl Built {
    fn empty() -> Built {
        Built { https: None, rpc_server: None, rpc_client: None }
    }

    fn is_empty(&self) -> bool {
        self.https.is_none() && self.rpc_server.is_none() && self.rpc_client.is_none()
    }
}

/// Consul's names of the TLS 1.2 suites rustls has (the CBC and RSA-key-exchange ones it lacks
/// are refused rather than dropped silently).
const TLS12_SUITES: &[(&str, rustls::CipherSuite)] = &[
    ("TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256", rustls::CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256),
    ("TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384", rustls::CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384),
    ("TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305", rustls::CipherSuite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256),
    (
        "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
        rustls::CipherSuite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
    ),
    ("TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256", rustls::CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256),
    ("TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384", rustls::CipherSuite::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384),
    ("TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305", rustls::CipherSuite::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256),
    ("TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256", rustls::CipherSuite::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256),
];

/// The TLS configuration of a reqwest client that speaks plain HTTP (HTTP checks, tests,
/// benchmarks), trusting the public web's CAs should a redirect lead to `https://`.
///
/// reqwest is built with rustls and no crypto provider of its own: a client builder must be
/// handed a ready-made configuration (`tls_backend_preconfigured`), or `build()` panics looking
/// for a process-wide provider — which we never install, so embedding programs keep theirs.
pub fn plain_client_tls() -> ClientConfig {
    let roots = RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() };
    ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        // Only a provider without TLS 1.2/1.3 suites fails here; ring's default has both.
        .unwrap_or_else(|e| unreachable!("ring supports the default TLS versions: {e}"))
        .with_root_certificates(roots)
        .with_no_client_auth()
}

/// Checks `tls_cipher_suites` names (for the config parser, so a bad name stops the start).
pub fn check_cipher_suite(name: &str) -> Result<(), String> {
    match TLS12_SUITES.iter().any(|(n, _)| *n == name) {
        true => Ok(()),
        false => Err(format!(
            "unsupported TLS cipher suite {name:?} (supported: {})",
            TLS12_SUITES.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ")
        )),
    }
}

/// ring, narrowed to the configured TLS 1.2 suites (TLS 1.3 suites are not configurable, as in
/// Consul).
fn provider(s: &TlsSettings) -> Result<Arc<CryptoProvider>, TlsError> {
    let mut p = rustls::crypto::ring::default_provider();
    if !s.cipher_suites.is_empty() {
        let mut wanted = Vec::new();
        for name in &s.cipher_suites {
            check_cipher_suite(name).map_err(TlsError::Settings)?;
            if let Some((_, id)) = TLS12_SUITES.iter().find(|(n, _)| n == name) {
                wanted.push(*id);
            }
        }
        let all = std::mem::take(&mut p.cipher_suites);
        let (tls13, tls12): (Vec<_>, Vec<_>) = all.into_iter().partition(|s| s.tls13().is_some());
        p.cipher_suites = tls13;
        for id in wanted {
            if let Some(suite) = tls12.iter().find(|s| s.suite() == id) {
                p.cipher_suites.push(*suite);
            }
        }
    }
    Ok(Arc::new(p))
}

static FROM_TLS12: [&SupportedProtocolVersion; 2] = [&rustls::version::TLS13, &rustls::version::TLS12];
static FROM_TLS13: [&SupportedProtocolVersion; 1] = [&rustls::version::TLS13];

fn versions(s: &TlsSettings) -> &'static [&'static SupportedProtocolVersion] {
    match s.min_version {
        TlsVersion::Tls12 => &FROM_TLS12,
        TlsVersion::Tls13 => &FROM_TLS13,
    }
}

fn file_err(path: &Path, reason: impl std::fmt::Display) -> TlsError {
    TlsError::File { path: path.to_path_buf(), reason: reason.to_string() }
}

fn certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| file_err(path, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_err(path, e))?;
    if certs.is_empty() {
        return Err(file_err(path, "holds no PEM certificate"));
    }
    Ok(certs)
}

fn key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| file_err(path, format!("no usable PEM private key: {e}")))
}

/// The CA certificates of a PEM text, strictly: a block that does not parse, or a certificate
/// rustls cannot use as a root, is an error (its text) rather than skipped. The store may be
/// empty (no certificate block at all); callers say what that means for them.
pub fn roots_from_pem(pem: &str) -> Result<RootCertStore, String> {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(pem.as_bytes()) {
        roots.add(cert.map_err(|e| e.to_string())?).map_err(|e| e.to_string())?;
    }
    Ok(roots)
}

/// The CAs of `ca_file` and every file of `ca_path`.
fn roots(s: &TlsSettings) -> Result<Arc<RootCertStore>, TlsError> {
    let mut files = Vec::new();
    if let Some(f) = &s.ca_file {
        files.push(f.clone());
    }
    if let Some(dir) = &s.ca_path {
        let entries = std::fs::read_dir(dir).map_err(|e| file_err(dir, e))?;
        let mut found: Vec<PathBuf> =
            entries.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.is_file()).collect();
        found.sort();
        if found.is_empty() {
            return Err(file_err(dir, "ca_path holds no files"));
        }
        files.extend(found);
    }
    let mut store = RootCertStore::empty();
    for f in &files {
        for cert in certs(f)? {
            store.add(cert).map_err(|e| file_err(f, format!("not a usable CA certificate: {e}")))?;
        }
    }
    Ok(Arc::new(store))
}

fn server_config(s: &TlsSettings) -> Result<Arc<ServerConfig>, TlsError> {
    let (Some(cert_file), Some(key_file)) = (&s.cert_file, &s.key_file) else {
        return Err(TlsError::Settings("a TLS listener needs cert_file and key_file".into()));
    };
    let provider = provider(s)?;
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(versions(s))
        .map_err(|e| TlsError::Settings(e.to_string()))?;
    let builder = if s.verify_incoming {
        let verifier = WebPkiClientVerifier::builder_with_provider(roots(s)?, provider)
            .build()
            .map_err(|e| TlsError::Settings(format!("client certificate verification: {e}")))?;
        builder.with_client_cert_verifier(verifier)
    } else {
        builder.with_no_client_auth()
    };
    let mut config = builder
        .with_single_cert(certs(cert_file)?, key(key_file)?)
        .map_err(|e| file_err(cert_file, format!("unusable with key {}: {e}", key_file.display())))?;
    config.ignore_client_order = s.prefer_server_cipher_suites;
    Ok(Arc::new(config))
}

fn client_config(s: &TlsSettings) -> Result<Arc<ClientConfig>, TlsError> {
    let provider = provider(s)?;
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(versions(s))
        .map_err(|e| TlsError::Settings(e.to_string()))?;
    let roots = roots(s)?;
    let builder = if s.verify_server_hostname {
        builder.with_root_certificates(roots)
    } else {
        let verifier = verify::chain_only(roots, provider)
            .map_err(|e| TlsError::Settings(format!("server certificate verification: {e}")))?;
        builder.dangerous().with_custom_certificate_verifier(verifier)
    };
    let config = match (&s.cert_file, &s.key_file) {
        (Some(cert_file), Some(key_file)) => builder
            .with_client_auth_cert(certs(cert_file)?, key(key_file)?)
            .map_err(|e| file_err(cert_file, format!("unusable with key {}: {e}", key_file.display())))?,
        _ => builder.with_no_client_auth(),
    };
    Ok(Arc::new(config))
}

#[cfg(test)]
pub(crate) mod testing;

#[cfg(test)]
mod tests;
