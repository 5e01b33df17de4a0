//! The server-certificate checks rustls' WebPKI verifier does not offer as such, shared by the
//! agent's RPC client, HTTPS health checks and the SDK's client:
//!
//! - [`chain_only`]: the chain must lead to a configured CA and be valid now, but any name is
//!   accepted — `verify_outgoing` without `verify_server_hostname`, as in Consul (the reason
//!   Consul recommends hostname verification: a client certificate signed by the same CA could
//!   otherwise pose as a server);
//! - [`named`]: the chain is checked and the certificate must name a fixed server instead of the
//!   host dialled (`CONSUL_TLS_SERVER_NAME`);
//! - [`any_certificate`]: nothing about the certificate is checked, only that the peer holds its
//!   key (`TLSSkipVerify`, `CONSUL_HTTP_SSL_VERIFY=false`).

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme};

/// What a [`WebPki`] verifier makes of the server's name.
#[derive(Debug)]
enum NameCheck {
    /// Any name.
    Ignored,
    /// This name, whatever host was dialled.
    Fixed(ServerName<'static>),
}

/// WebPKI chain verification with a [`NameCheck`] of its own.
#[derive(Debug)]
struct WebPki {
    inner: Arc<WebPkiServerVerifier>,
    name: NameCheck,
}

/// Chain checked, name ignored. Fails only when `roots` holds no usable CA.
pub fn chain_only(
    roots: Arc<RootCertStore>,
    provider: Arc<CryptoProvider>,
) -> Result<Arc<dyn ServerCertVerifier>, rustls::client::VerifierBuilderError> {
    let inner = WebPkiServerVerifier::builder_with_provider(roots, provider).build()?;
    Ok(Arc::new(WebPki { inner, name: NameCheck::Ignored }))
}

/// Chain checked, and the certificate must name `name`. Fails only when `roots` holds no
/// usable CA.
pub fn named(
    roots: Arc<RootCertStore>,
    provider: Arc<CryptoProvider>,
    name: ServerName<'static>,
) -> Result<Arc<dyn ServerCertVerifier>, rustls::client::VerifierBuilderError> {
    let inner = WebPkiServerVerifier::builder_with_provider(roots, provider).build()?;
    Ok(Arc::new(WebPki { inner, name: NameCheck::Fixed(name) }))
}

/// Any certificate, still checking the handshake signatures with `provider`'s algorithms.
pub fn any_certificate(provider: Arc<CryptoProvider>) -> Arc<dyn ServerCertVerifier> {
    Arc::new(AnyCertificate(provider))
}

impl ServerCertVerifier for WebPki {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match &self.name {
            NameCheck::Fixed(name) => {
                self.inner.verify_server_cert(end_entity, intermediates, name, ocsp_response, now)
            }
            NameCheck::Ignored => {
                match self.inner.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now) {
                    // webpki checks the name last, after the chain, validity and usage: this
                    // error means everything else held.
                    Err(rustls::Error::InvalidCertificate(
                        CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
                    )) => Ok(ServerCertVerified::assertion()),
                    other => other,
                }
            }
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// See [`any_certificate`].
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
