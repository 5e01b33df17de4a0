//! `consul-rs tls ca create` and `consul-rs tls cert create` (`command/tls`): a private CA for
//! agent TLS (not Connect) and the server, client and CLI certificates it signs, with Consul's
//! file names, messages and certificate contents.
//!
//! What Consul writes, and so what is written here:
//! - private keys: ECDSA P-256 in SEC1 form (`EC PRIVATE KEY`), mode 0600;
//! - certificates: PEM, mode 0666 less the umask, 128-bit random serial numbers, ECDSA-SHA256
//!   signatures, and key identifiers that are the whole SHA-256 of the public key's DER
//!   SubjectPublicKeyInfo (Consul's choice, not RFC 5280's SHA-1 method);
//! - the CA: subject `C=US, ST=CA, L=San Francisco, streetAddress=101 Second Street,
//!   postalCode=94105, O=HashiCorp Inc., CN=Consul Agent CA <serial>`, critical basic
//!   constraints `CA:TRUE`, key usage digitalSignature + keyCertSign + cRLSign, and with
//!   `-name-constraint` critical name constraints permitting DNS names under the given domains;
//! - leaves: subject `CN=<name>`, `CA:FALSE`, key usage digitalSignature + keyEncipherment,
//!   the SANs and extended key usages of [`plan_leaf`].
//!
//! `cert create` refuses to write a certificate that would not verify against its CA for its
//! own name (expired, outside the CA's name constraints, signed by a non-CA), as Consul does.
//!
//! The generation itself ([`generate_ca`], [`CaSigner::from_pem`], [`CaSigner::sign_leaf`]) has
//! no file or terminal I/O so that the agent's HTTPS / mTLS support can reuse it.

use std::io::{Read as _, Write};
use std::net::IpAddr;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use clap::{ArgAction, Args, Subcommand};
use rcgen::string::{Ia5String, PrintableString};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, DnValue, ExtendedKeyUsagePurpose, GeneralSubtree,
    IsCa, Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose, NameConstraints, PublicKeyData, SanType, SerialNumber,
};
use sha2::{Digest, Sha256};
use x509_parser::prelude::{FromDer, GeneralName, ParsedExtension, SubjectPublicKeyInfo, X509Certificate};

/// `tls` subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum TlsCommand {
    /// Helpers for CAs.
    #[command(subcommand)]
    Ca(CaCommand),
    /// Helpers for certificates.
    #[command(subcommand)]
    Cert(CertCommand),
}

/// `tls ca` subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum CaCommand {
    /// Create a new consul CA.
    Create(CaCreateArgs),
}

/// `tls cert` subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum CertCommand {
    /// Create a new certificate.
    Create(CertCreateArgs),
}

/// `tls ca create` flags.
#[derive(Debug, Args)]
pub(crate) struct CaCreateArgs {
    /// Number of days the CA is valid for (0 means 365, as in Consul).
    #[arg(long, default_value_t = 1825)]
    days: i64,
    /// The DNS domain of the cluster: names the files, and is permitted with -name-constraint.
    #[arg(long, default_value = "consul")]
    domain: String,
    /// Add X.509 name constraints: the CA may only sign for localhost, -domain and
    /// -additional-name-constraint.
    #[arg(long = "name-constraint", action = ArgAction::Set, num_args = 0..=1, require_equals = true,
          default_value = "false", default_missing_value = "true",
          value_parser = clap::builder::BoolishValueParser::new())]
    name_constraint: bool,
    /// Another DNS domain the CA may sign for (with -name-constraint); repeatable.
    #[arg(long = "additional-name-constraint", action = ArgAction::Append)]
    additional_name_constraint: Vec<String>,
    /// Common Name of the CA (default `Consul Agent CA <serial>`).
    #[arg(long = "common-name", default_value = "")]
    common_name: String,
    /// Cluster ID: adds the URI SAN `spiffe://<cluster-id>.<domain>` to the CA.
    #[arg(long = "cluster-id", default_value = "")]
    cluster_id: String,
}

/// `tls cert create` flags.
#[derive(Debug, Args)]
pub(crate) struct CertCreateArgs {
    /// The CA certificate (`#DOMAIN#` is replaced by -domain).
    #[arg(long, default_value = "#DOMAIN#-agent-ca.pem")]
    ca: String,
    /// The CA's private key (`#DOMAIN#` is replaced by -domain).
    #[arg(long, default_value = "#DOMAIN#-agent-ca-key.pem")]
    key: String,
    /// Generate a server certificate.
    #[arg(long, action = ArgAction::Set, num_args = 0..=1, require_equals = true,
          default_value = "false", default_missing_value = "true",
          value_parser = clap::builder::BoolishValueParser::new())]
    server: bool,
    /// Generate a client certificate.
    #[arg(long, action = ArgAction::Set, num_args = 0..=1, require_equals = true,
          default_value = "false", default_missing_value = "true",
          value_parser = clap::builder::BoolishValueParser::new())]
    client: bool,
    /// Generate a CLI certificate.
    #[arg(long, action = ArgAction::Set, num_args = 0..=1, require_equals = true,
          default_value = "false", default_missing_value = "true",
          value_parser = clap::builder::BoolishValueParser::new())]
    cli: bool,
    /// With -server: also include `<node>.server.<dc>.<domain>`.
    #[arg(long, default_value = "")]
    node: String,
    /// Number of days the certificate is valid for.
    #[arg(long, default_value_t = 365)]
    days: i64,
    /// The datacenter.
    #[arg(long, default_value = "dc1")]
    dc: String,
    /// The domain.
    #[arg(long, default_value = "consul")]
    domain: String,
    /// An additional DNS name for the SANs; repeatable.
    #[arg(long = "additional-dnsname", action = ArgAction::Append)]
    additional_dnsname: Vec<String>,
    /// An additional IP address for the SANs; repeatable.
    #[arg(long = "additional-ipaddress", action = ArgAction::Append)]
    additional_ipaddress: Vec<String>,
}

/// Runs a `tls` subcommand in the current directory: progress on stdout, the error (Consul's
/// wording, printed as is) on stderr with exit status 1.
pub(crate) fn run(cmd: TlsCommand) -> u8 {
    let mut out = std::io::stdout().lock();
    let dir = Path::new(".");
    let result = match cmd {
        TlsCommand::Ca(CaCommand::Create(a)) => ca_create(&a, dir, &mut out),
        TlsCommand::Cert(CertCommand::Create(a)) => cert_create(&a, dir, &mut out),
    };
    match result {
        Ok(()) => 0,
        Err(msg) => {
            // Keep "==> Using …" ahead of the error when both go to one terminal.
            let _ = out.flush();
            eprintln!("{msg}");
            1
        }
    }
}

/// Prints one progress line; a closed stdout must not turn a written certificate into a failure.
fn say(out: &mut dyn Write, line: &str) {
    let _ = writeln!(out, "{line}");
}

// ---------------------------------------------------------------------------------------------
// The two commands.

/// File modes: umask applies to certificates (Go's 0666), keys are private whatever the umask.
const CERT_MODE: u32 = 0o666;
const KEY_MODE: u32 = 0o600;

/// `tls ca create`, with relative paths taken from `dir`.
fn ca_create(a: &CaCreateArgs, dir: &Path, out: &mut dyn Write) -> Result<(), String> {
    let cert_name = format!("{}-agent-ca.pem", a.domain);
    let key_name = format!("{}-agent-ca-key.pem", a.domain);
    for name in [&cert_name, &key_name] {
        if exists(&dir.join(name)) {
            return Err(format!("{name} already exists."));
        }
    }
    // Consul writes an already expired CA for a negative -days; nothing could ever chain to it.
    if a.days < 0 {
        return Err(format!("-days must not be negative (got {})", a.days));
    }
    let mut permitted = Vec::new();
    if a.name_constraint {
        permitted.extend(a.additional_name_constraint.iter().cloned());
        permitted.push(a.domain.clone());
        permitted.push("localhost".to_string());
    }
    let ca = generate_ca(
        &CaOptions {
            common_name: a.common_name.clone(),
            days: a.days,
            domain: a.domain.clone(),
            cluster_id: a.cluster_id.clone(),
            permitted_dns_domains: permitted,
        },
        SystemTime::now(),
    )?;
    write_pair(dir, (&cert_name, &ca.cert_pem), (&key_name, &ca.key_pem))?;
    say(out, &format!("==> Saved {cert_name}"));
    say(out, &format!("==> Saved {key_name}"));
    Ok(())
}

