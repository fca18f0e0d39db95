//! A `serde` serializer that writes what `serde_json` with [`PyFormatter`] writes, faster.
//!
//! Span inputs and outputs are mostly text, and `serde_json` spends most of its time on a text
//! looking at one byte at a time for what to escape; this serializer finds it sixteen bytes at
//! a time ([`super::escape`]). Everything else follows `serde_json` 1.x step by step (the same
//! states, the same error messages), with Python's separators, Python's float `repr`, non-finite
//! floats as `null` and the nesting limit: the differential tests hold it to `serde_json` with
//! [`PyFormatter`] as the reference.
//!
//! [`PyFormatter`]: super::PyFormatter

use std::fmt;

use serde::ser::{self, Impossible, Serialize};

use super::escape::push_string;
use super::{MAX_NESTING_DEPTH, python_float_repr};

/// `serde_json`'s name for a struct that carries a `RawValue`'s text (feature `raw_value`).
const RAW_VALUE_TOKEN: &str = "$serde_json::private::RawValue";
/// `serde_json`'s name for a struct that carries a number's digits (`arbitrary_precision`).
const NUMBER_TOKEN: &str = "$serde_json::private::Number";

/// Why a value could not be written.
#[derive(Debug)]
pub(crate) enum Error {
    /// Nested deeper than [`MAX_NESTING_DEPTH`].
    TooDeep,
    /// The value's `Serialize` impl failed, or a map key is not a string (the message is
    /// `serde_json`'s).
    Message(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::TooDeep => write!(f, "nesting deeper than {MAX_NESTING_DEPTH} levels"),
            Error::Message(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for Error {}

impl ser::Error for Error {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        Error::Message(msg.to_string())
    }
}

fn key_must_be_a_string() -> Error {
    Error::Message("key must be a string".to_owned())
}

type Result<T = ()> = std::result::Result<T, Error>;

/// Writes JSON at the end of a string.
#[derive(Debug)]
pub(crate) struct PySerializer<'a> {
    out: &'a mut String,
    ascii: bool,
    depth: usize,
}

impl<'a> PySerializer<'a> {
    /// A serializer appending to `out`; `ascii` as `ensure_ascii`.
    pub(crate) fn new(out: &'a mut String, ascii: bool) -> Self {
        PySerializer {
            out,
            ascii,
            depth: 0,
        }
    }

    fn enter(&mut self, open: char) -> Result {
        self.depth += 1;
        if self.depth > MAX_NESTING_DEPTH {
            return Err(Error::TooDeep);
        }
        self.out.push(open);
        Ok(())
    }

    fn leave(&mut self, close: char) {
        // Saturating: a `Serialize` impl that declares an empty sequence and then writes into it
        // closes one more time than it opened.
        self.depth = self.depth.saturating_sub(1);
        self.out.push(close);
    }

    fn integer(&mut self, value: impl itoa::Integer) -> Result {
        self.out.push_str(itoa::Buffer::new().format(value));
        Ok(())
    }

    fn float(&mut self, value: f64) {
        if value.is_finite() {
            self.out.push_str(&python_float_repr(value));
        } else {
            self.out.push_str("null");
        }
    }

    /// `{"variant": ` of an externally tagged enum variant.
    fn open_variant(&mut self, variant: &str) -> Result {
        self.enter('{')?;
        push_string(self.out, variant, self.ascii);
        self.out.push_str(": ");
        Ok(())
    }
}

/// Where a sequence or map is: nothing written and closed already (declared empty), before the
/// first element, or after one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Empty,
    First,
    Rest,
}

/// An array or object being written; `variant` when it sits in `{"variant": ...}`.
#[derive(Debug)]
pub(crate) struct Compound<'s, 'a> {
    ser: &'s mut PySerializer<'a>,
    state: State,
    variant: bool,
    /// A `serde_json` private struct (named after one of its tokens): its single field's text
    /// is written as it is.
    raw: bool,
}

