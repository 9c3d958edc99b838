//! `response_format` `json_schema` (and a forced tool call's `parameters`) as a
//! [`Grammar`].
//!
//! A schema compiles to a straight line of segments: an object with `properties`
//! becomes its braces, keys and separators as fixed text with each property's value
//! between them, in the schema's order. Every property is written, so `required` and
//! `additionalProperties: false` always hold; nothing is left to the model but the
//! values. Leaves are typed JSON values (string, number, integer, boolean, null,
//! `enum`, `const`, an array of scalars, a free object or any value).
//!
//! What a straight line cannot hold is refused with the keyword and its path rather
//! than ignored: alternatives (`anyOf`, `oneOf`, a `type` list beyond one type and
//! `null`), references, arrays of objects or arrays, and value constraints the
//! recognizer does not check (`pattern`, `minimum`, `maxLength`, …). An answer that
//! claims to follow a schema it was not held to would be worse than a clear 400.

use crate::constraint::{check_one_of, Grammar, JsonItem, JsonKind, JsonType, Segment};
use serde_json::Value;

/// Deepest nesting of schemas.
pub const MAX_SCHEMA_DEPTH: usize = 32;
/// Most segments one schema compiles to.
pub const MAX_SEGMENTS: usize = 4096;

/// Keywords that describe a schema without constraining its values (or, as `required`
/// and `additionalProperties`, that the compiled grammar always satisfies).
const DESCRIPTIVE: [&str; 10] = [
    "title",
    "description",
    "$schema",
    "$id",
    "$comment",
    "default",
    "examples",
    "required",
    "additionalProperties",
    "strict",
];
const ENFORCED: [&str; 5] = ["type", "properties", "items", "enum", "const"];

/// Why a schema cannot be enforced.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SchemaError {
    #[error(
        "{path}: {what} is not enforced by terse's grammar (it enforces type, properties, \
         items, enum and const)"
    )]
    Unsupported { path: String, what: String },
    #[error("{path}: {message}")]
    Invalid { path: String, message: String },
}

fn invalid(path: &str, message: impl Into<String>) -> SchemaError {
    SchemaError::Invalid {
        path: path.to_string(),
        message: message.into(),
    }
}

fn unsupported(path: &str, what: impl Into<String>) -> SchemaError {
    SchemaError::Unsupported {
        path: path.to_string(),
        what: what.into(),
    }
}

impl Grammar {
    /// The grammar of answers that are instances of `schema`.
    pub fn from_json_schema(schema: &Value) -> Result<Grammar, SchemaError> {
        let grammar =
            Grammar::new(schema_segments(schema)?).map_err(|e| invalid("$", e.to_string()))?;
        Ok(grammar.with_schema(schema.clone()))
    }
}

/// The segments of one instance of `schema`, to place inside a larger grammar.
pub fn schema_segments(schema: &Value) -> Result<Vec<Segment>, SchemaError> {
    let mut out = Segments(Vec::new());
    out.value(schema, "$", 0)?;
    Ok(out.0)
}

struct Segments(Vec<Segment>);

impl Segments {
    fn push(&mut self, path: &str, segment: Segment) -> Result<(), SchemaError> {
        match (self.0.last_mut(), segment) {
            (Some(Segment::Text(last)), Segment::Text(more)) => last.push_str(&more),
            (_, segment) => {
                if self.0.len() == MAX_SEGMENTS {
                    return Err(invalid(
                        path,
                        format!("the schema compiles to more than {MAX_SEGMENTS} segments"),
                    ));
                }
                self.0.push(segment);
            }
        }
        Ok(())
    }

    fn text(&mut self, path: &str, text: impl Into<String>) -> Result<(), SchemaError> {
        self.push(path, Segment::Text(text.into()))
    }