/// Printed before a server certificate is made (Consul's warning, word for word).
const SERVER_WARNING: &str = "==> WARNING: Server Certificates grants authority to become a
    server and access all state in the cluster including root keys
    and all ACL tokens. Do not distribute them to production hosts
    that are not server nodes. Store them as securely as CA keys.";

/// `tls cert create`, with relative paths taken from `dir`. The checks come in Consul's order,
/// so that a command line with several problems gets Consul's first complaint.
fn cert_create(a: &CertCreateArgs, dir: &Path, out: &mut dyn Write) -> Result<(), String> {
    if a.ca.is_empty() {
        return Err("Please provide the ca".to_string());
    }
    if a.key.is_empty() {
        return Err("Please provide the key".to_string());
    }
    let kind = match (a.server, a.client, a.cli) {
        (true, false, false) => CertKind::Server,
        (false, true, false) => CertKind::Client,
        (false, false, true) => CertKind::Cli,
        _ => return Err("Please provide either -server, -client, or -cli".to_string()),
    };
    if !a.node.is_empty() && kind != CertKind::Server {
        return Err("-node requires -server".to_string());
    }
    let plan = plan_leaf(kind, &a.dc, &a.domain, &a.node, &a.additional_dnsname, &a.additional_ipaddress)?;
    let (cert_name, key_name) = free_file_names(dir, &plan.prefix)?;

    // Only the first #DOMAIN# is replaced, as in Consul.
    let ca_file = a.ca.replacen("#DOMAIN#", &a.domain, 1);
    let key_file = a.key.replacen("#DOMAIN#", &a.domain, 1);
    let ca_pem = read_text(dir, &ca_file).map_err(|e| format!("Error reading CA: {e}"))?;
    let key_pem = read_text(dir, &key_file).map_err(|e| format!("Error reading CA key: {e}"))?;
    if kind == CertKind::Server {
        say(out, SERVER_WARNING);
    }
    say(out, &format!("==> Using {ca_file} and {key_file}"));

    let signer = CaSigner::from_pem(&ca_pem, &key_pem)?;
    let leaf = signer.sign_leaf(&plan.options(a.days), SystemTime::now())?;
    write_pair(dir, (&cert_name, &leaf.cert_pem), (&key_name, &leaf.key_pem))?;
    say(out, &format!("==> Saved {cert_name}"));
    say(out, &format!("==> Saved {key_name}"));
    Ok(())
}

/// Which certificate `cert create` makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CertKind {
    /// `-server`: for server agents (RPC and HTTPS, both directions).
    Server,
    /// `-client`: for client agents.
    Client,
    /// `-cli`: for the command line talking HTTPS to an agent.
    Cli,
}

/// What a leaf certificate will hold, and the file name prefix it is saved under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LeafPlan {
    /// `server.<dc>.<domain>`, `client.…` or `cli.…`: the subject CN and the name verified.
    pub(crate) name: String,
    /// `<dc>-server-<domain>` etc.; files are `<prefix>-<n>.pem` and `<prefix>-<n>-key.pem`.
    pub(crate) prefix: String,
    /// DNS SANs, in certificate order.
    pub(crate) dns_names: Vec<String>,
    /// IP SANs, in certificate order.
    pub(crate) ip_addresses: Vec<IpAddr>,
    /// Extended key usages, in certificate order.
    pub(crate) ext_key_usages: Vec<ExtendedKeyUsagePurpose>,
}

impl LeafPlan {
    /// The signing options for this plan, valid for `days`.
    pub(crate) fn options(&self, days: i64) -> LeafOptions {
        LeafOptions {
            name: self.name.clone(),
            days,
            dns_names: self.dns_names.clone(),
            ip_addresses: self.ip_addresses.clone(),
            ext_key_usages: self.ext_key_usages.clone(),
        }
    }
}

/// The SANs, usages and file prefix of a `cert create`, as Consul chooses them:
/// - the extra DNS names and IPs come first (each trimmed; empty ones skipped);
/// - server: `[<node>.server.<dc>.<domain>,] server.<dc>.<domain>, localhost` + `127.0.0.1`,
///   serverAuth + clientAuth;
/// - client: `client.<dc>.<domain>, localhost` + `127.0.0.1`, clientAuth + serverAuth;
/// - cli: only `cli.<dc>.<domain>, localhost` (Consul drops the extra DNS names here but keeps
///   the extra IPs), no extended key usage.
///
/// An extra IP that does not parse is refused (Consul would go on to fail with "failed to parse
/// certificate").
pub(crate) fn plan_leaf(
    kind: CertKind,
    dc: &str,
    domain: &str,
    node: &str,
    extra_dns: &[String],
    extra_ips: &[String],
) -> Result<LeafPlan, String> {
    // Consul skips empty values before trimming, so " " becomes an empty DNS name; keep that.
    let mut dns_names: Vec<String> = extra_dns.iter().filter(|d| !d.is_empty()).map(|d| d.trim().to_string()).collect();
    let mut ip_addresses = Vec::new();
    for raw in extra_ips.iter().filter(|i| !i.is_empty()) {
        let ip: IpAddr =
            raw.trim().parse().map_err(|_| format!("Invalid IP address {raw:?} given to -additional-ipaddress"))?;
        ip_addresses.push(canonical_ip(ip));
    }
    let localhost_v4 = IpAddr::from([127, 0, 0, 1]);
    let (label, ext_key_usages) = match kind {
        CertKind::Server => ("server", vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth]),
        CertKind::Client => ("client", vec![ExtendedKeyUsagePurpose::ClientAuth, ExtendedKeyUsagePurpose::ServerAuth]),
        CertKind::Cli => ("cli", Vec::new()),
    };
    let name = format!("{label}.{dc}.{domain}");
    match kind {
        CertKind::Server => {
            if !node.is_empty() {
                dns_names.push(format!("{node}.server.{dc}.{domain}"));
            }
            dns_names.extend([name.clone(), "localhost".to_string()]);
            ip_addresses.push(localhost_v4);
        }
        CertKind::Client => {
            dns_names.extend([name.clone(), "localhost".to_string()]);
            ip_addresses.push(localhost_v4);
        }
        CertKind::Cli => dns_names = vec![name.clone(), "localhost".to_string()],
    }
    Ok(LeafPlan { name, prefix: format!("{dc}-{label}-{domain}"), dns_names, ip_addresses, ext_key_usages })
}

/// Go writes IPv4-mapped IPv6 addresses (`::ffff:10.0.0.1`) as 4-byte IPv4 SANs.
fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// Consul tries indexes 0 to 10000 and takes the first for which neither file exists.
const MAX_FILE_INDEX: u32 = 10_000;

/// The first free `<prefix>-<n>.pem` / `<prefix>-<n>-key.pem` pair in `dir`.
pub(crate) fn free_file_names(dir: &Path, prefix: &str) -> Result<(String, String), String> {
    (0..=MAX_FILE_INDEX)
        .map(|i| (format!("{prefix}-{i}.pem"), format!("{prefix}-{i}-key.pem")))
        .find(|(cert, key)| !exists(&dir.join(cert)) && !exists(&dir.join(key)))
        .ok_or_else(|| "Could not find a filename that doesn't already exist".to_string())
}

// ---------------------------------------------------------------------------------------------
// Generation, reusable without the CLI.

/// A certificate and its private key, both PEM.
#[derive(Debug, Clone)]
pub(crate) struct CertAndKey {
    /// `CERTIFICATE` PEM.
    pub(crate) cert_pem: String,
    /// `EC PRIVATE KEY` PEM (SEC1), as Consul writes keys.
    pub(crate) key_pem: String,
}

/// What goes into a new CA.
#[derive(Debug, Clone, Default)]
pub(crate) struct CaOptions {
    /// Subject CN; empty means `Consul Agent CA <serial>`.
    pub(crate) common_name: String,
    /// Days of validity from now; 0 means 365 (Consul's library default).
    pub(crate) days: i64,
    /// The cluster's DNS domain, used in the SPIFFE URI with `cluster_id`.
    pub(crate) domain: String,
    /// When set, the CA carries the URI SAN `spiffe://<cluster_id>.<domain>` (lower case).
    pub(crate) cluster_id: String,
    /// When not empty, critical name constraints permitting these DNS domains only.
    pub(crate) permitted_dns_domains: Vec<String>,
}

