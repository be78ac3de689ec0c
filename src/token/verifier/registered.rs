//! Reading registered claims (`exp`, `iss`, …) as the payload parser
//! captured them: numbers that must be dates, strings that must be strings.

use std::borrow::Cow;

use crate::error::TokenError;
use crate::token::payload::{Claim, parse_registered};

pub(super) fn numeric_date(
    claim: Option<&Claim<'_>>,
    name: &'static str,
) -> Result<Option<u64>, TokenError> {
    let text = match claim {
        None => return Ok(None),
        Some(Claim::Int(whole)) => return Ok(Some(*whole)),
        // A JSON number with a fraction or exponent is allowed (RFC 7519
        // NumericDate); negative or non-finite values are not.
        Some(Claim::Float(v)) if v.is_finite() && *v >= 0.0 => return Ok(Some(*v as u64)),
        Some(Claim::Raw(raw)) => raw.get(),
        Some(_) => return Err(TokenError::InvalidClaim(name)),
    };
    if let Ok(whole) = text.parse::<u64>() {
        return Ok(Some(whole));
    }
    // Strings, booleans, null, negative numbers are not dates.
    if !text.starts_with(|c: char| c.is_ascii_digit()) {
        return Err(TokenError::InvalidClaim(name));
    }
    match serde_json::from_str::<f64>(text) {
        Ok(v) if v.is_finite() && v >= 0.0 => Ok(Some(v as u64)),
        _ => Err(TokenError::InvalidClaim(name)),
    }
}

pub(super) fn string_claim<'a>(
    claim: Option<&'a Claim<'_>>,
    name: &'static str,
) -> Result<Option<Cow<'a, str>>, TokenError> {
    let text = match claim {
        None => return Ok(None),
        Some(Claim::Str(text)) => return Ok(Some(Cow::Borrowed(text))),
        Some(Claim::Raw(raw)) => raw.get(),
        Some(_) => return Err(TokenError::InvalidClaim(name)),
    };
    let Some(inner) = text.strip_prefix('"').and_then(|t| t.strip_suffix('"')) else {
        return Err(TokenError::InvalidClaim(name));
    };
    // The payload parser already checked this is a valid JSON string: one
    // without escapes is its own text.
    if !inner.contains('\\') {
        return Ok(Some(Cow::Borrowed(inner)));
    }
    serde_json::from_str::<String>(text)
        .map(|s| Some(Cow::Owned(s)))
        .map_err(|_| TokenError::InvalidClaim(name))
}

/// The `iss` of an unverified payload, to choose keys by.
pub(super) fn payload_issuer(
    payload: &[u8],
    kind_claim: &str,
) -> Result<Option<String>, TokenError> {
    let raw = parse_registered(payload, kind_claim)?;
    Ok(string_claim(raw.iss.as_ref(), "iss")?.map(Cow::into_owned))
}
