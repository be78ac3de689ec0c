//! TOTP (RFC 6238) second step: a ±1 step drift window and a replay guard
//! so that a code's time step, once used for an account, is refused again.

use std::sync::Arc;

use subtle::ConstantTimeEq;

use crate::error::ConfigError;
use crate::store::{MemoryOtpReplayGuard, OtpReplayGuard, StoreError};

pub use totp_rs::Algorithm as TotpAlgorithm;

/// Why a TOTP code was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OtpError {
    /// The code is wrong or malformed.
    #[error("invalid one-time code")]
    InvalidCode,
    /// The code is right, but its time step was already used for this
    /// account: someone replays a code seen once. Answer it as
    /// [`InvalidCode`](Self::InvalidCode).
    #[error("invalid one-time code")]
    Replayed,
    /// The account's secret cannot make codes (shorter than 128 bits): a
    /// fault of the account's set-up, not of the request.
    #[error("the account's TOTP secret is unusable: {0}")]
    UnusableSecret(String),
    /// The replay guard could not be reached; the code is not accepted.
    #[error("{0}")]
    Unavailable(StoreError),
}

/// Checks TOTP codes.
#[derive(Clone)]
pub struct TotpVerifier {
    algorithm: TotpAlgorithm,
    digits: usize,
    period: u64,
    drift_steps: u64,
    guard: Arc<dyn OtpReplayGuard>,
}

impl std::fmt::Debug for TotpVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TotpVerifier")
            .field("algorithm", &self.algorithm)
            .field("digits", &self.digits)
            .field("period", &self.period)
            .field("drift_steps", &self.drift_steps)
            .finish_non_exhaustive()
    }
}

impl Default for TotpVerifier {
    /// SHA-1, 6 digits, 30-second period, ±1 step: what Google
    /// Authenticator and Authy use.
    fn default() -> Self {
        TotpVerifier {
            algorithm: TotpAlgorithm::SHA1,
            digits: 6,
            period: 30,
            drift_steps: 1,
            guard: Arc::new(MemoryOtpReplayGuard::default()),
        }
    }
}

impl TotpVerifier {
    /// With another HMAC algorithm, digit count (6 to 8) and period.
    pub fn with_parameters(
        mut self,
        algorithm: TotpAlgorithm,
        digits: usize,
        period: u64,
    ) -> Result<Self, ConfigError> {
        if !(6..=8).contains(&digits) || period == 0 {
            return Err(ConfigError::InvalidTotpParameters);
        }
        self.algorithm = algorithm;
        self.digits = digits;
        self.period = period;
        Ok(self)
    }

    /// With this replay guard (share one across instances).
    pub fn with_replay_guard(mut self, guard: Arc<dyn OtpReplayGuard>) -> Self {
        self.guard = guard;
        self
    }

    /// The code for `secret` at `time` (seconds since the epoch).
    pub fn generate(&self, secret: &[u8], time: u64) -> Result<String, ConfigError> {
        Ok(self.totp(secret)?.generate(time))
    }

    fn totp(&self, secret: &[u8]) -> Result<totp_rs::TOTP, ConfigError> {
        totp_rs::TOTP::new(self.algorithm, self.digits, 0, self.period, secret.to_vec())
            .map_err(|e| ConfigError::InvalidTotpSecret(e.to_string()))
    }

    /// The `otpauth://totp/…` URI an authenticator app enrolls from (as a QR
    /// code), per the Key Uri Format of Google Authenticator.
    pub fn provisioning_uri(&self, secret: &[u8], issuer: &str, account: &str) -> String {
        let algorithm = match self.algorithm {
            TotpAlgorithm::SHA1 => "SHA1",
            TotpAlgorithm::SHA256 => "SHA256",
            TotpAlgorithm::SHA512 => "SHA512",
            // totp-rs's optional Steam variant has no otpauth name.
            #[allow(unreachable_patterns)]
            _ => "SHA1",
        };
        let secret = base32::encode(base32::Alphabet::Rfc4648 { padding: false }, secret);
        format!(
            "otpauth://totp/{}:{}?secret={secret}&issuer={}&algorithm={algorithm}&digits={}&period={}",
            percent_encode(issuer),
            percent_encode(account),
            percent_encode(issuer),
            self.digits,
            self.period,
        )
    }

    /// Checks `code` for `account` at `now`. The code must be exactly the
    /// configured number of ASCII digits; it may match the current step or
    /// one step either side; a step already used by this account is refused.
    pub async fn check(
        &self,
        account: &str,
        secret: &[u8],
        code: &str,
        now: u64,
    ) -> Result<(), OtpError> {
        if code.len() != self.digits || !code.bytes().all(|b| b.is_ascii_digit()) {
            return Err(OtpError::InvalidCode);
        }
        let totp = self
            .totp(secret)
            .map_err(|e| OtpError::UnusableSecret(e.to_string()))?;
        let current = now / self.period;
        let first = current.saturating_sub(self.drift_steps);
        let mut matched = None;
        for step in first..=current + self.drift_steps {
            let expected = totp.generate(step * self.period);
            if bool::from(expected.as_bytes().ct_eq(code.as_bytes())) {
                matched = Some(step);
            }
        }
        let Some(step) = matched else {
            return Err(OtpError::InvalidCode);
        };
        let until = (step + self.drift_steps + 1) * self.period;
        match self.guard.use_step(account, step, until).await {
            Ok(true) => Ok(()),
            Ok(false) => Err(OtpError::Replayed),
            Err(err) => Err(OtpError::Unavailable(err)),
        }
    }
}

/// Percent-encodes everything but RFC 3986 unreserved characters.
fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}
