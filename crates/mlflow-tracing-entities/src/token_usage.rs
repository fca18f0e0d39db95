//! Token usage of LLM calls and its aggregation over a trace (`aggregate_usage_from_spans`).

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Token counts of one LLM call (`mlflow.chat.tokenUsage`) or of a whole trace
/// (`mlflow.trace.tokenUsage`). Field order matches the JSON MLflow writes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenUsage {
    /// Prompt tokens.
    #[serde(default)]
    pub input_tokens: i64,
    /// Completion tokens.
    #[serde(default)]
    pub output_tokens: i64,
    /// Total tokens.
    #[serde(default)]
    pub total_tokens: i64,
    /// Tokens read from a prompt cache.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_read_input_tokens: Option<i64>,
    /// Tokens written to a prompt cache.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_creation_input_tokens: Option<i64>,
    /// Tokens written to a prompt cache with a TTL above one hour.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_creation_input_tokens_above_1hr: Option<i64>,
}

impl TokenUsage {
    /// `input` and `output` tokens, their sum as the total.
    pub fn new(input_tokens: i64, output_tokens: i64) -> Self {
        TokenUsage {
            input_tokens,
            output_tokens,
            total_tokens: input_tokens.saturating_add(output_tokens),
            ..TokenUsage::default()
        }
    }

    /// With tokens read from a prompt cache (`cache_read_input_tokens`).
    #[must_use]
    pub fn with_cache_read(mut self, tokens: i64) -> Self {
        self.cache_read_input_tokens = Some(tokens);
        self
    }

    /// With tokens written to a prompt cache (`cache_creation_input_tokens`).
    #[must_use]
    pub fn with_cache_creation(mut self, tokens: i64) -> Self {
        self.cache_creation_input_tokens = Some(tokens);
        self
    }

    /// Reads a decoded `mlflow.chat.tokenUsage` value; `None` if it is not an object of integers.
    pub fn from_value(value: &Value) -> Option<TokenUsage> {
        if !value.is_object() {
            return None;
        }
        TokenUsage::deserialize(value).ok()
    }

    /// Reads the flat object of integers the SDKs write (`{"input_tokens": 5, …}`) without a
    /// JSON parser; `None` for anything else (an unknown key, a key with escapes, a number that
    /// is not a plain integer, nesting), which the caller reads with serde instead.
    pub(crate) fn from_flat_json(text: &str) -> Option<TokenUsage> {
        let mut usage = TokenUsage::default();
        let mut r = Reader(text.as_bytes());
        r.require(b'{')?;
        if r.eat(b'}') {
            return r.at_end().then_some(usage);
        }
        loop {
            r.require(b'"')?;
            let key = r.take_while(|b| b != b'"' && b != b'\\');
            r.require(b'"')?;
            r.require(b':')?;
            let value = r.integer()?;
            match key {
                b"input_tokens" => usage.input_tokens = value,
                b"output_tokens" => usage.output_tokens = value,
                b"total_tokens" => usage.total_tokens = value,
                b"cache_read_input_tokens" => usage.cache_read_input_tokens = Some(value),
                b"cache_creation_input_tokens" => usage.cache_creation_input_tokens = Some(value),
                b"cache_creation_input_tokens_above_1hr" => {
                    usage.cache_creation_input_tokens_above_1hr = Some(value);
                }
                _ => return None,
            }
            if r.eat(b'}') {
                return r.at_end().then_some(usage);
            }
            r.require(b',')?;
        }
    }

    pub(crate) fn add(&mut self, other: &TokenUsage) {
        fn add_opt(a: &mut Option<i64>, b: Option<i64>) {
            if let Some(b) = b {
                *a = Some(a.unwrap_or(0).saturating_add(b));
            }
        }
        self.input_tokens = self.input_tokens.saturating_add(other.input_tokens);
        self.output_tokens = self.output_tokens.saturating_add(other.output_tokens);
        self.total_tokens = self.total_tokens.saturating_add(other.total_tokens);
        add_opt(
            &mut self.cache_read_input_tokens,
            other.cache_read_input_tokens,
        );
        add_opt(
            &mut self.cache_creation_input_tokens,
            other.cache_creation_input_tokens,
        );
        add_opt(
            &mut self.cache_creation_input_tokens_above_1hr,
            other.cache_creation_input_tokens_above_1hr,
        );
    }
}

