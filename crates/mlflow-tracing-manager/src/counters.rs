//! [`counter_set!`](crate::counter_set): the one shape of every counter set of the SDK (the
//! tracer's, the export worker's, each exporter's): a public snapshot of `u64` counters and a
//! crate-private twin of atomics that makes it.

/// Declares a public snapshot struct `$stats` of `u64` counters (plus `extra` fields, left at
/// their defaults by `snapshot` for the caller to fill) and a struct `$atomics` of
/// `AtomicU64`s with `snapshot()`. Used by the SDK's crates; not a user API.
#[doc(hidden)]
#[macro_export]
macro_rules! counter_set {
    (
        $(#[$smeta:meta])* pub struct $stats:ident;
        $(#[$ameta:meta])* $avis:vis struct $atomics:ident;
        counters { $( $(#[$cmeta:meta])* $c:ident ),* $(,)? }
        $( extra { $( $(#[$xmeta:meta])* $x:ident : $xt:ty ),* $(,)? } )?
    ) => {
        $(#[$smeta])*
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
        #[non_exhaustive]
        pub struct $stats {
            $( $(#[$cmeta])* pub $c: u64, )*
            $( $( $(#[$xmeta])* pub $x: $xt, )* )?
        }

        $(#[$ameta])*
        #[derive(Debug, Default)]
        $avis struct $atomics {
            $( $avis $c: ::std::sync::atomic::AtomicU64, )*
        }

        impl $atomics {
            /// The counters now (`extra` fields at their defaults).
            $avis fn snapshot(&self) -> $stats {
                $stats {
                    $( $c: self.$c.load(::std::sync::atomic::Ordering::Relaxed), )*
                    ..::std::default::Default::default()
                }
            }
        }
    };
}
