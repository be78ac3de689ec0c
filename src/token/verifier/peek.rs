//! What a token says about itself, read without checking anything: the
//! `alg`, `kid` and `iss` fields of the events (see
//! [`observe`](crate::observe)), computed only when an event is recorded.

use serde::Deserialize;
use serde_json::Value;

use super::segments::decode_segment;

/// The longest text an event shows of a field taken from a token.
const SHOWN: usize = 64;

/// The header's `alg` and `kid` and the payload's `iss`, as the token
/// states them (unverified when the token was refused), each cut to 64
/// characters; `None` where absent or unreadable.
#[derive(Debug, Default)]
pub(crate) struct Peeked {
    pub(crate) alg: Option<String>,
    pub(crate) kid: Option<String>,
    pub(crate) iss: Option<String>,
}

#[derive(Deserialize)]
struct Fields {
    #[serde(default)]
    alg: Option<Value>,
    #[serde(default)]
    kid: Option<Value>,
    #[serde(default)]
    iss: Option<Value>,
}

pub(crate) fn peek(token: &[u8]) -> Peeked {
    let Ok(token) = std::str::from_utf8(token) else {
        return Peeked::default();
    };
    let mut segments = token.splitn(3, '.');
    let read = |segment: Option<&str>| {
        segment
            .and_then(|segment| decode_segment(segment).ok())
            .and_then(|json| serde_json::from_slice::<Fields>(&json).ok())
    };
    let header = read(segments.next());
    let payload = read(segments.next());
    Peeked {
        alg: header.as_ref().and_then(|h| shown(h.alg.as_ref())),
        kid: header.as_ref().and_then(|h| shown(h.kid.as_ref())),
        iss: payload.as_ref().and_then(|p| shown(p.iss.as_ref())),
    }
}

fn shown(value: Option<&Value>) -> Option<String> {
    let text = match value? {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    };
    Some(text.chars().take(SHOWN).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_alg_kid_and_iss_and_nothing_from_garbage() {
        // {"alg":"HS256","kid":"k1"} . {"iss":"core","sub":"admin"} . sig
        let token =
            b"eyJhbGciOiJIUzI1NiIsImtpZCI6ImsxIn0.eyJpc3MiOiJjb3JlIiwic3ViIjoiYWRtaW4ifQ.c2ln";
        let peeked = peek(token);
        assert_eq!(peeked.alg.as_deref(), Some("HS256"));
        assert_eq!(peeked.kid.as_deref(), Some("k1"));
        assert_eq!(peeked.iss.as_deref(), Some("core"));
        let garbage = peek(b"not.a.token");
        assert!(garbage.alg.is_none() && garbage.kid.is_none() && garbage.iss.is_none());
        assert!(peek(&[0xff, b'.', b'.']).alg.is_none());
    }
}
