//! The data of traces in progress: one [`TraceEntry`] per trace (its info, finished and open
//! spans, and the flags that decide when it is complete), kept in a [`TraceBuffer`] keyed by
//! trace id with MLflow's TTL and capacity limits (as its `TTLCache`). No policy lives here: the trace
//! manager decides what happens to a trace.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use mlflow_tracing_entities::{MlflowTraceId, SpanId, TraceId, TraceInfo, TraceLocation};

use crate::finish::Ended;
use crate::stats::Stats;
use crate::util::lock;

/// A live root span the timeout can end (MLflow's halt): implemented by the span API's spans.
pub(crate) trait HaltRoot: Send + Sync {
    /// Ends the span with ERROR and an `exception` event carrying `message`.
    fn halt(&self, message: String);
}

/// A process-wide clock for recency: every use of a trace takes the next tick.
fn tick() -> u64 {
    static CLOCK: AtomicU64 = AtomicU64::new(0);
    CLOCK.fetch_add(1, Ordering::Relaxed)
}

/// [`TraceEntry::fate`]: in progress.
pub(crate) const LIVE: u8 = 0;
/// [`TraceEntry::fate`]: completed and handed to the exporter.
pub(crate) const POPPED: u8 = 1;
/// [`TraceEntry::fate`]: evicted from the buffer.
pub(crate) const EVICTED: u8 = 2;

/// One in-progress trace.
pub(crate) struct TraceEntry {
    pub(crate) otel_trace_id: TraceId,
    /// `tr-<hex>` (or a V4 id), shared by every span (`mlflow.traceRequestId`, written when
    /// the span is finalized).
    pub(crate) mlflow_trace_id: MlflowTraceId,
    pub(crate) registered: Instant,
    /// A placeholder for a trace continued from a remote `traceparent`.
    pub(crate) remote: bool,
    /// [`LIVE`], then exactly one of [`POPPED`] (completed, handed to the exporter) or
    /// [`EVICTED`] (dropped by the buffer, counted by its listener), claimed by compare-exchange
    /// so a trace is never both, nor lost between the two. After eviction, later spans of this
    /// trace are dropped and counted, even when handed over directly.
    pub(crate) fate: AtomicU8,
    /// Remote placeholders: how many continuations share it.
    pub(crate) scopes: std::sync::atomic::AtomicUsize,
    /// When it was last used (a span started or ended in it, it was looked up): the buffer's
    /// least recently used trace goes first when it is full.
    last_used: AtomicU64,
    pub(crate) state: Mutex<EntryState>,
}

pub(crate) struct EntryState {
    pub(crate) info: TraceInfo,
    /// Finished spans with their start sequence number (MLflow keeps start order).
    pub(crate) finished: Vec<(u64, Ended)>,
    /// Spans started but not ended: (span id, start sequence).
    pub(crate) open: Vec<(SpanId, u64)>,
    pub(crate) next_seq: u64,
    pub(crate) root_span_id: Option<SpanId>,
    /// The root (or, for a remote placeholder, the continuation scope) has ended.
    pub(crate) root_ended: bool,
    /// Halted by the timeout: export even with spans still open.
    pub(crate) halted: bool,
    /// Handed to the exporter (or discarded); later spans are dropped.
    pub(crate) popped: bool,
    /// The live root span, so the timeout can end it. Weak: the trace buffer never keeps a span
    /// alive by itself.
    pub(crate) root_span: Option<Weak<dyn HaltRoot>>,
    /// The root span's name when it started (`mlflow.traceName`, added at finalization).
    pub(crate) root_name: Cow<'static, str>,
}

/// What `finish_span` decided.
pub(crate) struct Completed {
    pub(crate) info: TraceInfo,
    pub(crate) root_name: Cow<'static, str>,
    /// The spans in the order they started (each with its start sequence number).
    pub(crate) spans: Vec<(u64, Ended)>,
    pub(crate) halted: bool,
}