/// Creates a self-signed CA with a fresh P-256 key, as Consul's `tls ca create` does.
pub(crate) fn generate_ca(opts: &CaOptions, now: SystemTime) -> Result<CertAndKey, String> {
    let key = new_key()?;
    let serial = random_serial()?;
    let name = if opts.common_name.is_empty() { format!("Consul Agent CA {serial}") } else { opts.common_name.clone() };
    let days = if opts.days == 0 { 365 } else { opts.days };
    let now_secs = unix_secs(now).0;
    let not_after = add_days(now_secs, days)?;

    let mut params = CertificateParams::default();
    params.serial_number = Some(SerialNumber::from_slice(&serial.to_be_bytes()));
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CountryName, dn_value("US"));
    dn.push(DnType::StateOrProvinceName, dn_value("CA"));
    dn.push(DnType::LocalityName, dn_value("San Francisco"));
    dn.push(DnType::CustomDnType(OID_STREET_ADDRESS.to_vec()), dn_value("101 Second Street"));
    dn.push(DnType::CustomDnType(OID_POSTAL_CODE.to_vec()), dn_value("94105"));
    dn.push(DnType::OrganizationName, dn_value("HashiCorp Inc."));
    dn.push(DnType::CommonName, dn_value(&name));
    params.distinguished_name = dn;
    set_validity(&mut params, now_secs, not_after)?;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    // Self-signed: the authority key identifier is the CA's own, as in Consul's CAs.
    params.key_identifier_method = KeyIdMethod::PreSpecified(key_id(&key));
    params.use_authority_key_identifier_extension = true;
    if !opts.cluster_id.is_empty() {
        let uri = format!("spiffe://{}.{}", opts.cluster_id, opts.domain).to_lowercase();
        params.subject_alt_names = vec![SanType::URI(ia5(&uri, "error generating CA certificate")?)];
    }
    if !opts.permitted_dns_domains.is_empty() {
        params.name_constraints = Some(NameConstraints {
            permitted_subtrees: opts.permitted_dns_domains.iter().cloned().map(GeneralSubtree::DnsName).collect(),
            excluded_subtrees: Vec::new(),
        });
    }
    let cert = params.self_signed(&key).map_err(|e| format!("error generating CA certificate: {e}"))?;
    Ok(CertAndKey { cert_pem: pem_encode("CERTIFICATE", cert.der()), key_pem: key_pem(&key)? })
}

/// What goes into a leaf certificate.
#[derive(Debug, Clone)]
pub(crate) struct LeafOptions {
    /// Subject CN, and the host name the result must verify for.
    pub(crate) name: String,
    /// Days of validity from now; 0 or less gives a certificate that is refused as expired.
    pub(crate) days: i64,
    /// DNS SANs.
    pub(crate) dns_names: Vec<String>,
    /// IP SANs.
    pub(crate) ip_addresses: Vec<IpAddr>,
    /// Extended key usages (none: usable for anything).
    pub(crate) ext_key_usages: Vec<ExtendedKeyUsagePurpose>,
}

/// A CA certificate with its private key, read and checked, ready to sign leaf certificates.
pub(crate) struct CaSigner {
    issuer: Issuer<'static, KeyPair>,
    ca: CaFacts,
}

impl std::fmt::Debug for CaSigner {
    // Never print the key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CaSigner").field("ca", &self.ca.display_name).finish_non_exhaustive()
    }
}

impl CaSigner {
    /// Reads a CA from the PEM text of its certificate (the first PEM block) and of its private
    /// key (`EC PRIVATE KEY`, `PRIVATE KEY` or `RSA PRIVATE KEY`). Checks come in Consul's
    /// order: the key, the certificate, then that the key is the certificate's.
    pub(crate) fn from_pem(ca_pem: &str, key_pem: &str) -> Result<Self, String> {
        let key = parse_signer(key_pem)?;
        let der = match pem_decode(ca_pem) {
            None => return Err("failed to parse CA: no PEM-encoded data found".to_string()),
            Some((label, _)) if label != "CERTIFICATE" => {
                return Err("failed to parse CA: first PEM-block should be CERTIFICATE type".to_string())
            }
            Some((_, der)) => der,
        };
        let ca = CaFacts::parse(&der).map_err(|e| format!("failed to parse CA: {e}"))?;
        if ca.public_key != key.public_key_raw() {
            return Err(
                "failed to create certificate: x509: provided PrivateKey doesn't match parent's PublicKey".to_string()
            );
        }
        let issuer = Issuer::from_ca_cert_der(&der.as_slice().into(), key)
            .map_err(|e| format!("failed to parse CA: x509: {e}"))?;
        Ok(CaSigner { issuer, ca })
    }

    /// Issues a leaf certificate for a fresh P-256 key. Refuses (before generating anything)
    /// what Consul's own check of the result would refuse: a certificate that is expired, or that
    /// this CA may not sign (not a CA, expired, name constraints, key usages).
    pub(crate) fn sign_leaf(&self, opts: &LeafOptions, now: SystemTime) -> Result<CertAndKey, String> {
        // What Go's x509.CreateCertificate itself rejects.
        let mut sans = Vec::with_capacity(opts.dns_names.len() + opts.ip_addresses.len());
        for d in &opts.dns_names {
            sans.push(SanType::DnsName(ia5(d, "failed to create certificate")?));
        }
        sans.extend(opts.ip_addresses.iter().map(|ip| SanType::IpAddress(canonical_ip(*ip))));
        let (now_secs, now_nanos) = unix_secs(now);
        let not_after = now_secs
            .checked_add(opts.days.checked_mul(SECS_PER_DAY).ok_or_else(|| days_out_of_range(opts.days))?)
            .ok_or_else(|| days_out_of_range(opts.days))?;

        // What Consul's verification of the new certificate rejects, in Go's order: the leaf's
        // validity, then the chain. (Its host name check always passes: the name is a SAN.)
        if not_after < now_secs || (not_after == now_secs && now_nanos > 0) {
            return Err(expired(now_secs, "after", not_after));
        }
        self.ca.check_can_sign(now_secs, now_nanos, &opts.dns_names, &opts.ip_addresses)?;

        let key = new_key()?;
        let mut params = CertificateParams::default();
        params.serial_number = Some(SerialNumber::from_slice(&random_serial()?.to_be_bytes()));
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, dn_value(&opts.name));
        params.distinguished_name = dn;
        set_validity(&mut params, now_secs, not_after)?;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
        params.extended_key_usages = opts.ext_key_usages.clone();
        params.key_identifier_method = KeyIdMethod::PreSpecified(key_id(&key));
        // Go copies the CA's subject key identifier, and writes none when the CA has none.
        params.use_authority_key_identifier_extension = self.ca.has_key_id;
        params.subject_alt_names = sans;
        let cert = params.signed_by(&key, &self.issuer).map_err(|e| format!("failed to create certificate: {e}"))?;
        self.ca.check_issued(cert.der())?;
        Ok(CertAndKey { cert_pem: pem_encode("CERTIFICATE", cert.der()), key_pem: key_pem(&key)? })
    }
}

/// What verification needs to know about a CA certificate, read once.
#[derive(Debug, Clone)]
struct CaFacts {
    /// The name Go's "unknown authority" error uses: last CN, else first O, else the serial.
    display_name: String,
    /// Raw subject, which must come back byte for byte as the leaf's issuer.
    subject_raw: Vec<u8>,
    /// Raw SubjectPublicKeyInfo, to check the leaf's signature with.
    spki_raw: Vec<u8>,
    /// The public key bits, to compare with the private key's.
    public_key: Vec<u8>,
    has_key_id: bool,
    /// Basic constraints and key usage allow signing certificates.
    can_sign_certs: bool,
    not_before: i64,
    not_after: i64,
    constraints: Constraints,
    /// No extended key usage, `any`, or serverAuth (Go verifies for serverAuth).
    eku_allows_server_auth: bool,
}

/// DNS and IP name constraints (others never apply to what `cert create` makes).
#[derive(Debug, Clone, Default)]
struct Constraints {
    permitted_dns: Vec<String>,
    excluded_dns: Vec<String>,
    /// (address, mask) pairs, both 4 or 16 bytes.
    permitted_ip: Vec<(Vec<u8>, Vec<u8>)>,
    excluded_ip: Vec<(Vec<u8>, Vec<u8>)>,
}

impl Constraints {
    fn is_empty(&self) -> bool {
        self.permitted_dns.is_empty()
            && self.excluded_dns.is_empty()
            && self.permitted_ip.is_empty()
            && self.excluded_ip.is_empty()
    }
}

