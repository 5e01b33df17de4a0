//! The built-in Connect CA's cryptography (Consul's `consul` CA provider): a self-signed root
//! per trust domain, and SPIFFE leaf certificates for services signed by it. Pure functions —
//! the caller decides when to make a root (the leader, at bootstrap or on reconfiguration) and
//! stores it in the replicated state; any server signs leaves with the active root.
//!
//! Names follow Consul's: the trust domain is `<cluster_id>.consul`; the root carries the URI
//! SAN `spiffe://<trust domain>` and the CN `pri-<random>.consul.ca.<cluster_id[..8]>.consul`;
//! a service leaf carries `spiffe://<trust domain>/ns/default/dc/<dc>/svc/<service>` and the DNS
//! SAN `<service>.svc.default.<cluster_id[..8]>.consul`. IDs and key IDs are colon-separated hex,
//! as Consul prints them.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rcgen::string::Ia5String;
use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose, PublicKeyData, SanType, SerialNumber,
    SignatureAlgorithm,
};
use sha2::{Digest, Sha256};

/// The private key kinds the built-in CA makes (Consul's `PrivateKeyType`/`PrivateKeyBits`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CaKeyType {
    /// ECDSA on P-256 (Consul's default: `ec`, 256).
    EcP256,
    /// ECDSA on P-384 (`ec`, 384).
    EcP384,
}

impl CaKeyType {
    /// From Consul's `PrivateKeyType` and `PrivateKeyBits`; RSA keys cannot be generated here.
    pub fn from_consul(kind: &str, bits: u64) -> Result<CaKeyType, String> {
        match (kind, bits) {
            ("ec", 256) => Ok(CaKeyType::EcP256),
            ("ec", 384) => Ok(CaKeyType::EcP384),
            ("ec", other) => Err(format!("EC key length must be 256 or 384 bits, got {other}")),
            ("rsa", _) => {
                Err("PrivateKeyType \"rsa\" is not supported by this CA: use \"ec\" (256 or 384 bits)".into())
            }
            (other, _) => Err(format!("unknown PrivateKeyType {other:?}: use \"ec\"")),
        }
    }

    /// Consul's `(PrivateKeyType, PrivateKeyBits)`.
    pub fn consul_names(self) -> (&'static str, u64) {
        match self {
            CaKeyType::EcP256 => ("ec", 256),
            CaKeyType::EcP384 => ("ec", 384),
        }
    }

    fn algorithm(self) -> &'static SignatureAlgorithm {
        match self {
            CaKeyType::EcP256 => &rcgen::PKCS_ECDSA_P256_SHA256,
            CaKeyType::EcP384 => &rcgen::PKCS_ECDSA_P384_SHA384,
        }
    }
}

/// `connect { … }`: the built-in Connect CA (Consul's `consul` provider). Servers bootstrap a
/// root when `enabled`; agents then hand out SPIFFE leaf certificates for their services.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectSettings {
    /// `connect.enabled` (Consul's default: true). Off, the CA endpoints answer "Connect must be
    /// enabled in order to use this endpoint".
    pub enabled: bool,
    /// `ca_config.cluster_id`: a UUID fixing the trust domain (`<cluster_id>.consul`);
    /// default a random one chosen by the first leader.
    pub cluster_id: Option<String>,
    /// `ca_config.leaf_cert_ttl` (72 h).
    pub leaf_cert_ttl: Duration,
    /// `ca_config.root_cert_ttl` (87 600 h, ten years).
    pub root_cert_ttl: Duration,
    /// `ca_config.intermediate_cert_ttl` (8 760 h): reported in the CA configuration; the
    /// built-in CA signs leaves with its root, without intermediates.
    pub intermediate_cert_ttl: Duration,
    /// `ca_config.private_key_type` (`ec`).
    pub private_key_type: String,
    /// `ca_config.private_key_bits` (256).
    pub private_key_bits: u64,
}

impl Default for ConnectSettings {
    fn default() -> Self {
        ConnectSettings {
            enabled: true,
            cluster_id: None,
            leaf_cert_ttl: Duration::from_secs(72 * 3600),
            root_cert_ttl: Duration::from_secs(87_600 * 3600),
            intermediate_cert_ttl: Duration::from_secs(8_760 * 3600),
            private_key_type: "ec".into(),
            private_key_bits: 256,
        }
    }
}

