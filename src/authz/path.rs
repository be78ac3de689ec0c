//! The shape of a request path: whether it has one reading, and whether
//! that reading is plain (no percent-encoding at all), as the gateway's
//! public paths and the [rule tables](crate::authz::Rules) match it.
//!
//! A path is judged here and then resolved again by the service (and by any
//! server behind it). Where servers disagree on what a path names, a check
//! on one reading is no check on the other: Java servlet containers resolve
//! `/public/..;/app` to `/app`, IIS reads `\` as `/`, a server that decodes
//! twice reads `%252e` as `.`. So a path with a dot segment (raw or
//! encoded), a path parameter (`;`, `%3b`), an encoded `/` or `\`, a raw
//! `\`, an empty segment, an encoded `%`, a malformed encoding, an encoded
//! control, encoded bytes that are not UTF-8, an encoded unreserved
//! character, or a raw byte a URI does not allow has more than one reading
//! ([`AmbiguousPath`]).

/// What a path that has one reading may be matched as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PathShape {
    /// No percent-encoding at all: it may match a public path.
    Plain,
    /// Percent-encodings of reserved or non-ASCII characters only: served
    /// on guarded routes, never public.
    Encoded,
}

/// Why a path has more than one reading, safe to show the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct AmbiguousPath(pub(crate) &'static str);

/// Whether `b` is an unreserved character (RFC 3986 §2.3).
pub(crate) const fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// Whether `b` may stand raw in a plain path segment: unreserved, the
/// sub-delimiters but `;`, `:` and `@` (RFC 3986 §3.3).
pub(crate) const fn is_plain_path_byte(b: u8) -> bool {
    is_unreserved(b)
        || matches!(
            b,
            b'!' | b'$' | b'&' | b'\'' | b'(' | b')' | b'*' | b'+' | b',' | b'=' | b':' | b'@'
        )
}

const PLAIN_PATH: [bool; 256] = {
    let mut table = [false; 256];
    let mut i = 0;
    while i < 256 {
        table[i] = is_plain_path_byte(i as u8);
        i += 1;
    }
    table
};

fn has_plain(b: u8) -> bool {
    PLAIN_PATH[usize::from(b)]
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// The shape of `path` (the path of an origin-form target, without its
/// query), or why it has more than one reading. One pass over the bytes;
/// nothing is allocated unless the path encodes bytes outside ASCII.
pub(crate) fn path_shape(path: &str) -> Result<PathShape, AmbiguousPath> {
    let bytes = path.as_bytes();
    if bytes.first() != Some(&b'/') {
        return Err(AmbiguousPath("the target's path does not start with /"));
    }
    let mut shape = PathShape::Plain;
    let mut encoded_non_ascii = false;
    let mut segment_start = 1;
    let mut i = 1;
    loop {
        // The common case: a run of plain bytes.
        while bytes.get(i).is_some_and(|&b| has_plain(b)) {
            i += 1;
        }
        let Some(&b) = bytes.get(i) else {
            check_segment(&bytes[segment_start..])?;
            break;
        };
        match b {
            b'/' => {
                if i == segment_start {
                    return Err(AmbiguousPath("the path has an empty segment (//)"));
                }
                check_segment(&bytes[segment_start..i])?;
                segment_start = i + 1;
            }
            b'%' => {
                let value = match (
                    bytes.get(i + 1).copied().and_then(hex_value),
                    bytes.get(i + 2).copied().and_then(hex_value),
                ) {
                    (Some(high), Some(low)) => high << 4 | low,
                    _ => return Err(AmbiguousPath("the path has a malformed percent-encoding")),
                };
                match value {
                    b'.' => {
                        return Err(AmbiguousPath("the path has an encoded dot (%2e)"));
                    }
                    b'/' | b'\\' => {
                        return Err(AmbiguousPath(
                            "the path has an encoded slash or backslash (%2f, %5c)",
                        ));
                    }
                    b'%' => {
                        return Err(AmbiguousPath(
                            "the path has an encoded percent sign (%25, double encoding)",
                        ));
                    }
                    b';' => {
                        return Err(AmbiguousPath(
                            "the path has an encoded path parameter (%3b)",
                        ));
                    }
                    0x00..=0x1f | 0x7f => {
                        return Err(AmbiguousPath(
                            "the path has an encoded control character or NUL",
                        ));
                    }
                    value if is_unreserved(value) => {
                        return Err(AmbiguousPath(
                            "the path has a percent-encoded unreserved character",
                        ));
                    }
                    value => {
                        encoded_non_ascii |= value >= 0x80;
                        shape = PathShape::Encoded;
                    }
                }
                i += 2;
            }
            b';' => {
                return Err(AmbiguousPath("the path has a path parameter (;)"));
            }
            b'\\' => return Err(AmbiguousPath("the path has a backslash")),
            _ => {
                return Err(AmbiguousPath(
                    "the path has a character a URI does not allow (a control, a space, \
                     a byte outside ASCII, or one of \"<>^`{|})",
                ));
            }
        }
        i += 1;
    }
    if encoded_non_ascii && std::str::from_utf8(&percent_decode(bytes)).is_err() {
        return Err(AmbiguousPath("the path's encoded bytes are not UTF-8"));
    }
    Ok(shape)
}

/// Refuses a dot segment.
fn check_segment(segment: &[u8]) -> Result<(), AmbiguousPath> {
    if matches!(segment, [b'.'] | [b'.', b'.']) {
        return Err(AmbiguousPath("the path has a dot segment (. or ..)"));
    }
    Ok(())
}

/// `bytes` with every (well-formed) percent-encoding decoded.
pub(crate) fn percent_decode(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%'
            && let (Some(high), Some(low)) = (
                bytes.get(i + 1).copied().and_then(hex_value),
                bytes.get(i + 2).copied().and_then(hex_value),
            )
        {
            out.push(high << 4 | low);
            i += 3;
        } else {
            out.push(b);
            i += 1;
        }
    }
    out
}
