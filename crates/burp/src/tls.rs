//! TLS client configuration for a burp status port.
//!
//! burp's own CA (`burp_ca`) issues certificates without a subjectAltName, and burp clients
//! check the server by comparing its certificate's subject CN with `ssl_peer_cn`, never the
//! host name. Stock rustls/webpki verification requires a SAN and so rejects every burp server;
//! [`BurpServerVerifier`] instead checks the chain and signatures against `tls_ca_cert` (webpki,
//! through rustls' helper) and then the CN against `burp_cname`, case-insensitively as burp's
//! `strcasecmp` does.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{self, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::ParsedCertificate;
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};

/// Why a TLS configuration could not be built; each names the config key and file.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The file could not be read.
    #[error("{key} {path}: {source}", path = .path.display())]
    Read {
        key: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The file holds nothing usable (no PEM certificate / key, or one rustls refuses).
    #[error("{key} {path}: {reason}", path = .path.display())]
    Invalid {
        key: &'static str,
        path: PathBuf,
        reason: String,
    },
    /// Only one of `tls_cert` and `tls_key` is set.
    #[error("tls_cert and tls_key must be set together (only {given} is set)")]
    HalfClientAuth { given: &'static str },
}

/// Builds the client configuration: trust `ca_cert`, expect server CN `burp_cname`, and
/// present `client_auth` (certificate and key files) when given.
///
/// Files are read on every call so that renewed certificates take effect on reconnect.
pub fn client_config(
    ca_cert: &Path,
    client_auth: Option<(&Path, &Path)>,
    burp_cname: &str,
) -> Result<ClientConfig, TlsError> {
    let provider = Arc::new(crypto::ring::default_provider());
    let roots = load_roots(ca_cert)?;
    let verifier = BurpServerVerifier::new(roots, burp_cname, provider.clone());
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Invalid {
            key: "tls_ca_cert",
            path: ca_cert.to_owned(),
            reason: e.to_string(),
        })?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier));
    let mut config = match client_auth {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => {
            let chain = load_certs("tls_cert", cert)?;
            let key_der = load_key(key)?;
            builder
                .with_client_auth_cert(chain, key_der)
                .map_err(|e| TlsError::Invalid {
                    key: "tls_key",
                    path: key.to_owned(),
                    reason: format!("does not fit tls_cert {}: {e}", cert.display()),
                })?
        }
    };
    // burp needs no SNI, and the name we would send is only the address we dialled.
    config.enable_sni = false;
    Ok(config)
}

/// Pairs the optional `tls_cert` / `tls_key` settings: both or neither.
pub fn client_auth_pair<'a>(
    cert: Option<&'a Path>,
    key: Option<&'a Path>,
) -> Result<Option<(&'a Path, &'a Path)>, TlsError> {
    match (cert, key) {
        (Some(cert), Some(key)) => Ok(Some((cert, key))),
        (None, None) => Ok(None),
        (Some(_), None) => Err(TlsError::HalfClientAuth { given: "tls_cert" }),
        (None, Some(_)) => Err(TlsError::HalfClientAuth { given: "tls_key" }),
    }
}

fn read(key: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        key,
        path: path.to_owned(),
        source,
    })
}

fn load_certs(key: &'static str, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read(key, path)?;
    let invalid = |reason: String| TlsError::Invalid {
        key,
        path: path.to_owned(),
        reason,
    };
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid(format!("bad PEM: {e}")))?;
    if certs.is_empty() {
        return Err(invalid("no PEM certificate in file".into()));
    }
    Ok(certs)
}

fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let pem = read("tls_key", path)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| TlsError::Invalid {
        key: "tls_key",
        path: path.to_owned(),
        reason: format!("no usable PEM private key: {e}"),
    })
}

fn load_roots(path: &Path) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in load_certs("tls_ca_cert", path)? {
        roots.add(cert).map_err(|e| TlsError::Invalid {
            key: "tls_ca_cert",
            path: path.to_owned(),
            reason: format!("not a usable CA certificate: {e}"),
        })?;
    }
    Ok(roots)
}

