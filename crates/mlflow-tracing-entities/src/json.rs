//! JSON exactly as MLflow's Python SDK writes it.
//!
//! MLflow stores span attributes as `json.dumps(value, ensure_ascii=False)` and writes traces with
//! `json.dumps(trace_dict)` (ASCII escapes). Both use Python's default separators `", "` and
//! `": "` and Python's `repr` of floats (`1e-05`, `1e+16`, `2.0`). Size statistics are byte
//! lengths of that text, so matching it byte for byte matters. This module writes it with its
//! own `serde` serializer, which finds what to escape in a text sixteen bytes at a time and is
//! held byte for byte to `serde_json` driven by [`PyFormatter`] (kept for callers that run a
//! `serde_json::Serializer` themselves).
//!
//! Choices where Python's output is not portable JSON (documented in the README):
//! - Non-finite floats (`NaN`, `Infinity`): Python writes bare `NaN`, which browsers and most
//!   JSON parsers reject. This crate writes `null`.
//! - Nesting deeper than [`MAX_NESTING_DEPTH`] is refused with [`EntityError::TooDeep`] instead
//!   of overflowing a stack (ours or a reader's).
//! - Lone UTF-16 surrogates in input JSON (`"\ud800"`, which Python happily writes) are read as
//!   U+FFFD instead of failing the whole document.

use std::borrow::Cow;
use std::io;

use compact_str::CompactString;
use serde::Serialize;
use serde_json::Value;
use serde_json::ser::{CharEscape, Formatter};

use crate::error::{EntityError, Result};

mod escape;
mod ser;

/// The deepest nesting of arrays/objects this crate writes or reads in a value.
///
/// `serde_json` refuses to parse documents nested deeper than 128 levels; writing at most 100
/// keeps everything this SDK writes readable by itself, by Python and by the MLflow UI.
pub const MAX_NESTING_DEPTH: usize = 100;

/// A `serde_json` formatter that writes what Python's `json.dumps` writes.
#[derive(Debug, Clone, Copy)]
pub struct PyFormatter {
    ascii: bool,
    depth: usize,
}

impl PyFormatter {
    /// `json.dumps(v, ensure_ascii=True)`: non-ASCII written as `\uXXXX` (surrogate pairs).
    pub const fn ascii() -> Self {
        PyFormatter {
            ascii: true,
            depth: 0,
        }
    }

    /// `json.dumps(v, ensure_ascii=False)`: text kept as UTF-8.
    pub const fn utf8() -> Self {
        PyFormatter {
            ascii: false,
            depth: 0,
        }
    }

    fn enter<W: ?Sized + io::Write>(&mut self, w: &mut W, open: &[u8]) -> io::Result<()> {
        self.depth += 1;
        if self.depth > MAX_NESTING_DEPTH {
            return Err(io::Error::other(TooDeepMarker));
        }
        w.write_all(open)
    }
}

/// Marker carried through `io::Error` to recognise a nesting-limit failure.
#[derive(Debug)]
struct TooDeepMarker;

impl std::fmt::Display for TooDeepMarker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "nesting deeper than {MAX_NESTING_DEPTH} levels")
    }
}

impl std::error::Error for TooDeepMarker {}

impl Formatter for PyFormatter {
    fn write_f64<W: ?Sized + io::Write>(&mut self, writer: &mut W, value: f64) -> io::Result<()> {
        writer.write_all(python_float_repr(value).as_bytes())
    }

    fn write_f32<W: ?Sized + io::Write>(&mut self, writer: &mut W, value: f32) -> io::Result<()> {
        // Python has no f32; it would see the widened double.
        self.write_f64(writer, f64::from(value))
    }

    fn write_string_fragment<W: ?Sized + io::Write>(
        &mut self,
        writer: &mut W,
        fragment: &str,
    ) -> io::Result<()> {
        if !self.ascii || fragment.bytes().all(|b| b < 0x7f) {
            return writer.write_all(fragment.as_bytes());
        }
        let mut start = 0;
        for (i, c) in fragment.char_indices() {
            if (c as u32) < 0x7f {
                continue;
            }
            writer.write_all(&fragment.as_bytes()[start..i])?;
            let mut units = [0u16; 2];
            for unit in c.encode_utf16(&mut units) {
                write!(writer, "\\u{unit:04x}")?;
            }
            start = i + c.len_utf8();
        }
        writer.write_all(&fragment.as_bytes()[start..])
    }