impl TraceEntry {
    pub(crate) fn new(
        otel_trace_id: TraceId,
        mlflow_trace_id: MlflowTraceId,
        info: TraceInfo,
        root_name: Cow<'static, str>,
        remote: bool,
        room: usize,
    ) -> Self {
        TraceEntry {
            otel_trace_id,
            mlflow_trace_id,
            registered: Instant::now(),
            remote,
            fate: AtomicU8::new(LIVE),
            scopes: std::sync::atomic::AtomicUsize::new(1),
            last_used: AtomicU64::new(tick()),
            state: Mutex::new(EntryState {
                info,
                finished: Vec::with_capacity(room),
                open: Vec::new(),
                next_seq: 0,
                root_span_id: None,
                root_ended: false,
                halted: false,
                popped: false,
                root_span: None,
                root_name,
            }),
        }
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, EntryState> {
        lock(&self.state)
    }

    /// Marks the trace as used now.
    pub(crate) fn touch(&self) {
        self.last_used.store(tick(), Ordering::Relaxed);
    }

    /// Records a started span; `root` marks the trace's root.
    pub(crate) fn span_started(&self, span_id: SpanId, root: bool) {
        self.touch();
        let mut st = self.lock();
        let seq = st.next_seq;
        st.next_seq += 1;
        st.open.push((span_id, seq));
        if root {
            st.root_span_id = Some(span_id);
        }
    }

    /// Records a finished span. Returns the completed trace when this span completes it: the
    /// root has ended and no span is open (or the trace was halted).
    pub(crate) fn finish_span(&self, span: Ended) -> Result<Option<Completed>, Box<Ended>> {
        self.touch();
        let mut st = self.lock();
        if st.popped || self.is_evicted() {
            return Err(Box::new(span));
        }
        let id = span.span_id();
        let seq = match st.open.iter().position(|(s, _)| *s == id) {
            Some(i) => st.open.swap_remove(i).1,
            None => {
                let seq = st.next_seq;
                st.next_seq += 1;
                seq
            }
        };
        if st.root_span_id == Some(id) {
            st.root_ended = true;
        }
        st.finished.push((seq, span));
        Ok(self.take_if_complete(&mut st))
    }

    /// Marks the root scope as ended (remote placeholders) and returns the trace if complete.
    pub(crate) fn end_scope(&self) -> Option<Completed> {
        let mut st = self.lock();
        st.root_ended = true;
        self.take_if_complete(&mut st)
    }

    /// Forces completion (timeout or shutdown): the trace is exported with what it has.
    pub(crate) fn force_complete(&self) -> Option<Completed> {
        let mut st = self.lock();
        st.root_ended = true;
        st.halted = true;
        self.take_if_complete(&mut st)
    }

    pub(crate) fn is_evicted(&self) -> bool {
        self.fate.load(Ordering::Acquire) == EVICTED
    }

    fn take_if_complete(&self, st: &mut EntryState) -> Option<Completed> {
        if st.popped || !st.root_ended || !(st.open.is_empty() || st.halted) {
            return None;
        }
        st.popped = true;
        if self
            .fate
            .compare_exchange(LIVE, POPPED, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            return None; // evicted first: counted and logged by the eviction listener
        }
        let mut finished = std::mem::take(&mut st.finished);
        finished.sort_by_key(|(seq, _)| *seq);
        // Popped: nothing reads the info again (changes to a popped trace are refused), so it
        // moves out rather than being copied.
        let empty = TraceInfo::new(
            String::new(),
            TraceLocation::MlflowExperiment {
                experiment_id: String::new(),
            },
            0,
        );
        Some(Completed {
            info: std::mem::replace(&mut st.info, empty),
            root_name: std::mem::take(&mut st.root_name),
            spans: finished,
            halted: st.halted,
        })
    }
}

/// The buffer of in-progress traces: MLflow's `TTLCache` (a size bound with least recently
/// used eviction, expired traces going first, and a time to live), behind one mutex. Each
/// operation is a hash-map operation; a trace is used whenever a span starts or ends in it;
/// expiry is checked when a trace is looked up and by the maintenance run.
pub(crate) struct TraceBuffer {
    state: Mutex<Slots>,
    ttl: Option<Duration>,
    max_size: usize,
    stats: Arc<Stats>,
}

struct Slots {
    /// Keyed by trace id, hashed with a seeded `foldhash` (SipHash was about 5 % of a one-span
    /// trace's own work, JSON aside); remote ids are not ours to choose, so it stays seeded.
    map: HashMap<u128, Slot, foldhash::fast::RandomState>,
}

struct Slot {
    entry: Arc<TraceEntry>,
    inserted: Instant,
}

/// The buffer of in-progress traces, as the trace manager uses it: a trait object, so its code
/// is always the code of the copy of this crate that made it, even when another copy calls it
/// (evcxr links a copy into every notebook cell).
pub(crate) trait Buffer: Send + Sync {
    /// Adds a trace.
    fn insert(&self, entry: Arc<TraceEntry>);
    /// The trace with this id.
    fn get(&self, trace_id: TraceId) -> Option<Arc<TraceEntry>>;
    /// Removes `entry`, and only it (a new trace may have taken its key since).
    fn remove(&self, entry: &Arc<TraceEntry>);
    /// The entry of `trace_id`, inserting `make()` when there is none; true when inserted.
    fn get_or_insert(
        &self,
        trace_id: TraceId,
        make: &mut dyn FnMut() -> Arc<TraceEntry>,
    ) -> (Arc<TraceEntry>, bool);
    /// Every trace in progress.
    fn entries(&self) -> Vec<Arc<TraceEntry>>;
    /// Drops the traces older than the TTL now.
    fn run_pending_tasks(&self);
    /// How many traces are in progress.
    fn len(&self) -> u64;
}

impl TraceBuffer {
    /// `ttl: None` keeps traces until they complete, are halted or are pushed out by capacity
    /// (MLflow drops the TTL when a trace timeout is set).
    pub(crate) fn new_boxed(
        ttl: Option<Duration>,
        max_size: u64,
        stats: Arc<Stats>,
    ) -> Box<dyn Buffer> {
        Box::new(TraceBuffer {
            state: Mutex::new(Slots {
                map: HashMap::default(),
            }),
            ttl,
            max_size: usize::try_from(max_size).unwrap_or(usize::MAX),
            stats,
        })
    }

