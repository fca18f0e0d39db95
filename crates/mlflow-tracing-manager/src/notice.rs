//! Losses made visible without a `tracing` subscriber. The SDK logs through `tracing`; an
//! application that installs no subscriber would see nothing of a full queue, a failed export
//! or the shutdown summary. Such events of the SDK go through [`visible`]: with a subscriber
//! installed it changes nothing; without one, warnings, errors and the shutdown summary are
//! written to stderr, at most one line per call site every 10 seconds (the lines held back are
//! counted in the next one).
//!
//! To silence them: install any subscriber (its filters then decide), or set
//! `MLFLOW_TRACING_QUIET=1`.

use std::collections::HashMap;
use std::fmt::{self, Write as _};
use std::io::Write as _;
use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::subscriber::NoSubscriber;
use tracing::{Event, Level, Metadata, Subscriber};

/// `MLFLOW_TRACING_QUIET`: `1`/`true` keeps the SDK's stderr fallback quiet.
pub const MLFLOW_TRACING_QUIET: &str = "MLFLOW_TRACING_QUIET";

/// The target of the shutdown summary (an INFO event the fallback shows too).
pub const SUMMARY_TARGET: &str = "mlflow_tracing::summary";

/// One line per call site at most this often.
const EVERY: Duration = Duration::from_secs(10);

/// Runs `log` (a `tracing` event of the SDK) so that it is seen: through the current
/// subscriber when there is one, else on stderr (see the module docs).
pub fn visible(log: impl FnOnce()) {
    if tracing::dispatcher::get_default(|d| !d.is::<NoSubscriber>()) || quiet() {
        log();
    } else {
        tracing::dispatcher::with_default(fallback(), log);
    }
}

fn quiet() -> bool {
    static QUIET: OnceLock<bool> = OnceLock::new();
    *QUIET.get_or_init(|| {
        std::env::var(MLFLOW_TRACING_QUIET)
            .is_ok_and(|v| matches!(v.trim().to_ascii_lowercase().as_str(), "1" | "true" | "yes"))
    })
}

fn fallback() -> &'static tracing::Dispatch {
    static FALLBACK: OnceLock<tracing::Dispatch> = OnceLock::new();
    FALLBACK.get_or_init(|| tracing::Dispatch::new(Stderr::default()))
}

/// The stderr writer: WARN and ERROR events, and the shutdown summary, rate-limited per call
/// site.
#[derive(Default)]
struct Stderr {
    /// Per call site: when its last line was written, and the lines held back since.
    last: Mutex<HashMap<tracing::callsite::Identifier, (Instant, u64)>>,
}

impl Stderr {
    /// Whether to write now, and how many lines were held back before this one.
    fn admit(&self, meta: &Metadata<'_>) -> Option<u64> {
        let mut last = self.last.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        match last.get_mut(&meta.callsite()) {
            Some((at, held)) if now.duration_since(*at) < EVERY => {
                *held += 1;
                None
            }
            Some((at, held)) => {
                *at = now;
                Some(std::mem::take(held))
            }
            None => {
                last.insert(meta.callsite(), (now, 0));
                Some(0)
            }
        }
    }
}

/// The message and the fields of an event, as one line.
#[derive(Default)]
struct Line {
    message: String,
    fields: String,
}

impl Visit for Line {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.message, "{value:?}");
        } else {
            let _ = write!(self.fields, " {}={value:?}", field.name());
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message.push_str(value);
        } else {
            let _ = write!(self.fields, " {}={value}", field.name());
        }
    }
}

impl Subscriber for Stderr {
    fn max_level_hint(&self) -> Option<tracing::level_filters::LevelFilter> {
        // The summary is INFO; nothing finer is ever shown (so registering this subscriber
        // does not raise the process's level filter).
        Some(tracing::level_filters::LevelFilter::INFO)
    }

    fn enabled(&self, meta: &Metadata<'_>) -> bool {
        meta.is_event() && (*meta.level() <= Level::WARN || meta.target() == SUMMARY_TARGET)
    }

    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }

    fn record(&self, _: &Id, _: &Record<'_>) {}

    fn record_follows_from(&self, _: &Id, _: &Id) {}

    fn event(&self, event: &Event<'_>) {
        let meta = event.metadata();
        let Some(held) = self.admit(meta) else {
            return;
        };
        let mut line = Line::default();
        event.record(&mut line);
        let level = match *meta.level() {
            Level::ERROR => "ERROR",
            Level::WARN => "WARN",
            _ => "INFO",
        };
        let held = if held > 0 {
            format!(" ({held} similar lines held back)")
        } else {
            String::new()
        };
        static HINTED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
        let hint = if HINTED.swap(true, std::sync::atomic::Ordering::Relaxed) {
            ""
        } else {
            " (shown on stderr because no tracing subscriber is installed; MLFLOW_TRACING_QUIET=1 silences it)"
        };
        // Text from a server may hold line breaks and terminal escapes: one line, escaped.
        let text: String = format!("{}{}", line.message, line.fields)
            .chars()
            .flat_map(|c| {
                let escaped: Vec<char> = if c.is_control() {
                    c.escape_default().collect()
                } else {
                    vec![c]
                };
                escaped
            })
            .collect();
        let _ = writeln!(
            std::io::stderr().lock(),
            "mlflow-tracing {level}: {text}{held}{hint}"
        );
    }

    fn enter(&self, _: &Id) {}

    fn exit(&self, _: &Id) {}
}
