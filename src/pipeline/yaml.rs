//! A YAML document as a tree of nodes that remember where they were written,
//! so every later error can point at file:line:column.

use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::Spanned;
use std::fmt;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Loc {
    pub line: u64,
    pub col: u64,
    /// Index into the loader's table of files (for `extends` chains).
    pub file: usize,
}

#[derive(Clone, Debug)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    Map(Vec<(Key, Node)>),
}

#[derive(Clone, Debug)]
pub struct Key {
    pub name: String,
    pub loc: Loc,
}

#[derive(Clone, Debug)]
pub struct Node {
    pub value: Value,
    pub loc: Loc,
}

impl Node {
    pub fn kind(&self) -> &'static str {
        match self.value {
            Value::Null => "null",
            Value::Bool(_) => "a boolean",
            Value::Int(_) => "an integer",
            Value::Float(_) => "a number",
            Value::Str(_) => "a string",
            Value::Seq(_) => "a list",
            Value::Map(_) => "a mapping",
        }
    }

    pub fn as_map(&self) -> Option<&[(Key, Node)]> {
        match &self.value {
            Value::Map(m) => Some(m),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match &self.value {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    pub fn get(&self, key: &str) -> Option<&Node> {
        self.as_map()?.iter().find(|(k, _)| k.name == key).map(|(_, v)| v)
    }

    /// Mark every location in the tree as belonging to file `id`.
    pub fn set_file(&mut self, id: usize) {
        self.loc.file = id;
        match &mut self.value {
            Value::Seq(v) => v.iter_mut().for_each(|n| n.set_file(id)),
            Value::Map(m) => m.iter_mut().for_each(|(k, n)| {
                k.loc.file = id;
                n.set_file(id)
            }),
            _ => {}
        }
    }

    /// Plain JSON, for params and fingerprints (locations dropped).
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value as J;
        match &self.value {
            Value::Null => J::Null,
            Value::Bool(b) => J::Bool(*b),
            Value::Int(i) => J::from(*i),
            Value::Float(f) => serde_json::Number::from_f64(*f).map(J::Number).unwrap_or(J::Null),
            Value::Str(s) => J::String(s.clone()),
            Value::Seq(v) => J::Array(v.iter().map(Node::to_json).collect()),
            Value::Map(m) => J::Object(m.iter().map(|(k, v)| (k.name.clone(), v.to_json())).collect()),
        }
    }
}

impl<'de> Deserialize<'de> for Value {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Value;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any YAML value")
            }
            fn visit_unit<E>(self) -> Result<Value, E> {
                Ok(Value::Null)
            }
            fn visit_none<E>(self) -> Result<Value, E> {
                Ok(Value::Null)
            }
            fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
                Ok(Value::Bool(v))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
                Ok(Value::Int(v))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Value, E> {
                i64::try_from(v).map(Value::Int).map_err(|_| E::custom("integer too large"))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
                Ok(Value::Float(v))
            }
            fn visit_str<E>(self, v: &str) -> Result<Value, E> {
                Ok(Value::Str(v.to_string()))
            }
            fn visit_string<E>(self, v: String) -> Result<Value, E> {
                Ok(Value::Str(v))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut a: A) -> Result<Value, A::Error> {
                let mut v = Vec::new();
                while let Some(n) = a.next_element::<Node>()? {
                    v.push(n);
                }
                Ok(Value::Seq(v))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<Value, A::Error> {
                let mut v = Vec::new();
                while let Some(k) = a.next_key::<Spanned<String>>()? {
                    let n = a.next_value::<Node>()?;
                    let loc = Loc { line: k.referenced.line(), col: k.referenced.column(), file: 0 };
                    v.push((Key { name: k.value, loc }, n));
                }
                Ok(Value::Map(v))
            }
        }
        d.deserialize_any(V)
    }
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = Spanned::<Value>::deserialize(d)?;
        Ok(Node { value: s.value, loc: Loc { line: s.referenced.line(), col: s.referenced.column(), file: 0 } })
    }
}

/// Parse YAML text; a syntax error comes back as (location, message).
pub fn parse(text: &str) -> Result<Node, (Loc, String)> {
    serde_saphyr::from_str::<Node>(text).map_err(|e| {
        let loc = e.location().map(|l| Loc { line: l.line(), col: l.column(), file: 0 }).unwrap_or_default();
        // The crate's message starts with "error: line L column C: "; keep only the what.
        let full = e.to_string();
        let first = full.lines().next().unwrap_or("").to_string();
        let msg = match first.find(": ") {
            Some(i) if first.starts_with("error: line") => {
                let rest = &first[i + 2..];
                rest.split_once(": ").map(|(_, m)| m.to_string()).unwrap_or(rest.to_string())
            }
            _ => first,
        };
        // Drop the parser's advice about its own options: it is not the user's.
        let msg = msg.split(", set DuplicateKeyPolicy").next().unwrap_or(&msg).to_string();
        (loc, msg)
    })
}
