//! The client's TLS, as Consul's `api.SetupTLSConfig` builds it: an optional client certificate
//! (for agents with `verify_incoming`), the CAs of a file or a directory (else the system's), a
//! server name to verify instead of the address's host, and verification switched off
//! altogether (`CONSUL_HTTP_SSL_VERIFY=false`).
//!
//! Everything is rustls on ring, handed to reqwest ready-made: no process-wide crypto provider
//! is installed (programs embedding the SDK keep theirs), and a reqwest client built without a
//! ready-made configuration would panic looking for one.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use consul_core::tls::verify;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, RootCertStore};

use crate::client::go_io_error;

/// Why the client's TLS could not be set up. The messages follow Consul's client
/// (`Error loading CA File: …`), and each names the file at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TlsError {
    /// The CA file could not be read.
    #[error("Error loading CA File: open {}: {reason}", path.display())]
    CaFileUnreadable {
        /// The file.
        path: PathBuf,
        /// The operating system's reason.
        reason: String,
    },
    /// The CA file (or a file of the CA directory) holds no usable PEM certificate.
    #[error("Error loading CA {what}: Couldn't parse PEM in: {}", path.display())]
    CaUnparsable {
        /// `File` or `Path`, as Consul words it.
        what: &'static str,
        /// The file.
        path: PathBuf,
    },
    /// The CA directory (or a file in it) could not be read.
    #[error("Error loading CA Path: {op} {}: {reason}", path.display())]
    CaPathUnreadable {
        /// What failed (`open`, `lstat`).
        op: &'static str,
        /// The directory or file.
        path: PathBuf,
        /// The operating system's reason.
        reason: String,
    },
    /// Only one of the client certificate and key was given.
    #[error("both client cert and client key must be provided")]
    HalfIdentity,
    /// The client certificate file could not be read or holds no certificate.
    #[error("Error loading client certificate {}: {reason}", path.display())]
    ClientCert {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The client key file could not be read, holds no key, or does not match the certificate.
    #[error("Error loading client key {}: {reason}", path.display())]
    ClientKey {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The TLS server name is not a DNS name or IP address (or has a bad port).
    #[error("invalid TLS server name {name:?}: {reason}")]
    ServerName {
        /// The name as given.
        name: String,
        /// Why it is refused.
        reason: String,
    },
    /// Nothing to verify the agent's certificate with.
    #[error(
        "no CA certificates to verify the agent's certificate with (the system store is empty): \
         set the CA file (CONSUL_CACERT) or path (CONSUL_CAPATH)"
    )]
    NoRoots,
    /// rustls refused the settings (not expected with ring's defaults).
    #[error("TLS setup: {0}")]
    Setup(String),
}

/// The TLS settings of one client, already resolved against the environment (see
/// [`crate::ClientConfig`]); empty strings count as unset.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsOptions {
    /// PEM file of the CAs to trust (Consul's `CAFile`); beats `ca_path`.
    pub ca_file: Option<String>,
    /// Directory of PEM CA files, read recursively (Consul's `CAPath`).
    pub ca_path: Option<String>,
    /// PEM client certificate chain (Consul's `CertFile`).
    pub client_cert: Option<String>,
    /// PEM private key of the client certificate (Consul's `KeyFile`).
    pub client_key: Option<String>,
    /// The name the agent's certificate must carry, instead of the address's host (Consul's
    /// `TLSConfig.Address`; a `:port` is dropped).
    pub server_name: Option<String>,
    /// Accept any agent certificate (handshake signatures are still checked).
    pub insecure_skip_verify: bool,
}

fn set(s: &Option<String>) -> Option<&str> {
    s.as_deref().filter(|s| !s.is_empty())
}