impl Compound<'_, '_> {
    fn separator(&mut self) {
        if self.state != State::First {
            self.ser.out.push_str(", ");
        }
        self.state = State::Rest;
    }

    fn close(self, bracket: char) -> Result {
        if self.state != State::Empty {
            self.ser.leave(bracket);
        }
        if self.variant {
            self.ser.leave('}');
        }
        Ok(())
    }
}

impl<'s, 'a> PySerializer<'a> {
    fn open(
        &'s mut self,
        bracket: char,
        len: Option<usize>,
        variant: bool,
    ) -> Result<Compound<'s, 'a>> {
        self.enter(bracket)?;
        let state = if len == Some(0) {
            self.leave(if bracket == '[' { ']' } else { '}' });
            State::Empty
        } else {
            State::First
        };
        Ok(Compound {
            ser: self,
            state,
            variant,
            raw: false,
        })
    }
}

/// The integer `Serializer` methods, each `self.integer(v)`.
macro_rules! integers {
    () => {
        integers!(
            serialize_i8: i8,
            serialize_i16: i16,
            serialize_i32: i32,
            serialize_i64: i64,
            serialize_i128: i128,
            serialize_u8: u8,
            serialize_u16: u16,
            serialize_u32: u32,
            serialize_u64: u64,
            serialize_u128: u128
        );
    };
    ($($method:ident: $ty:ty),*) => {$(
        fn $method(self, v: $ty) -> Result {
            self.integer(v)
        }
    )*};
}

impl<'s, 'a> ser::Serializer for &'s mut PySerializer<'a> {
    type Ok = ();
    type Error = Error;
    type SerializeSeq = Compound<'s, 'a>;
    type SerializeTuple = Compound<'s, 'a>;
    type SerializeTupleStruct = Compound<'s, 'a>;
    type SerializeTupleVariant = Compound<'s, 'a>;
    type SerializeMap = Compound<'s, 'a>;
    type SerializeStruct = Compound<'s, 'a>;
    type SerializeStructVariant = Compound<'s, 'a>;

    fn serialize_bool(self, v: bool) -> Result {
        self.out.push_str(if v { "true" } else { "false" });
        Ok(())
    }
    integers!();
    fn serialize_f32(self, v: f32) -> Result {
        // Python has no f32; it would see the widened double.
        self.float(f64::from(v));
        Ok(())
    }
    fn serialize_f64(self, v: f64) -> Result {
        self.float(v);
        Ok(())
    }
    fn serialize_char(self, v: char) -> Result {
        self.serialize_str(v.encode_utf8(&mut [0; 4]))
    }
    fn serialize_str(self, v: &str) -> Result {
        push_string(self.out, v, self.ascii);
        Ok(())
    }
    fn serialize_bytes(self, v: &[u8]) -> Result {
        // An array of numbers, as `serde_json` writes bytes.
        self.enter('[')?;
        for (i, byte) in v.iter().enumerate() {
            if i > 0 {
                self.out.push_str(", ");
            }
            self.integer(*byte)?;
        }
        self.leave(']');
        Ok(())
    }
    fn serialize_none(self) -> Result {
        self.serialize_unit()
    }
    fn serialize_some<T: ?Sized + Serialize>(self, value: &T) -> Result {
        value.serialize(self)
    }
    fn serialize_unit(self) -> Result {
        self.out.push_str("null");
        Ok(())
    }
    fn serialize_unit_struct(self, _name: &'static str) -> Result {
        self.serialize_unit()
    }
    fn serialize_unit_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
    ) -> Result {
        self.serialize_str(variant)
    }
    fn serialize_newtype_struct<T: ?Sized + Serialize>(
        self,
        _name: &'static str,
        value: &T,
    ) -> Result {
        value.serialize(self)
    }
    fn serialize_newtype_variant<T: ?Sized + Serialize>(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        value: &T,
    ) -> Result {
        self.open_variant(variant)?;
        value.serialize(&mut *self)?;
        self.leave('}');
        Ok(())
    }
    fn serialize_seq(self, len: Option<usize>) -> Result<Compound<'s, 'a>> {
        self.open('[', len, false)
    }
    fn serialize_tuple(self, len: usize) -> Result<Compound<'s, 'a>> {
        self.serialize_seq(Some(len))
    }
    fn serialize_tuple_struct(self, _name: &'static str, len: usize) -> Result<Compound<'s, 'a>> {
        self.serialize_seq(Some(len))
    }
    fn serialize_tuple_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<Compound<'s, 'a>> {
        self.open_variant(variant)?;
        self.open('[', Some(len), true)
    }
    fn serialize_map(self, len: Option<usize>) -> Result<Compound<'s, 'a>> {
        self.open('{', len, false)
    }
    fn serialize_struct(self, name: &'static str, len: usize) -> Result<Compound<'s, 'a>> {
        if name == RAW_VALUE_TOKEN || name == NUMBER_TOKEN {
            return Ok(Compound {
                ser: self,
                state: State::Empty,
                variant: false,
                raw: true,
            });
        }
        self.serialize_map(Some(len))
    }
    fn serialize_struct_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<Compound<'s, 'a>> {
        self.open_variant(variant)?;
        self.open('{', Some(len), true)
    }
}

