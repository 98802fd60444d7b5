//! A serde `Deserializer` over `toml::Value` whose errors keep their structure.
//!
//! toml's own deserializer renders errors to text ("unknown field `x`, expected one of ...");
//! this one renders them in the house wording (`unknown key "x" (expected one of: ...)`,
//! `expected an integer, found a string "32"`) and remembers which key was unknown, so the caller
//! can point at its line. Paths are tracked by `serde_path_to_error` around it.

use std::fmt;

use serde::de::{
    self, value::MapDeserializer, value::SeqDeserializer, Expected, IntoDeserializer, Unexpected,
    Visitor,
};

/// A deserialization error: the message without key or line, and the unknown key if that is
/// what went wrong (its path is then the map's path plus this key).
#[derive(Debug, Clone, PartialEq)]
pub struct DeError {
    pub message: String,
    pub unknown_key: Option<String>,
}

impl DeError {
    fn new(message: String) -> Self {
        DeError {
            message,
            unknown_key: None,
        }
    }
}

impl fmt::Display for DeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for DeError {}

impl de::Error for DeError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        DeError::new(msg.to_string())
    }

    fn invalid_type(unexp: Unexpected<'_>, exp: &dyn Expected) -> Self {
        // A wrong type needs the kind of value; the exact range only matters for a wrong value.
        let expected = match exp.to_string().as_str() {
            "u32" => "a non-negative integer".to_string(),
            _ => expected(exp),
        };
        DeError::new(format!("expected {expected}, found {}", found(unexp)))
    }

    fn invalid_value(unexp: Unexpected<'_>, exp: &dyn Expected) -> Self {
        DeError::new(format!(
            "expected {}, found {}",
            expected(exp),
            found(unexp)
        ))
    }

    fn invalid_length(len: usize, exp: &dyn Expected) -> Self {
        DeError::new(format!(
            "expected {}, found an array of {}",
            expected(exp),
            elements(len)
        ))
    }

    fn unknown_variant(variant: &str, expected: &'static [&'static str]) -> Self {
        let quoted: Vec<String> = expected.iter().map(|v| format!("{v:?}")).collect();
        DeError::new(format!(
            "unknown value {variant:?} (expected one of: {})",
            quoted.join(", ")
        ))
    }

    fn unknown_field(field: &str, expected: &'static [&'static str]) -> Self {
        let message = if expected.is_empty() {
            format!("unknown key {field:?} (this table takes no keys)")
        } else {
            format!(
                "unknown key {field:?} (expected one of: {})",
                expected.join(", ")
            )
        };
        DeError {
            message,
            unknown_key: Some(field.to_string()),
        }
    }

    fn missing_field(field: &'static str) -> Self {
        DeError::new(format!("missing key {field:?}"))
    }

    fn duplicate_field(field: &'static str) -> Self {
        DeError::new(format!("key {field:?} is given twice"))
    }
}

fn elements(n: usize) -> String {
    if n == 1 {
        "1 element".to_string()
    } else {
        format!("{n} elements")
    }
}

/// serde's names for what a visitor expected, in the words of a TOML user.
fn expected(exp: &dyn Expected) -> String {
    let text = exp.to_string();
    match text.as_str() {
        "u8" | "u16" | "u64" | "u128" | "usize" => "a non-negative integer".to_string(),
        "u32" => "an integer from 0 to 4294967295".to_string(),
        "i8" | "i16" | "i32" | "i64" | "i128" | "isize" => "an integer".to_string(),
        "f32" | "f64" => "a number".to_string(),
        "a sequence" => "an array".to_string(),
        "a map" => "a table".to_string(),
        _ => {
            if text.starts_with("struct ") {
                return "a table".to_string();
            }
            let count = text
                .strip_prefix("an array of length ")
                .or_else(|| text.strip_suffix(" elements in sequence"))
                .or_else(|| text.strip_suffix(" element in sequence"))
                .and_then(|n| n.parse::<usize>().ok());
            match count {
                Some(n) => format!("an array of {}", elements(n)),
                None => text,
            }
        }
    }
}

fn found(unexp: Unexpected<'_>) -> String {
    match unexp {
        Unexpected::Bool(b) => format!("a boolean {b}"),
        Unexpected::Unsigned(n) => format!("an integer {n}"),
        Unexpected::Signed(n) => format!("an integer {n}"),
        Unexpected::Float(x) => format!("a float {x:?}"),
        Unexpected::Str(s) => format!("a string {s:?}"),
        Unexpected::Seq => "an array".to_string(),
        Unexpected::Map => "a table".to_string(),
        other => other.to_string(),
    }
}

fn unexpected(value: &toml::Value) -> Unexpected<'_> {
    match value {
        toml::Value::String(s) => Unexpected::Str(s),
        toml::Value::Integer(i) => Unexpected::Signed(*i),
        toml::Value::Float(x) => Unexpected::Float(*x),
        toml::Value::Boolean(b) => Unexpected::Bool(*b),
        toml::Value::Datetime(_) => Unexpected::Other("a date-time"),
        toml::Value::Array(_) => Unexpected::Seq,
        toml::Value::Table(_) => Unexpected::Map,
    }
}

/// What a plain enum accepts, listed from its variant names.
struct OneOf(&'static [&'static str]);

impl Expected for OneOf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let quoted: Vec<String> = self.0.iter().map(|v| format!("{v:?}")).collect();
        write!(f, "one of {}", quoted.join(", "))
    }
}

/// Deserializes one TOML value (and, recursively, what it contains).
pub struct ValueDe(pub toml::Value);

impl<'de> IntoDeserializer<'de, DeError> for ValueDe {
    type Deserializer = ValueDe;

    fn into_deserializer(self) -> ValueDe {
        self
    }
}

impl<'de> de::Deserializer<'de> for ValueDe {
    type Error = DeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match self.0 {
            toml::Value::String(s) => visitor.visit_string(s),
            toml::Value::Integer(i) => visitor.visit_i64(i),
            toml::Value::Float(x) => visitor.visit_f64(x),
            toml::Value::Boolean(b) => visitor.visit_bool(b),
            // No key takes a date-time: say so rather than pass it off as a string.
            toml::Value::Datetime(d) => Err(de::Error::invalid_type(
                Unexpected::Other(&format!("a date-time {d}")),
                &visitor,
            )),
            toml::Value::Array(items) => {
                let mut seq = SeqDeserializer::new(items.into_iter().map(ValueDe));
                let value = visitor.visit_seq(&mut seq)?;
                seq.end()?;
                Ok(value)
            }
            toml::Value::Table(table) => {
                let mut map = MapDeserializer::new(table.into_iter().map(|(k, v)| (k, ValueDe(v))));
                let value = visitor.visit_map(&mut map)?;
                map.end()?;
                Ok(value)
            }
        }
    }

    /// TOML has no null: a present key is always `Some`.
    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_some(self)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        visitor.visit_newtype_struct(self)
    }

    /// Plain enums are written as strings (`preprocessing = "caffe"`).
    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        match self.0 {
            toml::Value::String(s) => visitor.visit_enum(s.into_deserializer()),
            other => Err(de::Error::invalid_type(
                unexpected(&other),
                &OneOf(variants),
            )),
        }
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf unit unit_struct seq tuple tuple_struct map struct
        identifier ignored_any
    }
}
