//! Base64url segments of a compact token, decoded on the stack when they
//! fit.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::error::TokenError;

pub(super) fn decode_segment(segment: &str) -> Result<Vec<u8>, TokenError> {
    URL_SAFE_NO_PAD
        .decode(segment)
        .map_err(|_| TokenError::Malformed)
}

/// Decodes a base64url segment into `stack` when it fits, else into `heap`.
pub(super) fn decode_segment_into<'b>(
    segment: &[u8],
    stack: &'b mut [u8],
    heap: &'b mut Vec<u8>,
) -> Result<&'b [u8], TokenError> {
    if base64::decoded_len_estimate(segment.len()) <= stack.len() {
        let len = URL_SAFE_NO_PAD
            .decode_slice(segment, stack)
            .map_err(|_| TokenError::Malformed)?;
        Ok(&stack[..len])
    } else {
        URL_SAFE_NO_PAD
            .decode_vec(segment, heap)
            .map_err(|_| TokenError::Malformed)?;
        Ok(heap)
    }
}

/// Segments this size or smaller are decoded on the stack.
pub(super) const HEADER_ON_STACK: usize = 256;
pub(super) const PAYLOAD_ON_STACK: usize = 1024;
/// Room for every signature but RSA's.
pub(super) const SIGNATURE_ON_STACK: usize = 128;
/// Room for an RSA-4096 signature.
pub(super) const RSA_SIGNATURE_ON_STACK: usize = 528;