impl ser::SerializeSeq for Compound<'_, '_> {
    type Ok = ();
    type Error = Error;
    fn serialize_element<T: ?Sized + Serialize>(&mut self, value: &T) -> Result {
        self.separator();
        value.serialize(&mut *self.ser)
    }
    fn end(self) -> Result {
        self.close(']')
    }
}

/// The sequence-like `serde` traits, each writing its elements as [`ser::SerializeSeq`] does.
macro_rules! like_seq {
    ($($trait:ident :: $method:ident),*) => {$(
        impl ser::$trait for Compound<'_, '_> {
            type Ok = ();
            type Error = Error;
            fn $method<T: ?Sized + Serialize>(&mut self, value: &T) -> Result {
                ser::SerializeSeq::serialize_element(self, value)
            }
            fn end(self) -> Result {
                self.close(']')
            }
        }
    )*};
}

like_seq!(
    SerializeTuple::serialize_element,
    SerializeTupleStruct::serialize_field,
    SerializeTupleVariant::serialize_field
);

impl ser::SerializeMap for Compound<'_, '_> {
    type Ok = ();
    type Error = Error;
    fn serialize_key<T: ?Sized + Serialize>(&mut self, key: &T) -> Result {
        self.separator();
        key.serialize(MapKey(&mut *self.ser))
    }
    fn serialize_value<T: ?Sized + Serialize>(&mut self, value: &T) -> Result {
        self.ser.out.push_str(": ");
        value.serialize(&mut *self.ser)
    }
    fn end(self) -> Result {
        self.close('}')
    }
}

impl ser::SerializeStruct for Compound<'_, '_> {
    type Ok = ();
    type Error = Error;
    fn serialize_field<T: ?Sized + Serialize>(&mut self, key: &'static str, value: &T) -> Result {
        if self.raw {
            return if key == RAW_VALUE_TOKEN || key == NUMBER_TOKEN {
                value.serialize(RawText(&mut *self.ser, key))
            } else {
                Err(raw_expected(key))
            };
        }
        ser::SerializeMap::serialize_entry(self, key, value)
    }
    fn end(self) -> Result {
        if self.raw {
            return Ok(());
        }
        self.close('}')
    }
}

impl ser::SerializeStructVariant for Compound<'_, '_> {
    type Ok = ();
    type Error = Error;
    fn serialize_field<T: ?Sized + Serialize>(&mut self, key: &'static str, value: &T) -> Result {
        ser::SerializeMap::serialize_entry(self, key, value)
    }
    fn end(self) -> Result {
        self.close('}')
    }
}

