//! Trace and span identifiers in every form MLflow uses.
//!
//! | form | trace id | span id |
//! |---|---|---|
//! | hex (`Span.span_id`, OTLP/JSON) | 32 lowercase hex | 16 lowercase hex |
//! | base64 (`Span.to_dict`) | standard base64 of 16 big-endian bytes | of 8 bytes |
//! | OTLP protobuf | 16 raw bytes | 8 raw bytes |
//! | MLflow trace id | `tr-<32 hex>` (V3) or `trace:/<location>/<32 hex>` (V4) | — |

use std::fmt;
use std::str::FromStr;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;

use crate::error::{EntityError, Result};

/// Prefix of V3 MLflow trace ids.
pub const TRACE_ID_V3_PREFIX: &str = "tr-";
/// Prefix of V4 (Unity Catalog) MLflow trace ids.
pub const TRACE_ID_V4_PREFIX: &str = "trace:/";

/// A 128-bit OpenTelemetry trace id. Never zero when obtained by parsing.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TraceId(u128);

/// A 64-bit OpenTelemetry span id. Never zero when obtained by parsing.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SpanId(u64);

/// Lowercase hex digits.
const HEX: &[u8; 16] = b"0123456789abcdef";

/// An id's hex digits, written on the stack (no allocation, no formatting machinery).
struct HexDigits<const N: usize>([u8; N]);

impl<const N: usize> HexDigits<N> {
    fn as_str(&self) -> &str {
        // Only ASCII hex digits are ever written.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

macro_rules! id_impl {
    ($ty:ident, $int:ty, $bytes:literal, $hex:literal, $kind:literal) => {
        impl $ty {
            /// Wraps a raw integer value.
            pub const fn from_int(value: $int) -> Self {
                $ty(value)
            }

            /// The raw integer value.
            pub const fn to_int(self) -> $int {
                self.0
            }

            /// From big-endian bytes (the OTLP wire form).
            pub const fn from_bytes(bytes: [u8; $bytes]) -> Self {
                $ty(<$int>::from_be_bytes(bytes))
            }

            /// Big-endian bytes (the OTLP wire form).
            pub const fn to_bytes(self) -> [u8; $bytes] {
                self.0.to_be_bytes()
            }

            /// Whether the id is non-zero (OpenTelemetry treats zero as invalid).
            pub const fn is_valid(self) -> bool {
                self.0 != 0
            }

            /// From a byte slice of exactly the right length, non-zero.
            ///
            /// # Errors
            /// [`EntityError::InvalidId`] for a wrong length or an all-zero id.
            pub fn from_slice(bytes: &[u8]) -> Result<Self> {
                let arr: [u8; $bytes] = bytes.try_into().map_err(|_| {
                    EntityError::invalid_id(
                        $kind,
                        &format!("{} bytes", bytes.len()),
                        concat!("must be ", $bytes, " bytes"),
                    )
                })?;
                Self::checked(Self::from_bytes(arr), "<bytes>")
            }

            /// Lowercase, zero-padded hex.
            pub fn to_hex(self) -> String {
                let mut out = String::with_capacity($hex);
                out.push_str(self.hex_digits().as_str());
                out
            }

            /// The lowercase, zero-padded hex digits, on the stack.
            fn hex_digits(self) -> HexDigits<$hex> {
                let mut digits = [b'0'; $hex];
                let mut value = self.0;
                for d in digits.iter_mut().rev() {
                    *d = HEX[(value & 0xf) as usize];
                    value >>= 4;
                }
                HexDigits(digits)
            }

            /// Parses hex the way MLflow's `decode_id` does: an optional `0x`, then 1 to
            #[doc = concat!($hex, " hex digits (either case).")]
            ///
            /// # Errors
            /// [`EntityError::InvalidId`] for empty, too long, non-hex or all-zero input.
            pub fn from_hex(s: &str) -> Result<Self> {
                let digits = s
                    .strip_prefix("0x")
                    .or_else(|| s.strip_prefix("0X"))
                    .unwrap_or(s);
                if digits.is_empty() || digits.len() > $hex {
                    return Err(EntityError::invalid_id(
                        $kind,
                        s,
                        concat!("expected 1 to ", $hex, " hex digits"),
                    ));
                }
                if !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Err(EntityError::invalid_id($kind, s, "not hexadecimal"));
                }
                let v = <$int>::from_str_radix(digits, 16)
                    .map_err(|_| EntityError::invalid_id($kind, s, "not hexadecimal"))?;
                Self::checked($ty(v), s)
            }

            /// Standard base64 (with padding) of the big-endian bytes, as in `Span.to_dict()`.
            pub fn to_base64(self) -> String {
                BASE64.encode(self.to_bytes())
            }

            /// Parses standard base64 of exactly the right number of bytes.
            ///
            /// # Errors
            /// [`EntityError::InvalidId`] for invalid base64, a wrong length or a zero id.
            pub fn from_base64(s: &str) -> Result<Self> {
                let bytes = BASE64
                    .decode(s)
                    .map_err(|_| EntityError::invalid_id($kind, s, "not valid base64"))?;
                let arr: [u8; $bytes] = bytes.as_slice().try_into().map_err(|_| {
                    EntityError::invalid_id(
                        $kind,
                        s,
                        concat!("base64 must decode to ", $bytes, " bytes"),
                    )
                })?;
                Self::checked(Self::from_bytes(arr), s)
            }

            fn checked(self, input: &str) -> Result<Self> {
                if self.is_valid() {
                    Ok(self)
                } else {
                    Err(EntityError::invalid_id(
                        $kind,
                        input,
                        "must not be all zeros",
                    ))
                }
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.hex_digits().as_str())
            }
        }

        impl fmt::Debug for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!(stringify!($ty), "({:0", $hex, "x})"), self.0)
            }
        }

        impl FromStr for $ty {
            type Err = EntityError;
            fn from_str(s: &str) -> Result<Self> {
                Self::from_hex(s)
            }
        }

        impl serde::Serialize for $ty {
            fn serialize<S: serde::Serializer>(
                &self,
                serializer: S,
            ) -> std::result::Result<S::Ok, S::Error> {
                serializer.serialize_str(&self.to_hex())
            }
        }

        impl<'de> serde::Deserialize<'de> for $ty {
            fn deserialize<D: serde::Deserializer<'de>>(
                deserializer: D,
            ) -> std::result::Result<Self, D::Error> {
                let s = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
                Self::from_hex(&s).map_err(serde::de::Error::custom)
            }
        }
    };
}