/// The rustls configuration of a client. `https` says whether it will be used at all: a plain
/// `http://` client still needs one (reqwest insists), but never reads the system's CA store
/// for it. The files given are loaded (and their errors reported) either way, as Consul does.
pub fn client_config(opts: &TlsOptions, https: bool) -> Result<ClientConfig, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Setup(e.to_string()))?;
    let server_name = set(&opts.server_name).map(server_name).transpose()?;
    let identity = identity(set(&opts.client_cert), set(&opts.client_key))?;
    let configured = roots(set(&opts.ca_file), set(&opts.ca_path))?;

    let builder = if opts.insecure_skip_verify {
        builder.dangerous().with_custom_certificate_verifier(verify::any_certificate(provider))
    } else {
        let roots = match configured {
            Some(r) => r,
            None if https => system_roots(),
            None => RootCertStore::empty(),
        };
        match server_name {
            // Consul's `CONSUL_TLS_SERVER_NAME`: for agents reached by an address their
            // certificate does not name (`server.dc1.consul` at `10.0.0.5:8501`).
            Some(name) if https => {
                let verifier = verify::named(Arc::new(roots), provider, name).map_err(|_| TlsError::NoRoots)?;
                builder.dangerous().with_custom_certificate_verifier(verifier)
            }
            _ => builder.with_root_certificates(roots),
        }
    };
    match identity {
        Some((chain, key, cert_path, key_path)) => {
            builder.with_client_auth_cert(chain, key).map_err(|e| TlsError::ClientKey {
                path: key_path,
                reason: match e {
                    rustls::Error::InconsistentKeys(_) => {
                        format!("it does not match the certificate in {}", cert_path.display())
                    }
                    other => other.to_string(),
                },
            })
        }
        None => Ok(builder.with_no_client_auth()),
    }
}

/// Why the agent at `base` (`https://host:port`) refuses a TLS session, in a Consul user's
/// words, found by opening one and reading from it.
///
/// With TLS 1.3 the client's half of the handshake ends before the agent has judged the client
/// certificate, so an agent wanting one (or trusting another CA) sends its alert only after the
/// client thinks it is connected. If that alert reaches hyper's connection task before a request
/// is written, the request fails as "connection was not ready" with the alert nowhere in its
/// causes. This probe does the handshake itself and reads until the agent answers or closes, so
/// the alert, if there is one, is read here. `None`: no TLS refusal seen within `wait`.
pub(crate) async fn refusal_reason(base: &str, config: Arc<ClientConfig>, wait: std::time::Duration) -> Option<String> {
    use tokio::io::AsyncReadExt;
    let url = reqwest::Url::parse(base).ok()?;
    let host = url.host_str()?.trim_start_matches('[').trim_end_matches(']').to_string();
    let port = url.port_or_known_default()?;
    let name = ServerName::try_from(host.clone()).ok()?;
    let probe = async {
        let tcp = tokio::net::TcpStream::connect((host.as_str(), port)).await.ok()?;
        let mut tls = match tokio_rustls::TlsConnector::from(config).connect(name, tcp).await {
            Ok(s) => s,
            Err(e) => return crate::error::tls_cause_words(&e),
        };
        let mut byte = [0u8; 1];
        match tls.read(&mut byte).await {
            Err(e) => crate::error::tls_cause_words(&e),
            Ok(_) => None,
        }
    };
    tokio::time::timeout(wait, probe).await.ok().flatten()
}

/// Consul drops a port from the server name (`host:8501` → `host`, `[::1]:8501` → `::1`).
fn server_name(raw: &str) -> Result<ServerName<'static>, TlsError> {
    let bad = |reason: &str| TlsError::ServerName { name: raw.to_string(), reason: reason.to_string() };
    // Go: `strings.LastIndex(server, ":") > strings.LastIndex(server, "]")`.
    let has_port = match (raw.rfind(':'), raw.rfind(']')) {
        (Some(c), Some(b)) => c > b,
        (Some(_), None) => true,
        _ => false,
    };
    let host = if has_port {
        let colon = raw.rfind(':').unwrap_or(raw.len());
        let host = &raw[..colon];
        match host.strip_prefix('[') {
            Some(inner) => inner.strip_suffix(']').ok_or_else(|| bad("missing ']' in address"))?,
            None if host.contains(':') => return Err(bad("too many colons in address")),
            None => host,
        }
    } else {
        raw.trim_start_matches('[').trim_end_matches(']')
    };
    ServerName::try_from(host.to_string()).map_err(|e| bad(&e.to_string()))
}

