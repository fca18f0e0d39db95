#![allow(clippy::unwrap_used, reason = "tests fail by panicking")]

use super::*;

fn records(claim: &Claim) -> Vec<&[u8]> {
    claim.records().iter().map(Vec::as_slice).collect()
}

#[test]
fn appended_records_are_claimed_once_and_removed_when_done() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(dir.path().join("spool"), 1 << 20).unwrap();
    assert!(!spool.has_records());
    spool.append([&b"a"[..], b"b"]).unwrap();
    spool.append([&b"c"[..]]).unwrap();
    assert!(spool.has_records());

    let claim = spool.claim().unwrap().unwrap();
    assert_eq!(records(&claim), [b"a", b"b", b"c"]);
    // Held: a second replayer (another handle, as another process would be) finds nothing.
    let other = Spool::open(dir.path().join("spool"), 1 << 20).unwrap();
    assert!(other.claim().unwrap().is_none());
    claim.done().unwrap();
    assert!(!spool.has_records());
    assert!(other.claim().unwrap().is_none());
    let stats = spool.stats();
    assert_eq!((stats.spooled, stats.replayed), (3, 3));
}

#[test]
fn a_partial_replay_keeps_the_rest_and_a_dropped_claim_keeps_all() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(dir.path(), 1 << 20).unwrap();
    spool.append([&b"1"[..], b"2", b"3"]).unwrap();
    drop(spool.claim().unwrap().unwrap());
    let claim = spool.claim().unwrap().unwrap();
    assert_eq!(records(&claim), [b"1", b"2", b"3"]);
    claim.keep_from(2).unwrap();
    let claim = spool.claim().unwrap().unwrap();
    assert_eq!(records(&claim), [b"3"]);
    claim.done().unwrap();
    assert_eq!(spool.stats().replayed, 3);
}

#[test]
fn a_segment_being_written_by_another_process_is_not_taken() {
    let dir = tempfile::tempdir().unwrap();
    let writer = Spool::open(dir.path(), 1 << 20).unwrap();
    writer.append([&b"x"[..]]).unwrap();
    // Another handle (another process) sees the segment but cannot claim it while it is open.
    let reader = Spool::open(dir.path(), 1 << 20).unwrap();
    assert!(reader.has_records());
    assert!(reader.claim().unwrap().is_none());
    // Once the writer seals it (its own claim does), it is anyone's.
    drop(writer.claim().unwrap());
    assert_eq!(records(&reader.claim().unwrap().unwrap()), [b"x"]);
}

#[test]
fn corrupt_records_are_skipped_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(dir.path(), 1 << 20).unwrap();
    spool.append([&b"good-1"[..], b"bad", b"good-2"]).unwrap();
    drop(spool.claim().unwrap()); // sealed
    let (path, _) = spool.segments().unwrap().remove(0);
    let mut bytes = std::fs::read(&path).unwrap();
    let bad = record::HEADER + 6 + record::HEADER;
    bytes[bad] ^= 0x55;
    bytes.extend_from_slice(b"MLSP\x10\0\0\0torn");
    std::fs::write(&path, bytes).unwrap();
    let claim = spool.claim().unwrap().unwrap();
    assert_eq!(records(&claim), [&b"good-1"[..], b"good-2"]);
    assert_eq!(spool.stats().corrupt, 2);
}

#[test]
fn past_the_cap_the_oldest_segments_are_dropped_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    // Segments rotate at 64 KB; the cap holds about four of them.
    let spool = Spool::open(dir.path(), 256 * 1024).unwrap();
    let payload = vec![7u8; 10 * 1024];
    for _ in 0..100 {
        spool.append([payload.as_slice()]).unwrap();
    }
    let total: u64 = spool.segments().unwrap().iter().map(|(_, s)| s).sum();
    assert!(total <= 256 * 1024, "{total}");
    let stats = spool.stats();
    assert_eq!(stats.spooled, 100);
    assert!(stats.dropped > 0);
    let mut left = 0;
    while let Some(claim) = spool.claim().unwrap() {
        left += claim.records().len() as u64;
        claim.done().unwrap();
    }
    assert_eq!(left + stats.dropped, 100);
    assert!(matches!(
        spool.append([vec![0u8; 300 * 1024].as_slice()]),
        Err(SpoolError::TooLarge { .. })
    ));
}

#[cfg(unix)]
#[test]
fn files_are_owner_only() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("nested/spool");
    let spool = Spool::open(&root, 1 << 20).unwrap();
    spool.append([&b"secret"[..]]).unwrap();
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&root), 0o700);
    let (segment, _) = spool.segments().unwrap().remove(0);
    assert_eq!(mode(&segment), 0o600);
}

#[test]
fn corrupt_records_are_counted_once_however_often_the_segment_is_claimed() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(dir.path(), 1 << 20).unwrap();
    spool.append([&b"good"[..], b"bad"]).unwrap();
    drop(spool.claim().unwrap());
    let (path, _) = spool.segments().unwrap().remove(0);
    let mut bytes = std::fs::read(&path).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x55;
    std::fs::write(&path, bytes).unwrap();
    for _ in 0..3 {
        let claim = spool.claim().unwrap().unwrap();
        assert_eq!(records(&claim), [b"good"]);
        drop(claim); // a replay that could not deliver
    }
    assert_eq!(spool.stats().corrupt, 1);
}

#[test]
fn a_segment_rewritten_without_its_corrupt_records_stays_held() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(dir.path(), 1 << 20).unwrap();
    spool.append([&b"good"[..], b"bad"]).unwrap();
    drop(spool.claim().unwrap());
    let (path, _) = spool.segments().unwrap().remove(0);
    let mut bytes = std::fs::read(&path).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x55;
    std::fs::write(&path, bytes).unwrap();
    let claim = spool.claim().unwrap().unwrap();
    assert_eq!(records(&claim), [b"good"]);
    // Another replayer (another handle, as another process would be) finds it held.
    let other = Spool::open(dir.path(), 1 << 20).unwrap();
    assert!(other.claim().unwrap().is_none());
    drop(claim);
    assert!(other.claim().unwrap().is_some());
}

#[test]
fn a_segment_finished_by_another_replayer_is_not_taken_again() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(dir.path(), 1 << 20).unwrap();
    spool.append([&b"a"[..], b"b"]).unwrap();
    drop(spool.claim().unwrap());
    let (path, _) = spool.segments().unwrap().remove(0);
    // Another process opened the segment, then the replayer that held it finished.
    let late = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .unwrap();
    spool.claim().unwrap().unwrap().keep_from(1).unwrap();
    late.try_lock().unwrap();
    // What `lock_existing` checks: the late handle's file is no longer the one named there.
    assert!(lock_existing(&path).is_some());
    use std::os::unix::fs::MetadataExt as _;
    assert_ne!(
        late.metadata().unwrap().ino(),
        std::fs::metadata(&path).unwrap().ino()
    );
}

#[test]
fn a_small_cap_is_kept_and_stale_part_files_are_removed() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("0-1-0.part"), b"half made").unwrap();
    let spool = Spool::open(dir.path(), 16 * 1024).unwrap();
    assert!(!dir.path().join("0-1-0.part").exists());
    for _ in 0..50 {
        spool.append([vec![1u8; 1000].as_slice()]).unwrap();
    }
    let total: u64 = spool.segments().unwrap().iter().map(|(_, s)| s).sum();
    assert!(total <= 16 * 1024, "{total}");
    assert!(spool.stats().dropped > 0);
}