id_impl!(TraceId, u128, 16, 32, "trace id");
id_impl!(SpanId, u64, 8, 16, "span id");

impl From<opentelemetry::trace::TraceId> for TraceId {
    fn from(id: opentelemetry::trace::TraceId) -> Self {
        TraceId::from_bytes(id.to_bytes())
    }
}

impl From<TraceId> for opentelemetry::trace::TraceId {
    fn from(id: TraceId) -> Self {
        opentelemetry::trace::TraceId::from_bytes(id.to_bytes())
    }
}

impl From<opentelemetry::trace::SpanId> for SpanId {
    fn from(id: opentelemetry::trace::SpanId) -> Self {
        SpanId::from_bytes(id.to_bytes())
    }
}

impl From<SpanId> for opentelemetry::trace::SpanId {
    fn from(id: SpanId) -> Self {
        opentelemetry::trace::SpanId::from_bytes(id.to_bytes())
    }
}

/// An MLflow trace id: a pure function of the OpenTelemetry trace id and, for Unity Catalog
/// destinations, the location.
#[derive(Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum MlflowTraceId {
    /// `tr-<32 hex>`: traces stored in an MLflow experiment.
    V3(TraceId),
    /// `trace:/<location>/<32 hex>`: traces stored in Unity Catalog, where `location` is
    /// `catalog.schema` or `catalog.schema.table_prefix`.
    V4 {
        /// `catalog.schema` or `catalog.schema.table_prefix`.
        location: String,
        /// The OpenTelemetry trace id.
        trace_id: TraceId,
    },
}

impl MlflowTraceId {
    /// `tr-<hex>` for this OpenTelemetry trace id.
    pub const fn v3(trace_id: TraceId) -> Self {
        MlflowTraceId::V3(trace_id)
    }

