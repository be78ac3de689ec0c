//! TLS with rustls (the aws-lc-rs provider, as elsewhere in the crate): the
//! server side of `[server.tls]`, whose certificate and key are read again
//! on `SIGHUP`, and the client side of an `https://` upstream.
//!
//! The server speaks TLS 1.3 and 1.2 only, offers ALPN `h2` and
//! `http/1.1` (a client that names neither gets HTTP/1.1), and asks for no
//! client certificate. A certificate chain and key are taken only when
//! both parse and the key is the certificate's (rustls compares the key's
//! public half with the leaf's); otherwise the file is refused with the
//! file's name, at start, by `authgate check` and on a reload, which then
//! keeps the running pair.

use std::path::Path;
use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ClientConfig, RootCertStore, ServerConfig};

/// The ALPN names the server offers, best first.
const SERVER_ALPN: [&[u8]; 2] = [b"h2", b"http/1.1"];

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// TLS 1.3 and 1.2, nothing older.
const VERSIONS: &[&rustls::SupportedProtocolVersion] =
    &[&rustls::version::TLS13, &rustls::version::TLS12];

/// The certificates of a PEM file (`CERTIFICATE` blocks, leaf first).
fn certificates(pem: &[u8], path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let chain = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|err| format!("{}: not a PEM certificate chain: {err}", path.display()))?;
    if chain.is_empty() {
        return Err(format!(
            "{}: holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
            path.display()
        ));
    }
    Ok(chain)
}

/// A server configuration for the chain in `cert_pem` (read from
/// `cert_path`) and the private key in `key_pem` (from `key_path`); the
/// error names the file at fault.
pub(crate) fn server_config(
    cert_path: &Path,
    cert_pem: &[u8],
    key_path: &Path,
    key_pem: &[u8],
) -> Result<Arc<ServerConfig>, String> {
    let chain = certificates(cert_pem, cert_path)?;
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|err| {
        format!(
            "{}: not a PEM private key (PKCS#8, PKCS#1 or SEC1): {err}",
            key_path.display()
        )
    })?;
    let provider = provider();
    let signing = provider
        .key_provider
        .load_private_key(key)
        .map_err(|err| format!("{}: the key cannot be used: {err}", key_path.display()))?;
    let certified = rustls::sign::CertifiedKey::new(chain, signing);
    certified.keys_match().map_err(|err| {
        format!(
            "{} is not the key of the certificate in {}: {err}",
            key_path.display(),
            cert_path.display()
        )
    })?;
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(VERSIONS)
        .map_err(|err| err.to_string())?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(rustls::sign::SingleCertAndKey::from(certified)));
    config.alpn_protocols = SERVER_ALPN.iter().map(|name| name.to_vec()).collect();
    Ok(Arc::new(config))
}

/// A client configuration for an `https://` upstream: its certificate is
/// verified against the roots in `ca_pem` when given, or else the system's
/// roots; ALPN names `alpn` only.
pub(crate) fn client_config(
    ca: Option<(&Path, &[u8])>,
    alpn: &[u8],
) -> Result<Arc<ClientConfig>, String> {
    let mut roots = RootCertStore::empty();
    match ca {
        Some((path, pem)) => {
            for certificate in certificates(pem, path)? {
                roots.add(certificate).map_err(|err| {
                    format!("{}: not a usable CA certificate: {err}", path.display())
                })?;
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            for certificate in found.certs {
                // A system root rustls cannot read is skipped, as browsers do.
                let _ = roots.add(certificate);
            }
            if roots.is_empty() {
                return Err(
                    "no system root certificate could be read: set upstream.ca to the upstream's CA file"
                        .to_owned(),
                );
            }
        }
    }
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(VERSIONS)
        .map_err(|err| err.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![alpn.to_vec()];
    Ok(Arc::new(config))
}

/// The server's TLS configuration in force, swapped on reload; open
/// connections keep the one they were accepted with.
pub(crate) type LiveServerConfig = Arc<ArcSwap<ServerConfig>>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_and_garbled_files_name_the_file() {
        let cert = Path::new("/etc/authgate/chain.pem");
        let key = Path::new("/etc/authgate/key.pem");
        let err = server_config(cert, b"", key, b"").unwrap_err();
        assert!(err.contains("chain.pem"), "{err}");
        let err = server_config(
            cert,
            b"-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----\n",
            key,
            b"",
        )
        .unwrap_err();
        assert!(err.contains("chain.pem"), "{err}");
    }
}
