use super::{at_least, supports_otlp};

#[test]
fn traces_need_a_server_with_start_trace_v3() {
    for (v, ok) in [
        ("3.2.0", true),
        ("3.17.2", true),
        ("3.1.4", false),
        ("2.22.5", false),
        ("garbage", false),
    ] {
        assert_eq!(at_least(v, (3, 2)), ok, "{v}");
    }
}

#[test]
fn otlp_needs_server_3_4() {
    for (v, ok) in [
        ("3.17.2", true),
        ("3.4.0", true),
        ("3.4.0.dev0", true),
        ("4.0", true),
        ("3.3.2", false),
        ("2.22.1", false),
        ("garbage", false),
    ] {
        assert_eq!(supports_otlp(v), ok, "{v}");
    }
}
