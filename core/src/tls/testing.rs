//! Certificates for TLS tests: a CA and leaves it signs, written as PEM files in a temp dir.

use std::path::PathBuf;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    SanType,
};

/// A throwaway CA and the files of what it signed.
pub(crate) struct TestPki {
    pub(crate) dir: tempfile::TempDir,
    pub(crate) ca_file: PathBuf,
    issuer: Issuer<'static, KeyPair>,
}

/// A leaf certificate's files.
pub(crate) struct Leaf {
    pub(crate) cert_file: PathBuf,
    pub(crate) key_file: PathBuf,
}

impl TestPki {
    /// A new CA named `name`.
    pub(crate) fn new(name: &str) -> TestPki {
        let dir = tempfile::tempdir().expect("tempdir");
        let key = KeyPair::generate().expect("key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages =
            vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        let cert = params.self_signed(&key).expect("CA");
        let ca_file = dir.path().join(format!("{name}-ca.pem"));
        std::fs::write(&ca_file, cert.pem()).expect("write CA");
        TestPki { dir, ca_file, issuer: Issuer::new(params, key) }
    }

    /// A leaf for `dns` names (and 127.0.0.1) usable as server and client, valid now; `file`
    /// names its files.
    pub(crate) fn leaf(&self, file: &str, dns: &[&str]) -> Leaf {
        self.leaf_valid(file, dns, time_offset(-3600), time_offset(86_400))
    }

    /// A leaf that expired an hour ago.
    pub(crate) fn expired_leaf(&self, file: &str, dns: &[&str]) -> Leaf {
        self.leaf_valid(file, dns, time_offset(-86_400), time_offset(-3600))
    }

    fn leaf_valid(
        &self,
        file: &str,
        dns: &[&str],
        not_before: time::OffsetDateTime,
        not_after: time::OffsetDateTime,
    ) -> Leaf {
        let key = KeyPair::generate().expect("key");
        let mut params = CertificateParams::new(dns.iter().map(|s| s.to_string()).collect::<Vec<_>>()).expect("params");
        params.subject_alt_names.push(SanType::IpAddress([127, 0, 0, 1].into()));
        params.distinguished_name.push(DnType::CommonName, dns.first().copied().unwrap_or(file));
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
        params.not_before = not_before;
        params.not_after = not_after;
        let cert = params.signed_by(&key, &self.issuer).expect("sign");
        let cert_file = self.dir.path().join(format!("{file}.pem"));
        let key_file = self.dir.path().join(format!("{file}-key.pem"));
        std::fs::write(&cert_file, cert.pem()).expect("write cert");
        std::fs::write(&key_file, key.serialize_pem()).expect("write key");
        Leaf { cert_file, key_file }
    }
}

fn time_offset(secs: i64) -> time::OffsetDateTime {
    time::OffsetDateTime::now_utc() + time::Duration::seconds(secs)
}