impl CaFacts {
    /// Reads the facts from a DER certificate; errors read like Go's parser's.
    fn parse(der: &[u8]) -> Result<CaFacts, String> {
        let (_, cert) = X509Certificate::from_der(der).map_err(|_| "x509: malformed certificate".to_string())?;
        let ext_err = |e: x509_parser::error::X509Error| format!("x509: {e}");
        let subject = cert.subject();
        let display_name = subject
            .iter_common_name()
            .filter_map(|a| a.as_str().ok())
            .last()
            .or_else(|| subject.iter_organization().find_map(|a| a.as_str().ok()))
            .map_or_else(|| format!("serial:{}", cert.tbs_certificate.serial), str::to_string);

        let basic = cert.basic_constraints().map_err(ext_err)?.map(|b| b.value.ca);
        let is_v3 = cert.version().0 == 2;
        let key_usage_bars_signing =
            cert.key_usage().map_err(ext_err)?.is_some_and(|k| k.value.flags != 0 && !k.value.key_cert_sign());
        // Go: a v3 certificate needs basic constraints saying CA; key usage, when present, must
        // include keyCertSign.
        let can_sign_certs = !((is_v3 && basic.is_none()) || basic == Some(false) || key_usage_bars_signing);

        let mut constraints = Constraints::default();
        if let Some(nc) = cert.name_constraints().map_err(ext_err)? {
            for (subtrees, dns, ips) in [
                (&nc.value.permitted_subtrees, &mut constraints.permitted_dns, &mut constraints.permitted_ip),
                (&nc.value.excluded_subtrees, &mut constraints.excluded_dns, &mut constraints.excluded_ip),
            ] {
                for subtree in subtrees.iter().flatten() {
                    match &subtree.base {
                        GeneralName::DNSName(d) => {
                            let bare = d.strip_prefix('.').unwrap_or(d);
                            if !d.is_empty() && reverse_labels(bare).is_none() {
                                return Err(format!("x509: failed to parse dnsName constraint {d:?}"));
                            }
                            dns.push((*d).to_string());
                        }
                        GeneralName::IPAddress(b) if b.len() == 8 || b.len() == 32 => {
                            let (addr, mask) = b.split_at(b.len() / 2);
                            ips.push((addr.to_vec(), mask.to_vec()));
                        }
                        GeneralName::IPAddress(b) => {
                            return Err(format!("x509: IP constraint contained invalid mask {b:x?}"));
                        }
                        _ => {}
                    }
                }
            }
        }
        let eku_allows_server_auth = cert.extended_key_usage().map_err(ext_err)?.is_none_or(|e| {
            let u = e.value;
            let nothing = !(u.any
                || u.server_auth
                || u.client_auth
                || u.code_signing
                || u.email_protection
                || u.time_stamping
                || u.ocsp_signing)
                && u.other.is_empty();
            nothing || u.any || u.server_auth
        });
        let has_key_id = cert
            .iter_extensions()
            .any(|e| matches!(e.parsed_extension(), ParsedExtension::SubjectKeyIdentifier(k) if !k.0.is_empty()));
        Ok(CaFacts {
            display_name,
            subject_raw: subject.as_raw().to_vec(),
            spki_raw: cert.public_key().raw.to_vec(),
            public_key: cert.public_key().subject_public_key.data.to_vec(),
            has_key_id,
            can_sign_certs,
            not_before: cert.validity().not_before.timestamp(),
            not_after: cert.validity().not_after.timestamp(),
            constraints,
            eku_allows_server_auth,
        })
    }

    /// The chain checks of Go's `Certificate.Verify` for a leaf with these SANs, with its
    /// messages: the CA may sign certificates, is within its validity, permits every name, and
    /// its extended key usages allow serverAuth.
    fn check_can_sign(&self, now: i64, now_nanos: u32, dns: &[String], ips: &[IpAddr]) -> Result<(), String> {
        if !self.can_sign_certs {
            return Err(format!(
                "x509: certificate signed by unknown authority (possibly because of \"x509: invalid signature: \
                 parent certificate cannot sign this kind of certificate\" while trying to verify candidate \
                 authority certificate {:?})",
                self.display_name
            ));
        }
        if now < self.not_before {
            return Err(expired(now, "before", self.not_before));
        }
        if now > self.not_after || (now == self.not_after && now_nanos > 0) {
            return Err(expired(now, "after", self.not_after));
        }
        if !self.constraints.is_empty() {
            let refuse = |detail: String| {
                format!("x509: a root or intermediate certificate is not authorized to sign for this name: {detail}")
            };
            let c = &self.constraints;
            for name in dns {
                if reverse_labels(name).is_none() {
                    return Err(format!("x509: cannot parse dnsName {name:?}"));
                }
                if let Some(ex) = c.excluded_dns.iter().find(|ex| domain_matches(name, ex)) {
                    return Err(refuse(format!("DNS name {name:?} is excluded by constraint {ex:?}")));
                }
                if !c.permitted_dns.is_empty() && !c.permitted_dns.iter().any(|p| domain_matches(name, p)) {
                    return Err(refuse(format!("DNS name {name:?} is not permitted by any constraint")));
                }
            }
            for ip in ips.iter().map(|ip| canonical_ip(*ip)) {
                let bytes = match ip {
                    IpAddr::V4(v4) => v4.octets().to_vec(),
                    IpAddr::V6(v6) => v6.octets().to_vec(),
                };
                let text = ip.to_string();
                if let Some((addr, mask)) = c.excluded_ip.iter().find(|(a, m)| ip_matches(&bytes, a, m)) {
                    return Err(refuse(format!(
                        "IP address {text:?} is excluded by constraint {:?}",
                        cidr(addr, mask)
                    )));
                }
                if !c.permitted_ip.is_empty() && !c.permitted_ip.iter().any(|(a, m)| ip_matches(&bytes, a, m)) {
                    return Err(refuse(format!("IP address {text:?} is not permitted by any constraint")));
                }
            }
        }
        if !self.eku_allows_server_auth {
            return Err("x509: certificate specifies an incompatible key usage".to_string());
        }
        Ok(())
    }

    /// After signing: the certificate names this CA as issuer and its signature verifies with the
    /// CA's key. Guards against a CA subject that could not be reproduced exactly.
    fn check_issued(&self, leaf_der: &[u8]) -> Result<(), String> {
        let unknown = || "x509: certificate signed by unknown authority".to_string();
        let (_, leaf) = X509Certificate::from_der(leaf_der).map_err(|_| "failed to parse certificate".to_string())?;
        let (_, spki) = SubjectPublicKeyInfo::from_der(&self.spki_raw).map_err(|_| unknown())?;
        if leaf.issuer().as_raw() != self.subject_raw.as_slice() || leaf.verify_signature(Some(&spki)).is_err() {
            return Err(unknown());
        }
        Ok(())
    }
}

/// Go's `x509: certificate has expired or is not yet valid` message.
fn expired(now: i64, relation: &str, bound: i64) -> String {
    format!(
        "x509: certificate has expired or is not yet valid: current time {} is {relation} {}",
        rfc3339(now),
        rfc3339(bound)
    )
}

/// The labels of a DNS name, last first (`a.b.c` → `c, b, a`); `None` when a label is empty or
/// holds a byte outside printable ASCII, as Go's `domainToReverseLabels`. `""` has no labels.
fn reverse_labels(domain: &str) -> Option<Vec<&str>> {
    if domain.is_empty() {
        return Some(Vec::new());
    }
    let labels: Vec<&str> = domain.rsplit('.').collect();
    let ok = labels.iter().all(|l| !l.is_empty() && l.bytes().all(|b| (33..=126).contains(&b)));
    ok.then_some(labels)
}

/// Whether DNS name `name` falls under name constraint `constraint` (RFC 5280 as Go reads it):
/// `example.com` covers itself and its subdomains, `.example.com` only its subdomains, and the
/// empty constraint everything. Labels compare case-insensitively.
fn domain_matches(name: &str, constraint: &str) -> bool {
    if constraint.is_empty() {
        return true;
    }
    let (must_be_sub, bare) = match constraint.strip_prefix('.') {
        Some(rest) => (true, rest),
        None => (false, constraint),
    };
    let (Some(n), Some(c)) = (reverse_labels(name), reverse_labels(bare)) else {
        return false;
    };
    if n.len() < c.len() || (must_be_sub && n.len() == c.len()) {
        return false;
    }
    c.iter().zip(&n).all(|(a, b)| a.eq_ignore_ascii_case(b))
}

/// Whether `ip` is inside the `addr`/`mask` constraint (same family only).
fn ip_matches(ip: &[u8], addr: &[u8], mask: &[u8]) -> bool {
    ip.len() == addr.len() && ip.iter().zip(addr).zip(mask).all(|((i, a), m)| i & m == a & m)
}

