use super::*;
use serde_json::json;

#[test]
fn python_separators_and_ascii_escapes() {
    let v = json!({"a": [1, 2.5, "北京☀️"], "b": null, "c": true});
    assert_eq!(
        to_python_json(&v).unwrap(),
        r#"{"a": [1, 2.5, "\u5317\u4eac\u2600\ufe0f"], "b": null, "c": true}"#
    );
    assert_eq!(
        to_attribute_json(&v).unwrap(),
        r#"{"a": [1, 2.5, "北京☀️"], "b": null, "c": true}"#
    );
    // Emoji outside the BMP become surrogate pairs, DEL is escaped like Python does.
    assert_eq!(
        to_python_json("😊\u{7f}").unwrap(),
        r#""\ud83d\ude0a\u007f""#
    );
    assert_eq!(
        to_python_json("\u{1}\n\t\"\\/").unwrap(),
        r#""\u0001\n\t\"\\/""#
    );
}

#[test]
fn values_larger_than_the_kept_scratch_buffer_are_written_whole() {
    let big = "é\"".repeat(40_000); // 120 KB of UTF-8, escapes included
    let small = json!({"k": "v"});
    for _ in 0..2 {
        assert_eq!(
            to_attribute_json(&big).unwrap(),
            serde_json::to_string(&big).unwrap()
        );
        assert_eq!(to_attribute_json(&small).unwrap(), r#"{"k": "v"}"#);
        let copied = with_attribute_json(&big, <[u8]>::to_vec).unwrap();
        assert_eq!(copied, serde_json::to_vec(&big).unwrap());
    }
    // A failing value leaves nothing behind for the next one.
    let mut deep = json!(1);
    for _ in 0..(MAX_NESTING_DEPTH + 2) {
        deep = json!([deep]);
    }
    assert!(to_attribute_json(&deep).is_err());
    assert_eq!(to_attribute_json(&small).unwrap(), r#"{"k": "v"}"#);
    assert_eq!(string_attribute_json("a\"b"), r#""a\"b""#);
}

#[test]
fn python_float_repr_matches_python() {
    let cases = [
        (1.0, "1.0"),
        (2.5, "2.5"),
        (0.1, "0.1"),
        (5.4e-06, "5.4e-06"),
        (1.26e-05, "1.26e-05"),
        (0.0001, "0.0001"),
        (0.00001, "1e-05"),
        (1e16, "1e+16"),
        (1e15, "1000000000000000.0"),
        (123456789.125, "123456789.125"),
        (-0.0, "-0.0"),
        (1.5e300, "1.5e+300"),
        (12345678901234567.0, "1.2345678901234568e+16"),
        (f64::MAX, "1.7976931348623157e+308"),
        (5e-324, "5e-324"),
    ];
    for (v, want) in cases {
        assert_eq!(python_float_repr(v), want, "{v:e}");
    }
}

#[test]
fn non_finite_floats_become_null() {
    let v = vec![f64::NAN, f64::INFINITY, f64::NEG_INFINITY, 1.0];
    assert_eq!(to_attribute_json(&v).unwrap(), "[null, null, null, 1.0]");
}

#[test]
fn big_integers_are_exact() {
    let v = json!([
        9007199254740993u64,
        -9223372036854775808i64,
        18446744073709551615u64
    ]);
    assert_eq!(
        to_attribute_json(&v).unwrap(),
        "[9007199254740993, -9223372036854775808, 18446744073709551615]"
    );
    assert_eq!(
        to_attribute_json(&(1u128 << 100)).unwrap(),
        "1267650600228229401496703205376"
    );
}

fn nested(depth: usize) -> Value {
    let mut v = Value::from(1);
    for _ in 0..depth {
        v = Value::Array(vec![v]);
    }
    v
}

#[test]
fn nesting_is_bounded_on_write_and_read() {
    let ok = to_attribute_json(&nested(MAX_NESTING_DEPTH)).unwrap();
    assert_eq!(parse_json::<Value>(&ok).unwrap(), nested(MAX_NESTING_DEPTH));
    assert!(matches!(
        to_attribute_json(&nested(MAX_NESTING_DEPTH + 1)),
        Err(EntityError::TooDeep { .. })
    ));
    // A value that would nest 10,000 levels is cut off at the limit while being written,
    // so serialization never recurses that deep.
    struct Deep(usize);
    impl Serialize for Deep {
        fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
            use serde::ser::SerializeSeq;
            if self.0 == 0 {
                return s.serialize_u8(1);
            }
            let mut seq = s.serialize_seq(Some(1))?;
            seq.serialize_element(&Deep(self.0 - 1))?;
            seq.end()
        }
    }
    let err = to_attribute_json(&Deep(10_000)).unwrap_err();
    assert!(err.to_string().contains("deeper than 100 levels"), "{err}");
    // 10,000 levels of input text: an error, no stack overflow.
    let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    let err = parse_json::<Value>(&deep).unwrap_err();
    assert!(matches!(err, EntityError::TooDeep { .. }), "{err}");
    assert!(err.to_string().contains("deeper than"));
}

#[test]
fn lone_surrogates_read_as_replacement_char() {
    let v: Value =
        parse_json(r#"["\ud800", "a\udc00b", "\ud83d\ude0a", "\\ud800", "\ud800\u0041"]"#).unwrap();
    assert_eq!(
        v,
        json!(["\u{fffd}", "a\u{fffd}b", "😊", "\\ud800", "\u{fffd}A"])
    );
    // Truncated escape at the end: still an error, not a panic.
    assert!(parse_json::<Value>(r#""\ud8"#).is_err());
    assert!(parse_json::<Value>("\"\\ud800").is_err());
}

#[test]
fn invalid_utf8_is_an_error() {
    let err = parse_json_bytes::<Value>(b"\"ab\xff\"").unwrap_err();
    assert!(
        matches!(err, EntityError::InvalidUtf8 { offset: 3 }),
        "{err}"
    );
}

#[test]
fn decode_attribute_follows_mlflow() {
    assert_eq!(decode_attribute(&json!("\"LLM\"")), Some(json!("LLM")));
    assert_eq!(
        decode_attribute(&json!("{\"a\": 1}")),
        Some(json!({"a": 1}))
    );
    assert_eq!(
        decode_attribute(&json!("not json")),
        Some(json!("not json"))
    );
    assert_eq!(decode_attribute(&json!("")), None);
    assert_eq!(decode_attribute(&json!(3)), Some(json!(3)));
}

#[test]
fn strings_are_written_as_serde_json_writes_them() {
    for text in [
        "",
        "chat",
        "gpt-4o-mini",
        "é ✓ 🦀",
        "\u{7f} is kept",
        "a\"b",
        "back\\slash",
        "line\nbreak\ttab\r\u{1}\u{1f}",
        "</script>",
    ] {
        assert_eq!(
            string_attribute_json(text),
            serde_json::to_string(text).unwrap(),
            "{text:?}"
        );
        assert_eq!(
            AttributeJson::string(text).as_str(),
            string_attribute_json(text)
        );
    }
}
