//! Configurations that open a known hole, and the names under which an
//! operator accepts them.
//!
//! [`Settings::risks`] lists what a checked configuration still leaves open.
//! `authgate check` prints each as a warning and fails; `authgate` refuses
//! to start (and a `SIGHUP` reload refuses the new file) unless
//! `[server] accept_risks` names every risk found. Each risk has a name of
//! its own, so accepting one accepts nothing else:
//!
//! | name | the configuration |
//! |---|---|
//! | `public_root` | a public path `/`: nothing is guarded |
//! | `trust_everyone` | `server.trusted_proxies` covers every IPv4 or every IPv6 address (`0.0.0.0/0`, `::/0`, or ranges that together do): any client can state its own address and call the decision endpoint |
//! | `unlimited_login_attempts` | login presets with `[lockout] enabled = false` and `[throttle] per_minute = 0`: passwords can be guessed without end |
//! | `development_off_loopback` | `server.development = true` (cookies without `Secure`) on an address other than loopback |
//! | `metrics_off_loopback` | `[metrics] listen` on an address other than loopback |
//! | `users_file_permissions` | the users file can be read or written by its group or others (any of the mode bits `0o066`) |
//! | `signing_key_permissions` | the signing key file can be read or written by its group or others |
//! | `tls_key_permissions` | the TLS key file (`[server.tls] key`) can be read or written by its group or others |
//! | `h2c_off_loopback` | `server.h2c = true` (HTTP/2 without TLS) on an address other than loopback |
//! | `upstream_loop` | the upstream is the gateway's own address (the same address and port, a loopback or unspecified address on the port of a gateway listening on every address, or `localhost`) |
//!
//! File modes are read when the settings are checked for risks, at start;
//! an upstream named by a host name other than `localhost` is not resolved.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use super::config::{ConfigFileError, Settings};

/// A known hole a configuration can open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Risk {
    /// A public path `/`: nothing is guarded.
    PublicRoot,
    /// Trusted proxies that cover every address.
    TrustEveryone,
    /// Login presets with neither a lockout nor a throttle.
    UnlimitedLoginAttempts,
    /// Development mode on an address other than loopback.
    DevelopmentOffLoopback,
    /// Metrics on an address other than loopback.
    MetricsOffLoopback,
    /// A users file its group or others can read or write.
    UsersFilePermissions,
    /// A signing key file its group or others can read or write.
    SigningKeyPermissions,
    /// An upstream that is the gateway itself.
    UpstreamLoop,
    /// A TLS key file its group or others can read or write.
    TlsKeyPermissions,
    /// HTTP/2 without TLS on an address other than loopback.
    H2cOffLoopback,
}

impl Risk {
    /// Every risk, in the order they are reported.
    pub const ALL: [Risk; 10] = [
        Risk::PublicRoot,
        Risk::TrustEveryone,
        Risk::UnlimitedLoginAttempts,
        Risk::DevelopmentOffLoopback,
        Risk::MetricsOffLoopback,
        Risk::UsersFilePermissions,
        Risk::SigningKeyPermissions,
        Risk::UpstreamLoop,
        Risk::TlsKeyPermissions,
        Risk::H2cOffLoopback,
    ];

    /// The name `[server] accept_risks` accepts it under.
    pub fn name(self) -> &'static str {
        match self {
            Risk::PublicRoot => "public_root",
            Risk::TrustEveryone => "trust_everyone",
            Risk::UnlimitedLoginAttempts => "unlimited_login_attempts",
            Risk::DevelopmentOffLoopback => "development_off_loopback",
            Risk::MetricsOffLoopback => "metrics_off_loopback",
            Risk::UsersFilePermissions => "users_file_permissions",
            Risk::SigningKeyPermissions => "signing_key_permissions",
            Risk::UpstreamLoop => "upstream_loop",
            Risk::TlsKeyPermissions => "tls_key_permissions",
            Risk::H2cOffLoopback => "h2c_off_loopback",
        }
    }

    /// The risk named `name`.
    pub fn from_name(name: &str) -> Option<Risk> {
        Risk::ALL.into_iter().find(|risk| risk.name() == name)
    }
}

impl fmt::Display for Risk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A risk found in a configuration: the file, line and key that open it,
/// and whether `[server] accept_risks` names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RiskFinding {
    risk: Risk,
    accepted: bool,
    at: ConfigFileError,
}

impl RiskFinding {
    /// The risk.
    pub fn risk(&self) -> Risk {
        self.risk
    }