/// `10.0.0.0/8` for a constraint, as Go prints an `IPNet` (hex mask when not a prefix).
fn cidr(addr: &[u8], mask: &[u8]) -> String {
    let ip = match <[u8; 4]>::try_from(addr) {
        Ok(v4) => IpAddr::from(v4),
        Err(_) => <[u8; 16]>::try_from(addr).map_or(IpAddr::from([0, 0, 0, 0]), IpAddr::from),
    };
    let ones: u32 = mask.iter().map(|b| b.count_ones()).sum();
    let is_prefix =
        mask.iter().flat_map(|b| (0..8).rev().map(move |i| b >> i & 1)).skip(ones as usize).all(|bit| bit == 0);
    if is_prefix {
        format!("{ip}/{ones}")
    } else {
        format!("{ip}/{}", hex::encode(mask))
    }
}

// ---------------------------------------------------------------------------------------------
// Keys, identifiers, times.

/// A new ECDSA P-256 key, Consul's only key type for agent TLS.
fn new_key() -> Result<KeyPair, String> {
    KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(|e| format!("error generating private key: {e}"))
}

/// Consul's key identifier: SHA-256 of the DER SubjectPublicKeyInfo (32 bytes).
fn key_id(key: &impl PublicKeyData) -> Vec<u8> {
    Sha256::digest(key.subject_public_key_info()).to_vec()
}

/// A serial number: 128 random bits, as Go's `rand.Int(2^128)`.
fn random_serial() -> Result<u128, String> {
    use ring::rand::SecureRandom as _;
    let mut bytes = [0u8; 16];
    ring::rand::SystemRandom::new().fill(&mut bytes).map_err(|_| "error generating serial number".to_string())?;
    Ok(u128::from_be_bytes(bytes))
}

/// An attribute value as Go encodes strings: PrintableString when every character allows it,
/// UTF8String otherwise (rcgen's PrintableString alphabet is Go's minus `*` and `&`, which Go
/// also refuses when writing).
fn dn_value(s: &str) -> DnValue {
    PrintableString::try_from(s).map_or_else(|_| DnValue::Utf8String(s.to_string()), DnValue::PrintableString)
}

/// An IA5String SAN value, refused with Go's message when it is not ASCII.
fn ia5(s: &str, context: &str) -> Result<Ia5String, String> {
    Ia5String::try_from(s).map_err(|_| format!("{context}: x509: {s:?} cannot be encoded as an IA5String"))
}

const SECS_PER_DAY: i64 = 86_400;
/// 9999-12-31T23:59:59Z: the last instant an X.509 GeneralizedTime (and rcgen) can hold.
const MAX_CERT_TIME: i64 = 253_402_300_799;
const OID_STREET_ADDRESS: &[u64] = &[2, 5, 4, 9];
const OID_POSTAL_CODE: &[u64] = &[2, 5, 4, 17];

fn days_out_of_range(days: i64) -> String {
    format!("-days {days} is out of range")
}

/// `now + days`, refused when it cannot be written in a certificate. Go adds calendar days in
/// local time; in UTC (and away from DST changes) that is `days * 86400` seconds.
fn add_days(now_secs: i64, days: i64) -> Result<i64, String> {
    days.checked_mul(SECS_PER_DAY)
        .and_then(|d| now_secs.checked_add(d))
        .filter(|t| (0..=MAX_CERT_TIME).contains(t))
        .ok_or_else(|| days_out_of_range(days))
}

/// Sets notBefore/notAfter (unix seconds, both within 1970..=9999 or refused).
fn set_validity(params: &mut CertificateParams, not_before: i64, not_after: i64) -> Result<(), String> {
    let at = |secs: i64| {
        u64::try_from(secs)
            .ok()
            .filter(|_| secs <= MAX_CERT_TIME)
            .map(|s| rcgen::date_time_ymd(1970, 1, 1) + std::time::Duration::from_secs(s))
            .ok_or_else(|| format!("certificate validity out of range ({})", rfc3339(secs)))
    };
    params.not_before = at(not_before)?;
    params.not_after = at(not_after)?;
    Ok(())
}

/// Unix seconds and the nanoseconds past them.
fn unix_secs(t: SystemTime) -> (i64, u32) {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => (i64::try_from(d.as_secs()).unwrap_or(i64::MAX), d.subsec_nanos()),
        Err(_) => (0, 0),
    }
}

/// RFC 3339 in UTC to the second (`2024-01-02T03:04:05Z`), as Go prints times in x509 errors.
fn rfc3339(secs: i64) -> String {
    consul_core::wire::timestamp::format_secs(secs)
}

// ---------------------------------------------------------------------------------------------
// PEM and the few DER structures rcgen (on ring) does not handle: SEC1 `EC PRIVATE KEY` and
// PKCS#1 `RSA PRIVATE KEY` files, which ring only reads wrapped in PKCS#8.

/// DER of the OID 1.2.840.10045.2.1 (id-ecPublicKey).
const OID_EC_PUBLIC_KEY: &[u8] = &[0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
/// DER of the OID 1.2.840.113549.1.1.1 (rsaEncryption) and its NULL parameters.
const RSA_ALGORITHM: &[u8] = &[0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05, 0x00];

const TAG_INTEGER: u8 = 0x02;
const TAG_OCTET_STRING: u8 = 0x04;
const TAG_OID: u8 = 0x06;
const TAG_SEQUENCE: u8 = 0x30;
const TAG_CTX0: u8 = 0xa0;
const TAG_CTX1: u8 = 0xa1;

/// Splits one DER element off `input`: (tag, contents, rest). Single-byte tags only.
fn der_next(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n].iter().fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
        (len, &rest[n..])
    };
    (rest.len() >= len).then(|| (tag, &rest[..len], &rest[len..]))
}

/// One DER element of `tag` around `contents`.
fn der(tag: u8, contents: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = contents.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    out.extend_from_slice(contents);
    out
}

/// Expects an element of `tag` at the front of `input`: (contents, rest).
fn der_expect(input: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    der_next(input).and_then(|(t, c, r)| (t == tag).then_some((c, r)))
}

/// PKCS#8 EC key (what ring generates) → SEC1 ECPrivateKey with the curve and public key, as
/// Go's `MarshalECPrivateKey` writes it.
fn pkcs8_to_sec1(pkcs8: &[u8]) -> Option<Vec<u8>> {
    let (info, _) = der_expect(pkcs8, TAG_SEQUENCE)?;
    let (_version, rest) = der_expect(info, TAG_INTEGER)?;
    let (alg, rest) = der_expect(rest, TAG_SEQUENCE)?;
    let (ec_oid, curve) = der_expect(alg, TAG_OID)?;
    if der(TAG_OID, ec_oid) != OID_EC_PUBLIC_KEY {
        return None;
    }
    let (_, curve_oid, _) = der_next(curve).filter(|(t, _, _)| *t == TAG_OID)?;
    let (inner, _) = der_expect(rest, TAG_OCTET_STRING)?;
    let (ec_key, _) = der_expect(inner, TAG_SEQUENCE)?;
    let (_, rest) = der_expect(ec_key, TAG_INTEGER)?;
    let (private, mut rest) = der_expect(rest, TAG_OCTET_STRING)?;
    let mut public = None;
    while let Some((tag, contents, next)) = der_next(rest) {
        if tag == TAG_CTX1 {
            public = Some(contents);
        }
        rest = next;
    }
    let body = [
        der(TAG_INTEGER, &[1]),
        der(TAG_OCTET_STRING, private),
        der(TAG_CTX0, &der(TAG_OID, curve_oid)),
        der(TAG_CTX1, public?),
    ]
    .concat();
    Some(der(TAG_SEQUENCE, &body))
}

/// SEC1 ECPrivateKey → PKCS#8, taking the curve from the key's parameters.
fn sec1_to_pkcs8(sec1: &[u8]) -> Option<Vec<u8>> {
    let (ec_key, _) = der_expect(sec1, TAG_SEQUENCE)?;
    let (_, rest) = der_expect(ec_key, TAG_INTEGER)?;
    let (_, mut rest) = der_expect(rest, TAG_OCTET_STRING)?;
    let mut curve = None;
    while let Some((tag, contents, next)) = der_next(rest) {
        if tag == TAG_CTX0 {
            curve = Some(contents);
        }
        rest = next;
    }
    let curve = curve.filter(|c| der_expect(c, TAG_OID).is_some())?;
    let alg = der(TAG_SEQUENCE, &[OID_EC_PUBLIC_KEY, curve].concat());
    Some(der(TAG_SEQUENCE, &[der(TAG_INTEGER, &[0]), alg, der(TAG_OCTET_STRING, sec1)].concat()))
}