/// The subject CN of a DER certificate, `None` if it has none.
pub fn subject_cn(cert: &CertificateDer<'_>) -> Result<Option<String>, String> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref())
        .map_err(|e| format!("cannot parse server certificate: {e}"))?;
    let cn = parsed.subject().iter_common_name().next();
    match cn {
        None => Ok(None),
        Some(attr) => attr
            .as_str()
            .map(|s| Some(s.to_owned()))
            .map_err(|e| format!("server certificate CN is not text: {e}")),
    }
}

/// Server verification the way burp clients do it: chain to the CA, then CN == `burp_cname`.
#[derive(Debug)]
pub struct BurpServerVerifier {
    roots: Arc<RootCertStore>,
    burp_cname: String,
    provider: Arc<CryptoProvider>,
}

/// The CN check failed; the message names both names so the log says what to fix.
#[derive(Debug, thiserror::Error)]
#[error("server certificate CN {found} does not match burp_cname {expected:?}")]
struct CnMismatch {
    found: String,
    expected: String,
}

impl BurpServerVerifier {
    /// A verifier trusting `roots` and expecting the server CN `burp_cname`.
    pub fn new(roots: RootCertStore, burp_cname: &str, provider: Arc<CryptoProvider>) -> Self {
        BurpServerVerifier {
            roots: Arc::new(roots),
            burp_cname: burp_cname.to_owned(),
            provider,
        }
    }
}

