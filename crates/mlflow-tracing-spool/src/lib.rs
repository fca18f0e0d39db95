//! A durable spool for MLflow Tracing for Rust: a directory of append-only segment files where
//! an exporter writes what it could not deliver, and from which it (or the next process)
//! replays it later.
//!
//! - **Records** are opaque bytes, each framed with its length and CRC-32 (see `record.rs`). A
//!   torn or corrupt record (a process killed while writing, a damaged disk) is skipped and
//!   counted; the records after it are kept.
//! - **Appends** go to this process's current segment, one `write` and one `fsync` per call (a
//!   batch). Segments rotate at a size, and the directory is capped: past the cap the oldest
//!   segments are dropped and their records counted.
//! - **Claims** ([`Spool::claim`]) hand a whole segment to one replayer: each segment is held
//!   under an exclusive file lock while it is written or replayed, so two processes sharing a
//!   directory never replay the same record twice, and a segment still being written is never
//!   taken. A replayer reports how far it got ([`Claim::done`], [`Claim::keep_from`]); what was
//!   not delivered stays for the next claim.
//! - Files are created owner-only: the directory `0700`, segments `0600`.
//!
//! Nothing here blocks on the network or panics; every I/O failure is an error for the caller
//! to count.

use std::fs::{File, OpenOptions};
use std::io::{self, Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

mod record;

/// The file name suffix of a sealed or open segment (a segment being created has `.part`).
const SEGMENT: &str = "spool";

/// A spool failure.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SpoolError {
    /// A file or directory operation failed.
    #[error("MLflow trace spool {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What the OS said.
        #[source]
        source: io::Error,
    },
    /// A record larger than the spool's cap (or than 256 MB).
    #[error("a record of {size} bytes does not fit in the MLflow trace spool (cap {cap} bytes)")]
    TooLarge {
        /// The record's size.
        size: usize,
        /// The spool's cap.
        cap: u64,
    },
}

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> SpoolError + '_ {
    move |source| SpoolError::Io {
        path: path.to_owned(),
        source,
    }
}

/// The counters of a [`Spool`] (this process's view).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SpoolStats {
    /// Records written.
    pub spooled: u64,
    /// Records replayed (reported delivered through [`Claim::done`] / [`Claim::keep_from`]).
    pub replayed: u64,
    /// Records dropped because the spool was over its cap (oldest first).
    pub dropped: u64,
    /// Corrupt or torn records skipped while reading.
    pub corrupt: u64,
}

#[derive(Debug, Default)]
struct Counters {
    spooled: AtomicU64,
    replayed: AtomicU64,
    dropped: AtomicU64,
    corrupt: AtomicU64,
}

/// This process's open segment, locked while it is open.
#[derive(Debug)]
struct Writer {
    file: File,
    path: PathBuf,
    written: u64,
}

#[derive(Debug)]
struct Inner {
    dir: PathBuf,
    max_bytes: u64,
    segment_max: u64,
    writer: Mutex<Option<Writer>>,
    counters: Counters,
    next_seq: AtomicU64,
}

/// A spool directory; cheap to clone (an `Arc`). See the crate docs.
#[derive(Clone, Debug)]
pub struct Spool {
    inner: Arc<Inner>,
}