type Identity = (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>, PathBuf, PathBuf);

/// The client certificate chain and key, both or neither (Consul's rule).
fn identity(cert: Option<&str>, key: Option<&str>) -> Result<Option<Identity>, TlsError> {
    let (cert, key) = match (cert, key) {
        (None, None) => return Ok(None),
        (Some(c), Some(k)) => (PathBuf::from(c), PathBuf::from(k)),
        _ => return Err(TlsError::HalfIdentity),
    };
    let cert_err = |reason: String| TlsError::ClientCert { path: cert.clone(), reason };
    let pem = std::fs::read(&cert).map_err(|e| cert_err(format!("open: {}", go_io_error(&e))))?;
    let chain = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| cert_err(format!("bad PEM: {e}")))?;
    if chain.is_empty() {
        return Err(cert_err("no PEM certificate found".into()));
    }
    let key_err = |reason: String| TlsError::ClientKey { path: key.clone(), reason };
    let pem = std::fs::read(&key).map_err(|e| key_err(format!("open: {}", go_io_error(&e))))?;
    let private = PrivateKeyDer::from_pem_slice(&pem).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => key_err("no PEM private key found".into()),
        other => key_err(format!("bad PEM: {other}")),
    })?;
    Ok(Some((chain, private, cert, key)))
}

/// The configured CAs: `ca_file` alone when given (it wins over `ca_path`, as in Consul's
/// go-rootcerts), else every file under `ca_path`; `None` when neither is set.
fn roots(ca_file: Option<&str>, ca_path: Option<&str>) -> Result<Option<RootCertStore>, TlsError> {
    if let Some(file) = ca_file {
        let path = PathBuf::from(file);
        let pem = std::fs::read(&path)
            .map_err(|e| TlsError::CaFileUnreadable { path: path.clone(), reason: go_io_error(&e) })?;
        let mut store = RootCertStore::empty();
        if add_pem(&mut store, &pem) == 0 {
            return Err(TlsError::CaUnparsable { what: "File", path });
        }
        return Ok(Some(store));
    }
    let Some(dir) = ca_path else { return Ok(None) };
    let mut store = RootCertStore::empty();
    walk(Path::new(dir), &mut store)?;
    Ok(Some(store))
}

/// Go's `filepath.Walk` over a CA directory: lexical order, into subdirectories, every file
/// must hold a certificate.
fn walk(path: &Path, store: &mut RootCertStore) -> Result<(), TlsError> {
    let unreadable =
        |op, e: &std::io::Error| TlsError::CaPathUnreadable { op, path: path.to_path_buf(), reason: go_io_error(e) };
    let meta = std::fs::symlink_metadata(path).map_err(|e| unreadable("lstat", &e))?;
    if !meta.is_dir() {
        let pem = std::fs::read(path).map_err(|e| unreadable("open", &e))?;
        if add_pem(store, &pem) == 0 {
            return Err(TlsError::CaUnparsable { what: "Path", path: path.to_path_buf() });
        }
        return Ok(());
    }
    let mut entries = std::fs::read_dir(path)
        .map_err(|e| unreadable("open", &e))?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| unreadable("open", &e))?;
    entries.sort();
    for entry in entries {
        walk(&entry, store)?;
    }
    Ok(())
}

/// Adds every certificate of a PEM text that parses (Go's `AppendCertsFromPEM` skips the rest
/// too); how many were added.
fn add_pem(store: &mut RootCertStore, pem: &[u8]) -> usize {
    let certs: Vec<CertificateDer<'_>> = CertificateDer::pem_slice_iter(pem).filter_map(Result::ok).collect();
    store.add_parsable_certificates(certs).0
}

