//! TLS with the default settings: the system's root certificates are loaded at the first
//! certificate check, not when the client is built.
//!
//! reqwest's default rustls setup loads and parses every root certificate of the system
//! (`rustls-platform-verifier`) in `ClientBuilder::build`. A client of an `http://` server
//! never needs them: loading them costs it time at `init` and about 0.7 MB of memory, and
//! a system with none (a minimal container image) made `TrackingClient::new` fail even for
//! an `http://` server. The verifier here builds the platform verifier on the first TLS
//! handshake and keeps it; its answer is the platform verifier's, so errors read the same.
//! The rest of the configuration is what reqwest builds by default (the installed or
//! aws-lc-rs crypto provider, its safe protocol versions, no client certificate, ALPN
//! `http/1.1`, with `h2` first when the `http2` feature is on). Custom TLS settings (a CA bundle, a client certificate, insecure mode)
//! keep reqwest's own setup.

use std::fmt;
use std::sync::{Arc, OnceLock};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use rustls_platform_verifier::Verifier;

use crate::error::ClientError;

/// The rustls configuration for a client with the default TLS settings.
pub(crate) fn default_config() -> Result<rustls::ClientConfig, ClientError> {
    let provider = CryptoProvider::get_default()
        .cloned()
        .unwrap_or_else(|| Arc::new(rustls::crypto::aws_lc_rs::default_provider()));
    let mut config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| ClientError::Config(format!("cannot set up TLS: {e}")))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(LazyPlatformVerifier {
            provider,
            verifier: OnceLock::new(),
        }))
        .with_no_client_auth();
    config.alpn_protocols = alpn_protocols(cfg!(feature = "http2"));
    Ok(config)
}

/// The protocols offered at the handshake, as reqwest offers them: `h2` only when the client
/// speaks HTTP/2 (`http2`, the feature), since a server may pick any protocol offered.
fn alpn_protocols(http2: bool) -> Vec<Vec<u8>> {
    let mut protocols = Vec::with_capacity(2);
    if http2 {
        protocols.push(b"h2".to_vec());
    }
    protocols.push(b"http/1.1".to_vec());
    protocols
}

/// The platform's verifier, built when a certificate is first checked.
struct LazyPlatformVerifier {
    provider: Arc<CryptoProvider>,
    /// The verifier, once built (a failure is not kept: the next handshake tries again).
    verifier: OnceLock<Verifier>,
}

impl fmt::Debug for LazyPlatformVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LazyPlatformVerifier")
            .field("loaded", &self.verifier.get().is_some())
            .finish_non_exhaustive()
    }
}

impl LazyPlatformVerifier {
    fn verifier(&self) -> Result<&Verifier, rustls::Error> {
        if let Some(verifier) = self.verifier.get() {
            return Ok(verifier);
        }
        // Two first handshakes at once may both load the roots; one verifier is kept.
        let verifier = Verifier::new(self.provider.clone())?;
        Ok(self.verifier.get_or_init(|| verifier))
    }
}

impl ServerCertVerifier for LazyPlatformVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.verifier()?.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        )
    }

    // The signature checks and schemes need no root certificate: the provider's algorithms,
    // exactly what the platform verifier (WebPKI) uses.
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests fail by panicking")]
    use super::*;

    #[test]
    fn the_roots_are_not_loaded_until_a_certificate_is_checked() {
        let config = default_config().unwrap();
        assert_eq!(
            config.alpn_protocols,
            alpn_protocols(cfg!(feature = "http2"))
        );
        // Without the feature (the default), only HTTP/1.1 is offered.
        assert_eq!(alpn_protocols(false), [b"http/1.1".to_vec()]);
        assert_eq!(alpn_protocols(true), [b"h2".to_vec(), b"http/1.1".to_vec()]);
        let lazy = LazyPlatformVerifier {
            provider: Arc::new(rustls::crypto::aws_lc_rs::default_provider()),
            verifier: OnceLock::new(),
        };
        assert!(!lazy.supported_verify_schemes().is_empty());
        assert!(lazy.verifier.get().is_none());
        // A certificate that is not one: the platform verifier is built and refuses it.
        let name = ServerName::try_from("example.com").unwrap();
        let err = lazy
            .verify_server_cert(
                &CertificateDer::from(vec![1, 2, 3]),
                &[],
                &name,
                &[],
                UnixTime::now(),
            )
            .unwrap_err();
        assert!(lazy.verifier.get().is_some(), "{err}");
    }
}
