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
//! keeps the running pair. So is a leaf certificate outside its validity
//! period (expired, or not valid yet): clients would refuse it. The leaf's
//! `notAfter` is the `/metrics` gauge
//! `authgate_tls_certificate_expiry_timestamp_seconds`.

use std::path::Path;
use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ClientConfig, RootCertStore, ServerConfig};

use crate::clock::now_seconds;
use crate::der;

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
/// `cert_path`) and the private key in `key_pem` (from `key_path`), with
/// the leaf's `notAfter` (Unix seconds); the error names the file at fault.
pub(crate) fn server_config(
    cert_path: &Path,
    cert_pem: &[u8],
    key_path: &Path,
    key_pem: &[u8],
) -> Result<(Arc<ServerConfig>, i64), String> {
    let chain = certificates(cert_pem, cert_path)?;
    let leaf = chain.first().map_or(&[][..], |leaf| leaf.as_ref());
    let not_after = leaf_in_validity(leaf, i64::try_from(now_seconds()).unwrap_or(i64::MAX))
        .map_err(|problem| {
            format!(
                "{}: the first certificate (the server's own) {problem}",
                cert_path.display()
            )
        })?;
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
    Ok((Arc::new(config), not_after))
}

/// The leaf's `notAfter` when `now` is within its validity period; what is
/// wrong otherwise, to follow "the certificate".
fn leaf_in_validity(der: &[u8], now: i64) -> Result<i64, String> {
    let (not_before, not_after) = validity(der)
        .ok_or("has no validity period that can be read (not an X.509 certificate)")?;
    if now < not_before {
        return Err(format!("is not valid before {}", utc(not_before)));
    }
    if now > not_after {
        return Err(format!("expired at {}", utc(not_after)));
    }
    Ok(not_after)
}

/// The validity period (`notBefore`, `notAfter`, Unix seconds) of a DER
/// X.509 certificate, read from its `tbsCertificate`; `None` when the bytes
/// are not laid out as one.
fn validity(der: &[u8]) -> Option<(i64, i64)> {
    let (certificate, _) = der::element(der, 0x30)?;
    let (mut tbs, _) = der::element(certificate, 0x30)?;
    // version: [0] EXPLICIT, absent in a v1 certificate.
    if tbs.first() == Some(&0xa0) {
        tbs = der::element(tbs, 0xa0)?.1;
    }
    let (_serial, rest) = der::element(tbs, 0x02)?;
    let (_signature, rest) = der::element(rest, 0x30)?;
    let (_issuer, rest) = der::element(rest, 0x30)?;
    let (validity, _) = der::element(rest, 0x30)?;
    let (not_before, rest) = der_time(validity)?;
    let (not_after, _) = der_time(rest)?;
    Some((not_before, not_after))
}

/// A `Time` (UTCTime `YYMMDDHHMMSSZ` or GeneralizedTime `YYYYMMDDHHMMSSZ`,
/// as RFC 5280 requires them) at the start of `input`, in Unix seconds.
fn der_time(input: &[u8]) -> Option<(i64, &[u8])> {
    let (text, year, rest) = match input.first()? {
        0x17 => {
            let (text, rest) = der::element(input, 0x17)?;
            let yy = digits(text.get(..2)?)?;
            // RFC 5280: 50–99 are 19xx, 00–49 are 20xx.
            let year = if yy >= 50 { 1900 + yy } else { 2000 + yy };
            (text.get(2..)?, year, rest)
        }
        0x18 => {
            let (text, rest) = der::element(input, 0x18)?;
            (text.get(4..)?, digits(text.get(..4)?)?, rest)
        }
        _ => return None,
    };
    // MMDDHHMMSSZ
    if text.len() != 11 || text[10] != b'Z' {
        return None;
    }
    let month = u8::try_from(digits(&text[0..2])?).ok()?;
    let day = u8::try_from(digits(&text[2..4])?).ok()?;
    let hour = digits(&text[4..6])?;
    let minute = digits(&text[6..8])?;
    let second = digits(&text[8..10])?;
    if hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let date = time::Date::from_calendar_date(
        i32::try_from(year).ok()?,
        time::Month::try_from(month).ok()?,
        day,
    )
    .ok()?;
    let days = i64::from(date.to_julian_day() - UNIX_EPOCH_JULIAN_DAY);
    Some((days * 86_400 + hour * 3_600 + minute * 60 + second, rest))
}

/// The Julian day number of 1970-01-01.
const UNIX_EPOCH_JULIAN_DAY: i32 = 2_440_588;

/// ASCII decimal digits as a number; `None` for anything else.
fn digits(text: &[u8]) -> Option<i64> {
    text.iter().try_fold(0i64, |value, byte| {
        byte.is_ascii_digit()
            .then(|| value * 10 + i64::from(byte - b'0'))
    })
}

