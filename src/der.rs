//! The one DER reader of the crate: an element's content by its tag, for
//! the few fields read out of keys and certificates without a parser of
//! the whole structure.
//!
//! Below every other module: nothing here depends on the rest of the crate.

/// The content of the DER element at the start of `input` when its tag is
/// `tag`, and what follows the element; `None` for another tag, a length
/// of more than 4 bytes, or fewer bytes than the length says.
pub(crate) fn element(input: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    let (&found, rest) = input.split_first()?;
    if found != tag {
        return None;
    }
    let (&first, rest) = rest.split_first()?;
    let (length, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        // Long form: 1 to 4 length bytes (no key or certificate is larger).
        let count = usize::from(first & 0x7f);
        if !(1..=4).contains(&count) {
            return None;
        }
        let length = rest
            .get(..count)?
            .iter()
            .fold(0usize, |length, byte| (length << 8) | usize::from(*byte));
        (length, rest.get(count..)?)
    };
    Some((rest.get(..length)?, rest.get(length..)?))
}
