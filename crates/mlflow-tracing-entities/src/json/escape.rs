//! JSON string escaping as Python's `json.dumps` does it, sixteen bytes at a time.
//!
//! Most text needs no escape at all, so the cost that matters is finding the next byte that does.
//! `serde_json` looks at one byte per step, with a branch each; here sixteen bytes are tested
//! at once as two words with the usual bit tricks (no `unsafe`, no intrinsics), one branch per
//! step.
//!
//! Escaped: `"`, `\`, control characters below U+0020 (short forms `\b \t \n \f \r`, otherwise
//! `\u00XX`), and with `ascii` (`ensure_ascii=True`) DEL and every non-ASCII character (as
//! `\uXXXX`, surrogate pairs above the BMP). Hex digits are lowercase, as Python writes them.

/// `0x01` in every byte of a word.
const ONES: u64 = 0x0101_0101_0101_0101;
/// `0x80` in every byte of a word.
const HIGHS: u64 = 0x8080_8080_8080_8080;

/// A word with the high bit set in each byte of `x` (eight bytes, little-endian) that needs an
/// escape. Exact up to the lowest such byte (a borrow may mark bytes above it, never below), so
/// its trailing zeros locate the first one.
///
/// `(v - k) & !v & 0x80` marks bytes below `k` (for `k <= 0x80`), and bytes equal to `c` with
/// `v = x ^ c`; since `"`, `\` and DEL have no high bit, `!v & 0x80` is `!x & 0x80` for all
/// of them, which is shared.
#[inline(always)]
const fn special_bytes<const ASCII: bool>(x: u64) -> u64 {
    let below = x.wrapping_sub(ONES * 0x20)
        | (x ^ (ONES * b'"' as u64)).wrapping_sub(ONES)
        | (x ^ (ONES * b'\\' as u64)).wrapping_sub(ONES);
    if ASCII {
        // Also DEL, and every byte with its high bit set: `(a & !x) | x` is `a | x`.
        (below | (x ^ (ONES * 0x7f)).wrapping_sub(ONES) | x) & HIGHS
    } else {
        below & !x & HIGHS
    }
}

/// Whether `byte` needs an escape.
#[inline(always)]
const fn is_special<const ASCII: bool>(byte: u8) -> bool {
    byte < 0x20 || byte == b'"' || byte == b'\\' || (ASCII && byte >= 0x7f)
}

/// [`first_special`] for one value of `ascii`: two words per step, one branch.
#[inline(always)]
fn first_special_in<const ASCII: bool>(bytes: &[u8]) -> usize {
    let (pairs, tail) = bytes.as_chunks::<16>();
    for (i, pair) in pairs.iter().enumerate() {
        let both = u128::from_le_bytes(*pair);
        // Truncation intended: the low and the high eight bytes.
        let lo = special_bytes::<ASCII>(both as u64);
        let hi = special_bytes::<ASCII>((both >> 64) as u64);
        if lo | hi != 0 {
            let at = if lo != 0 {
                lo.trailing_zeros() / 8
            } else {
                8 + hi.trailing_zeros() / 8
            };
            return i * 16 + at as usize;
        }
    }
    let done = pairs.len() * 16;
    tail.iter()
        .position(|&b| is_special::<ASCII>(b))
        .map_or(bytes.len(), |i| done + i)
}

/// The index of the first byte of `bytes` that needs an escape (`bytes.len()` when none does).
#[inline]
pub(crate) fn first_special(bytes: &[u8], ascii: bool) -> usize {
    if ascii {
        first_special_in::<true>(bytes)
    } else {
        first_special_in::<false>(bytes)
    }
}

/// Lowercase hex digits.
const HEX: &[u8; 16] = b"0123456789abcdef";