    fn write_char_escape<W: ?Sized + io::Write>(
        &mut self,
        writer: &mut W,
        char_escape: CharEscape,
    ) -> io::Result<()> {
        let s: &[u8] = match char_escape {
            CharEscape::Quote => b"\\\"",
            CharEscape::ReverseSolidus => b"\\\\",
            CharEscape::Solidus => b"/",
            CharEscape::Backspace => b"\\b",
            CharEscape::FormFeed => b"\\f",
            CharEscape::LineFeed => b"\\n",
            CharEscape::CarriageReturn => b"\\r",
            CharEscape::Tab => b"\\t",
            CharEscape::AsciiControl(byte) => return write!(writer, "\\u{byte:04x}"),
        };
        writer.write_all(s)
    }

    fn begin_array<W: ?Sized + io::Write>(&mut self, writer: &mut W) -> io::Result<()> {
        self.enter(writer, b"[")
    }

    fn end_array<W: ?Sized + io::Write>(&mut self, writer: &mut W) -> io::Result<()> {
        self.depth = self.depth.saturating_sub(1);
        writer.write_all(b"]")
    }

    fn begin_array_value<W: ?Sized + io::Write>(
        &mut self,
        writer: &mut W,
        first: bool,
    ) -> io::Result<()> {
        if first {
            Ok(())
        } else {
            writer.write_all(b", ")
        }
    }

    fn begin_object<W: ?Sized + io::Write>(&mut self, writer: &mut W) -> io::Result<()> {
        self.enter(writer, b"{")
    }

    fn end_object<W: ?Sized + io::Write>(&mut self, writer: &mut W) -> io::Result<()> {
        self.depth = self.depth.saturating_sub(1);
        writer.write_all(b"}")
    }

    fn begin_object_key<W: ?Sized + io::Write>(
        &mut self,
        writer: &mut W,
        first: bool,
    ) -> io::Result<()> {
        if first {
            Ok(())
        } else {
            writer.write_all(b", ")
        }
    }

    fn begin_object_value<W: ?Sized + io::Write>(&mut self, writer: &mut W) -> io::Result<()> {
        writer.write_all(b": ")
    }
}

