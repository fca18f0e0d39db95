//! Compile-fail tests: misuse of `#[trace]` gives messages that say what to do.

#[test]
fn misuse_of_trace_fails_to_compile_with_clear_messages() {
    let cases = trybuild::TestCases::new();
    cases.compile_fail("ui/*.rs");
}