    fn expired(&self, slot: &Slot, now: Instant) -> bool {
        self.ttl
            .is_some_and(|ttl| now.saturating_duration_since(slot.inserted) >= ttl)
    }

    /// Counts and logs an entry the buffer dropped, unless it completed first.
    fn evicted(&self, entry: &TraceEntry, why: &str) {
        if entry
            .fate
            .compare_exchange(LIVE, EVICTED, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            return; // completed first: it is being exported
        }
        // Never block here: another thread may be working on the entry.
        let spans = entry
            .state
            .try_lock()
            .map_or(0, |st| st.finished.len() + st.open.len());
        self.stats
            .trace_evicted(&entry.mlflow_trace_id.to_string(), spans, why);
    }

    /// Adds `entry` under `key`, making room first (expired traces, then the least recently
    /// used, as `TTLCache` does); the entries pushed out with why, to count outside the lock.
    fn insert_locked(
        &self,
        slots: &mut Slots,
        key: u128,
        entry: Arc<TraceEntry>,
    ) -> Vec<(Arc<TraceEntry>, &'static str)> {
        let mut out = Vec::new();
        if !slots.map.contains_key(&key) && slots.map.len() >= self.max_size {
            let now = Instant::now();
            let expired: Vec<u128> = slots
                .map
                .iter()
                .filter(|(_, slot)| self.expired(slot, now))
                .map(|(k, _)| *k)
                .collect();
            for k in expired {
                if let Some(slot) = slots.map.remove(&k) {
                    out.push((slot.entry, TTL_REASON));
                }
            }
            if slots.map.len() >= self.max_size
                && let Some(&oldest) = slots
                    .map
                    .iter()
                    .min_by_key(|(_, slot)| slot.entry.last_used.load(Ordering::Relaxed))
                    .map(|(k, _)| k)
                && let Some(slot) = slots.map.remove(&oldest)
            {
                out.push((slot.entry, FULL_REASON));
            }
        }
        if self.max_size == 0 {
            out.push((entry, FULL_REASON));
            return out;
        }
        entry.touch();
        slots.map.insert(
            key,
            Slot {
                entry,
                inserted: Instant::now(),
            },
        );
        out
    }
}

const TTL_REASON: &str = "older than the buffer TTL";
const FULL_REASON: &str = "the buffer is full";

impl Buffer for TraceBuffer {
    fn insert(&self, entry: Arc<TraceEntry>) {
        let key = entry.otel_trace_id.to_int();
        let pushed_out = self.insert_locked(&mut lock(&self.state), key, entry);
        for (e, why) in pushed_out {
            self.evicted(&e, why);
        }
    }