/// PKCS#1 RSAPrivateKey → PKCS#8.
fn rsa_to_pkcs8(pkcs1: &[u8]) -> Vec<u8> {
    let alg = der(TAG_SEQUENCE, RSA_ALGORITHM);
    der(TAG_SEQUENCE, &[der(TAG_INTEGER, &[0]), alg, der(TAG_OCTET_STRING, pkcs1)].concat())
}

/// A signing key from PEM, with the messages of Consul's `ParseSigner`.
fn parse_signer(pem: &str) -> Result<KeyPair, String> {
    let (label, der) = pem_decode(pem).ok_or_else(|| "no PEM-encoded data found".to_string())?;
    let (pkcs8, what) = match label.as_str() {
        "EC PRIVATE KEY" => (sec1_to_pkcs8(&der).ok_or("x509: failed to parse EC private key")?, "EC private key"),
        "RSA PRIVATE KEY" => (rsa_to_pkcs8(&der), "RSA private key"),
        "PRIVATE KEY" => (der, "private key"),
        other => return Err(format!("unknown PEM block type for signing key: {other}")),
    };
    KeyPair::try_from(pkcs8.as_slice()).map_err(|e| format!("x509: failed to parse {what}: {e}"))
}

/// A key as Consul writes it: `EC PRIVATE KEY` PEM.
fn key_pem(key: &KeyPair) -> Result<String, String> {
    let sec1 = pkcs8_to_sec1(&key.serialize_der()).ok_or_else(|| "error encoding private key".to_string())?;
    Ok(pem_encode("EC PRIVATE KEY", &sec1))
}

/// PEM with 64-character lines, as Go's `pem.Encode`.
fn pem_encode(label: &str, der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(chunk));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// The first well-formed PEM block: (label, DER). Header lines (`Proc-Type: …`) are skipped;
/// a block that does not decode is passed over, as Go's `pem.Decode` does.
fn pem_decode(text: &str) -> Option<(String, Vec<u8>)> {
    let mut lines = text.lines().map(str::trim_end);
    while let Some(line) = lines.next() {
        let Some(label) = line.strip_prefix("-----BEGIN ").and_then(|l| l.strip_suffix("-----")) else {
            continue;
        };
        let end = format!("-----END {label}-----");
        let mut body = String::new();
        let mut closed = false;
        for l in lines.by_ref() {
            if l == end {
                closed = true;
                break;
            }
            if !l.contains(':') {
                body.push_str(l.trim());
            }
        }
        if !closed {
            return None;
        }
        if let Ok(der) = base64::engine::general_purpose::STANDARD.decode(&body) {
            return Some((label.to_string(), der));
        }
    }
    None
}

// ---------------------------------------------------------------------------------------------
// Files.

/// Go's `FileDoesNotExist` negated: anything but "not found" (even a permission error) counts
/// as existing, so an unreadable file is never overwritten.
fn exists(path: &Path) -> bool {
    !matches!(std::fs::metadata(path), Err(e) if e.kind() == std::io::ErrorKind::NotFound)
}

/// An I/O error as Go prints it: `open f: no such file or directory`.
fn go_io_error(op: &str, path: &str, e: &std::io::Error) -> String {
    let text = e.to_string();
    let text = text.split(" (os error").next().unwrap_or(&text);
    let mut chars = text.chars();
    let text = chars.next().map_or_else(String::new, |c| c.to_lowercase().chain(chars).collect());
    format!("{op} {path}: {text}")
}