/// The system's CAs (`SSL_CERT_FILE` / `SSL_CERT_DIR` honoured, like Go). Unreadable entries
/// are skipped: an empty store only fails when a certificate is checked against it.
fn system_roots() -> RootCertStore {
    let found = rustls_native_certs::load_native_certs();
    for e in &found.errors {
        tracing::debug!(error = %e, "skipping part of the system CA store");
    }
    let mut store = RootCertStore::empty();
    store.add_parsable_certificates(found.certs);
    store
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A CA, and a leaf it signs for `localhost` and 127.0.0.1, as PEM files.
    struct Files {
        dir: tempfile::TempDir,
    }

    impl Files {
        fn new() -> Files {
            let dir = tempfile::tempdir().expect("tmp");
            let ca_key = rcgen::KeyPair::generate().expect("key");
            let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
            ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
            let ca_cert = ca.self_signed(&ca_key).expect("ca");
            let issuer = rcgen::Issuer::new(ca, ca_key);
            let key = rcgen::KeyPair::generate().expect("key");
            let leaf = rcgen::CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
                .expect("params")
                .signed_by(&key, &issuer)
                .expect("leaf");
            let other = rcgen::KeyPair::generate().expect("key");
            let f = Files { dir };
            f.write("ca.pem", &ca_cert.pem());
            f.write("cert.pem", &leaf.pem());
            f.write("key.pem", &key.serialize_pem());
            f.write("other-key.pem", &other.serialize_pem());
            f.write("junk.pem", "not a certificate\n");
            f
        }

        fn write(&self, name: &str, text: &str) {
            std::fs::write(self.dir.path().join(name), text).expect("write");
        }

        fn path(&self, name: &str) -> String {
            self.dir.path().join(name).to_string_lossy().into_owned()
        }
    }

    fn err(opts: TlsOptions) -> String {
        client_config(&opts, true).expect_err("refused").to_string()
    }

    #[test]
    fn files_load_and_bad_files_are_named() {
        let f = Files::new();
        let good = TlsOptions {
            ca_file: Some(f.path("ca.pem")),
            client_cert: Some(f.path("cert.pem")),
            client_key: Some(f.path("key.pem")),
            server_name: Some("server.dc1.consul:8501".into()),
            ..TlsOptions::default()
        };
        assert!(client_config(&good, true).is_ok());
        assert!(client_config(&TlsOptions { insecure_skip_verify: true, ..good.clone() }, true).is_ok());

        let missing = f.path("missing.pem");
        assert_eq!(
            err(TlsOptions { ca_file: Some(missing.clone()), ..TlsOptions::default() }),
            format!("Error loading CA File: open {missing}: no such file or directory")
        );
        let junk = f.path("junk.pem");
        assert_eq!(
            err(TlsOptions { ca_file: Some(junk.clone()), ..TlsOptions::default() }),
            format!("Error loading CA File: Couldn't parse PEM in: {junk}")
        );
        // ca_file wins over ca_path (go-rootcerts): a bad directory is never read then.
        assert!(client_config(
            &TlsOptions { ca_file: Some(f.path("ca.pem")), ca_path: Some(missing.clone()), ..TlsOptions::default() },
            true
        )
        .is_ok());
        assert_eq!(
            err(TlsOptions { ca_path: Some(missing.clone()), ..TlsOptions::default() }),
            format!("Error loading CA Path: lstat {missing}: no such file or directory")
        );
        // Every file of the directory must hold a certificate (lexical order): the first that
        // does not is named.
        let e = err(TlsOptions { ca_path: Some(f.path("")), ..TlsOptions::default() });
        assert!(e == format!("Error loading CA Path: Couldn't parse PEM in: {}", f.path("junk.pem")), "{e}");
        let only_ca = tempfile::tempdir().expect("tmp");
        std::fs::create_dir(only_ca.path().join("sub")).expect("mkdir");
        std::fs::copy(f.path("ca.pem"), only_ca.path().join("sub/ca.pem")).expect("copy");
        let opts = TlsOptions { ca_path: Some(only_ca.path().to_string_lossy().into_owned()), ..TlsOptions::default() };
        assert!(client_config(&opts, true).is_ok(), "subdirectories are read");

        assert_eq!(
            err(TlsOptions { client_cert: Some(f.path("cert.pem")), ..TlsOptions::default() }),
            "both client cert and client key must be provided"
        );
        let e = err(TlsOptions { client_key: Some(missing.clone()), client_cert: Some(junk.clone()), ..good.clone() });
        assert_eq!(e, format!("Error loading client certificate {junk}: no PEM certificate found"));
        let e = err(TlsOptions { client_key: Some(missing.clone()), ..good.clone() });
        assert_eq!(e, format!("Error loading client key {missing}: open: no such file or directory"));
        let e = err(TlsOptions { client_key: Some(f.path("other-key.pem")), ..good.clone() });
        assert_eq!(
            e,
            format!(
                "Error loading client key {}: it does not match the certificate in {}",
                f.path("other-key.pem"),
                f.path("cert.pem")
            )
        );
        // A plain-HTTP client still loads (and checks) the files it is given, as Consul does.
        assert!(client_config(&TlsOptions { ca_file: Some(junk), ..TlsOptions::default() }, false).is_err());
        assert!(client_config(&TlsOptions::default(), false).is_ok());
    }

    /// The probe behind [`Client`](crate::Client)'s transport errors: against a TLS 1.3 server
    /// that wants a client certificate, a client without one finishes its handshake and only
    /// then is refused; the probe reads that refusal. A client the server accepts is left
    /// waiting for an answer, and the probe finds nothing.
    #[tokio::test]
    async fn the_probe_reads_a_refusal_sent_after_the_handshake() {
        let f = Files::new();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = RootCertStore::empty();
        for c in CertificateDer::pem_file_iter(f.path("ca.pem")).expect("ca") {
            roots.add(c.expect("ca")).expect("root");
        }
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
            .build()
            .expect("verifier");
        let chain: Vec<_> =
            CertificateDer::pem_file_iter(f.path("cert.pem")).expect("cert").map(|c| c.expect("cert")).collect();
        let key = PrivateKeyDer::from_pem_file(f.path("key.pem")).expect("key");
        let server = rustls::ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .expect("versions")
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain, key)
            .expect("server config");
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let base = format!("https://127.0.0.1:{}", listener.local_addr().expect("addr").port());
        let server = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((tcp, _)) = listener.accept().await {
                // An accepted session is kept open, as an agent waiting for a request would.
                if let Ok(s) = acceptor.accept(tcp).await {
                    held.push(s);
                }
            }
        });

        let anonymous =
            client_config(&TlsOptions { ca_file: Some(f.path("ca.pem")), ..TlsOptions::default() }, true).expect("c");
        let why = refusal_reason(&base, Arc::new(anonymous), std::time::Duration::from_secs(10)).await;
        let why = why.expect("the refusal is read");
        assert!(why.contains("CertificateRequired") && why.contains("client certificate"), "{why}");

        let trusted = TlsOptions {
            ca_file: Some(f.path("ca.pem")),
            client_cert: Some(f.path("cert.pem")),
            client_key: Some(f.path("key.pem")),
            ..TlsOptions::default()
        };
        let config = Arc::new(client_config(&trusted, true).expect("config"));
        assert_eq!(refusal_reason(&base, config, std::time::Duration::from_millis(300)).await, None);
        server.abort();
    }

    #[test]
    fn server_names_drop_the_port() {
        let name = |s: &str| server_name(s).map(|n| n.to_str().into_owned());
        assert_eq!(name("server.dc1.consul").as_deref(), Ok("server.dc1.consul"));
        assert_eq!(name("server.dc1.consul:8501").as_deref(), Ok("server.dc1.consul"));
        assert_eq!(name("[::1]:8501").as_deref(), Ok("::1"));
        assert_eq!(name("10.0.0.5:8501").as_deref(), Ok("10.0.0.5"));
        assert!(name("fe80::1").is_err(), "Go's SplitHostPort: too many colons");
        assert!(name("bad name").is_err());
    }
}
