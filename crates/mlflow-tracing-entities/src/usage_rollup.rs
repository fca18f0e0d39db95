//! The token usage of a whole trace: the spans' usage summed without counting a parent's
//! roll-up twice.

use crate::ids::SpanId;
use crate::span::Span;
use crate::token_usage::TokenUsage;

/// What is known of a span's ancestors while the trace is walked.
#[derive(Clone, Copy, PartialEq)]
enum Above {
    Unknown,
    /// On the path being walked.
    Visiting,
    /// Reached from a root; whether an ancestor has usage.
    Root {
        has_usage: bool,
    },
    /// Part of (or below) a cycle of parents: no root above it.
    Cycle,
}

impl TokenUsage {
    /// Sums usage over a trace's spans without counting a parent's roll-up twice: a span's usage
    /// counts only when no ancestor has usage. Spans whose parent is not in `spans` are roots;
    /// spans under a cycle of parents have no root and do not count. Iterative (no recursion),
    /// so 10,000-deep span trees are fine. `None` if no span counts.
    pub fn aggregate<'a>(spans: impl IntoIterator<Item = &'a Span>) -> Option<TokenUsage> {
        let spans: Vec<&Span> = spans.into_iter().collect();
        let usages: Vec<Option<TokenUsage>> = spans.iter().map(|s| s.token_usage()).collect();
        if usages.iter().all(Option::is_none) {
            return None;
        }
        // Parents by binary search over the sorted ids (no hashing).
        let mut ids: Vec<(SpanId, usize)> = spans
            .iter()
            .enumerate()
            .map(|(i, s)| (s.span_id(), i))
            .collect();
        ids.sort_unstable_by_key(|(id, _)| *id);
        let parent_of: Vec<Option<usize>> = spans
            .iter()
            .map(|s| {
                let p = s.parent_id()?;
                let k = ids.binary_search_by_key(&p, |(id, _)| *id).ok()?;
                Some(ids[k].1)
            })
            .collect();
        let mut above = vec![Above::Unknown; spans.len()];
        let mut path = Vec::new();
        let mut total = TokenUsage::default();
        let mut found = false;
        for i in 0..spans.len() {
            // Up from `i` to the first span whose ancestors are known (or a root, or a cycle)...
            let mut j = i;
            let mut top = loop {
                match above[j] {
                    Above::Unknown => {
                        above[j] = Above::Visiting;
                        path.push(j);
                        match parent_of[j] {
                            Some(p) => j = p,
                            None => break Above::Root { has_usage: false },
                        }
                    }
                    Above::Visiting => break Above::Cycle,
                    Above::Root { has_usage } => {
                        break Above::Root {
                            has_usage: has_usage || usages[j].is_some(),
                        };
                    }
                    Above::Cycle => break Above::Cycle,
                }
            };
            // ...then back down the path.
            while let Some(k) = path.pop() {
                above[k] = top;
                if let Above::Root { has_usage } = top {
                    top = Above::Root {
                        has_usage: has_usage || usages[k].is_some(),
                    };
                }
            }
        }
        for (usage, above) in usages.iter().zip(&above) {
            if let (Some(u), Above::Root { has_usage: false }) = (usage, above) {
                total.add(u);
                found = true;
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