    /// `trace:/<location>/<hex>`.
    ///
    /// # Errors
    /// [`EntityError::InvalidId`] if `location` is empty or contains `/`.
    pub fn v4(location: impl Into<String>, trace_id: TraceId) -> Result<Self> {
        let location = location.into();
        if location.is_empty() || location.contains('/') {
            return Err(EntityError::invalid_id(
                "MLflow trace id location",
                &location,
                "must be non-empty and contain no '/'",
            ));
        }
        Ok(MlflowTraceId::V4 { location, trace_id })
    }

    /// The OpenTelemetry trace id inside.
    pub fn otel_trace_id(&self) -> TraceId {
        match self {
            MlflowTraceId::V3(id) | MlflowTraceId::V4 { trace_id: id, .. } => *id,
        }
    }

    /// The Unity Catalog location of a V4 id.
    pub fn location(&self) -> Option<&str> {
        match self {
            MlflowTraceId::V3(_) => None,
            MlflowTraceId::V4 { location, .. } => Some(location),
        }
    }
}

/// The id as text, as `to_string` writes it, in one allocation of the exact size for a V3 id
/// (`to_string` grows its buffer twice).
impl From<MlflowTraceId> for String {
    fn from(id: MlflowTraceId) -> String {
        match id {
            MlflowTraceId::V3(id) => {
                let hex = id.hex_digits();
                let mut s = String::with_capacity(TRACE_ID_V3_PREFIX.len() + hex.as_str().len());
                s.push_str(TRACE_ID_V3_PREFIX);
                s.push_str(hex.as_str());
                s
            }
            v4 => v4.to_string(),
        }
    }
}

impl fmt::Display for MlflowTraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MlflowTraceId::V3(id) => {
                f.write_str(TRACE_ID_V3_PREFIX)?;
                f.write_str(id.hex_digits().as_str())
            }
            MlflowTraceId::V4 { location, trace_id } => {
                write!(f, "{TRACE_ID_V4_PREFIX}{location}/{trace_id}")
            }
        }
    }
}

impl fmt::Debug for MlflowTraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MlflowTraceId({self})")
    }
}

fn strict_hex32(s: &str, whole: &str) -> Result<TraceId> {
    if s.len() != 32 {
        return Err(EntityError::invalid_id(
            "MLflow trace id",
            whole,
            "expected exactly 32 hex digits after the prefix",
        ));
    }
    TraceId::from_hex(s).map_err(|_| {
        EntityError::invalid_id(
            "MLflow trace id",
            whole,
            "the id part is not 32 non-zero hex digits",
        )
    })
}

impl FromStr for MlflowTraceId {
    type Err = EntityError;

    /// Parses `tr-<32 hex>` or `trace:/<location>/<32 hex>` (exactly two non-empty parts after
    /// the prefix, as MLflow's `parse_trace_id_v4` requires).
    fn from_str(s: &str) -> Result<Self> {
        if let Some(hex) = s.strip_prefix(TRACE_ID_V3_PREFIX) {
            return Ok(MlflowTraceId::V3(strict_hex32(hex, s)?));
        }
        if let Some(rest) = s.strip_prefix(TRACE_ID_V4_PREFIX) {
            let mut parts = rest.split('/');
            return match (parts.next(), parts.next(), parts.next()) {
                (Some(loc), Some(hex), None) if !loc.is_empty() && !hex.is_empty() => {
                    let hex = hex.strip_prefix(TRACE_ID_V3_PREFIX).unwrap_or(hex);
                    Ok(MlflowTraceId::V4 {
                        location: loc.to_owned(),
                        trace_id: strict_hex32(hex, s)?,
                    })
                }
                _ => Err(EntityError::invalid_id(
                    "MLflow trace id",
                    s,
                    "expected trace:/<location>/<32 hex>",
                )),
            };
        }
        Err(EntityError::invalid_id(
            "MLflow trace id",
            s,
            "expected tr-<32 hex> or trace:/<location>/<32 hex>",
        ))
    }
}