/// Python's `repr(float)` for a finite value: shortest round-trip digits, fixed notation for
/// decimal exponents in `-4..16` (always with a fractional part), scientific otherwise with a
/// signed, at least two-digit exponent.
pub fn python_float_repr(value: f64) -> String {
    if !value.is_finite() {
        // Callers only pass finite values (serde_json turns non-finite ones into null); keep a
        // sane answer anyway rather than panicking.
        return "null".to_owned();
    }
    if value == 0.0 {
        return if value.is_sign_negative() {
            "-0.0"
        } else {
            "0.0"
        }
        .to_owned();
    }
    let sci = format!("{value:e}"); // e.g. "-1.2345e-7": shortest round-trip digits
    let (mantissa, exp) = sci.split_once('e').unwrap_or((sci.as_str(), "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let (sign, mantissa) = match mantissa.strip_prefix('-') {
        Some(m) => ("-", m),
        None => ("", mantissa),
    };
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    let mut out = String::with_capacity(digits.len() + 8);
    out.push_str(sign);
    if (-4..16).contains(&exp) {
        if exp >= 0 {
            let int_len = exp as usize + 1;
            if digits.len() <= int_len {
                out.push_str(&digits);
                out.extend(std::iter::repeat_n('0', int_len - digits.len()));
                out.push_str(".0");
            } else {
                out.push_str(&digits[..int_len]);
                out.push('.');
                out.push_str(&digits[int_len..]);
            }
        } else {
            out.push_str("0.");
            out.extend(std::iter::repeat_n('0', (-exp - 1) as usize));
            out.push_str(&digits);
        }
    } else {
        out.push_str(&digits[..1]);
        if digits.len() > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        out.push('e');
        out.push(if exp < 0 { '-' } else { '+' });
        out.push_str(&format!("{:02}", exp.unsigned_abs()));
    }
    out
}

thread_local! {
    /// A buffer kept between calls, so a value is written without growing a new one step by
    /// step; what is kept is one exact copy.
    static SCRATCH: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
}

/// Larger scratch buffers are not kept.
const KEEP: usize = 64 * 1024;

/// Writes `value` into the thread's scratch buffer and hands the buffer to `f` (a fresh buffer
/// when the scratch one is taken: a `Serialize` impl that writes JSON itself). `f` may take the
/// buffer.
fn with_written<T: Serialize + ?Sized, R>(
    value: &T,
    formatter: PyFormatter,
    f: impl FnOnce(&mut String) -> R,
) -> Result<R> {
    let mut f = Some(f);
    let pooled = SCRATCH.try_with(|scratch| {
        let mut buf = scratch.try_borrow_mut().ok()?;
        buf.clear();
        let out = append_with(&mut buf, value, formatter).map(|()| f.take().map(|f| f(&mut buf)));
        if buf.capacity() > KEEP {
            *buf = String::new();
        }
        Some(out)
    });
    if let Some(out) = pooled.ok().flatten()
        && let Some(r) = out?
    {
        return Ok(r);
    }
    let mut buf = String::with_capacity(128);
    append_with(&mut buf, value, formatter)?;
    match f.take() {
        Some(f) => Ok(f(&mut buf)),
        None => Err(EntityError::InvalidField {
            field: "json",
            reason: "written twice".to_owned(),
        }),
    }
}

fn write_with<T: Serialize + ?Sized>(value: &T, formatter: PyFormatter) -> Result<String> {
    // A small text is copied out exactly; a large one keeps the buffer it was written in
    // (trimmed), so a 50 MB value is never held twice.
    with_written(value, formatter, |buf| {
        if buf.len() > KEEP {
            let mut taken = std::mem::take(buf);
            taken.shrink_to_fit();
            taken
        } else {
            buf.as_str().to_owned()
        }
    })
}

/// Hands `json.dumps(value, ensure_ascii=False)` (see [`to_attribute_json`]) to `f` as bytes
/// written in a reused buffer, for callers that copy it into a larger JSON text.
///
/// # Errors
/// As [`to_attribute_json`].
pub fn with_attribute_json<T: Serialize + ?Sized, R>(
    value: &T,
    f: impl FnOnce(&[u8]) -> R,
) -> Result<R> {
    with_written(value, PyFormatter::utf8(), |buf| f(buf.as_bytes()))
}

/// Writes `value` as JSON at the end of `buf`; on error `buf` is as it was.
fn append_with<T: Serialize + ?Sized>(
    buf: &mut String,
    value: &T,
    formatter: PyFormatter,
) -> Result<()> {
    let start = buf.len();
    let mut ser = ser::PySerializer::new(&mut *buf, formatter.ascii);
    if let Err(err) = value.serialize(&mut ser) {
        buf.truncate(start);
        return Err(match err {
            ser::Error::TooDeep => EntityError::TooDeep {
                limit: MAX_NESTING_DEPTH,
            },
            ser::Error::Message(message) => {
                EntityError::Json(<serde_json::Error as serde::ser::Error>::custom(message))
            }
        });
    }
    Ok(())
}

/// `json.dumps(value, ensure_ascii=False)`: how MLflow stores a span attribute value.
///
/// # Errors
/// [`EntityError::TooDeep`] past [`MAX_NESTING_DEPTH`], [`EntityError::Json`] when the value's
/// `Serialize` impl fails (e.g. a map with non-string keys).
pub fn to_attribute_json<T: Serialize + ?Sized>(value: &T) -> Result<String> {
    write_with(value, PyFormatter::utf8())
}

/// `json.dumps(text, ensure_ascii=False)` of a single string, which cannot fail: quotes,
/// backslashes and control characters escaped, everything else kept.
pub fn string_attribute_json(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    write_string_json(text, &mut out);
    out
}

/// [`string_attribute_json`] into `out` (a `String` or a `CompactString`).
fn write_string_json(text: &str, out: &mut impl std::fmt::Write) {
    // Most strings need no escape: quoted as they are. Writing to a string cannot fail.
    if escape::first_special(text.as_bytes(), false) == text.len() {
        let _ = out.write_char('"');
        let _ = out.write_str(text);
        let _ = out.write_char('"');
        return;
    }
    let mut buf = String::with_capacity(text.len() + 8);
    escape::push_string(&mut buf, text, false);
    let _ = out.write_str(&buf);
}

/// A span attribute value as MLflow stores it: JSON text (`json.dumps` of the value). Made
/// only from values or from text checked to be JSON, so setting it needs no further check.
/// Short values (a number, a model name) are kept inline, with no allocation of their own.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AttributeJson(CompactString);

impl AttributeJson {
    /// `json.dumps(value)`.
    ///
    /// # Errors
    /// As [`to_attribute_json`].
    pub fn of<T: Serialize + ?Sized>(value: &T) -> Result<Self> {
        to_attribute_json(value).map(|json| AttributeJson(json.into()))
    }

    /// `json.dumps(value)` with Python's default ASCII escapes ([`to_python_json`]), for values
    /// MLflow writes that way (message lists its server builds from GenAI events).
    ///
    /// # Errors
    /// As [`to_python_json`].
    pub fn of_ascii<T: Serialize + ?Sized>(value: &T) -> Result<Self> {
        to_python_json(value).map(|json| AttributeJson(json.into()))
    }

    /// `json.dumps(text)`: a JSON string.
    pub fn string(text: &str) -> Self {
        let mut out = CompactString::with_capacity(text.len() + 2);
        write_string_json(text, &mut out);
        AttributeJson(out)
    }

    /// A float as Python writes it (`2.0`, `1e-07`); a non-finite one as `null`, as
    /// [`to_attribute_json`] does.
    pub fn float(value: f64) -> Self {
        AttributeJson(python_float_repr(value).into())
    }

    /// `json.dumps` of a dict of integers (token counts), written directly.
    pub fn int_object<'a>(entries: impl IntoIterator<Item = (&'a str, i64)>) -> Self {
        let mut digits = itoa::Buffer::new();
        let mut out = String::with_capacity(112);
        out.push('{');
        for (key, value) in entries {
            if out.len() > 1 {
                out.push_str(", ");
            }
            if key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
                out.push('"');
                out.push_str(key);
                out.push('"');
            } else {
                out.push_str(&string_attribute_json(key));
            }
            out.push_str(": ");
            out.push_str(digits.format(value));
        }
        out.push('}');
        AttributeJson(out.into())
    }

    /// `text` as it is, when it is JSON.
    ///
    /// # Errors
    /// [`EntityError::Json`] (with the text back) when it is not JSON.
    pub fn parse(text: String) -> std::result::Result<Self, (String, EntityError)> {
        match serde_json::from_str::<serde::de::IgnoredAny>(&text) {
            Ok(_) => Ok(AttributeJson(text.into())),
            Err(e) => Err((text, map_parse_error(e))),
        }
    }

    /// The JSON text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The JSON text, owned.
    pub fn into_string(self) -> String {
        self.0.into_string()
    }
}