    /// Whether the configuration accepts it by name.
    pub fn accepted(&self) -> bool {
        self.accepted
    }

    /// Where it is and why it is a risk.
    pub fn location(&self) -> &ConfigFileError {
        &self.at
    }
}

impl fmt::Display for RiskFinding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.accepted {
            write!(
                f,
                "{} (accepted: [server] accept_risks names \"{}\")",
                self.at, self.risk
            )
        } else {
            write!(
                f,
                "{}; authgate runs with this only when [server] accept_risks names it: accept_risks = [\"{}\"]",
                self.at, self.risk
            )
        }
    }
}

impl std::error::Error for RiskFinding {}

/// Where in the file each risk would be, kept by the checks for
/// [`Settings::risks`].
#[derive(Debug, Clone, Default)]
pub(crate) struct RiskSites {
    /// `[server] accept_risks`.
    pub(crate) accepted: Vec<Risk>,
    /// The key and line of a public path that covers everything.
    pub(crate) public_root: Option<(String, usize)>,
    pub(crate) trusted_proxies_line: Option<usize>,
    /// The key and line that turn the lockout off (or the throttle).
    pub(crate) unlimited_logins: Option<(String, Option<usize>)>,
    pub(crate) development_line: Option<usize>,
    pub(crate) h2c_line: Option<usize>,
    pub(crate) tls_key_file: Option<(PathBuf, usize)>,
    pub(crate) metrics_line: Option<usize>,
    /// `None` when `--upstream` set the upstream.
    pub(crate) upstream_line: Option<usize>,
    pub(crate) upstream_from_flag: bool,
    pub(crate) listen_from_flag: bool,
    pub(crate) users_file: Option<(PathBuf, usize)>,
    pub(crate) signing_key_file: Option<(PathBuf, usize)>,
}

impl Settings {
    /// The known holes this configuration opens, each with the key and line
    /// at fault and whether `[server] accept_risks` names it. File modes
    /// are read now.
    pub fn risks(&self) -> Vec<RiskFinding> {
        let sites = &self.risk_sites;
        let mut found = Vec::new();
        let mut add = |risk: Risk, key: &str, line: Option<usize>, message: String| {
            found.push(RiskFinding {
                risk,
                accepted: sites.accepted.contains(&risk),
                at: ConfigFileError::at(&self.path, line, key, message),
            });
        };
        if let Some((key, line)) = &sites.public_root {
            add(
                Risk::PublicRoot,
                key,
                Some(*line),
                "a public path that covers every path: nothing is guarded".to_owned(),
            );
        }
        if self.trusted_proxies.covers_every_address() {
            add(
                Risk::TrustEveryone,
                "server.trusted_proxies",
                sites.trusted_proxies_line,
                "the trusted proxies cover every address: any client can state its own address in X-Forwarded-For and call the decision endpoint".to_owned(),
            );
        }
        if let Some((key, line)) = &sites.unlimited_logins
            && !self.logins.is_empty()
            && self.lockout.is_none()
            && self.throttle_per_minute == 0
        {
            add(
                Risk::UnlimitedLoginAttempts,
                key,
                *line,
                "no lockout and no throttle: passwords can be guessed without limit".to_owned(),
            );
        }
        if self.development && !self.listen.ip().is_loopback() {
            add(
                Risk::DevelopmentOffLoopback,
                "server.development",
                sites.development_line,
                format!(
                    "development mode (cookies without Secure) on {}{}, not a loopback address",
                    self.listen,
                    if sites.listen_from_flag {
                        " (--listen)"
                    } else {
                        ""
                    }
                ),
            );
        }
        if self.h2c && !self.listen.ip().is_loopback() {
            add(
                Risk::H2cOffLoopback,
                "server.h2c",
                sites.h2c_line,
                format!(
                    "HTTP/2 without TLS (h2c) on {}, not a loopback address: tokens and cookies cross the network in clear; terminate TLS with [server.tls] instead",
                    self.listen
                ),
            );
        }
        if let Some(metrics) = self.metrics_listen
            && !metrics.ip().is_loopback()
        {
            add(
                Risk::MetricsOffLoopback,
                "metrics.listen",
                sites.metrics_line,
                format!(
                    "metrics on {metrics}, not a loopback address: anyone who reaches it reads them"
                ),
            );
        }
        for (risk, key, file) in [
            (Risk::UsersFilePermissions, "users.file", &sites.users_file),
            (
                Risk::SigningKeyPermissions,
                "keys.signing_key",
                &sites.signing_key_file,
            ),
            (
                Risk::TlsKeyPermissions,
                "server.tls.key",
                &sites.tls_key_file,
            ),
        ] {
            if let Some((path, line)) = file
                && let Some(mode) = shared_mode(path)
            {
                add(
                    risk,
                    key,
                    Some(*line),
                    format!(
                        "{} can be read or written by its group or others (mode {mode:04o}): chmod 600 {}",
                        path.display(),
                        path.display()
                    ),
                );
            }
        }
        if let Some(upstream) = &self.upstream
            && is_loop(self.listen, &upstream.url)
        {
            let key = if sites.upstream_from_flag {
                "--upstream"
            } else {
                "upstream.url"
            };
            add(
                Risk::UpstreamLoop,
                key,
                sites.upstream_line,
                format!(
                    "the upstream {} is the gateway's own address {}: every request would come back to it",
                    upstream.url, self.listen
                ),
            );
        }
        found
    }
}