impl ServerCertVerifier for BurpServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let parsed = ParsedCertificate::try_from(end_entity)?;
        rustls::client::verify_server_cert_signed_by_trust_anchor(
            &parsed,
            &self.roots,
            intermediates,
            now,
            self.provider.signature_verification_algorithms.all,
        )?;
        let cn = subject_cn(end_entity).map_err(|reason| {
            rustls::Error::InvalidCertificate(CertificateError::Other(rustls::OtherError(
                Arc::new(CnMismatch {
                    found: reason,
                    expected: self.burp_cname.clone(),
                }),
            )))
        })?;
        match cn {
            Some(cn) if cn.eq_ignore_ascii_case(&self.burp_cname) => {
                Ok(ServerCertVerified::assertion())
            }
            other => Err(rustls::Error::InvalidCertificate(CertificateError::Other(
                rustls::OtherError(Arc::new(CnMismatch {
                    found: match other {
                        Some(cn) => format!("{cn:?}"),
                        None => "(none)".to_owned(),
                    },
                    expected: self.burp_cname.clone(),
                })),
            ))),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        crypto::verify_tls12_signature(
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
        crypto::verify_tls13_signature(
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

/// Says in words why a TLS handshake failed, with a hint where the cause is usual.
pub fn describe_handshake_error(err: &std::io::Error) -> String {
    use std::io::ErrorKind::{BrokenPipe, ConnectionAborted, ConnectionReset, UnexpectedEof};
    match err
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    {
        Some(tls) => describe_rustls(tls),
        None if matches!(
            err.kind(),
            UnexpectedEof | ConnectionReset | ConnectionAborted | BrokenPipe
        ) =>
        {
            format!(
                "server closed the connection during the TLS handshake ({err}); \
                 are its max_status_children busy, or is this not burp's status port?"
            )
        }
        None => err.to_string(),
    }
}

/// Words for a rustls error.
pub fn describe_rustls(err: &rustls::Error) -> String {
    match err {
        rustls::Error::InvalidCertificate(CertificateError::Other(other)) => other.to_string(),
        rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer) => {
            "server certificate is not signed by tls_ca_cert (UnknownIssuer)".to_owned()
        }
        rustls::Error::InvalidCertificate(CertificateError::BadSignature) => {
            "server certificate signature does not verify against tls_ca_cert".to_owned()
        }
        rustls::Error::AlertReceived(alert) => format!(
            "server refused the handshake with alert {alert:?} \
             (does the server accept our tls_cert for this cname?)"
        ),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn write(dir: &Path, name: &str, data: &str) -> PathBuf {
        let path = dir.join(name);
        let mut f = std::fs::File::create(&path).unwrap();
        f.write_all(data.as_bytes()).unwrap();
        path
    }

    fn ca() -> (String, rcgen::Issuer<'static, rcgen::KeyPair>) {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "burpCA");
        let cert = params.self_signed(&key).unwrap();
        (cert.pem(), rcgen::Issuer::new(params, key))
    }

    #[test]
    fn errors_name_the_file_and_key() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope.pem");
        let err = client_config(&missing, None, "burpserver").unwrap_err();
        let text = err.to_string();
        assert!(text.starts_with("tls_ca_cert "), "{text}");
        assert!(text.contains("nope.pem"), "{text}");

        let empty = write(dir.path(), "empty.pem", "not pem at all\n");
        let text = client_config(&empty, None, "burpserver")
            .unwrap_err()
            .to_string();
        assert!(
            text.contains("empty.pem") && text.contains("no PEM certificate"),
            "{text}"
        );

        let (ca_pem, _) = ca();
        let ca_path = write(dir.path(), "ca.pem", &ca_pem);
        assert!(client_config(&ca_path, None, "burpserver").is_ok());

        let key_path = dir.path().join("missing.key");
        let text = client_config(&ca_path, Some((&ca_path, &key_path)), "burpserver")
            .unwrap_err()
            .to_string();
        assert!(
            text.starts_with("tls_key ") && text.contains("missing.key"),
            "{text}"
        );

        let bad_key = write(
            dir.path(),
            "bad.key",
            "-----BEGIN PRIVATE KEY-----\n-----END PRIVATE KEY-----\n",
        );
        let text = client_config(&ca_path, Some((&ca_path, &bad_key)), "burpserver")
            .unwrap_err()
            .to_string();
        assert!(text.contains("bad.key"), "{text}");
    }

    #[test]
    fn client_auth_needs_both_files() {
        let p = Path::new("x");
        assert!(client_auth_pair(None, None).unwrap().is_none());
        assert!(client_auth_pair(Some(p), Some(p)).unwrap().is_some());
        assert!(client_auth_pair(Some(p), None)
            .unwrap_err()
            .to_string()
            .contains("only tls_cert"));
        assert!(client_auth_pair(None, Some(p))
            .unwrap_err()
            .to_string()
            .contains("only tls_key"));
    }

    #[test]
    fn verifier_checks_chain_and_cn_not_san() {
        let (ca_pem, issuer) = ca();
        let leaf = |cn: &str| {
            let key = rcgen::KeyPair::generate().unwrap();
            let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
            params
                .distinguished_name
                .push(rcgen::DnType::CommonName, cn);
            params.signed_by(&key, &issuer).unwrap().der().clone()
        };
        let mut roots = RootCertStore::empty();
        for c in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
            roots.add(c.unwrap()).unwrap();
        }
        let provider = Arc::new(crypto::ring::default_provider());
        let verifier = BurpServerVerifier::new(roots, "burpserver", provider.clone());
        let name = ServerName::try_from("127.0.0.1").unwrap();
        let now = UnixTime::now();

        for cn in ["burpserver", "BurpServer", "BURPSERVER"] {
            assert!(
                verifier
                    .verify_server_cert(&leaf(cn), &[], &name, &[], now)
                    .is_ok(),
                "{cn}"
            );
        }
        let err = verifier
            .verify_server_cert(&leaf("otherserver"), &[], &name, &[], now)
            .unwrap_err();
        let text = describe_rustls(&err);
        assert!(
            text.contains("\"otherserver\"") && text.contains("burpserver"),
            "{text}"
        );

        // Same CN, other CA.
        let (_, other_issuer) = ca();
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "burpserver");
        let foreign = params.signed_by(&key, &other_issuer).unwrap();
        let err = verifier
            .verify_server_cert(foreign.der(), &[], &name, &[], now)
            .unwrap_err();
        let text = describe_rustls(&err);
        assert!(text.contains("tls_ca_cert"), "{text} / {err:?}");
    }
}
