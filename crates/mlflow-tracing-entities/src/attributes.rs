//! [`SpanAttributes`]: a span's attributes as stored, in order.
//!
//! A list, looked up by scanning: a span holds tens of attributes, so no hashing is needed, and
//! the keys MLflow and instrumentation write are static strings, kept without a copy.

use std::borrow::Cow;
use std::fmt;

use serde::de::{MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

/// A span's attributes: keys in the order first set, values as stored (JSON text for values
/// MLflow set). Serialized as a JSON object.
#[derive(Clone, Default, PartialEq)]
pub struct SpanAttributes(Vec<(Cow<'static, str>, Value)>);

impl fmt::Debug for SpanAttributes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl SpanAttributes {
    /// No attributes.
    pub fn new() -> Self {
        SpanAttributes(Vec::new())
    }

    /// No attributes, with room for `n`.
    pub fn with_capacity(n: usize) -> Self {
        SpanAttributes(Vec::with_capacity(n))
    }

    /// Attributes whose keys are known to be distinct (the span API's recorded state), taken
    /// as they are. A repeated key would be kept twice; use [`SpanAttributes::insert`] or
    /// `collect` when keys may repeat.
    pub fn from_distinct(entries: Vec<(Cow<'static, str>, Value)>) -> Self {
        SpanAttributes(entries)
    }

    /// Room for `additional` more attributes.
    pub fn reserve(&mut self, additional: usize) {
        self.0.reserve(additional);
    }

    /// The stored value of `key`.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// Whether `key` is set.
    pub fn contains_key(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    /// Sets `key` to `value`; a key already set keeps its place. Returns the previous value.
    pub fn insert(&mut self, key: impl Into<Cow<'static, str>>, value: Value) -> Option<Value> {
        let key = key.into();
        match self.0.iter_mut().find(|(k, _)| *k == key) {
            Some((_, v)) => Some(std::mem::replace(v, value)),
            None => {
                self.0.push((key, value));
                None
            }
        }
    }

    /// Removes `key`, keeping the order of the others; returns its value.
    pub fn shift_remove(&mut self, key: &str) -> Option<Value> {
        let i = self.0.iter().position(|(k, _)| k == key)?;
        Some(self.0.remove(i).1)
    }

    /// Keys and values, in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Value)> {
        self.0.iter().map(|(k, v)| (k.as_ref(), v))
    }

    /// Keys, in order.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(|(k, _)| k.as_ref())
    }

    /// How many attributes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// A copy as a JSON object.
    pub fn to_map(&self) -> Map<String, Value> {
        self.iter()
            .map(|(k, v)| (k.to_owned(), v.clone()))
            .collect()
    }
}

impl<K: Into<Cow<'static, str>>> FromIterator<(K, Value)> for SpanAttributes {
    /// Later values of a repeated key replace earlier ones (in the earlier place).
    fn from_iter<I: IntoIterator<Item = (K, Value)>>(iter: I) -> Self {
        let mut attributes = SpanAttributes::new();
        for (k, v) in iter {
            attributes.insert(k, v);
        }
        attributes
    }
}

impl From<Map<String, Value>> for SpanAttributes {
    fn from(map: Map<String, Value>) -> Self {
        // A JSON object's keys are distinct.
        SpanAttributes(map.into_iter().map(|(k, v)| (Cow::Owned(k), v)).collect())
    }
}

impl Serialize for SpanAttributes {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            map.serialize_entry(k.as_ref(), v)?;
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for SpanAttributes {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Attrs;
        impl<'de> Visitor<'de> for Attrs {
            type Value = SpanAttributes;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object of span attributes")
            }
            fn visit_map<A: MapAccess<'de>>(
                self,
                mut access: A,
            ) -> Result<SpanAttributes, A::Error> {
                let mut attributes = SpanAttributes::with_capacity(access.size_hint().unwrap_or(0));
                while let Some((k, v)) = access.next_entry::<String, Value>()? {
                    attributes.insert(k, v);
                }
                Ok(attributes)
            }
        }
        deserializer.deserialize_map(Attrs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn behaves_as_an_ordered_map() {
        let mut a = SpanAttributes::new();
        assert_eq!(a.insert("b", Value::from(1)), None);
        a.insert(String::from("a"), Value::from(2));
        assert_eq!(a.insert("b", Value::from(3)), Some(Value::from(1)));
        assert_eq!(
            a.keys().collect::<Vec<_>>(),
            ["b", "a"],
            "a key set again keeps its place"
        );
        assert_eq!(a.get("b"), Some(&Value::from(3)));
        assert_eq!(serde_json::to_string(&a).unwrap(), r#"{"b":3,"a":2}"#);
        let back: SpanAttributes = serde_json::from_str(r#"{"z":1,"y":2,"z":3}"#).unwrap();
        assert_eq!(back.keys().collect::<Vec<_>>(), ["z", "y"]);
        assert_eq!(back.get("z"), Some(&Value::from(3)));
        assert_eq!(a.shift_remove("b"), Some(Value::from(3)));
        assert_eq!(a.len(), 1);
    }
}