    fn value(&mut self, schema: &Value, path: &str, depth: usize) -> Result<(), SchemaError> {
        if depth > MAX_SCHEMA_DEPTH {
            return Err(invalid(
                path,
                format!("schemas nested deeper than {MAX_SCHEMA_DEPTH}"),
            ));
        }
        let schema = match schema {
            Value::Bool(true) => {
                return self.push(path, Segment::Json(JsonType::of(JsonKind::Any)))
            }
            Value::Bool(false) => return Err(invalid(path, "the schema `false` admits no value")),
            Value::Object(schema) => schema,
            other => return Err(invalid(path, format!("a schema is an object, not {other}"))),
        };
        if let Some(keyword) = schema
            .keys()
            .find(|k| !DESCRIPTIVE.contains(&k.as_str()) && !ENFORCED.contains(&k.as_str()))
        {
            return Err(unsupported(path, format!("'{keyword}'")));
        }
        if let Some(value) = schema.get("const") {
            return self.text(path, value.to_string());
        }
        if let Some(values) = schema.get("enum") {
            let values = match values {
                Value::Array(v) if !v.is_empty() => v,
                _ => return Err(invalid(path, "enum must be a non-empty list")),
            };
            let choices: Vec<String> = values.iter().map(Value::to_string).collect();
            // One-of's own checks (count, prefixes such as 1 and 10) name the problem.
            check_one_of(&choices).map_err(|e| invalid(&format!("{path}.enum"), e.to_string()))?;
            return self.push(path, Segment::OneOf(choices));
        }
        let (kind, nullable) = type_of(schema, path)?;
        let leaf = |kind| Segment::Json(JsonType { kind, nullable });
        let name = match kind {
            Type::Null => return self.text(path, "null"),
            Type::Any => return self.push(path, leaf(JsonKind::Any)),
            Type::Named(name) => name,
        };
        match name {
            "object" => match schema.get("properties") {
                Some(Value::Object(properties)) if !properties.is_empty() => {
                    if nullable {
                        return Err(unsupported(path, "a nullable object with properties"));
                    }
                    check_required(schema, properties, path)?;
                    self.text(path, "{")?;
                    for (i, (key, property)) in properties.iter().enumerate() {
                        let separator = if i == 0 { "" } else { ", " };
                        self.text(path, format!("{separator}{}: ", Value::from(key.as_str())))?;
                        self.value(property, &format!("{path}.properties.{key}"), depth + 1)?;
                    }
                    self.text(path, "}")
                }
                None | Some(Value::Object(_)) => {
                    check_required(schema, &serde_json::Map::new(), path)?;
                    self.push(path, leaf(JsonKind::Object))
                }
                Some(other) => Err(invalid(
                    path,
                    format!("properties must be an object, not {other}"),
                )),
            },
            "array" => {
                let item = match schema.get("items") {
                    None | Some(Value::Bool(true)) => JsonItem::Any,
                    Some(items) => item_kind(items, &format!("{path}.items"))?,
                };
                self.push(path, leaf(JsonKind::Array(item)))
            }
            "string" => self.push(path, leaf(JsonKind::String)),
            "number" => self.push(path, leaf(JsonKind::Number)),
            "integer" => self.push(path, leaf(JsonKind::Integer)),
            "boolean" => {
                let mut choices = vec!["true".to_string(), "false".to_string()];
                if nullable {
                    choices.push("null".into());
                }
                self.push(path, Segment::OneOf(choices))
            }
            other => Err(invalid(path, format!("unknown type '{other}'"))),
        }
    }
}

/// What a schema's `type` says.
enum Type<'a> {
    /// No `type` (and no `properties` or `items`): any value.
    Any,
    /// Only `null`.
    Null,
    /// One type besides `null`.
    Named(&'a str),
}

/// The schema's type, and whether `null` is allowed too.
fn type_of<'a>(
    schema: &'a serde_json::Map<String, Value>,
    path: &str,
) -> Result<(Type<'a>, bool), SchemaError> {
    let names: Vec<&str> = match schema.get("type") {
        None if schema.contains_key("properties") => vec!["object"],
        None if schema.contains_key("items") => vec!["array"],
        None => return Ok((Type::Any, false)),
        Some(Value::String(t)) => vec![t.as_str()],
        Some(Value::Array(types)) => types
            .iter()
            .map(|t| {
                t.as_str()
                    .ok_or_else(|| invalid(path, format!("a type is a string, not {t}")))
            })
            .collect::<Result<_, _>>()?,
        Some(other) => {
            return Err(invalid(
                path,
                format!("type must be a string or a list, not {other}"),
            ))
        }
    };
    let nullable = names.contains(&"null");
    let rest: Vec<&str> = names.into_iter().filter(|t| *t != "null").collect();
    match rest.as_slice() {
        [] if nullable => Ok((Type::Null, false)),
        [] => Err(invalid(path, "type is an empty list")),
        [one] => Ok((Type::Named(one), nullable)),
        more => Err(unsupported(
            path,
            format!("a choice of types ({})", more.join(", ")),
        )),
    }
}

/// `required` may name only properties the grammar writes.
fn check_required(
    schema: &serde_json::Map<String, Value>,
    properties: &serde_json::Map<String, Value>,
    path: &str,
) -> Result<(), SchemaError> {
    match schema.get("required") {
        None => Ok(()),
        Some(Value::Array(names)) => match names
            .iter()
            .find(|n| !n.as_str().is_some_and(|n| properties.contains_key(n)))
        {
            Some(missing) => Err(invalid(
                path,
                format!("required names {missing}, which is not among the properties"),
            )),
            None => Ok(()),
        },
        Some(other) => Err(invalid(
            path,
            format!("required must be a list, not {other}"),
        )),
    }
}