/// Unix seconds as `YYYY-MM-DDTHH:MM:SSZ`.
fn utc(seconds: i64) -> String {
    match time::OffsetDateTime::from_unix_timestamp(seconds) {
        Ok(moment) => format!(
            "{}T{:02}:{:02}:{:02}Z",
            moment.date(),
            moment.hour(),
            moment.minute(),
            moment.second()
        ),
        // Beyond year 9999, which no certificate time reaches.
        Err(_) => format!("{seconds} s after 1970-01-01T00:00:00Z"),
    }
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

    /// A self-signed certificate valid from `not_before` to `not_after`
    /// (year, month, day), and its key, as PEM.
    fn certificate(not_before: (i32, u8, u8), not_after: (i32, u8, u8)) -> (String, String) {
        let mut params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
        params.not_before = rcgen::date_time_ymd(not_before.0, not_before.1, not_before.2);
        params.not_after = rcgen::date_time_ymd(not_after.0, not_after.1, not_after.2);
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    fn der(pem: &str) -> Vec<u8> {
        certificates(pem.as_bytes(), Path::new("c.pem")).unwrap()[0].to_vec()
    }

    #[test]
    fn the_validity_period_is_read_in_both_time_forms() {
        // Before 2050 a time is a UTCTime, from 2050 a GeneralizedTime.
        let (pem, _) = certificate((1975, 1, 1), (2051, 6, 1));
        assert_eq!(validity(&der(&pem)), Some((157_766_400, 2_569_190_400)));
        let (pem, _) = certificate((2020, 1, 1), (4096, 1, 1));
        assert_eq!(validity(&der(&pem)), Some((1_577_836_800, 67_090_118_400)));
    }

    #[test]
    fn a_certificate_outside_its_validity_is_refused_naming_the_file_and_date() {
        let cert = Path::new("/etc/authgate/chain.pem");
        let key = Path::new("/etc/authgate/key.pem");
        let (pem, key_pem) = certificate((2019, 1, 1), (2020, 1, 1));
        let err = server_config(cert, pem.as_bytes(), key, key_pem.as_bytes()).unwrap_err();
        assert_eq!(
            err,
            "/etc/authgate/chain.pem: the first certificate (the server's own) expired at 2020-01-01T00:00:00Z"
        );
        let (pem, key_pem) = certificate((2090, 3, 1), (2091, 1, 1));
        let err = server_config(cert, pem.as_bytes(), key, key_pem.as_bytes()).unwrap_err();
        assert!(
            err.ends_with("is not valid before 2090-03-01T00:00:00Z"),
            "{err}"
        );
        let (pem, key_pem) = certificate((2020, 1, 1), (2051, 6, 1));
        let (_, not_after) = server_config(cert, pem.as_bytes(), key, key_pem.as_bytes()).unwrap();
        assert_eq!(not_after, 2_569_190_400);
        // At the edges: valid through notAfter itself.
        let der = der(&pem);
        assert_eq!(leaf_in_validity(&der, 2_569_190_400), Ok(2_569_190_400));
        assert!(leaf_in_validity(&der, 2_569_190_401).is_err());
        assert!(leaf_in_validity(&der, 1_577_836_799).is_err());
    }

    #[test]
    fn cut_or_altered_bytes_are_no_validity_and_no_panic() {
        let (pem, _) = certificate((1975, 1, 1), (2051, 6, 1));
        let der = der(&pem);
        for end in 0..der.len() {
            // Cut anywhere: shorter than the outer element says.
            assert_eq!(validity(&der[..end]), None, "cut at {end}");
        }
        // Every byte of the head and the times changed in turn.
        for at in 0..der.len().min(200) {
            for value in [0x00, 0x17, 0x18, 0x30, 0x7f, 0x80, 0x84, 0xff] {
                let mut altered = der.clone();
                altered[at] = value;
                let _ = validity(&altered);
            }
        }
        assert_eq!(validity(b""), None);
        assert_eq!(validity(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]), None);
        assert_eq!(validity(&[0x30, 0x85, 1, 1, 1, 1, 1]), None);
    }

    #[test]
    fn times_that_are_not_rfc_5280_ones_are_refused() {
        let utc = |text: &[u8]| {
            let mut input = vec![0x17, u8::try_from(text.len()).unwrap()];
            input.extend_from_slice(text);
            der_time(&input).map(|(seconds, _)| seconds)
        };
        assert_eq!(utc(b"491231235959Z"), Some(2_524_607_999));
        assert_eq!(utc(b"500101000000Z"), Some(-631_152_000));
        assert_eq!(utc(b"4912312359Z"), None);
        assert_eq!(utc(b"491231235959+0100"), None);
        assert_eq!(utc(b"491331235959Z"), None);
        assert_eq!(utc(b"491200235959Z"), None);
        // A day the month does not have.
        assert_eq!(utc(b"490230000000Z"), None);
        assert_eq!(utc(b"490431000000Z"), None);
        assert_eq!(utc(b"491231245959Z"), None);
        assert_eq!(utc(b"4912312359a9Z"), None);
        assert_eq!(utc(b"-91231235959Z"), None);
    }

    #[test]
    fn dates_are_written_back_as_they_were_read() {
        for (seconds, text) in [
            (0, "1970-01-01T00:00:00Z"),
            (951_782_400, "2000-02-29T00:00:00Z"),
            (2_569_190_400, "2051-06-01T00:00:00Z"),
            (67_090_118_400, "4096-01-01T00:00:00Z"),
            (-631_152_000, "1950-01-01T00:00:00Z"),
            (1_798_761_599, "2026-12-31T23:59:59Z"),
        ] {
            assert_eq!(utc(seconds), text);
            let (year, rest) = text.split_at(4);
            let digits: String = rest.chars().filter(char::is_ascii_digit).collect();
            let mut input = vec![0x18, 15];
            input.extend_from_slice(format!("{year}{digits}Z").as_bytes());
            assert_eq!(
                der_time(&input).map(|(read, _)| read),
                Some(seconds),
                "{text}"
            );
        }
    }
}