impl ConnectSettings {
    /// The key type the settings ask for.
    pub fn key_type(&self) -> Result<CaKeyType, String> {
        CaKeyType::from_consul(&self.private_key_type, self.private_key_bits)
    }
}

/// A freshly made root.
#[derive(Clone)]
pub struct NewRoot {
    /// Consul's root ID: the colon-hex SHA-1 of the certificate's DER.
    pub id: String,
    /// The certificate's serial number.
    pub serial: u64,
    /// Colon-hex subject key identifier.
    pub signing_key_id: String,
    /// PEM certificate.
    pub cert_pem: String,
    /// PEM (PKCS#8) private key.
    pub key_pem: String,
    /// Validity, unix seconds.
    pub not_before: i64,
    /// Validity, unix seconds.
    pub not_after: i64,
}

impl std::fmt::Debug for NewRoot {
    // Never print the key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewRoot").field("id", &self.id).finish_non_exhaustive()
    }
}

/// A signed service certificate with its new private key.
#[derive(Clone)]
pub struct NewLeaf {
    /// Colon-hex serial number.
    pub serial: String,
    /// PEM certificate.
    pub cert_pem: String,
    /// PEM (PKCS#8) private key.
    pub key_pem: String,
    /// The SPIFFE ID in the certificate.
    pub service_uri: String,
    /// Validity, unix seconds.
    pub valid_after: i64,
    /// Validity, unix seconds.
    pub valid_before: i64,
}

impl std::fmt::Debug for NewLeaf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewLeaf").field("serial", &self.serial).field("uri", &self.service_uri).finish_non_exhaustive()
    }
}

/// The trust domain of a cluster: `<cluster_id>.consul`.
pub fn trust_domain(cluster_id: &str) -> String {
    format!("{cluster_id}.consul")
}

/// The SPIFFE ID of a service in `dc`.
pub fn service_uri(trust_domain: &str, dc: &str, service: &str) -> String {
    format!("spiffe://{trust_domain}/ns/default/dc/{dc}/svc/{service}")
}

/// Lower-case colon-separated hex (`de:ad:be:ef`), Consul's format for IDs and serials.
pub fn colon_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":")
}

/// Makes a self-signed root for `cluster_id`, valid from now (less a minute, for clock skew)
/// for `ttl`.
pub fn generate_root(cluster_id: &str, key_type: CaKeyType, ttl: Duration, now: SystemTime) -> Result<NewRoot, String> {
    let key = KeyPair::generate_for(key_type.algorithm()).map_err(|e| format!("error generating CA key: {e}"))?;
    let serial = random_u64()? >> 1; // positive as a DER INTEGER and as Go's uint64
    let td = trust_domain(cluster_id);
    let short: String = cluster_id.chars().take(8).collect();
    let mut params = CertificateParams::default();
    params.serial_number = Some(SerialNumber::from_slice(&serial.to_be_bytes()));
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, format!("pri-{:08x}.consul.ca.{short}.consul", random_u64()? as u32));
    params.distinguished_name = dn;
    let (not_before, not_after) = validity(now, ttl)?;
    set_validity(&mut params, not_before, not_after)?;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let key_id = Sha256::digest(key.subject_public_key_info()).to_vec();
    params.key_identifier_method = KeyIdMethod::PreSpecified(key_id.clone());
    params.use_authority_key_identifier_extension = true;
    params.subject_alt_names = vec![SanType::URI(ia5(&format!("spiffe://{td}"))?)];
    let cert = params.self_signed(&key).map_err(|e| format!("error generating CA certificate: {e}"))?;
    Ok(NewRoot {
        id: colon_hex(&sha1(cert.der())),
        serial,
        signing_key_id: colon_hex(&key_id),
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
        not_before,
        not_after,
    })
}

/// A new private key and a certificate signing request for it, made where the key will be
/// used (the agent), so only the request travels to the server that signs it.
pub fn leaf_request() -> Result<(String, String), String> {
    let key =
        KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(|e| format!("error generating key: {e}"))?;
    let csr = CertificateParams::default()
        .serialize_request(&key)
        .map_err(|e| format!("error making the signing request: {e}"))?;
    let csr_pem = csr.pem().map_err(|e| format!("error encoding the signing request: {e}"))?;
    Ok((key.serialize_pem(), csr_pem))
}