/// An array's `items`: a scalar type, or any value.
fn item_kind(items: &Value, path: &str) -> Result<JsonItem, SchemaError> {
    let Value::Object(schema) = items else {
        return Err(invalid(
            path,
            format!("items must be a schema object, not {items}"),
        ));
    };
    if let Some(keyword) = schema
        .keys()
        .find(|k| !DESCRIPTIVE.contains(&k.as_str()) && *k != "type")
    {
        return Err(unsupported(path, format!("'{keyword}' on array items")));
    }
    match type_of(schema, path)? {
        (Type::Any, _) => Ok(JsonItem::Any),
        (Type::Named("string"), false) => Ok(JsonItem::String),
        (Type::Named("number"), false) => Ok(JsonItem::Number),
        (Type::Named("integer"), false) => Ok(JsonItem::Integer),
        (Type::Named("boolean"), false) => Ok(JsonItem::Boolean),
        (Type::Named(t @ ("object" | "array")), _) => {
            Err(unsupported(path, format!("array items of type {t}")))
        }
        (Type::Named(t), true) => Err(unsupported(
            path,
            format!("nullable array items ({t} or null)"),
        )),
        (Type::Null, _) => Err(unsupported(path, "array items that are only null")),
        (Type::Named(t), false) => Err(invalid(path, format!("unknown type '{t}'"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn complete(grammar: &Grammar, text: &str) -> bool {
        grammar
            .walk(grammar.start(), text.as_bytes())
            .is_some_and(|c| grammar.is_complete(c))
    }

    fn person() -> Value {
        json!({
            "type": "object",
            "title": "person",
            "properties": {
                "name": {"type": "string", "description": "full name"},
                "age": {"type": "integer"},
                "height": {"type": ["number", "null"]},
                "role": {"enum": ["admin", "user"]},
                "active": {"type": "boolean"},
                "tags": {"type": "array", "items": {"type": "string"}},
                "address": {
                    "type": "object",
                    "properties": {"city": {"type": "string"}},
                    "required": ["city"],
                    "additionalProperties": false
                },
                "extra": {}
            },
            "required": ["name", "age"],
            "additionalProperties": false
        })
    }

    #[test]
    fn an_instance_in_the_schemas_order_is_complete_and_others_are_refused() {
        let g = Grammar::from_json_schema(&person()).expect("compiles");
        let ok = r#"{"name": "Ann", "age": 30, "height": 1.7, "role": "admin", "active": true, "tags": ["a", "b"], "address": {"city": "Oslo"}, "extra": [1, {"x": null}]}"#;
        assert!(complete(&g, ok), "{ok}");
        let null_height = ok.replace("1.7", "null");
        assert!(complete(&g, &null_height));
        for bad in [
            ok.replace("30", "30.5"),                         // integer
            ok.replace("\"Ann\"", "7"),                       // string
            ok.replace("\"admin\"", "\"root\""),              // enum
            ok.replace("true", "null"),                       // boolean, not nullable
            ok.replace("[\"a\", \"b\"]", "[\"a\", 2]"),       // string items
            ok.replace("\"age\": 30, ", ""),                  // a property left out
            ok.replace("{\"name\"", "{\"age\": 1, \"name\""), // another order
        ] {
            assert!(
                g.walk(g.start(), bad.as_bytes()).is_none(),
                "{bad} was accepted"
            );
        }
        assert_eq!(g.json_schema(), Some(&person()));
    }

    #[test]
    fn a_number_at_the_end_may_end_the_answer_or_go_on() {
        let g = Grammar::from_json_schema(&json!({"type": "integer"})).expect("compiles");
        assert!(complete(&g, "42"));
        assert!(complete(&g, "-7"));
        assert!(!complete(&g, "-"));
        assert!(g.walk(g.start(), b"4.5").is_none());
        let g = Grammar::from_json_schema(
            &json!({"type": "object", "properties": {"n": {"type": "number"}}}),
        )
        .expect("compiles");
        assert!(complete(&g, r#"{"n": 2.5e3}"#));
        assert!(!complete(&g, r#"{"n": 2.5e3"#));
    }

    #[test]
    fn what_a_straight_line_cannot_enforce_is_refused_with_its_path() {
        let refused = |schema: Value| {
            Grammar::from_json_schema(&schema)
                .expect_err("refused")
                .to_string()
        };
        let e = refused(
            json!({"type": "object", "properties": {"email": {"type": "string", "pattern": "@"}}}),
        );
        assert!(
            e.starts_with("$.properties.email: 'pattern' is not enforced"),
            "{e}"
        );
        let e = refused(json!({"anyOf": [{"type": "string"}, {"type": "integer"}]}));
        assert!(e.contains("'anyOf'"), "{e}");
        let e = refused(json!({"type": "array", "items": {"type": "object"}}));
        assert!(e.starts_with("$.items: array items of type object"), "{e}");
        let e = refused(json!({"type": ["string", "integer"]}));
        assert!(e.contains("a choice of types (string, integer)"), "{e}");
        let e = refused(json!({"type": "object", "properties": {"a": {}}, "required": ["b"]}));
        assert!(e.contains("required names \"b\""), "{e}");
        let e = refused(json!({"enum": [1, 10]}));
        assert!(e.starts_with("$.enum:") && e.contains("prefix"), "{e}");
        let e = refused(json!({"type": "strnig"}));
        assert!(e.contains("unknown type 'strnig'"), "{e}");
        let mut deep = json!({"type": "string"});
        for _ in 0..=MAX_SCHEMA_DEPTH {
            deep = json!({"type": "object", "properties": {"a": deep}});
        }
        assert!(refused(deep).contains("nested deeper"));
    }
}