impl Spool {
    /// Opens (creating it owner-only if missing) the spool in `dir`, holding at most
    /// `max_bytes` of segments.
    ///
    /// # Errors
    /// [`SpoolError::Io`] when the directory cannot be created or read.
    pub fn open(dir: impl Into<PathBuf>, max_bytes: u64) -> Result<Self, SpoolError> {
        let dir = dir.into();
        let mut builder = std::fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        builder.create(&dir).map_err(io_error(&dir))?;
        // Files a process died while making (no one holds their lock) are removed.
        for entry in std::fs::read_dir(&dir).map_err(io_error(&dir))?.flatten() {
            let path = entry.path();
            if path.extension().and_then(|e| e.to_str()) == Some("part")
                && lock_existing(&path).is_some()
            {
                let _ = std::fs::remove_file(&path);
            }
        }
        let max_bytes = max_bytes.max(1024);
        Ok(Spool {
            inner: Arc::new(Inner {
                dir,
                max_bytes,
                segment_max: (max_bytes / 8)
                    .clamp(64 * 1024, 8 * 1024 * 1024)
                    .min(max_bytes / 2),
                writer: Mutex::new(None),
                counters: Counters::default(),
                next_seq: AtomicU64::new(0),
            }),
        })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// The counters now.
    pub fn stats(&self) -> SpoolStats {
        let c = &self.inner.counters;
        SpoolStats {
            spooled: c.spooled.load(Ordering::Relaxed),
            replayed: c.replayed.load(Ordering::Relaxed),
            dropped: c.dropped.load(Ordering::Relaxed),
            corrupt: c.corrupt.load(Ordering::Relaxed),
        }
    }

    /// Appends `payloads` as records, durably (one write, one `fsync`); older segments are
    /// dropped (and counted) to stay under the cap.
    ///
    /// # Errors
    /// [`SpoolError`]: nothing of this call was written, except when the `fsync` failed.
    pub fn append<'a>(
        &self,
        payloads: impl IntoIterator<Item = &'a [u8]>,
    ) -> Result<(), SpoolError> {
        let mut bytes = Vec::new();
        let mut count = 0u64;
        for p in payloads {
            if p.len() > record::MAX_PAYLOAD || p.len() as u64 + 12 > self.inner.max_bytes {
                return Err(SpoolError::TooLarge {
                    size: p.len(),
                    cap: self.inner.max_bytes,
                });
            }
            record::encode(p, &mut bytes);
            count += 1;
        }
        if count == 0 {
            return Ok(());
        }
        let mut writer = self
            .inner
            .writer
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if writer
            .as_ref()
            .is_some_and(|w| w.written + bytes.len() as u64 > self.inner.segment_max)
        {
            *writer = None; // sealed: unlocked, replayable
        }
        self.make_room(
            bytes.len() as u64,
            writer.as_ref().map(|w| w.path.as_path()),
        );
        if writer.is_none() {
            *writer = Some(self.new_segment()?);
        }
        let Some(w) = writer.as_mut() else {
            return Ok(());
        };
        w.file.write_all(&bytes).map_err(io_error(&w.path))?;
        w.written += bytes.len() as u64;
        w.file.sync_data().map_err(io_error(&w.path))?;
        self.inner
            .counters
            .spooled
            .fetch_add(count, Ordering::Relaxed);
        Ok(())
    }

    /// Whether any segment waits in the directory (this process's or another's).
    pub fn has_records(&self) -> bool {
        self.segments().is_ok_and(|s| !s.is_empty())
    }

    /// Takes the oldest segment no one else holds (sealing this process's open segment first,
    /// so its records can be replayed too); `None` when there is none. Empty and wholly corrupt
    /// segments are removed on the way.
    ///
    /// # Errors
    /// [`SpoolError::Io`] when the directory cannot be read.
    pub fn claim(&self) -> Result<Option<Claim>, SpoolError> {
        *self
            .inner
            .writer
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = None;
        for (path, _) in self.segments()? {
            let Some(mut file) = lock_existing(&path) else {
                continue;
            };
            let mut bytes = Vec::new();
            if file.read_to_end(&mut bytes).is_err() {
                continue;
            }
            let (records, corrupt) = record::decode(&bytes);
            self.inner
                .counters
                .corrupt
                .fetch_add(corrupt, Ordering::Relaxed);
            if corrupt > 0 {
                tracing::warn!(
                    corrupt,
                    segment = %path.display(),
                    "corrupt records skipped in the MLflow trace spool"
                );
            }
            if records.is_empty() {
                let _ = std::fs::remove_file(&path);
                continue;
            }
            // Kept without its corrupt records, so they are counted once; the lock moves to the
            // file now named there.
            let file = if corrupt > 0 {
                rewrite(&path, &records).unwrap_or(file)
            } else {
                file
            };
            return Ok(Some(Claim {
                _file: file,
                path,
                records,
                spool: self.inner.clone(),
            }));
        }
        Ok(None)
    }

    /// The sealed and open segments, oldest first, with their sizes.
    fn segments(&self) -> Result<Vec<(PathBuf, u64)>, SpoolError> {
        let dir = &self.inner.dir;
        let mut found = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(io_error(dir))? {
            let Ok(entry) = entry else { continue };
            let path = entry.path();
            if path.extension().and_then(|e| e.to_str()) == Some(SEGMENT) {
                let size = entry.metadata().map_or(0, |m| m.len());
                found.push((path, size));
            }
        }
        // Names start with the creation time, zero-padded: name order is age order.
        found.sort();
        Ok(found)
    }