/// The JSON text as a compact string, without a copy (how a live span keeps it).
impl From<AttributeJson> for CompactString {
    fn from(json: AttributeJson) -> Self {
        json.0
    }
}

impl From<i64> for AttributeJson {
    fn from(value: i64) -> Self {
        AttributeJson(CompactString::new(itoa::Buffer::new().format(value)))
    }
}

impl From<u64> for AttributeJson {
    fn from(value: u64) -> Self {
        AttributeJson(CompactString::new(itoa::Buffer::new().format(value)))
    }
}

impl From<bool> for AttributeJson {
    fn from(value: bool) -> Self {
        AttributeJson(CompactString::const_new(if value {
            "true"
        } else {
            "false"
        }))
    }
}

/// `json.dumps(value)` (ASCII escapes): how MLflow writes traces and REST bodies.
///
/// # Errors
/// As [`to_attribute_json`].
pub fn to_python_json<T: Serialize + ?Sized>(value: &T) -> Result<String> {
    write_with(value, PyFormatter::ascii())
}

/// Parses JSON text the way this SDK reads MLflow data: lone surrogates become U+FFFD, and
/// nesting beyond `serde_json`'s limit is a [`EntityError::TooDeep`] error, not a stack overflow.
///
/// # Errors
/// [`EntityError::Json`] for malformed JSON, [`EntityError::TooDeep`] for deep nesting.
pub fn parse_json<T: serde::de::DeserializeOwned>(text: &str) -> Result<T> {
    let text = replace_lone_surrogates(text);
    serde_json::from_str(&text).map_err(map_parse_error)
}

