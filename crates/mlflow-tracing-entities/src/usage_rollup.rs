//! The token usage of a whole trace: the spans' usage summed without counting a parent's
//! roll-up twice.

use std::collections::HashMap;

use crate::ids::SpanId;
use crate::span::Span;
use crate::token_usage::TokenUsage;

impl TokenUsage {
    /// Sums usage over a trace's spans without counting a parent's roll-up twice: a span's usage
    /// counts only when no ancestor has usage. Spans whose parent is not in `spans` are roots.
    /// Iterative (no recursion), so 10,000-deep span trees are fine. `None` if no span has usage.
    pub fn aggregate<'a>(spans: impl IntoIterator<Item = &'a Span>) -> Option<TokenUsage> {
        let spans: Vec<&Span> = spans.into_iter().collect();
        let usages: Vec<Option<TokenUsage>> = spans.iter().map(|s| s.token_usage()).collect();
        if usages.iter().all(Option::is_none) {
            return None;
        }
        let ids: std::collections::HashSet<SpanId> = spans.iter().map(|s| s.span_id()).collect();
        let mut children: HashMap<SpanId, Vec<usize>> = HashMap::new();
        let mut stack: Vec<(usize, bool)> = Vec::new();
        for (i, span) in spans.iter().enumerate() {
            match span.parent_id() {
                Some(p) if ids.contains(&p) => children.entry(p).or_default().push(i),
                _ => stack.push((i, false)),
            }
        }
        let mut total = TokenUsage::default();
        let mut found = false;
        while let Some((i, ancestor_has)) = stack.pop() {
            let usage = &usages[i];
            if let (Some(u), false) = (usage, ancestor_has) {
                total.add(u);
                found = true;
            }
            let has = ancestor_has || usage.is_some();
            if let Some(kids) = children.get(&spans[i].span_id()) {
                stack.extend(kids.iter().map(|&k| (k, has)));
            }
        }
        found.then_some(total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::TraceId;
    use serde_json::Value;
    use serde_json::json;

    fn span(id: u64, parent: Option<u64>, usage: Option<Value>) -> Span {
        let mut b = Span::builder(TraceId::from_int(7), SpanId::from_int(id), format!("s{id}"))
            .parent(parent.map(SpanId::from_int));
        if let Some(u) = usage {
            b = b.attribute(crate::keys::span::CHAT_USAGE, &u).unwrap();
        }
        b.build()
    }

    #[test]
    fn parent_rollups_are_not_counted_twice() {
        let u = |i, o| json!({"input_tokens": i, "output_tokens": o, "total_tokens": i + o});
        let spans = vec![
            span(1, None, None),
            // An agent span that already rolls up its two LLM children...
            span(2, Some(1), Some(u(30, 3))),
            span(3, Some(2), Some(u(10, 1))),
            span(4, Some(2), Some(u(20, 2))),
            // ...and an independent LLM call elsewhere in the tree.
            span(
                5,
                Some(1),
                Some(
                    json!({"input_tokens": 5, "output_tokens": 5, "total_tokens": 10, "cache_read_input_tokens": 4}),
                ),
            ),
            // A span whose parent is missing counts as a root.
            span(6, Some(99), Some(u(1, 1))),
        ];
        let total = TokenUsage::aggregate(&spans).unwrap();
        assert_eq!(
            (total.input_tokens, total.output_tokens, total.total_tokens),
            (36, 9, 45)
        );
        assert_eq!(total.cache_read_input_tokens, Some(4));
        assert_eq!(total.cache_creation_input_tokens, None);
        assert_eq!(
            crate::json::to_python_json(&total).unwrap(),
            r#"{"input_tokens": 36, "output_tokens": 9, "total_tokens": 45, "cache_read_input_tokens": 4}"#
        );
        assert_eq!(TokenUsage::aggregate(&spans[..1]), None);
    }

    #[test]
    fn deep_and_cyclic_trees_do_not_overflow_or_loop() {
        let mut spans: Vec<Span> = (1..=10_000u64)
            .map(|i| span(i, (i > 1).then(|| i - 1), None))
            .collect();
        spans.push(span(10_001, Some(10_000), Some(json!({"input_tokens": 1}))));
        assert_eq!(TokenUsage::aggregate(&spans).unwrap().input_tokens, 1);
        // Two spans that are each other's parent form no root: nothing to count, no hang.
        let cycle = vec![
            span(1, Some(2), Some(json!({"input_tokens": 1}))),
            span(2, Some(1), None),
        ];
        assert_eq!(TokenUsage::aggregate(&cycle), None);
    }

    #[test]
    fn malformed_usage_is_ignored() {
        let spans = vec![
            span(1, None, Some(json!("lots"))),
            span(2, Some(1), Some(json!({"input_tokens": "x"}))),
        ];
        assert_eq!(TokenUsage::aggregate(&spans), None);
    }
}