/// `\uXXXX` for one UTF-16 code unit.
#[inline]
fn push_unicode_escape(out: &mut String, unit: u16) {
    out.push_str("\\u");
    for shift in [12, 8, 4, 0] {
        out.push(char::from(HEX[usize::from((unit >> shift) & 0xf)]));
    }
}

/// Appends the contents of the JSON string for `text` (no quotes) to `out`.
pub(crate) fn push_escaped(out: &mut String, text: &str, ascii: bool) {
    let mut rest = text;
    loop {
        // The first special byte is ASCII or starts a character: `n` is a character boundary.
        let n = first_special(rest.as_bytes(), ascii);
        let (clean, special) = rest.split_at_checked(n).unwrap_or((rest, ""));
        out.push_str(clean);
        let mut chars = special.chars();
        let Some(c) = chars.next() else {
            return;
        };
        rest = chars.as_str();
        let short = match c {
            '"' => "\\\"",
            '\\' => "\\\\",
            '\u{8}' => "\\b",
            '\u{c}' => "\\f",
            '\n' => "\\n",
            '\r' => "\\r",
            '\t' => "\\t",
            _ => {
                // Another control character, DEL or a non-ASCII character (writing ASCII).
                let mut units = [0u16; 2];
                for &mut unit in c.encode_utf16(&mut units) {
                    push_unicode_escape(out, unit);
                }
                continue;
            }
        };
        out.push_str(short);
    }
}

/// Appends the JSON string for `text` (quoted) to `out`.
pub(crate) fn push_string(out: &mut String, text: &str, ascii: bool) {
    out.reserve(text.len() + 2);
    out.push('"');
    push_escaped(out, text, ascii);
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference(text: &str, ascii: bool) -> String {
        let mut out = Vec::new();
        let mut ser = serde_json::Serializer::with_formatter(
            &mut out,
            if ascii {
                super::super::PyFormatter::ascii()
            } else {
                super::super::PyFormatter::utf8()
            },
        );
        serde::Serialize::serialize(text, &mut ser).unwrap();
        String::from_utf8(out).unwrap()
    }

    fn ours(text: &str, ascii: bool) -> String {
        let mut out = String::new();
        push_string(&mut out, text, ascii);
        out
    }

    #[test]
    fn every_single_character_class_is_written_as_python_does() {
        for c in (0u32..0x300).chain([0x2028, 0xfeff, 0xffff, 0x1f60a]) {
            let Some(c) = char::from_u32(c) else { continue };
            // The character at every offset of a word, and across a word boundary.
            for pad in 0..17 {
                let text = format!("{}{c}{}", "a".repeat(pad), "b".repeat(pad % 5));
                for ascii in [false, true] {
                    assert_eq!(
                        ours(&text, ascii),
                        reference(&text, ascii),
                        "{text:?} {ascii}"
                    );
                }
            }
        }
    }

    #[test]
    fn the_first_special_byte_is_found_exactly() {
        let text = "abcdefg\u{1}\u{1f}\"\\ok";
        assert_eq!(first_special(text.as_bytes(), false), 7);
        let long = format!("{}\"{}", "a".repeat(70), "\\".repeat(40));
        assert_eq!(first_special(long.as_bytes(), false), 70);
        assert_eq!(first_special("a".repeat(64).as_bytes(), true), 64);
        assert_eq!(first_special(b"abcdefgh", true), 8);
        assert_eq!(first_special("abcdefgé".as_bytes(), true), 7);
        assert_eq!(first_special("abcdefgé".as_bytes(), false), 9);
        assert_eq!(first_special(b"ab\x7f", true), 2);
        assert_eq!(first_special(b"ab\x7f", false), 3);
    }

    proptest::proptest! {
        #[test]
        fn any_text_is_escaped_as_serde_json_with_the_python_formatter_does(text in "\\PC*|[\\x00-\\x7f]*|.*") {
            for ascii in [false, true] {
                proptest::prop_assert_eq!(ours(&text, ascii), reference(&text, ascii));
            }
        }
    }
}