/// A cursor over JSON text for [`TokenUsage::from_flat_json`]; whitespace before each token
/// is skipped.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn skip_whitespace(&mut self) {
        while let [b' ' | b'\t' | b'\n' | b'\r', rest @ ..] = self.0 {
            self.0 = rest;
        }
    }

    /// Consumes `byte` when it comes next.
    fn eat(&mut self, byte: u8) -> bool {
        self.skip_whitespace();
        match self.0 {
            [b, rest @ ..] if *b == byte => {
                self.0 = rest;
                true
            }
            _ => false,
        }
    }

    fn require(&mut self, byte: u8) -> Option<()> {
        self.eat(byte).then_some(())
    }

    /// The bytes up to the first one `keep` refuses (not consumed).
    fn take_while(&mut self, keep: impl Fn(u8) -> bool) -> &'a [u8] {
        let n = self
            .0
            .iter()
            .position(|&b| !keep(b))
            .unwrap_or(self.0.len());
        let (taken, rest) = self.0.split_at(n);
        self.0 = rest;
        taken
    }

    /// A JSON integer: an optional minus, then digits with no leading zero (a lone zero aside).
    fn integer(&mut self) -> Option<i64> {
        self.skip_whitespace();
        let negative = self.eat(b'-');
        let digits = self.take_while(|b| b.is_ascii_digit());
        if digits.is_empty() || (digits.len() > 1 && digits[0] == b'0') {
            return None;
        }
        if matches!(self.0.first(), Some(b'.' | b'e' | b'E')) {
            return None;
        }
        let mut value: i64 = 0;
        for &d in digits {
            value = value.checked_mul(10)?.checked_sub(i64::from(d - b'0'))?;
        }
        if negative {
            Some(value)
        } else {
            value.checked_neg()
        }
    }

    fn at_end(&mut self) -> bool {
        self.skip_whitespace();
        self.0.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What serde reads from `text`, for comparison.
    fn with_serde(text: &str) -> Option<TokenUsage> {
        serde_json::from_str(text).ok()
    }

    #[test]
    fn the_flat_reader_agrees_with_serde_and_declines_the_rest() {
        for text in [
            r#"{"input_tokens": 52, "output_tokens": 17, "total_tokens": 69}"#,
            r#"{"input_tokens":1,"output_tokens":2,"total_tokens":3,"cache_read_input_tokens":0}"#,
            r#" { "total_tokens" : -4 , "cache_creation_input_tokens": 9,
                "cache_creation_input_tokens_above_1hr": 1 } "#,
            "{}",
            " { } ",
            r#"{"input_tokens": -9223372036854775808, "output_tokens": 0}"#,
        ] {
            let fast = TokenUsage::from_flat_json(text);
            assert!(fast.is_some(), "{text}");
            assert_eq!(fast, with_serde(text), "{text}");
        }
        // Left to serde: an unknown key, escapes, non-integers, nesting, bad JSON.
        for text in [
            r#"{"input_tokens": 1, "extra": 2}"#,
            r#"{"input\u005ftokens": 1}"#,
            r#"{"input_tokens": 1.0}"#,
            r#"{"input_tokens": 01}"#,
            r#"{"input_tokens": +1}"#,
            r#"{"input_tokens": "1"}"#,
            r#"{"input_tokens": {"a": 1}}"#,
            r#"{"input_tokens": 99999999999999999999}"#,
            r#"{"input_tokens": 1,}"#,
            "[1]",
            "{} x",
            r#"{"input_tokens": - 1}"#,
            r#"{"input_tokens": 1e3}"#,
            r#"{"input_tokens": 1 "output_tokens": 2}"#,
            r#"{"input_tokens": 9223372036854775808}"#,
        ] {
            assert_eq!(TokenUsage::from_flat_json(text), None, "{text}");
        }
    }
}