/// The `Serializer` methods for what is neither a string nor a scalar, each refused with
/// `$error()`.
macro_rules! refuse_all_but_str {
    ($error:ident) => {
        fn serialize_bytes(self, _: &[u8]) -> Result {
            Err($error())
        }
        fn serialize_none(self) -> Result {
            Err($error())
        }
        fn serialize_unit(self) -> Result {
            Err($error())
        }
        fn serialize_unit_struct(self, _: &'static str) -> Result {
            Err($error())
        }
        fn serialize_newtype_variant<T: ?Sized + Serialize>(
            self,
            _: &'static str,
            _: u32,
            _: &'static str,
            _: &T,
        ) -> Result {
            Err($error())
        }
        fn serialize_seq(self, _: Option<usize>) -> Result<Self::SerializeSeq> {
            Err($error())
        }
        fn serialize_tuple(self, _: usize) -> Result<Self::SerializeTuple> {
            Err($error())
        }
        fn serialize_tuple_struct(
            self,
            _: &'static str,
            _: usize,
        ) -> Result<Self::SerializeTupleStruct> {
            Err($error())
        }
        fn serialize_tuple_variant(
            self,
            _: &'static str,
            _: u32,
            _: &'static str,
            _: usize,
        ) -> Result<Self::SerializeTupleVariant> {
            Err($error())
        }
        fn serialize_map(self, _: Option<usize>) -> Result<Self::SerializeMap> {
            Err($error())
        }
        fn serialize_struct(self, _: &'static str, _: usize) -> Result<Self::SerializeStruct> {
            Err($error())
        }
        fn serialize_struct_variant(
            self,
            _: &'static str,
            _: u32,
            _: &'static str,
            _: usize,
        ) -> Result<Self::SerializeStructVariant> {
            Err($error())
        }
    };
}

/// The scalar `Serializer` methods, each refused with `$error()`.
macro_rules! refuse_scalars {
    ($error:ident) => {
        fn serialize_bool(self, _: bool) -> Result {
            Err($error())
        }
        fn serialize_i8(self, _: i8) -> Result {
            Err($error())
        }
        fn serialize_i16(self, _: i16) -> Result {
            Err($error())
        }
        fn serialize_i32(self, _: i32) -> Result {
            Err($error())
        }
        fn serialize_i64(self, _: i64) -> Result {
            Err($error())
        }
        fn serialize_u8(self, _: u8) -> Result {
            Err($error())
        }
        fn serialize_u16(self, _: u16) -> Result {
            Err($error())
        }
        fn serialize_u32(self, _: u32) -> Result {
            Err($error())
        }
        fn serialize_u64(self, _: u64) -> Result {
            Err($error())
        }
        fn serialize_f32(self, _: f32) -> Result {
            Err($error())
        }
        fn serialize_f64(self, _: f64) -> Result {
            Err($error())
        }
        fn serialize_char(self, _: char) -> Result {
            Err($error())
        }
        fn serialize_some<T: ?Sized + Serialize>(self, _: &T) -> Result {
            Err($error())
        }
        fn serialize_unit_variant(self, _: &'static str, _: u32, _: &'static str) -> Result {
            Err($error())
        }
        fn serialize_newtype_struct<T: ?Sized + Serialize>(self, _: &'static str, _: &T) -> Result {
            Err($error())
        }
    };
}

/// An object key: strings, and what `serde_json` writes as a quoted string (numbers, booleans,
/// unit variants); anything else is refused with `serde_json`'s message.
struct MapKey<'s, 'a>(&'s mut PySerializer<'a>);

impl MapKey<'_, '_> {
    fn quoted(self, text: &str) -> Result {
        self.0.out.push('"');
        self.0.out.push_str(text);
        self.0.out.push('"');
        Ok(())
    }