/// Signs the public key of `csr_pem` as `service` in `dc` with the root in `root_cert_pem`
/// and `root_key_pem`, valid for `ttl`. Only the key is taken from the request: the names,
/// validity and usages are the CA's (a request cannot ask for another service's identity).
/// The returned [`NewLeaf`] has an empty `key_pem` (the requester holds the key).
#[allow(clippy::too_many_arguments)]
pub fn sign_leaf_request(
    root_cert_pem: &str,
    root_key_pem: &str,
    cluster_id: &str,
    dc: &str,
    service: &str,
    csr_pem: &str,
    ttl: Duration,
    now: SystemTime,
) -> Result<NewLeaf, String> {
    let root_key = KeyPair::from_pem(root_key_pem).map_err(|e| format!("CA private key unusable: {e}"))?;
    let issuer =
        Issuer::from_ca_cert_pem(root_cert_pem, root_key).map_err(|e| format!("CA certificate unusable: {e}"))?;
    let mut csr =
        CertificateSigningRequestParams::from_pem(csr_pem).map_err(|e| format!("invalid signing request: {e}"))?;
    let td = trust_domain(cluster_id);
    let short: String = cluster_id.chars().take(8).collect();
    let uri = service_uri(&td, dc, service);
    let serial = random_u64()? >> 1;
    let mut params = CertificateParams::new(vec![format!("{service}.svc.default.{short}.consul")])
        .map_err(|e| format!("service name {service:?} cannot be a certificate name: {e}"))?;
    params.subject_alt_names.push(SanType::URI(ia5(&uri)?));
    params.serial_number = Some(SerialNumber::from_slice(&serial.to_be_bytes()));
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, service);
    params.distinguished_name = dn;
    let (valid_after, valid_before) = validity(now, ttl)?;
    set_validity(&mut params, valid_after, valid_before)?;
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages =
        vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment, KeyUsagePurpose::KeyAgreement];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
    params.key_identifier_method = KeyIdMethod::PreSpecified(Sha256::digest(csr.public_key.der_bytes()).to_vec());
    params.use_authority_key_identifier_extension = true;
    csr.params = params;
    let cert = csr.signed_by(&issuer).map_err(|e| format!("error signing the certificate: {e}"))?;
    Ok(NewLeaf {
        serial: colon_hex(&serial.to_be_bytes()),
        cert_pem: cert.pem(),
        key_pem: String::new(),
        service_uri: uri,
        valid_after,
        valid_before,
    })
}

/// [`leaf_request`] then [`sign_leaf_request`]: a new key and its certificate in one place.
pub fn sign_service_leaf(
    root_cert_pem: &str,
    root_key_pem: &str,
    cluster_id: &str,
    dc: &str,
    service: &str,
    ttl: Duration,
    now: SystemTime,
) -> Result<NewLeaf, String> {
    let (key_pem, csr_pem) = leaf_request()?;
    let leaf = sign_leaf_request(root_cert_pem, root_key_pem, cluster_id, dc, service, &csr_pem, ttl, now)?;
    Ok(NewLeaf { key_pem, ..leaf })
}

fn sha1(der: &[u8]) -> Vec<u8> {
    ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, der).as_ref().to_vec()
}

fn random_u64() -> Result<u64, String> {
    use ring::rand::SecureRandom as _;
    let mut bytes = [0u8; 8];
    ring::rand::SystemRandom::new().fill(&mut bytes).map_err(|_| "no randomness for a serial number".to_string())?;
    Ok(u64::from_be_bytes(bytes))
}

fn ia5(s: &str) -> Result<Ia5String, String> {
    Ia5String::try_from(s).map_err(|_| format!("{s:?} cannot be written in a certificate (not ASCII)"))
}

/// `(now - 1 min, now + ttl)` in unix seconds.
fn validity(now: SystemTime, ttl: Duration) -> Result<(i64, i64), String> {
    let now = now.duration_since(UNIX_EPOCH).map_err(|_| "clock before 1970".to_string())?.as_secs() as i64;
    let ttl = i64::try_from(ttl.as_secs()).map_err(|_| "TTL out of range".to_string())?;
    Ok((now - 60, now.checked_add(ttl).ok_or("TTL out of range")?))
}

/// 9999-12-31T23:59:59Z: the last instant a certificate can hold.
const MAX_CERT_TIME: i64 = 253_402_300_799;