impl serde::Serialize for MlflowTraceId {
    fn serialize<S: serde::Serializer>(
        &self,
        serializer: S,
    ) -> std::result::Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for MlflowTraceId {
    fn deserialize<D: serde::Deserializer<'de>>(
        deserializer: D,
    ) -> std::result::Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodings_of_the_spec_example() {
        let t = TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap();
        assert_eq!(t.to_base64(), "S/kvNXezTaajzpKdDg5HNg==");
        assert_eq!(TraceId::from_base64("S/kvNXezTaajzpKdDg5HNg==").unwrap(), t);
        let s = SpanId::from_hex("00f067aa0ba902b7").unwrap();
        assert_eq!(s.to_base64(), "APBnqgupArc=");
        assert_eq!(s.to_hex(), "00f067aa0ba902b7");
        assert_eq!(SpanId::from_hex("0xf067aa0ba902b7").unwrap(), s);
        assert_eq!(
            MlflowTraceId::v3(t).to_string(),
            "tr-4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert_eq!(format!("{s:?}"), "SpanId(00f067aa0ba902b7)");
    }

    #[test]
    fn ids_as_strings_are_their_display() {
        let t = TraceId::from_hex("00f92f3577b34da6a3ce929d0e0e4736").unwrap();
        let v3 = MlflowTraceId::v3(t);
        let text = String::from(v3.clone());
        assert_eq!(text, "tr-00f92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(text.capacity(), text.len());
        let v4: MlflowTraceId = "trace:/catalog.schema/00f92f3577b34da6a3ce929d0e0e4736"
            .parse()
            .unwrap();
        assert_eq!(String::from(v4.clone()), v4.to_string());
    }

    #[test]
    fn malformed_ids_are_clear_errors() {
        for bad in [
            "",
            "xyz",
            "0x",
            "00000000000000000000000000000000",
            &"a".repeat(33),
        ] {
            let err = TraceId::from_hex(bad).unwrap_err().to_string();
            assert!(err.starts_with("invalid trace id"), "{err}");
        }
        assert!(SpanId::from_base64("APBnqgupArc").is_err());
        assert!(
            SpanId::from_base64("S/kvNXezTaajzpKdDg5HNg==")
                .unwrap_err()
                .to_string()
                .contains("8 bytes")
        );
        assert!(SpanId::from_slice(&[0; 8]).is_err());
        assert!(SpanId::from_slice(&[1; 7]).is_err());
        for bad in [
            "tr-123",
            "tr-4bf92f3577b34da6a3ce929d0e0e473g",
            "4bf92f3577b34da6a3ce929d0e0e4736",
            "trace:/",
            "trace:/cat.sch",
            "trace:/cat.sch/",
            "trace://4bf92f3577b34da6a3ce929d0e0e4736",
            "trace:/a/b/4bf92f3577b34da6a3ce929d0e0e4736",
        ] {
            let err = bad.parse::<MlflowTraceId>().unwrap_err().to_string();
            assert!(err.starts_with("invalid MLflow trace id"), "{bad}: {err}");
        }
    }

    #[test]
    fn v4_ids() {
        let id: MlflowTraceId = "trace:/cat.sch.pfx/4bf92f3577b34da6a3ce929d0e0e4736"
            .parse()
            .unwrap();
        assert_eq!(id.location(), Some("cat.sch.pfx"));
        assert_eq!(
            id.otel_trace_id().to_hex(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert_eq!(
            id.to_string(),
            "trace:/cat.sch.pfx/4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert!(MlflowTraceId::v4("a/b", id.otel_trace_id()).is_err());
        // Upper-case hex is accepted and normalised.
        let up: MlflowTraceId = "tr-4BF92F3577B34DA6A3CE929D0E0E4736".parse().unwrap();
        assert_eq!(up.to_string(), "tr-4bf92f3577b34da6a3ce929d0e0e4736");
    }

    #[test]
    fn opentelemetry_conversions() {
        let t = TraceId::from_int(0x0102_0304_0506_0708_090a_0b0c_0d0e_0f10);
        let o: opentelemetry::trace::TraceId = t.into();
        assert_eq!(o.to_string(), t.to_hex());
        assert_eq!(TraceId::from(o), t);
        let s = SpanId::from_int(42);
        let o: opentelemetry::trace::SpanId = s.into();
        assert_eq!(SpanId::from(o), s);
    }
}