/// Reads a whole file (`name` relative to `dir`), with Go's error wording.
fn read_text(dir: &Path, name: &str) -> Result<String, String> {
    let mut f = std::fs::File::open(dir.join(name)).map_err(|e| go_io_error("open", name, &e))?;
    let mut bytes = Vec::new();
    f.read_to_end(&mut bytes).map_err(|e| go_io_error("read", name, &e))?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// Writes a certificate and its key; on failure neither is left behind.
fn write_pair(dir: &Path, cert: (&str, &str), key: (&str, &str)) -> Result<(), String> {
    write_atomic(dir, cert.0, cert.1.as_bytes(), CERT_MODE)?;
    if let Err(e) = write_atomic(dir, key.0, key.1.as_bytes(), KEY_MODE) {
        let _ = std::fs::remove_file(dir.join(cert.0));
        return Err(e);
    }
    Ok(())
}

/// Writes through a temporary file renamed into place, so a crash never leaves half a key.
fn write_atomic(dir: &Path, name: &str, data: &[u8], mode: u32) -> Result<(), String> {
    let tmp_name = format!("{name}-{}-{:08x}.tmp", std::process::id(), random_serial()? as u32);
    let tmp = dir.join(&tmp_name);
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, mode);
    #[cfg(not(unix))]
    let _ = mode;
    let result = (|| {
        let mut f = opts.open(&tmp).map_err(|e| go_io_error("open", &tmp_name, &e))?;
        f.write_all(data).and_then(|()| f.sync_all()).map_err(|e| go_io_error("write", &tmp_name, &e))?;
        std::fs::rename(&tmp, dir.join(name)).map_err(|e| go_io_error("rename", &tmp_name, &e))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tls(line: &str) -> TlsCommand {
        match crate::tests::parse(line) {
            Ok(crate::Cli { command: crate::Command::Tls(c) }) => c,
            other => panic!("{line}: {other:?}"),
        }
    }

    fn cert_args(line: &str) -> CertCreateArgs {
        match tls(line) {
            TlsCommand::Cert(CertCommand::Create(a)) => a,
            other => panic!("{other:?}"),
        }
    }

    fn ca_args(line: &str) -> CaCreateArgs {
        match tls(line) {
            TlsCommand::Ca(CaCommand::Create(a)) => a,
            other => panic!("{other:?}"),
        }
    }

    fn parse_cert(pem: &str) -> Vec<u8> {
        let (label, der) = pem_decode(pem).expect("pem");
        assert_eq!(label, "CERTIFICATE");
        der
    }

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| (*s).to_string()).collect()
    }

    #[test]
    fn flags_parse_with_consul_defaults() {
        let a = ca_args("tls ca create");
        assert_eq!((a.days, a.domain.as_str(), a.name_constraint), (1825, "consul", false));
        assert!(a.common_name.is_empty() && a.cluster_id.is_empty() && a.additional_name_constraint.is_empty());

        let a = ca_args(
            "tls ca create -days=30 -domain example -name-constraint -additional-name-constraint a.com \
             -additional-name-constraint=b.org -common-name X -cluster-id abc",
        );
        assert_eq!((a.days, a.domain.as_str(), a.name_constraint), (30, "example", true));
        assert_eq!(a.additional_name_constraint, strings(&["a.com", "b.org"]));
        assert_eq!((a.common_name.as_str(), a.cluster_id.as_str()), ("X", "abc"));

        let a = cert_args("tls cert create -server");
        assert!(a.server && !a.client && !a.cli);
        assert_eq!((a.ca.as_str(), a.key.as_str()), ("#DOMAIN#-agent-ca.pem", "#DOMAIN#-agent-ca-key.pem"));
        assert_eq!((a.dc.as_str(), a.domain.as_str(), a.days, a.node.as_str()), ("dc1", "consul", 365, ""));

        let a = cert_args(
            "tls cert create -client -dc dc2 -domain ex -days -1 -ca c.pem -key=k.pem -additional-dnsname a \
             -additional-dnsname=b -additional-ipaddress 10.0.0.1 -node n",
        );
        assert!(a.client && !a.server);
        assert_eq!((a.dc.as_str(), a.domain.as_str(), a.days), ("dc2", "ex", -1));
        assert_eq!((a.ca.as_str(), a.key.as_str(), a.node.as_str()), ("c.pem", "k.pem", "n"));
        assert_eq!(a.additional_dnsname, strings(&["a", "b"]));
        assert_eq!(a.additional_ipaddress, strings(&["10.0.0.1"]));
        assert!(cert_args("tls cert create -cli -server=false").cli);

        assert!(crate::tests::parse("tls cert create -bogus").is_err());
        assert!(crate::tests::parse("tls ca create -days x").is_err());
        assert!(crate::tests::parse("tls ca").is_err());
        assert!(crate::tests::parse("tls").is_err());
    }

    #[test]
    fn sans_and_usages_per_kind() {
        let extra_dns = strings(&["a.example", " b.example ", ""]);
        let extra_ip = strings(&["10.0.0.1", "::ffff:10.0.0.2", ""]);
        let p = plan_leaf(CertKind::Server, "dc1", "consul", "n1", &extra_dns, &extra_ip).expect("plan");
        assert_eq!(p.name, "server.dc1.consul");
        assert_eq!(p.prefix, "dc1-server-consul");
        assert_eq!(
            p.dns_names,
            strings(&["a.example", "b.example", "n1.server.dc1.consul", "server.dc1.consul", "localhost"])
        );
        let ips: Vec<IpAddr> = ["10.0.0.1", "10.0.0.2", "127.0.0.1"].iter().map(|s| s.parse().expect("ip")).collect();
        assert_eq!(p.ip_addresses, ips);
        assert_eq!(p.ext_key_usages, vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth]);

        let p = plan_leaf(CertKind::Client, "dc2", "ex", "", &[], &[]).expect("plan");
        assert_eq!((p.name.as_str(), p.prefix.as_str()), ("client.dc2.ex", "dc2-client-ex"));
        assert_eq!(p.dns_names, strings(&["client.dc2.ex", "localhost"]));
        assert_eq!(p.ip_addresses, vec![IpAddr::from([127, 0, 0, 1])]);
        assert_eq!(p.ext_key_usages, vec![ExtendedKeyUsagePurpose::ClientAuth, ExtendedKeyUsagePurpose::ServerAuth]);

        // Consul's -cli drops the extra DNS names but keeps the extra IPs, and has no EKU.
        let p = plan_leaf(CertKind::Cli, "dc1", "consul", "", &extra_dns, &strings(&["10.1.1.1"])).expect("plan");
        assert_eq!((p.name.as_str(), p.prefix.as_str()), ("cli.dc1.consul", "dc1-cli-consul"));
        assert_eq!(p.dns_names, strings(&["cli.dc1.consul", "localhost"]));
        assert_eq!(p.ip_addresses, vec![IpAddr::from([10, 1, 1, 1])]);
        assert!(p.ext_key_usages.is_empty());

        let err = plan_leaf(CertKind::Client, "dc1", "consul", "", &[], &strings(&["bogus"])).expect_err("bad ip");
        assert!(err.contains("\"bogus\""), "{err}");
    }

    #[test]
    fn file_index_is_the_first_free_pair() {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        assert_eq!(free_file_names(d, "dc1-server-consul").expect("names").0, "dc1-server-consul-0.pem");
        std::fs::write(d.join("dc1-server-consul-0.pem"), "x").expect("write");
        // A lone key also takes its index.
        std::fs::write(d.join("dc1-server-consul-1-key.pem"), "x").expect("write");
        assert_eq!(
            free_file_names(d, "dc1-server-consul").expect("names"),
            ("dc1-server-consul-2.pem".to_string(), "dc1-server-consul-2-key.pem".to_string())
        );
        assert_eq!(free_file_names(d, "dc1-client-consul").expect("names").0, "dc1-client-consul-0.pem");
    }

    #[test]
    fn ca_has_consuls_subject_and_extensions() {
        let ca = generate_ca(
            &CaOptions {
                domain: "example".into(),
                cluster_id: "ABC".into(),
                permitted_dns_domains: strings(&["foo.com", "example", "localhost"]),
                ..CaOptions::default()
            },
            SystemTime::now(),
        )
        .expect("ca");
        let der = parse_cert(&ca.cert_pem);
        let (_, cert) = X509Certificate::from_der(&der).expect("x509");
        let cn = cert.subject().iter_common_name().next().and_then(|a| a.as_str().ok()).expect("cn");
        assert_eq!(cn, format!("Consul Agent CA {}", cert.tbs_certificate.serial));
        assert_eq!(
            cert.subject().to_string(),
            format!(
                "C=US, ST=CA, L=San Francisco, streetAddress=101 Second Street, postalCode=94105, O=HashiCorp Inc., CN={cn}"
            )
        );
        assert_eq!(cert.issuer().as_raw(), cert.subject().as_raw());
        let bc = cert.basic_constraints().expect("bc").expect("bc");
        assert!(bc.critical && bc.value.ca && bc.value.path_len_constraint.is_none());
        let ku = cert.key_usage().expect("ku").expect("ku");
        assert!(ku.critical && ku.value.digital_signature() && ku.value.key_cert_sign() && ku.value.crl_sign());
        assert!(!ku.value.key_encipherment());
        let ski: Vec<u8> = Sha256::digest(cert.public_key().raw).to_vec();
        let mut seen_aki = false;
        for ext in cert.iter_extensions() {
            match ext.parsed_extension() {
                ParsedExtension::SubjectKeyIdentifier(k) => assert_eq!(k.0, ski.as_slice()),
                ParsedExtension::AuthorityKeyIdentifier(a) => {
                    seen_aki = true;
                    assert_eq!(a.key_identifier.as_ref().map(|k| k.0), Some(ski.as_slice()));
                }
                _ => {}
            }
        }
        assert!(seen_aki);
        let nc = cert.name_constraints().expect("nc").expect("nc");
        assert!(nc.critical);
        let permitted: Vec<String> = nc
            .value
            .permitted_subtrees
            .iter()
            .flatten()
            .map(|s| match s.base {
                GeneralName::DNSName(d) => d.to_string(),
                _ => panic!("not DNS"),
            })
            .collect();
        assert_eq!(permitted, strings(&["foo.com", "example", "localhost"]));
        let san = cert.subject_alternative_name().expect("san").expect("san");
        assert!(matches!(san.value.general_names.as_slice(), [GeneralName::URI("spiffe://abc.example")]));
        let days = (cert.validity().not_after.timestamp() - cert.validity().not_before.timestamp()) / SECS_PER_DAY;
        assert_eq!(days, 365, "-days 0 means 365");
        assert!(ca.key_pem.starts_with("-----BEGIN EC PRIVATE KEY-----\n"));
    }

    #[test]
    fn leaves_chain_to_the_ca() {
        let ca = generate_ca(&CaOptions { days: 10, ..CaOptions::default() }, SystemTime::now()).expect("ca");
        let signer = CaSigner::from_pem(&ca.cert_pem, &ca.key_pem).expect("signer");
        let plan = plan_leaf(CertKind::Server, "dc1", "consul", "", &[], &strings(&["::1"])).expect("plan");
        let leaf = signer.sign_leaf(&plan.options(365), SystemTime::now()).expect("leaf");
        let ca_der = parse_cert(&ca.cert_pem);
        let (_, ca_cert) = X509Certificate::from_der(&ca_der).expect("ca");
        let der = parse_cert(&leaf.cert_pem);
        let (_, cert) = X509Certificate::from_der(&der).expect("leaf");
        cert.verify_signature(Some(ca_cert.public_key())).expect("signed by the CA");
        assert_eq!(cert.issuer().as_raw(), ca_cert.subject().as_raw());
        assert_eq!(cert.subject().to_string(), "CN=server.dc1.consul");
        let bc = cert.basic_constraints().expect("bc").expect("bc");
        assert!(bc.critical && !bc.value.ca);
        let ku = cert.key_usage().expect("ku").expect("ku");
        assert!(ku.value.digital_signature() && ku.value.key_encipherment() && !ku.value.key_cert_sign());
        let eku = cert.extended_key_usage().expect("eku").expect("eku");
        assert!(eku.value.server_auth && eku.value.client_auth && !eku.critical);
        let san = cert.subject_alternative_name().expect("san").expect("san");
        let names: Vec<String> = san
            .value
            .general_names
            .iter()
            .map(|g| match g {
                GeneralName::DNSName(d) => (*d).to_string(),
                GeneralName::IPAddress(b) => match b.len() {
                    4 => IpAddr::from(<[u8; 4]>::try_from(*b).expect("v4")).to_string(),
                    _ => IpAddr::from(<[u8; 16]>::try_from(*b).expect("v6")).to_string(),
                },
                other => panic!("{other}"),
            })
            .collect();
        assert_eq!(names, strings(&["server.dc1.consul", "localhost", "::1", "127.0.0.1"]));
        let days = (cert.validity().not_after.timestamp() - cert.validity().not_before.timestamp()) / SECS_PER_DAY;
        assert_eq!(days, 365);
        // The new key reads back as a signer (SEC1 round trip).
        parse_signer(&leaf.key_pem).expect("key");
    }

    #[test]
    fn refusals_read_like_consuls() {
        let now = SystemTime::now();
        let ca = generate_ca(
            &CaOptions { days: 10, permitted_dns_domains: strings(&["consul", "localhost"]), ..CaOptions::default() },
            now,
        )
        .expect("ca");
        let signer = CaSigner::from_pem(&ca.cert_pem, &ca.key_pem).expect("signer");
        let plan = plan_leaf(CertKind::Server, "dc1", "consul", "", &strings(&["x.other"]), &[]).expect("plan");
        let err = signer.sign_leaf(&plan.options(1), now).expect_err("outside constraints");
        assert_eq!(
            err,
            "x509: a root or intermediate certificate is not authorized to sign for this name: \
             DNS name \"x.other\" is not permitted by any constraint"
        );
        let plan = plan_leaf(CertKind::Client, "dc1", "consul", "", &strings(&["*.a.consul"]), &[]).expect("plan");
        signer.sign_leaf(&plan.options(1), now).expect("inside constraints");
        let err = signer.sign_leaf(&plan.options(0), now).expect_err("expired");
        assert!(err.starts_with("x509: certificate has expired or is not yet valid: current time "), "{err}");
        let plan = plan_leaf(CertKind::Client, "dc1", "consul", "", &strings(&["é.consul"]), &[]).expect("plan");
        let err = signer.sign_leaf(&plan.options(1), now).expect_err("not ascii");
        assert_eq!(err, "failed to create certificate: x509: \"é.consul\" cannot be encoded as an IA5String");

        // The CA is checked for validity at signing time.
        let later = now + std::time::Duration::from_secs(11 * 86_400);
        let plan = plan_leaf(CertKind::Client, "dc1", "consul", "", &[], &[]).expect("plan");
        let err = signer.sign_leaf(&plan.options(1), later).expect_err("CA expired");
        assert!(err.contains("is after"), "{err}");

        // A key that is not the CA's, a leaf used as a CA, broken inputs.
        let other = generate_ca(&CaOptions::default(), now).expect("ca");
        let err = CaSigner::from_pem(&ca.cert_pem, &other.key_pem).expect_err("mismatch");
        assert_eq!(err, "failed to create certificate: x509: provided PrivateKey doesn't match parent's PublicKey");
        let leaf = signer.sign_leaf(&plan.options(1), now).expect("leaf");
        let not_ca = CaSigner::from_pem(&leaf.cert_pem, &leaf.key_pem).expect("loads");
        let err = not_ca.sign_leaf(&plan.options(1), now).expect_err("not a CA");
        assert!(err.starts_with("x509: certificate signed by unknown authority (possibly because of"), "{err}");
        assert!(err.ends_with("candidate authority certificate \"client.dc1.consul\")"), "{err}");
        assert_eq!(
            CaSigner::from_pem("junk", &ca.key_pem).expect_err("junk").as_str(),
            "failed to parse CA: no PEM-encoded data found"
        );
        assert_eq!(CaSigner::from_pem(&ca.cert_pem, "junk").expect_err("junk").as_str(), "no PEM-encoded data found");
        assert_eq!(
            CaSigner::from_pem(&ca.key_pem, &ca.key_pem).expect_err("key as CA").as_str(),
            "failed to parse CA: first PEM-block should be CERTIFICATE type"
        );
        let foo = pem_encode("FOO", b"x");
        assert_eq!(
            CaSigner::from_pem(&ca.cert_pem, &foo).expect_err("foo").as_str(),
            "unknown PEM block type for signing key: FOO"
        );
    }

    #[test]
    fn key_encodings() {
        let key = new_key().expect("key");
        let sec1 = pkcs8_to_sec1(&key.serialize_der()).expect("sec1");
        // Go's MarshalECPrivateKey size for P-256: 121 bytes of DER.
        assert_eq!(sec1.len(), 121);
        let back = KeyPair::try_from(sec1_to_pkcs8(&sec1).expect("pkcs8").as_slice()).expect("pair");
        assert_eq!(back.public_key_raw(), key.public_key_raw());
        // PKCS#8 PEM is accepted too.
        let p8 = pem_encode("PRIVATE KEY", &key.serialize_der());
        assert_eq!(parse_signer(&p8).expect("p8").public_key_raw(), key.public_key_raw());
        assert!(sec1_to_pkcs8(b"\x30\x03\x02\x01\x01").is_none());
        assert!(der_next(b"\x30\x05\x01").is_none());
        let long = vec![7u8; 300];
        let enc = der(TAG_OCTET_STRING, &long);
        assert_eq!(der_expect(&enc, TAG_OCTET_STRING), Some((long.as_slice(), &[][..])));
    }

    #[test]
    fn name_constraint_matching() {
        assert!(domain_matches("server.dc1.consul", "consul"));
        assert!(domain_matches("consul", "consul"));
        assert!(domain_matches("A.CONSUL", "consul"));
        assert!(!domain_matches("consul", ".consul"));
        assert!(domain_matches("a.consul", ".consul"));
        assert!(!domain_matches("notconsul", "consul"));
        assert!(!domain_matches("", "consul"));
        assert!(domain_matches("anything", ""));
        assert!(reverse_labels("a..b").is_none());
        assert!(reverse_labels("a.b.").is_none());
        assert!(ip_matches(&[10, 1, 2, 3], &[10, 0, 0, 0], &[255, 0, 0, 0]));
        assert!(!ip_matches(&[11, 1, 2, 3], &[10, 0, 0, 0], &[255, 0, 0, 0]));
        assert_eq!(cidr(&[10, 0, 0, 0], &[255, 0, 0, 0]), "10.0.0.0/8");
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(rfc3339(-86_400), "1969-12-31T00:00:00Z");
    }

    #[test]
    fn commands_write_consuls_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        let mut out = Vec::new();
        ca_create(&ca_args("tls ca create"), d, &mut out).expect("ca");
        assert_eq!(String::from_utf8_lossy(&out), "==> Saved consul-agent-ca.pem\n==> Saved consul-agent-ca-key.pem\n");
        let err = ca_create(&ca_args("tls ca create"), d, &mut Vec::new()).expect_err("second CA");
        assert_eq!(err, "consul-agent-ca.pem already exists.");
        assert!(ca_create(&ca_args("tls ca create -days=-1 -domain x"), d, &mut Vec::new()).is_err());
        assert!(!d.join("x-agent-ca.pem").exists());

        let mut out = Vec::new();
        cert_create(&cert_args("tls cert create -server"), d, &mut out).expect("server");
        let text = String::from_utf8_lossy(&out);
        assert!(text.starts_with("==> WARNING: Server Certificates grants authority"), "{text}");
        assert!(
            text.ends_with(
                "==> Using consul-agent-ca.pem and consul-agent-ca-key.pem\n==> Saved dc1-server-consul-0.pem\n\
             ==> Saved dc1-server-consul-0-key.pem\n"
            ),
            "{text}"
        );
        let mut out = Vec::new();
        cert_create(&cert_args("tls cert create -client"), d, &mut out).expect("client");
        assert!(String::from_utf8_lossy(&out).starts_with("==> Using"));
        cert_create(&cert_args("tls cert create -server"), d, &mut Vec::new()).expect("server 1");
        assert!(d.join("dc1-server-consul-1-key.pem").exists());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = |n: &str| std::fs::metadata(d.join(n)).expect("meta").permissions().mode() & 0o777;
            assert_eq!(mode("consul-agent-ca-key.pem"), 0o600);
            assert_eq!(mode("dc1-server-consul-0-key.pem"), 0o600);
        }

        for (line, want) in [
            ("tls cert create", "Please provide either -server, -client, or -cli"),
            ("tls cert create -server -client", "Please provide either -server, -client, or -cli"),
            ("tls cert create -client -node n", "-node requires -server"),
            ("tls cert create -client -ca=", "Please provide the ca"),
            ("tls cert create -client -key=", "Please provide the key"),
            ("tls cert create -client -ca nope.pem", "Error reading CA: open nope.pem: no such file or directory"),
            ("tls cert create -cli -domain foo", "Error reading CA: open foo-agent-ca.pem: no such file or directory"),
            ("tls cert create -client -key nope.pem", "Error reading CA key: open nope.pem: no such file or directory"),
        ] {
            assert_eq!(cert_create(&cert_args(line), d, &mut Vec::new()).expect_err(line), want, "{line}");
        }
        let files = std::fs::read_dir(d).expect("dir").count();
        assert_eq!(files, 8, "2 CA files, 3 certificates with keys, nothing from the failures");
    }
}
