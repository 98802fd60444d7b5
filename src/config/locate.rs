//! Dotted key paths (`variants[2].training.trainable_from`) and the line each one is written on.
//!
//! Lines come from `toml_edit`'s spans: the line of the deepest part of the path that the document
//! actually spells out (a key, a `[table]` header, an `[[array]]` entry or an array element).

use std::fmt;

use toml_edit::{Array, ArrayOfTables, InlineTable, Item, Table, Value};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    Key(String),
    Index(usize),
}

/// A path to a value in the experiment file, displayed as `a.b[2].c`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyPath(Vec<Segment>);

impl KeyPath {
    /// A path written in dotted form; keys must not themselves contain `.` or `[`.
    pub fn parse(dotted: &str) -> Self {
        let mut segments = Vec::new();
        for part in dotted.split('.').filter(|p| !p.is_empty()) {
            let mut pieces = part.split('[');
            if let Some(key) = pieces.next().filter(|k| !k.is_empty()) {
                segments.push(Segment::Key(key.to_string()));
            }
            for index in pieces {
                if let Ok(i) = index.trim_end_matches(']').parse() {
                    segments.push(Segment::Index(i));
                }
            }
        }
        KeyPath(segments)
    }

    pub fn key(mut self, key: &str) -> Self {
        self.0.push(Segment::Key(key.to_string()));
        self
    }

    pub fn index(mut self, index: usize) -> Self {
        self.0.push(Segment::Index(index));
        self
    }

    pub fn join(mut self, other: &KeyPath) -> Self {
        self.0.extend(other.0.iter().cloned());
        self
    }

    pub fn from_segments(segments: &[Segment]) -> Self {
        KeyPath(segments.to_vec())
    }

    pub fn segments(&self) -> &[Segment] {
        &self.0
    }

    pub fn last_key(&self) -> Option<&str> {
        match self.0.last() {
            Some(Segment::Key(k)) => Some(k),
            _ => None,
        }
    }

    /// Converts the path `serde_path_to_error` recorded.
    pub fn from_serde(path: &serde_path_to_error::Path) -> Self {
        use serde_path_to_error::Segment as S;
        let mut segments = Vec::new();
        for segment in path.iter() {
            match segment {
                S::Seq { index } => segments.push(Segment::Index(*index)),
                S::Map { key } => segments.push(Segment::Key(key.clone())),
                S::Enum { .. } | S::Unknown => {}
            }
        }
        KeyPath(segments)
    }
}

impl fmt::Display for KeyPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("(top level)");
        }
        for (i, segment) in self.0.iter().enumerate() {
            match segment {
                Segment::Key(k) if i == 0 => f.write_str(k)?,
                Segment::Key(k) => write!(f, ".{k}")?,
                Segment::Index(n) => write!(f, "[{n}]")?,
            }
        }
        Ok(())
    }
}

/// A position inside the parsed document while walking a path.
enum Node<'a> {
    Table(&'a Table),
    Inline(&'a InlineTable),
    Array(&'a Array),
    Tables(&'a ArrayOfTables),
    Leaf,
}

fn node_of_item(item: &Item) -> Node<'_> {
    match item {
        Item::Table(t) => Node::Table(t),
        Item::ArrayOfTables(a) => Node::Tables(a),
        Item::Value(v) => node_of_value(v),
        Item::None => Node::Leaf,
    }
}

fn node_of_value(value: &Value) -> Node<'_> {
    match value {
        Value::InlineTable(t) => Node::Inline(t),
        Value::Array(a) => Node::Array(a),
        _ => Node::Leaf,
    }
}

/// The 1-based line of `path` in `doc`, or of its deepest prefix that the document spells out;
/// `None` when not even the first key is written.
pub fn line_of(doc: &toml_edit::Document<&str>, path: &KeyPath) -> Option<usize> {
    let mut node = Node::Table(doc.as_table());
    let mut offset = None;
    for segment in path.segments() {
        let (start, next) = match (segment, node) {
            (Segment::Key(k), Node::Table(t)) => match t.get_key_value(k) {
                Some((key, item)) => (key.span().or_else(|| item.span()), node_of_item(item)),
                None => break,
            },
            (Segment::Key(k), Node::Inline(t)) => match t.get_key_value(k) {
                Some((key, item)) => (key.span().or_else(|| item.span()), node_of_item(item)),
                None => break,
            },
            (Segment::Index(i), Node::Tables(a)) => match a.get(*i) {
                Some(t) => (t.span(), Node::Table(t)),
                None => break,
            },
            (Segment::Index(i), Node::Array(a)) => match a.get(*i) {
                Some(v) => (v.span(), node_of_value(v)),
                None => break,
            },
            _ => break,
        };
        if let Some(span) = start {
            offset = Some(span.start);
        }
        node = next;
    }
    offset.map(|o| line_at(doc.raw(), o))
}

/// The 1-based line of byte `offset` in `text`.
pub fn line_at(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    text.as_bytes()[..end]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_display_and_parse() {
        let path = KeyPath::parse("variants[2].training.trainable_from");
        assert_eq!(path.to_string(), "variants[2].training.trainable_from");
        assert_eq!(
            path,
            KeyPath::default()
                .key("variants")
                .index(2)
                .key("training")
                .key("trainable_from")
        );
        assert_eq!(KeyPath::parse("a.b[0][1]").to_string(), "a.b[0][1]");
        assert_eq!(KeyPath::default().to_string(), "(top level)");
    }

    #[test]
    fn lines_of_every_kind_of_key() {
        let text = r#"seeds = [0]

[dataset]
image_size = [
    150,
    150,
]
augmentation = [{ type = "flip" }, { type = "rotation", factor = 0.1 }]

[dataset.synthetic]
size = 64

[[variants]]
name = "a"

[[variants]]
name = "b"
training.freeze = ["block*"]
model = { weights = { file = "w" } }
"#;
        let doc = toml_edit::Document::parse(text).unwrap();
        let cases = [
            ("seeds", Some(1)),
            ("dataset", Some(3)),
            ("dataset.image_size", Some(4)),
            ("dataset.image_size[1]", Some(6)),
            ("dataset.augmentation[1].factor", Some(8)),
            ("dataset.synthetic", Some(10)),
            ("dataset.synthetic.size", Some(11)),
            // Not written: the nearest written parent.
            ("dataset.synthetic.seed", Some(10)),
            ("variants[1]", Some(16)),
            ("variants[1].training.freeze", Some(18)),
            ("variants[1].model.weights.file", Some(19)),
            ("variants[5].name", Some(13)),
            ("training.epochs", None),
        ];
        for (path, line) in cases {
            assert_eq!(line_of(&doc, &KeyPath::parse(path)), line, "{path}");
        }
    }
}