    /// Drops the oldest segments (not `own`, not held by anyone) until `incoming` more bytes
    /// fit under the cap.
    fn make_room(&self, incoming: u64, own: Option<&Path>) {
        let Ok(segments) = self.segments() else {
            return;
        };
        let mut total: u64 = segments.iter().map(|(_, s)| s).sum();
        for (path, size) in segments {
            if total + incoming <= self.inner.max_bytes {
                break;
            }
            if own == Some(path.as_path()) {
                continue;
            }
            let Some(mut file) = lock_existing(&path) else {
                continue;
            };
            let mut bytes = Vec::new();
            let _ = file.read_to_end(&mut bytes);
            let (records, _) = record::decode(&bytes);
            if std::fs::remove_file(&path).is_ok() {
                total = total.saturating_sub(size);
                self.inner
                    .counters
                    .dropped
                    .fetch_add(records.len() as u64, Ordering::Relaxed);
                tracing::warn!(
                    dropped = records.len(),
                    "the MLflow trace spool is full ({} bytes): its oldest traces were dropped",
                    self.inner.max_bytes
                );
            }
        }
    }

    /// Creates this process's next segment, locked, owner-only.
    fn new_segment(&self) -> Result<Writer, SpoolError> {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let seq = self.inner.next_seq.fetch_add(1, Ordering::Relaxed);
        let name = format!("{nanos:024}-{}-{seq}", std::process::id());
        let part = self.inner.dir.join(format!("{name}.part"));
        let path = self.inner.dir.join(format!("{name}.{SEGMENT}"));
        let file = create_owner_only(&part)?;
        // Locked before it has its replayable name, so no one takes it half-written.
        file.lock().map_err(io_error(&part))?;
        std::fs::rename(&part, &path).map_err(io_error(&path))?;
        if let Ok(dir) = File::open(&self.inner.dir) {
            let _ = dir.sync_all();
        }
        Ok(Writer {
            file,
            path,
            written: 0,
        })
    }
}

fn create_owner_only(path: &Path) -> Result<File, SpoolError> {
    let mut options = OpenOptions::new();
    options.read(true).write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path).map_err(io_error(path))
}

/// Opens and locks an existing segment; `None` when it is gone, someone holds it, or it was
/// replaced or removed between the open and the lock (another replayer finished with it).
fn lock_existing(path: &Path) -> Option<File> {
    let file = OpenOptions::new().read(true).write(true).open(path).ok()?;
    file.try_lock().ok()?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt as _;
        let held = file.metadata().ok()?;
        let named = std::fs::metadata(path).ok()?;
        if held.nlink() == 0 || held.ino() != named.ino() || held.dev() != named.dev() {
            return None;
        }
    }
    Some(file)
}

/// Replaces the file at `path` by one holding `records` (written aside, locked, then renamed
/// over it); the new file, still locked.
fn rewrite(path: &Path, records: &[Vec<u8>]) -> Result<File, SpoolError> {
    let mut bytes = Vec::new();
    for r in records {
        record::encode(r, &mut bytes);
    }
    let part = path.with_extension("part");
    let _ = std::fs::remove_file(&part);
    let mut file = create_owner_only(&part)?;
    file.lock().map_err(io_error(&part))?;
    file.write_all(&bytes)
        .and_then(|()| file.sync_data())
        .map_err(io_error(&part))?;
    std::fs::rename(&part, path).map_err(io_error(path))?;
    Ok(file)
}

/// A segment held by this replayer: its good records, in order. Dropped without
/// [`Claim::done`] or [`Claim::keep_from`], the segment stays as it was for a later claim.
#[derive(Debug)]
pub struct Claim {
    /// Holds the lock.
    _file: File,
    path: PathBuf,
    records: Vec<Vec<u8>>,
    spool: Arc<Inner>,
}

impl Claim {
    /// The records, oldest first.
    pub fn records(&self) -> &[Vec<u8>] {
        &self.records
    }

    /// Every record was delivered: the segment is removed.
    ///
    /// # Errors
    /// [`SpoolError::Io`] when it cannot be removed (its records may then be replayed again).
    pub fn done(self) -> Result<(), SpoolError> {
        std::fs::remove_file(&self.path).map_err(io_error(&self.path))?;
        self.spool
            .counters
            .replayed
            .fetch_add(self.records.len() as u64, Ordering::Relaxed);
        Ok(())
    }

    /// The records before `index` were delivered: the segment keeps only the others (written
    /// to a new file that replaces it).
    ///
    /// # Errors
    /// [`SpoolError::Io`]; the segment is then unchanged.
    pub fn keep_from(self, index: usize) -> Result<(), SpoolError> {
        let index = index.min(self.records.len());
        if index == 0 {
            return Ok(());
        }
        if index == self.records.len() {
            return self.done();
        }
        drop(rewrite(&self.path, &self.records[index..])?);
        self.spool
            .counters
            .replayed
            .fetch_add(index as u64, Ordering::Relaxed);
        Ok(())
    }
}

#[cfg(test)]
mod tests;