/// The mode of the file at `path` when its group or others may read or
/// write it; `None` when they may not (or there is no such file, which the
/// checks have refused already).
#[cfg(unix)]
fn shared_mode(path: &std::path::Path) -> Option<u32> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path).ok()?.permissions().mode() & 0o7777;
    (mode & 0o066 != 0).then_some(mode)
}

#[cfg(not(unix))]
fn shared_mode(_path: &std::path::Path) -> Option<u32> {
    None
}

/// Whether a connection to `upstream` reaches a gateway listening on
/// `listen`.
fn is_loop(listen: SocketAddr, upstream: &http::Uri) -> bool {
    let Some(host) = upstream.host() else {
        return false;
    };
    let port = upstream.port_u16().unwrap_or(80);
    if listen.port() == 0 || port != listen.port() {
        return false;
    }
    let listening = listen.ip().to_canonical();
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let lowercase = host.to_ascii_lowercase();
    if lowercase == "localhost" || lowercase.ends_with(".localhost") {
        return listening.is_loopback() || listening.is_unspecified();
    }
    let Ok(target) = host.parse::<IpAddr>() else {
        return false;
    };
    let target = target.to_canonical();
    if target == listening {
        return true;
    }
    // A connection to an unspecified address reaches this host.
    let local = |ip: IpAddr| ip.is_loopback() || ip.is_unspecified();
    match listening {
        // Every IPv4 address of this host.
        IpAddr::V4(ip) if ip.is_unspecified() => target.is_ipv4() && local(target),
        // Every address of this host, IPv4 too (dual stack).
        IpAddr::V6(ip) if ip.is_unspecified() => local(target),
        _ => target.is_unspecified() && listening.is_loopback(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for risk in Risk::ALL {
            assert_eq!(Risk::from_name(risk.name()), Some(risk));
        }
        assert_eq!(Risk::from_name("everything"), None);
    }

    #[test]
    fn loops_are_found_by_address_and_port() {
        let uri = |u: &str| u.parse::<http::Uri>().unwrap();
        let addr = |a: &str| a.parse::<SocketAddr>().unwrap();
        for (listen, upstream) in [
            ("127.0.0.1:8080", "http://127.0.0.1:8080"),
            ("0.0.0.0:8080", "http://127.0.0.1:8080"),
            ("0.0.0.0:80", "http://127.0.0.1"),
            ("[::]:8080", "http://127.0.0.1:8080"),
            ("[::]:8080", "http://[::1]:8080"),
            ("127.0.0.1:8080", "http://localhost:8080"),
            ("0.0.0.0:8080", "http://LOCALHOST:8080"),
            ("127.0.0.1:8080", "http://0.0.0.0:8080"),
            ("10.1.2.3:8080", "http://10.1.2.3:8080"),
        ] {
            assert!(is_loop(addr(listen), &uri(upstream)), "{listen} {upstream}");
        }
        for (listen, upstream) in [
            ("127.0.0.1:8080", "http://127.0.0.1:9000"),
            ("127.0.0.1:0", "http://127.0.0.1:0"),
            ("127.0.0.1:8080", "http://127.0.0.2:8080"),
            ("0.0.0.0:8080", "http://[::1]:8080"),
            ("10.1.2.3:8080", "http://app.internal:8080"),
        ] {
            assert!(
                !is_loop(addr(listen), &uri(upstream)),
                "{listen} {upstream}"
            );
        }
    }
}
