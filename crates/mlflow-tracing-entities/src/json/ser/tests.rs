//! The serializer against `serde_json` with `PyFormatter`, value for value and error for error.

use std::collections::BTreeMap;

use proptest::prelude::*;
use serde::{Serialize, Serializer};
use serde_json::{Value, json};

use super::super::PyFormatter;
use super::{Error, PySerializer};

/// What `serde_json` with the Python formatter writes (`Err` with its message on failure).
fn reference<T: Serialize + ?Sized>(value: &T, ascii: bool) -> Result<String, String> {
    let formatter = if ascii {
        PyFormatter::ascii()
    } else {
        PyFormatter::utf8()
    };
    let mut out = Vec::new();
    let mut ser = serde_json::Serializer::with_formatter(&mut out, formatter);
    match value.serialize(&mut ser) {
        Ok(()) => Ok(String::from_utf8(out).unwrap()),
        Err(e) if e.is_io() => Err("too deep".to_owned()),
        Err(e) => Err(e.to_string()),
    }
}

fn ours<T: Serialize + ?Sized>(value: &T, ascii: bool) -> Result<String, String> {
    let mut out = String::new();
    match value.serialize(&mut PySerializer::new(&mut out, ascii)) {
        Ok(()) => Ok(out),
        Err(Error::TooDeep) => Err("too deep".to_owned()),
        Err(Error::Message(m)) => Err(m),
    }
}

fn same<T: Serialize + ?Sized>(value: &T) {
    for ascii in [false, true] {
        assert_eq!(
            ours(value, ascii),
            reference(value, ascii),
            "ascii: {ascii}"
        );
    }
}

#[derive(Serialize)]
struct Unit;

#[derive(Serialize)]
struct Newtype(&'static str);

#[derive(Serialize)]
struct Pair(i32, Option<f64>);

#[derive(Serialize)]
struct Fields {
    name: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    skipped: Option<u8>,
    nested: Vec<Pair>,
    empty: Vec<u8>,
}

#[derive(Serialize)]
struct Empty {}

#[derive(Serialize, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Unit,
    Newtype(u8),
    Tuple(u8, char),
    EmptyTuple(),
    Struct { a: bool },
    EmptyStruct {},
}

#[derive(Serialize, PartialEq, Eq, PartialOrd, Ord)]
struct KeyNewtype(i64);

/// Bytes through `serialize_bytes`.
struct Bytes(&'static [u8]);

impl Serialize for Bytes {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(self.0)
    }
}

/// A struct shaped like `serde_json`'s `RawValue` (which exists only with its `raw_value`
/// feature): the token as its name and its field's name.
#[derive(Serialize)]
#[serde(rename = "$serde_json::private::RawValue")]
struct RawLike {
    #[serde(rename = "$serde_json::private::RawValue")]
    text: &'static str,
}

/// A map with float keys.
struct Pairs(&'static [(f64, i32)]);

impl Serialize for Pairs {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.0.iter().map(|(k, v)| (k, v)))
    }
}

/// A sequence that says it is empty and is not.
struct Lying;

impl Serialize for Lying {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeSeq;
        let mut seq = s.serialize_seq(Some(0))?;
        seq.serialize_element(&1)?;
        seq.end()
    }
}

/// A value whose `Serialize` impl fails.
struct Failing;

impl Serialize for Failing {
    fn serialize<S: Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
        Err(serde::ser::Error::custom("cannot serialize this"))
    }
}

/// Text written through `collect_str`.
struct Displayed;

impl Serialize for Displayed {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&format_args!("a \"{}\" é\n", 1))
    }
}

#[test]
fn scalars_are_written_as_serde_json_with_the_python_formatter_writes_them() {
    same(&json!(null));
    same(&true);
    same(&-128i8);
    same(&u64::MAX);
    same(&i64::MIN);
    same(&i128::MIN);
    same(&u128::MAX);
    for f in [
        0.0,
        -0.0,
        1.0,
        2.5,
        1e-5,
        1e16,
        -1.2345e-7,
        123_456_789.123,
        f64::NAN,
        f64::INFINITY,
        f64::MIN_POSITIVE,
    ] {
        same(&f);
    }
    same(&1.1f32);
    same(&f32::NAN);
    same(&'é');
    same(&'"');
    same(&Unit);
    same(&());
    same(&Newtype("x\u{7f}"));
    same(&Some(3));
    same(&None::<u8>);
    same(&Bytes(b""));
    same(&Bytes(b"\x00\xff\x10"));
    same(&Displayed);
}

