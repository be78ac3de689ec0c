//! Base64url segments of a compact token, decoded on the stack when they
//! fit.
//!
//! The decoder is written out here rather than taken from the `base64`
//! crate: every token's payload and signature go through it, and a table
//! lookup per character with the validity of a whole segment checked once
//! at its end does the same work in fewer instructions. It answers exactly
//! as `base64`'s `URL_SAFE_NO_PAD` does (a property test compares them):
//! the URL-safe alphabet only, no padding, no length of the form `4n + 1`,
//! and the unused bits of the last character zero, so a segment has one
//! spelling.

use crate::error::TokenError;

/// The 6-bit value of each base64url character; `INVALID` for the rest.
const DECODE: [u8; 256] = {
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut table = [INVALID; 256];
    let mut i = 0;
    while i < alphabet.len() {
        table[alphabet[i] as usize] = i as u8;
        i += 1;
    }
    table
};

/// Any value with one of the two high bits set is no 6-bit value.
const INVALID: u8 = 0xff;

/// The decoded length of a base64url segment, or `None` for a length no
/// unpadded segment has.
fn decoded_len(segment: &[u8]) -> Option<usize> {
    let tail = match segment.len() % 4 {
        0 => 0,
        2 => 1,
        3 => 2,
        _ => return None,
    };
    Some(segment.len() / 4 * 3 + tail)
}

/// Decodes `segment` into `out`, exactly `decoded_len(segment)` bytes long.
fn decode_exact(segment: &[u8], out: &mut [u8]) -> Result<(), TokenError> {
    let (whole, tail) = segment.split_at(segment.len() / 4 * 4);
    let (out_whole, out_tail) = out.split_at_mut(whole.len() / 4 * 3);
    // The values of every character, or-ed: one test at the end.
    let mut seen = 0u8;
    for (chars, bytes) in whole.chunks_exact(4).zip(out_whole.chunks_exact_mut(3)) {
        let [a, b, c, d] = [chars[0], chars[1], chars[2], chars[3]].map(|ch| DECODE[ch as usize]);
        seen |= a | b | c | d;
        let n = u32::from(a) << 18 | u32::from(b) << 12 | u32::from(c) << 6 | u32::from(d);
        bytes[0] = (n >> 16) as u8;
        bytes[1] = (n >> 8) as u8;
        bytes[2] = n as u8;
    }
    match (tail, out_tail) {
        ([], []) => {}
        ([a, b], [x]) => {
            let [a, b] = [*a, *b].map(|ch| DECODE[ch as usize]);
            seen |= a | b;
            // The last character's low four bits are not data: zero.
            if b & 0x0f != 0 {
                return Err(TokenError::Malformed);
            }
            *x = a << 2 | b >> 4;
        }
        ([a, b, c], [x, y]) => {
            let [a, b, c] = [*a, *b, *c].map(|ch| DECODE[ch as usize]);
            seen |= a | b | c;
            // The last character's low two bits are not data: zero.
            if c & 0x03 != 0 {
                return Err(TokenError::Malformed);
            }
            let n = u32::from(a) << 18 | u32::from(b) << 12 | u32::from(c) << 6;
            *x = (n >> 16) as u8;
            *y = (n >> 8) as u8;
        }
        _ => return Err(TokenError::Malformed),
    }
    if seen & 0xc0 != 0 {
        return Err(TokenError::Malformed);
    }
    Ok(())
}

pub(super) fn decode_segment(segment: &str) -> Result<Vec<u8>, TokenError> {
    let segment = segment.as_bytes();
    let mut out = vec![0; decoded_len(segment).ok_or(TokenError::Malformed)?];
    decode_exact(segment, &mut out)?;
    Ok(out)
}

/// Decodes a base64url segment into `stack` when it fits, else into `heap`.
pub(super) fn decode_segment_into<'b>(
    segment: &[u8],
    stack: &'b mut [u8],
    heap: &'b mut Vec<u8>,
) -> Result<&'b [u8], TokenError> {
    let len = decoded_len(segment).ok_or(TokenError::Malformed)?;
    let out = match stack.get_mut(..len) {
        Some(out) => out,
        None => {
            heap.resize(len, 0);
            heap
        }
    };
    decode_exact(segment, out)?;
    Ok(out)
}

/// Whether a segment of `len` characters decodes into `room` bytes or
/// fewer.
pub(super) fn fits(len: usize, room: usize) -> bool {
    len / 4 * 3 + 2 <= room
}

/// Segments this size or smaller are decoded on the stack.
pub(super) const HEADER_ON_STACK: usize = 256;
pub(super) const PAYLOAD_ON_STACK: usize = 1024;
/// Room for every signature but RSA's.
pub(super) const SIGNATURE_ON_STACK: usize = 128;
/// Room for an RSA-4096 signature.
pub(super) const RSA_SIGNATURE_ON_STACK: usize = 528;

#[cfg(test)]
mod tests {
    use super::*;

    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    fn ours(segment: &[u8]) -> Result<Vec<u8>, TokenError> {
        let (mut stack, mut heap) = ([0u8; 8], Vec::new());
        decode_segment_into(segment, &mut stack, &mut heap).map(<[u8]>::to_vec)
    }

    #[test]
    fn decodes_as_base64_url_safe_no_pad() {
        for (text, bytes) in [
            ("", &b""[..]),
            ("AA", b"\0"),
            ("AAA", b"\0\0"),
            ("_-8", b"\xff\xef"),
            ("eyJhbGciOiJIUzI1NiJ9", br#"{"alg":"HS256"}"#),
        ] {
            assert_eq!(ours(text.as_bytes()).unwrap(), bytes, "{text}");
        }
        for bad in ["A", "AAAAA", "AB", "AAB", "AA==", "A+", "A/AA", "AA.A", "é"] {
            assert_eq!(ours(bad.as_bytes()), Err(TokenError::Malformed), "{bad}");
        }
    }

    proptest::proptest! {
        #[test]
        fn answers_as_the_base64_crate(segment in proptest::collection::vec(
            proptest::prop_oneof![
                8 => proptest::sample::select(
                    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_".to_vec()
                ),
                1 => proptest::num::u8::ANY,
            ],
            0..40,
        )) {
            let theirs = URL_SAFE_NO_PAD.decode(&segment).map_err(|_| TokenError::Malformed);
            proptest::prop_assert_eq!(ours(&segment), theirs.clone());
            if let Ok(text) = std::str::from_utf8(&segment) {
                proptest::prop_assert_eq!(decode_segment(text), theirs);
            }
        }
    }
}
