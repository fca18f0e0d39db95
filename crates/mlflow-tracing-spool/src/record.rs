//! The record format of a spool segment: `MLSP`, the payload's length (u32, little endian),
//! its CRC-32 (u32, little endian), the payload. A reader skips what does not check out and
//! counts it, resynchronizing on the next `MLSP`.

/// The magic bytes that open every record.
pub(crate) const MAGIC: &[u8; 4] = b"MLSP";
/// Magic, length, checksum.
pub(crate) const HEADER: usize = 12;
/// The largest payload a record may hold (a larger one is refused when written and treated as
/// corrupt when read).
pub(crate) const MAX_PAYLOAD: usize = 256 * 1024 * 1024;

/// Appends one record of `payload` to `out`.
pub(crate) fn encode(payload: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
    out.extend_from_slice(payload);
}

/// The records of a segment's bytes, in order, and how many were corrupt or torn.
pub(crate) fn decode(bytes: &[u8]) -> (Vec<Vec<u8>>, u64) {
    let mut records = Vec::new();
    let mut corrupt = 0u64;
    let mut at = 0usize;
    // Whether the bytes skipped since the last good record have been counted.
    let mut in_garbage = false;
    while at < bytes.len() {
        let Some(header) = bytes.get(at..at + HEADER) else {
            // A torn header at the end (killed while writing).
            corrupt += u64::from(!in_garbage);
            break;
        };
        if &header[..4] != MAGIC {
            corrupt += u64::from(!in_garbage);
            in_garbage = true;
            at = next_magic(bytes, at + 1);
            continue;
        }
        let len = u32::from_le_bytes([header[4], header[5], header[6], header[7]]) as usize;
        let crc = u32::from_le_bytes([header[8], header[9], header[10], header[11]]);
        let body = (len <= MAX_PAYLOAD)
            .then(|| bytes.get(at + HEADER..at + HEADER + len))
            .flatten();
        match body {
            Some(payload) if crc32fast::hash(payload) == crc => {
                records.push(payload.to_vec());
                in_garbage = false;
                at += HEADER + len;
            }
            _ => {
                // A bad checksum, or a length past the end: skip to the next record.
                corrupt += u64::from(!in_garbage);
                in_garbage = true;
                at = next_magic(bytes, at + 1);
            }
        }
    }
    (records, corrupt)
}

/// The offset of the next `MAGIC` at or after `from` (the end when there is none).
fn next_magic(bytes: &[u8], from: usize) -> usize {
    bytes
        .get(from..)
        .and_then(|rest| rest.windows(MAGIC.len()).position(|w| w == MAGIC))
        .map_or(bytes.len(), |i| from + i)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segment(payloads: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        for p in payloads {
            encode(p, &mut out);
        }
        out
    }

    #[test]
    fn good_records_round_trip() {
        let bytes = segment(&[b"one", b"", b"three"]);
        let (records, corrupt) = decode(&bytes);
        assert_eq!(records, [b"one".to_vec(), Vec::new(), b"three".to_vec()]);
        assert_eq!(corrupt, 0);
    }

    #[test]
    fn a_torn_tail_is_one_corrupt_record() {
        let mut bytes = segment(&[b"one", b"two"]);
        bytes.truncate(bytes.len() - 2);
        assert_eq!(decode(&bytes), (vec![b"one".to_vec()], 1));
        // Torn inside the header.
        let mut bytes = segment(&[b"one", b"two"]);
        bytes.truncate(HEADER + 3 + 5);
        assert_eq!(decode(&bytes), (vec![b"one".to_vec()], 1));
    }

    #[test]
    fn a_flipped_byte_loses_only_its_record() {
        let mut bytes = segment(&[b"one", b"two", b"three"]);
        let second = HEADER + 3 + HEADER; // the first byte of "two"
        bytes[second] ^= 0xff;
        assert_eq!(
            decode(&bytes),
            (vec![b"one".to_vec(), b"three".to_vec()], 1)
        );
        // Garbage between records, and a huge length.
        let mut bytes = b"garbage".to_vec();
        bytes.extend(segment(&[b"a"]));
        bytes.extend_from_slice(b"MLSP\xff\xff\xff\xff\0\0\0\0");
        bytes.extend(segment(&[b"b"]));
        assert_eq!(decode(&bytes), (vec![b"a".to_vec(), b"b".to_vec()], 2));
    }
}