#[test]
fn compounds_and_enum_variants_are_written_the_same() {
    same(&Pair(1, None));
    same(&Fields {
        name: "n",
        skipped: None,
        nested: vec![Pair(-1, Some(0.5)), Pair(2, Some(f64::NAN))],
        empty: vec![],
    });
    same(&Empty {});
    for kind in [
        Kind::Unit,
        Kind::Newtype(7),
        Kind::Tuple(1, '\n'),
        Kind::EmptyTuple(),
        Kind::Struct { a: false },
        Kind::EmptyStruct {},
    ] {
        same(&kind);
        same(&vec![kind]);
    }
    same(&(1, "two", [3.0]));
    same(&Vec::<Value>::new());
    same(&BTreeMap::<String, u8>::new());
    // serde_json writes what the impl asks for (not JSON); neither side panics.
    assert_eq!(ours(&Lying, false).unwrap(), "[], 1]");
    same(&Lying);
}

#[test]
fn map_keys_are_quoted_or_refused_as_serde_json_does() {
    same(&BTreeMap::from([(1, "a"), (-2, "b")]));
    same(&BTreeMap::from([(true, 1), (false, 2)]));
    same(&BTreeMap::from([('k', 1)]));
    same(&BTreeMap::from([(KeyNewtype(5), 1)]));
    same(&BTreeMap::from([(Kind::Unit, 1)]));
    same(&BTreeMap::from([(Some("s"), 1)]));
    same(&Pairs(&[(1.5, 1), (1e16, 2), (f64::MIN_POSITIVE, 3)]));
    // Refused, with serde_json's message.
    same(&BTreeMap::from([(None::<&str>, 1)]));
    same(&BTreeMap::from([(Kind::Newtype(1), 1)]));
    same(&BTreeMap::from([((), 1)]));
    same(&BTreeMap::from([(vec![1], 1)]));
    same(&Pairs(&[(f64::NAN, 1)]));
    same(&Pairs(&[(f64::INFINITY, 1)]));
    assert_eq!(
        ours(&BTreeMap::from([(vec![1], 1)]), false),
        Err("key must be a string".to_owned())
    );
}

#[test]
fn failures_and_the_nesting_limit_match() {
    same(&vec![Failing]);
    same(&json!({"a": [1, {"b": "c"}]}));
    let mut deep = json!(1);
    for _ in 0..super::MAX_NESTING_DEPTH - 1 {
        deep = json!([deep]);
    }
    same(&deep);
    assert!(ours(&deep, false).is_ok());
    let deeper = json!({ "k": deep });
    same(&deeper);
    assert_eq!(ours(&json!([deeper]), true), Err("too deep".to_owned()));
    assert_eq!(ours(&Kind::Newtype(1), false).unwrap(), r#"{"Newtype": 1}"#);
}

/// Any JSON value, with keys and strings from every character class.
fn any_value() -> impl Strategy<Value = Value> {
    let text = "\\PC{0,12}|[\\x00-\\x7f]{0,12}|.{0,40}";
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        text.prop_map(Value::from),
    ];
    leaf.prop_recursive(6, 64, 8, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(Value::from),
            prop::collection::vec((text, inner), 0..8)
                .prop_map(|entries| Value::Object(entries.into_iter().collect())),
        ]
    })
}

proptest! {
    #[test]
    fn any_json_value_is_written_byte_for_byte_as_before(value in any_value()) {
        for ascii in [false, true] {
            prop_assert_eq!(ours(&value, ascii), reference(&value, ascii));
        }
    }
}

#[test]
fn raw_json_text_is_written_as_it_is_and_anything_else_stays_json() {
    // Not compared with serde_json: what it writes depends on whether this build has its
    // `raw_value` feature (another crate may ask for it).
    let raw = RawLike {
        text: r#"{"a":[1, 2]}"#,
    };
    assert_eq!(ours(&raw, false).unwrap(), r#"{"a":[1, 2]}"#);
    assert_eq!(ours(&vec![raw], true).unwrap(), r#"[{"a":[1, 2]}]"#);
    let not_json = RawLike { text: "not \"json" };
    let written = ours(&not_json, false).unwrap();
    assert_eq!(
        written,
        r#"{"$serde_json::private::RawValue": "not \"json"}"#
    );
    // JSON (read as any value: with `raw_value`, serde_json's own `Value` reads this key as a
    // `RawValue`'s).
    serde_json::from_str::<serde::de::IgnoredAny>(&written).unwrap();
}