fn set_validity(params: &mut CertificateParams, not_before: i64, not_after: i64) -> Result<(), String> {
    let at = |secs: i64| {
        u64::try_from(secs)
            .ok()
            .filter(|_| secs <= MAX_CERT_TIME)
            .map(|s| rcgen::date_time_ymd(1970, 1, 1) + Duration::from_secs(s))
            .ok_or_else(|| "certificate validity out of range".to_string())
    };
    params.not_before = at(not_before)?;
    params.not_after = at(not_after)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use rustls::client::danger::ServerCertVerifier as _;
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateDer;

    use super::*;

    const CLUSTER: &str = "11111111-2222-3333-4444-555555555555";

    #[test]
    fn a_leaf_verifies_against_its_root_and_names_the_service() {
        let now = SystemTime::now();
        let root = generate_root(CLUSTER, CaKeyType::EcP256, Duration::from_secs(86400 * 3650), now).expect("root");
        assert_eq!(root.id.len(), 20 * 3 - 1, "SHA-1 colon hex: {}", root.id);
        assert!(root.cert_pem.starts_with("-----BEGIN CERTIFICATE-----"));
        let leaf = sign_service_leaf(
            &root.cert_pem,
            &root.key_pem,
            CLUSTER,
            "dc1",
            "web",
            Duration::from_secs(72 * 3600),
            now,
        )
        .expect("leaf");
        assert_eq!(leaf.service_uri, format!("spiffe://{CLUSTER}.consul/ns/default/dc/dc1/svc/web"));
        assert_eq!(leaf.valid_before - leaf.valid_after, 72 * 3600 + 60);

        // A TLS client trusting only the root accepts the leaf for the service's DNS name.
        let mut roots = rustls::RootCertStore::empty();
        roots.add(CertificateDer::from_pem_slice(root.cert_pem.as_bytes()).expect("root der")).expect("add root");
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(roots.into(), provider)
            .build()
            .expect("verifier");
        let leaf_der = CertificateDer::from_pem_slice(leaf.cert_pem.as_bytes()).expect("leaf der");
        // The certificate is for the key made with the request.
        let key_der = rustls::pki_types::PrivateKeyDer::from_pem_slice(leaf.key_pem.as_bytes()).expect("key der");
        let signing = rustls::crypto::ring::default_provider().key_provider.load_private_key(key_der).expect("key");
        rustls::sign::CertifiedKey::new(vec![leaf_der.clone()], signing).keys_match().expect("key matches the cert");
        let name = rustls::pki_types::ServerName::try_from("web.svc.default.11111111.consul").expect("name");
        verifier
            .verify_server_cert(&leaf_der, &[], &name, &[], rustls::pki_types::UnixTime::now())
            .expect("the leaf chains to the root");
        // A leaf from another root does not.
        let other = generate_root(CLUSTER, CaKeyType::EcP384, Duration::from_secs(86400), now).expect("other root");
        let foreign =
            sign_service_leaf(&other.cert_pem, &other.key_pem, CLUSTER, "dc1", "web", Duration::from_secs(3600), now)
                .expect("foreign leaf");
        let foreign_der = CertificateDer::from_pem_slice(foreign.cert_pem.as_bytes()).expect("der");
        assert!(verifier
            .verify_server_cert(&foreign_der, &[], &name, &[], rustls::pki_types::UnixTime::now())
            .is_err());
    }

    #[test]
    fn key_types_follow_consuls_names() {
        assert_eq!(CaKeyType::from_consul("ec", 256), Ok(CaKeyType::EcP256));
        assert_eq!(CaKeyType::from_consul("ec", 384).map(CaKeyType::consul_names), Ok(("ec", 384)));
        assert!(CaKeyType::from_consul("ec", 521).expect_err("test error").contains("256 or 384"));
        assert!(CaKeyType::from_consul("rsa", 2048).expect_err("test error").contains("not supported"));
        assert!(CaKeyType::from_consul("dsa", 1).is_err());
    }

    #[test]
    fn bad_inputs_are_errors_not_panics() {
        let now = SystemTime::now();
        assert!(sign_service_leaf("junk", "junk", CLUSTER, "dc1", "web", Duration::from_secs(1), now).is_err());
        let root = generate_root(CLUSTER, CaKeyType::EcP256, Duration::from_secs(3600), now).expect("root");
        assert!(sign_service_leaf(&root.cert_pem, &root.key_pem, CLUSTER, "dc1", "wéb", Duration::from_secs(1), now)
            .is_err());
        assert!(generate_root(CLUSTER, CaKeyType::EcP256, Duration::from_secs(u64::MAX / 2), now).is_err());
    }
}