    fn integer(self, value: impl itoa::Integer) -> Result {
        self.quoted(itoa::Buffer::new().format(value))
    }

    fn float(self, value: f64) -> Result {
        if !value.is_finite() {
            return Err(Error::Message(
                "float key must be finite (got NaN or +/-inf)".to_owned(),
            ));
        }
        self.quoted(&python_float_repr(value))
    }
}

impl ser::Serializer for MapKey<'_, '_> {
    type Ok = ();
    type Error = Error;
    type SerializeSeq = Impossible<(), Error>;
    type SerializeTuple = Impossible<(), Error>;
    type SerializeTupleStruct = Impossible<(), Error>;
    type SerializeTupleVariant = Impossible<(), Error>;
    type SerializeMap = Impossible<(), Error>;
    type SerializeStruct = Impossible<(), Error>;
    type SerializeStructVariant = Impossible<(), Error>;

    fn serialize_str(self, v: &str) -> Result {
        self.0.serialize_str(v)
    }
    fn serialize_unit_variant(self, _: &'static str, _: u32, variant: &'static str) -> Result {
        self.0.serialize_str(variant)
    }
    fn serialize_newtype_struct<T: ?Sized + Serialize>(self, _: &'static str, v: &T) -> Result {
        v.serialize(self)
    }
    fn serialize_bool(self, v: bool) -> Result {
        self.quoted(if v { "true" } else { "false" })
    }
    integers!();
    fn serialize_f32(self, v: f32) -> Result {
        self.float(f64::from(v))
    }
    fn serialize_f64(self, v: f64) -> Result {
        self.float(v)
    }
    fn serialize_char(self, v: char) -> Result {
        self.0.serialize_str(v.encode_utf8(&mut [0; 4]))
    }
    fn serialize_some<T: ?Sized + Serialize>(self, v: &T) -> Result {
        v.serialize(self)
    }
    refuse_all_but_str!(key_must_be_a_string);
}

/// The text of a `serde_json` private struct (a `RawValue`, an arbitrary-precision number,
/// whose field is named after the token), written as it is when it is JSON. The tokens are
/// recognised whatever `serde_json`'s features (a build that has `raw_value` because another
/// crate asked for it serializes `RawValue`s this way); text that is not JSON is written as
/// `serde_json` without the feature would, as a one-entry object with the text as a string, so
/// what is written is always JSON.
struct RawText<'s, 'a>(&'s mut PySerializer<'a>, &'static str);

impl ser::Serializer for RawText<'_, '_> {
    type Ok = ();
    type Error = Error;
    type SerializeSeq = Impossible<(), Error>;
    type SerializeTuple = Impossible<(), Error>;
    type SerializeTupleStruct = Impossible<(), Error>;
    type SerializeTupleVariant = Impossible<(), Error>;
    type SerializeMap = Impossible<(), Error>;
    type SerializeStruct = Impossible<(), Error>;
    type SerializeStructVariant = Impossible<(), Error>;

    fn serialize_str(self, v: &str) -> Result {
        let RawText(ser, token) = self;
        if serde_json::from_str::<serde::de::IgnoredAny>(v).is_ok() {
            ser.out.push_str(v);
        } else {
            ser.enter('{')?;
            push_string(ser.out, token, ser.ascii);
            ser.out.push_str(": ");
            push_string(ser.out, v, ser.ascii);
            ser.leave('}');
        }
        Ok(())
    }

    refuse_all_but_str!(raw_field_expected);
    refuse_scalars!(raw_field_expected);
}

/// `serde_json`'s message for a private struct that does not hold what it should.
fn raw_expected(token: &str) -> Error {
    Error::Message(
        if token == NUMBER_TOKEN {
            "invalid number"
        } else {
            "expected RawValue"
        }
        .to_owned(),
    )
}

fn raw_field_expected() -> Error {
    Error::Message("expected RawValue".to_owned())
}

#[cfg(test)]
mod tests;