/// As [`parse_json`], for bytes that should be UTF-8.
///
/// # Errors
/// [`EntityError::InvalidUtf8`] if `bytes` is not UTF-8, else as [`parse_json`].
pub fn parse_json_bytes<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T> {
    let text = std::str::from_utf8(bytes).map_err(|e| EntityError::InvalidUtf8 {
        offset: e.valid_up_to(),
    })?;
    parse_json(text)
}

pub(crate) fn map_parse_error(err: serde_json::Error) -> EntityError {
    if err.to_string().starts_with("recursion limit exceeded") {
        EntityError::TooDeep { limit: 128 }
    } else {
        EntityError::Json(err)
    }
}

/// Decodes a stored attribute value the way MLflow's `Span.get_attribute` does: JSON text is
/// parsed; text that is not JSON is returned as a plain string; an empty string reads as `None`.
/// Non-string stored values (set by foreign OpenTelemetry code) are returned unchanged.
pub fn decode_attribute(stored: &Value) -> Option<Value> {
    match stored {
        Value::String(s) if s.is_empty() => None,
        Value::String(s) => {
            Some(parse_json::<Value>(s).unwrap_or_else(|_| Value::String(s.clone())))
        }
        Value::Null => None,
        other => Some(other.clone()),
    }
}

/// Replaces `\uD800`-`\uDFFF` escapes that do not form a valid surrogate pair with `\ufffd`.
///
/// Only escapes inside JSON strings can hold surrogates; raw UTF-8 text cannot (Rust strings are
/// valid UTF-8), so scanning for backslash escapes is enough.
pub(crate) fn replace_lone_surrogates(text: &str) -> Cow<'_, str> {
    let bytes = text.as_bytes();
    // Fast path (substring search): no `\\uD…` escape, no surrogate.
    if !text.contains("\\ud") && !text.contains("\\uD") {
        return Cow::Borrowed(text);
    }
    let unit_at = |i: usize| -> Option<u16> {
        if bytes.get(i) == Some(&b'\\') && bytes.get(i + 1) == Some(&b'u') {
            let hex = text.get(i + 2..i + 6)?;
            u16::from_str_radix(hex, 16).ok()
        } else {
            None
        }
    };
    let mut out = String::with_capacity(text.len());
    let mut copied = 0;
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'\\' {
            i += 1;
            continue;
        }
        match unit_at(i) {
            Some(0xD800..=0xDBFF) => {
                if matches!(unit_at(i + 6), Some(0xDC00..=0xDFFF)) {
                    i += 12;
                } else {
                    out.push_str(&text[copied..i]);
                    out.push_str("\\ufffd");
                    i += 6;
                    copied = i;
                }
            }
            Some(0xDC00..=0xDFFF) => {
                out.push_str(&text[copied..i]);
                out.push_str("\\ufffd");
                i += 6;
                copied = i;
            }
            // Any other escape: skip the backslash and the escaped byte, so that `\\ud800`
            // (an escaped backslash followed by text) is left alone.
            _ => i += 2,
        }
    }
    out.push_str(&text[copied.min(text.len())..]);
    Cow::Owned(out)
}

#[cfg(test)]
mod tests;