    fn get(&self, trace_id: TraceId) -> Option<Arc<TraceEntry>> {
        let key = trace_id.to_int();
        let now = Instant::now();
        let mut slots = lock(&self.state);
        let slot = slots.map.get(&key)?;
        if self.expired(slot, now) {
            let slot = slots.map.remove(&key)?;
            drop(slots);
            self.evicted(&slot.entry, TTL_REASON);
            return None;
        }
        slot.entry.touch();
        Some(slot.entry.clone())
    }

    fn remove(&self, entry: &Arc<TraceEntry>) {
        let key = entry.otel_trace_id.to_int();
        let mut slots = lock(&self.state);
        if slots
            .map
            .get(&key)
            .is_some_and(|slot| Arc::ptr_eq(&slot.entry, entry))
        {
            slots.map.remove(&key);
        }
    }

    fn get_or_insert(
        &self,
        trace_id: TraceId,
        make: &mut dyn FnMut() -> Arc<TraceEntry>,
    ) -> (Arc<TraceEntry>, bool) {
        let key = trace_id.to_int();
        let now = Instant::now();
        let mut slots = lock(&self.state);
        let mut expired = None;
        if let Some(slot) = slots.map.get(&key) {
            if !self.expired(slot, now) {
                slot.entry.touch();
                return (slot.entry.clone(), false);
            }
            expired = slots.map.remove(&key).map(|s| s.entry);
        }
        let entry = make();
        let pushed_out = self.insert_locked(&mut slots, key, entry.clone());
        drop(slots);
        if let Some(e) = expired {
            self.evicted(&e, TTL_REASON);
        }
        for (e, why) in pushed_out {
            self.evicted(&e, why);
        }
        (entry, true)
    }

    fn entries(&self) -> Vec<Arc<TraceEntry>> {
        lock(&self.state)
            .map
            .values()
            .map(|slot| slot.entry.clone())
            .collect()
    }

    fn run_pending_tasks(&self) {
        if self.ttl.is_none() {
            return;
        }
        let now = Instant::now();
        let expired: Vec<Arc<TraceEntry>> = {
            let mut slots = lock(&self.state);
            let keys: Vec<u128> = slots
                .map
                .iter()
                .filter(|(_, slot)| self.expired(slot, now))
                .map(|(k, _)| *k)
                .collect();
            keys.iter()
                .filter_map(|k| slots.map.remove(k).map(|s| s.entry))
                .collect()
        };
        for e in expired {
            self.evicted(&e, TTL_REASON);
        }
    }

    fn len(&self) -> u64 {
        self.run_pending_tasks();
        lock(&self.state).map.len() as u64
    }
}
