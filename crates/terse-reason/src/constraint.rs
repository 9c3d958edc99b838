//! Constrained decoding: an answer that must be a JSON object (`response_format`
//! `json_object`), one that follows a JSON schema (`json_schema`, compiled to a grammar
//! by [`crate::json_schema`]), or fixed text around one (a forced tool call).
//!
//! A [`Grammar`] is a sequence of [`Segment`]s: literal text, one of a few literal
//! texts, a JSON value of a type (an object, a string, a number, an array of scalars,
//! any value). Its [`Cursor`] is a small `Copy` state, so before each token
//! the mask can try every vocabulary token's bytes from the current cursor and forbid
//! those that cannot continue the grammar; end of generation is allowed only once
//! the last segment is complete, and then nothing else is. Tokens are grouped by
//! their first byte so a byte the grammar refuses rules out its whole group at once.
//!
//! The JSON recognizer follows RFC 8259 byte by byte (strings, escapes, numbers,
//! `true`/`false`/`null`, nesting up to [`MAX_DEPTH`]). Inside strings it accepts any
//! byte from 0x80 up without checking that the UTF-8 is well formed: a token split
//! inside a character is still legal. A run of whitespace is capped at
//! [`MAX_WHITESPACE_RUN`] bytes, since a model that may only write whitespace would
//! otherwise write it until its budget runs out (the failure llama.cpp's grammars show).

use serde::{Deserialize, Serialize};
use terse_engine::Tokenizer;

/// Deepest nesting of objects and arrays.
pub const MAX_DEPTH: u8 = 64;
/// Longest run of whitespace between JSON tokens.
pub const MAX_WHITESPACE_RUN: u8 = 32;

/// One part of a [`Grammar`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Segment {
    /// Exactly this text.
    Text(String),
    /// Exactly one of these texts (none may be a prefix of another).
    OneOf(Vec<String>),
    /// One JSON value of this type.
    Json(JsonType),
}

/// The type of a [`Segment::Json`] value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct JsonType {
    pub kind: JsonKind,
    /// `null` is allowed too.
    pub nullable: bool,
}

impl JsonType {
    /// Any JSON object, `{` to its matching `}`.
    pub const OBJECT: JsonType = JsonType::of(JsonKind::Object);

    pub const fn of(kind: JsonKind) -> Self {
        JsonType {
            kind,
            nullable: false,
        }
    }
}

/// What a JSON value may be. A number at the top level of a segment has no closing
/// byte: it ends where the next segment's first byte comes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JsonKind {
    Any,
    Object,
    String,
    Number,
    Integer,
    /// An array whose items are of this kind (nested values inside `Any` items are free).
    Array(JsonItem),
}

/// The kind of an array's items.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JsonItem {
    Any,
    String,
    Number,
    Integer,
    Boolean,
}

/// What the answer must be: its segments, in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grammar {
    segments: Vec<Segment>,
    /// The JSON schema the grammar was compiled from, for an upstream that enforces
    /// schemas itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    schema: Option<serde_json::Value>,
}

/// Why a grammar cannot be built.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum GrammarError {
    #[error("a grammar needs at least one segment")]
    Empty,
    #[error("an empty text cannot be a grammar segment")]
    EmptyText,
    #[error("one_of needs 1 to 64 choices, got {0}")]
    Choices(usize),
    #[error("one_of choice '{short}' is a prefix of '{long}'")]
    Prefix { short: String, long: String },
}

/// A one-of segment's choices: 1 to 64, none empty, none a prefix of another (the
/// cursor could not tell the shorter one finished).
pub fn check_one_of(choices: &[String]) -> Result<(), GrammarError> {
    if choices.is_empty() || choices.len() > 64 {
        return Err(GrammarError::Choices(choices.len()));
    }
    if choices.iter().any(String::is_empty) {
        return Err(GrammarError::EmptyText);
    }
    for a in choices {
        if let Some(b) = choices
            .iter()
            .find(|b| *b != a && b.starts_with(a.as_str()))
        {
            return Err(GrammarError::Prefix {
                short: a.clone(),
                long: b.clone(),
            });
        }
    }
    Ok(())
}

impl Grammar {
    pub fn new(segments: Vec<Segment>) -> Result<Self, GrammarError> {
        if segments.is_empty() {
            return Err(GrammarError::Empty);
        }
        for segment in &segments {
            match segment {
                Segment::Text(t) if t.is_empty() => return Err(GrammarError::EmptyText),
                Segment::OneOf(choices) => check_one_of(choices)?,
                _ => {}
            }
        }
        Ok(Grammar {
            segments,
            schema: None,
        })
    }

    /// One JSON object (`response_format` `json_object`).
    pub fn json_object() -> Self {
        Grammar {
            segments: vec![Segment::Json(JsonType::OBJECT)],
            schema: None,
        }
    }

    /// Whether the grammar is a bare JSON object (what a remote server's own
    /// `response_format` can enforce).
    pub fn is_json_object(&self) -> bool {
        self.segments == [Segment::Json(JsonType::OBJECT)]
    }

    /// The same grammar, remembering the schema it enforces.
    pub(crate) fn with_schema(mut self, schema: serde_json::Value) -> Self {
        self.schema = Some(schema);
        self
    }

    /// The JSON schema this grammar was compiled from, if any.
    pub fn json_schema(&self) -> Option<&serde_json::Value> {
        self.schema.as_ref()
    }

    /// The cursor before any byte.
    pub fn start(&self) -> Cursor {
        Cursor::entering(0, &self.segments)
    }

    /// The cursor after `byte`, or `None` when the grammar cannot continue with it.
    pub fn step(&self, cursor: Cursor, byte: u8) -> Option<Cursor> {
        let segment = self.segments.get(cursor.segment)?;
        let mut next = cursor;
        let finished = match segment {
            Segment::Text(text) => {
                (text.as_bytes().get(cursor.at) == Some(&byte)).then_some(())?;
                next.at += 1;
                next.at == text.len()
            }
            Segment::OneOf(choices) => {
                let mut alive = 0u64;
                let mut complete = false;
                for (i, choice) in choices.iter().enumerate() {
                    let bytes = choice.as_bytes();
                    if cursor.alive & (1 << i) != 0 && bytes.get(cursor.at) == Some(&byte) {
                        alive |= 1 << i;
                        complete |= bytes.len() == cursor.at + 1;
                    }
                }
                (alive != 0).then_some(())?;
                next.alive = alive;
                next.at += 1;
                // Choices are prefix-free, so a complete one is the only one left.
                complete
            }
            Segment::Json(_) => match cursor.json.step(byte) {
                Some(json) => {
                    next.json = json;
                    json.lex == Lex::Done
                }
                // A top-level number ends at the first byte that is not part of it.
                None if cursor.json.number_may_end() => {
                    return self.step(Cursor::entering(cursor.segment + 1, &self.segments), byte);
                }
                None => return None,
            },
        };
        Some(if finished {
            Cursor::entering(cursor.segment + 1, &self.segments)
        } else {
            next
        })
    }

    /// The cursor after all of `bytes`.
    pub fn walk(&self, mut cursor: Cursor, bytes: &[u8]) -> Option<Cursor> {
        for &b in bytes {
            cursor = self.step(cursor, b)?;
        }
        Some(cursor)
    }

    /// Whether the answer may end here: every segment is complete, or the last one is
    /// a number that may end.
    pub fn is_complete(&self, cursor: Cursor) -> bool {
        cursor.segment >= self.segments.len()
            || (cursor.segment + 1 == self.segments.len()
                && matches!(self.segments[cursor.segment], Segment::Json(_))
                && cursor.json.number_may_end())
    }
}

/// Where a [`Grammar`] stands: small and `Copy`, so trying a token costs no allocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    segment: usize,
    /// Bytes matched in a text or one-of segment.
    at: usize,
    /// One-of choices still matching (bit i: choice i).
    alive: u64,
    json: JsonState,
}

impl Cursor {
    fn entering(segment: usize, segments: &[Segment]) -> Self {
        let alive = match segments.get(segment) {
            Some(Segment::OneOf(c)) if c.len() == 64 => u64::MAX,
            Some(Segment::OneOf(c)) => (1u64 << c.len()) - 1,
            _ => 0,
        };
        let json = match segments.get(segment) {
            Some(Segment::Json(t)) => *t,
            _ => JsonType::OBJECT,
        };
        Cursor {
            segment,
            at: 0,
            alive,
            json: JsonState::of(json),
        }
    }
}

/// The JSON recognizer's lexical state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lex {
    /// Before a value (at the top level only an object).
    Value,
    /// After `{`: a key or `}`.
    ObjectStart,
    /// After `,` in an object: a key.
    Key,
    /// After a key: `:`.
    Colon,
    /// After a value inside a container: `,` or its closing bracket.
    AfterValue,
    /// After `[`: a value or `]`.
    ArrayStart,
    Str {
        key: bool,
        escape: Escape,
    },
    Number(Number),
    /// Inside `true`, `false` or `null`: which word, and how many bytes matched.
    Word {
        word: u8,
        at: u8,
    },
    Done,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Escape {
    No,
    Backslash,
    /// Hex digits of a `\u` escape still to come.
    Hex(u8),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Number {
    Minus,
    Zero,
    Int,
    Dot,
    Frac,
    Exp,
    ExpSign,
    ExpInt,
}

impl Number {
    fn next(self, b: u8) -> Option<Number> {
        use Number::*;
        Some(match (self, b) {
            (Minus, b'0') => Zero,
            (Minus, b'1'..=b'9') => Int,
            (Int, b'0'..=b'9') => Int,
            (Zero | Int, b'.') => Dot,
            (Dot | Frac, b'0'..=b'9') => Frac,
            (Zero | Int | Frac, b'e' | b'E') => Exp,
            (Exp, b'+' | b'-') => ExpSign,
            (Exp | ExpSign | ExpInt, b'0'..=b'9') => ExpInt,
            _ => return None,
        })
    }

    fn is_complete(self) -> bool {
        matches!(
            self,
            Number::Zero | Number::Int | Number::Frac | Number::ExpInt
        )
    }
}

const WORDS: [&[u8]; 3] = [b"true", b"false", b"null"];

/// A JSON prefix recognizer for one value of a type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct JsonState {
    top: JsonType,
    lex: Lex,
    depth: u8,
    /// Bit i set: nesting level i is an object (clear: an array).
    objects: u64,
    whitespace: u8,
}

impl JsonState {
    fn of(top: JsonType) -> Self {
        JsonState {
            top,
            lex: Lex::Value,
            depth: 0,
            objects: 0,
            whitespace: 0,
        }
    }

    fn step(mut self, b: u8) -> Option<JsonState> {
        match self.lex {
            Lex::Done => return None,
            Lex::Number(n) => {
                return match n.next(b) {
                    Some(Number::Dot | Number::Exp) if self.integer_here() => None,
                    Some(n) => {
                        self.lex = Lex::Number(n);
                        Some(self)
                    }
                    // The byte after a number ends it and is read again after it.
                    None if n.is_complete() => {
                        self.value_done();
                        self.step(b)
                    }
                    None => None,
                };
            }
            Lex::Str { key, escape } => {
                self.lex = match (escape, b) {
                    (Escape::No, b'"') if key => Lex::Colon,
                    (Escape::No, b'"') => {
                        self.value_done();
                        self.lex
                    }
                    (Escape::No, b'\\') => Lex::Str {
                        key,
                        escape: Escape::Backslash,
                    },
                    (Escape::No, 0..=0x1f) => return None,
                    (Escape::No, _) => self.lex,
                    (Escape::Backslash, b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => {
                        Lex::Str {
                            key,
                            escape: Escape::No,
                        }
                    }
                    (Escape::Backslash, b'u') => Lex::Str {
                        key,
                        escape: Escape::Hex(4),
                    },
                    (Escape::Hex(left), b) if b.is_ascii_hexdigit() => Lex::Str {
                        key,
                        escape: if left == 1 {
                            Escape::No
                        } else {
                            Escape::Hex(left - 1)
                        },
                    },
                    _ => return None,
                };
                return Some(self);
            }
            Lex::Word { word, at } => {
                let w = WORDS[usize::from(word)];
                (w[usize::from(at)] == b).then_some(())?;
                if usize::from(at) + 1 == w.len() {
                    self.value_done();
                } else {
                    self.lex = Lex::Word { word, at: at + 1 };
                }
                return Some(self);
            }
            _ => {}
        }
        // Between tokens.
        if matches!(b, b' ' | b'\t' | b'\n' | b'\r') {
            (self.whitespace < MAX_WHITESPACE_RUN).then_some(())?;
            self.whitespace += 1;
            return Some(self);
        }
        self.whitespace = 0;
        match (self.lex, b) {
            (Lex::Value, _) => self.open_value(b)?,
            (Lex::ArrayStart, b']') => self.close(false)?,
            (Lex::ArrayStart, _) => self.open_value(b)?,
            (Lex::ObjectStart, b'}') => self.close(true)?,
            (Lex::ObjectStart | Lex::Key, b'"') => {
                self.lex = Lex::Str {
                    key: true,
                    escape: Escape::No,
                }
            }
            (Lex::Colon, b':') => self.lex = Lex::Value,
            (Lex::AfterValue, b',') => {
                self.lex = if self.in_object() {
                    Lex::Key
                } else {
                    Lex::Value
                }
            }
            (Lex::AfterValue, b'}') => self.close(true)?,
            (Lex::AfterValue, b']') => self.close(false)?,
            _ => return None,
        }
        Some(self)
    }

    /// Whether a top-level number could end here (it has no closing byte).
    fn number_may_end(&self) -> bool {
        self.depth == 0 && matches!(self.lex, Lex::Number(n) if n.is_complete())
    }

    /// Whether a number here must be an integer.
    fn integer_here(&self) -> bool {
        matches!(
            (self.depth, self.top.kind),
            (0, JsonKind::Integer) | (1, JsonKind::Array(JsonItem::Integer))
        )
    }

    /// Whether a value starting with `b` has the type asked for here: the segment's
    /// type at the top, its item kind directly inside a typed array, anything deeper.
    fn admits(&self, b: u8) -> bool {
        let number = b == b'-' || b.is_ascii_digit();
        match self.depth {
            0 => {
                (self.top.nullable && b == b'n')
                    || match self.top.kind {
                        JsonKind::Any => true,
                        JsonKind::Object => b == b'{',
                        JsonKind::String => b == b'"',
                        JsonKind::Number | JsonKind::Integer => number,
                        JsonKind::Array(_) => b == b'[',
                    }
            }
            1 => match self.top.kind {
                JsonKind::Array(JsonItem::String) => b == b'"',
                JsonKind::Array(JsonItem::Number | JsonItem::Integer) => number,
                JsonKind::Array(JsonItem::Boolean) => b == b't' || b == b'f',
                _ => true,
            },
            _ => true,
        }
    }

    fn in_object(&self) -> bool {
        self.depth > 0 && self.objects & (1 << (self.depth - 1)) != 0
    }

    fn open_value(&mut self, b: u8) -> Option<()> {
        if !self.admits(b) {
            return None;
        }
        self.lex = match b {
            b'{' | b'[' => {
                (self.depth < MAX_DEPTH).then_some(())?;
                if b == b'{' {
                    self.objects |= 1 << self.depth;
                } else {
                    self.objects &= !(1 << self.depth);
                }
                self.depth += 1;
                if b == b'{' {
                    Lex::ObjectStart
                } else {
                    Lex::ArrayStart
                }
            }
            b'"' => Lex::Str {
                key: false,
                escape: Escape::No,
            },
            b'-' => Lex::Number(Number::Minus),
            b'0' => Lex::Number(Number::Zero),
            b'1'..=b'9' => Lex::Number(Number::Int),
            b't' => Lex::Word { word: 0, at: 1 },
            b'f' => Lex::Word { word: 1, at: 1 },
            b'n' => Lex::Word { word: 2, at: 1 },
            _ => return None,
        };
        Some(())
    }

    fn close(&mut self, object: bool) -> Option<()> {
        (self.depth > 0 && self.in_object() == object).then_some(())?;
        self.depth -= 1;
        self.value_done();
        Some(())
    }

    fn value_done(&mut self) {
        self.lex = if self.depth == 0 {
            Lex::Done
        } else {
            Lex::AfterValue
        };
    }
}

/// A vocabulary as the mask reads it: each ordinary token's bytes, grouped by first
/// byte, and the end-of-generation ids. Control tokens other than those are never
/// allowed. Built once per model.
#[derive(Debug)]
pub struct MaskVocab {
    by_first_byte: Vec<Vec<(u32, Box<[u8]>)>>,
    end_of_generation: Vec<u32>,
}

impl MaskVocab {
    pub fn new(tokenizer: &Tokenizer) -> Self {
        let mut by_first_byte: Vec<Vec<(u32, Box<[u8]>)>> = vec![Vec::new(); 256];
        let end_of_generation: Vec<u32> = tokenizer.eog_ids().collect();
        for id in 0..tokenizer.vocab_size() as u32 {
            if tokenizer.is_control(id) || tokenizer.is_eog(id) {
                continue;
            }
            let bytes = tokenizer.token_bytes(id);
            if let Some(&first) = bytes.first() {
                by_first_byte[usize::from(first)].push((id, bytes.into()));
            }
        }
        MaskVocab {
            by_first_byte,
            end_of_generation,
        }
    }
}

/// A grammar in force on one sequence: masks each step's logits and follows the
/// sampled tokens.
#[derive(Debug, Clone)]
pub struct Constraint {
    grammar: Grammar,
    vocab: std::sync::Arc<MaskVocab>,
    cursor: Cursor,
    allowed: Vec<(u32, f32)>,
}

impl Constraint {
    pub fn new(grammar: Grammar, vocab: std::sync::Arc<MaskVocab>) -> Self {
        let cursor = grammar.start();
        Constraint {
            grammar,
            vocab,
            cursor,
            allowed: Vec::new(),
        }
    }

    /// Whether the grammar is complete (the answer may end).
    pub fn is_complete(&self) -> bool {
        self.grammar.is_complete(self.cursor)
    }

    /// Sets every token the grammar forbids next to −∞. End of generation is allowed
    /// only where the grammar may end (after its last segment nothing else is); if no
    /// token could continue (a grammar that needs a byte no token starts with), end of
    /// generation is left open rather than a step with nothing to sample.
    pub fn mask(&mut self, logits: &mut [f32]) {
        self.allowed.clear();
        for first in 0..=255u8 {
            let Some(after_first) = self.grammar.step(self.cursor, first) else {
                continue;
            };
            for (id, bytes) in &self.vocab.by_first_byte[usize::from(first)] {
                if self.grammar.walk(after_first, &bytes[1..]).is_some() {
                    if let Some(&l) = logits.get(*id as usize) {
                        self.allowed.push((*id, l));
                    }
                }
            }
        }
        if self.is_complete() || self.allowed.is_empty() {
            for &id in &self.vocab.end_of_generation {
                if let Some(&l) = logits.get(id as usize) {
                    self.allowed.push((id, l));
                }
            }
        }
        logits.fill(f32::NEG_INFINITY);
        for &(id, l) in &self.allowed {
            logits[id as usize] = l;
        }
    }

    /// Follows a sampled token's bytes. A token the mask forbade (only possible if
    /// something after the mask changed the logits) leaves the cursor where it was.
    pub fn advance(&mut self, bytes: &[u8]) {
        if let Some(next) = self.grammar.walk(self.cursor, bytes) {
            self.cursor = next;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accepts(grammar: &Grammar, text: &str) -> Option<Cursor> {
        grammar.walk(grammar.start(), text.as_bytes())
    }

    fn complete(grammar: &Grammar, text: &str) -> bool {
        accepts(grammar, text).is_some_and(|c| grammar.is_complete(c))
    }

    #[test]
    fn whole_json_objects_are_complete_and_their_prefixes_are_not() {
        let g = Grammar::json_object();
        for doc in [
            r#"{}"#,
            r#"{"a": 1}"#,
            " {\n  \"name\": \"Ann\",\n  \"age\": 30,\n  \"tags\": [\"x\", true, null, -0.5e+3]\n}",
            r#"{"nested": {"deep": [[], {}, [1, [2, {"k": "\u00e9\n\"q\""}]]]}}"#,
            r#"{"a":0,"b":10.25,"c":1E9,"d":false}"#,
            "{\"unicode\": \"caf\u{e9} \u{1f600}\"}",
        ] {
            assert!(complete(&g, doc), "{doc}");
            for cut in 0..doc.len() - 1 {
                if doc.is_char_boundary(cut) && !doc[..cut].trim().is_empty() {
                    let c =
                        accepts(&g, &doc[..cut]).unwrap_or_else(|| panic!("prefix {cut} of {doc}"));
                    assert!(!g.is_complete(c), "{}", &doc[..cut]);
                }
            }
        }
    }

    #[test]
    fn malformed_json_is_refused_at_the_first_bad_byte() {
        let g = Grammar::json_object();
        for bad in [
            "[1]",
            "\"text\"",
            "42",
            "{a: 1}",
            "{\"a\" 1}",
            "{\"a\": 01}",
            "{\"a\": 1,}",
            "{\"a\": [1,]}",
            "{\"a\": tru}",
            "{\"a\": \"\\x\"}",
            "{\"a\": \"\\u12g4\"}",
            "{\"a\": \"line\nbreak\"}",
            "{\"a\": 1]",
            "{\"a\": [1}",
            "{\"a\": 1.}",
            "{\"a\": -}",
            "{} {}",
            "{}x",
        ] {
            assert!(!complete(&g, bad), "{bad}");
            assert!(accepts(&g, bad).is_none(), "{bad} was not refused");
        }
    }

    #[test]
    fn whitespace_runs_and_nesting_are_bounded() {
        let g = Grammar::json_object();
        let run = " ".repeat(usize::from(MAX_WHITESPACE_RUN));
        assert!(accepts(&g, &format!("{{{run}\"a\"{run}:{run}1{run}}}")).is_some());
        assert!(accepts(&g, &format!("{{{run} ")).is_none());
        let deep = format!("{{\"a\":{}", "[".repeat(usize::from(MAX_DEPTH) - 1));
        assert!(accepts(&g, &deep).is_some());
        assert!(accepts(&g, &format!("{deep}[")).is_none());
    }

    #[test]
    fn a_tool_call_grammar_forces_its_text_and_one_of_the_names() {
        let g = Grammar::new(vec![
            Segment::Text("<call>{\"name\": \"".into()),
            Segment::OneOf(vec!["get_weather\"".into(), "get_time\"".into()]),
            Segment::Text(", \"arguments\": ".into()),
            Segment::Json(JsonType::OBJECT),
            Segment::Text("}</call>".into()),
        ])
        .expect("grammar");
        assert!(complete(
            &g,
            "<call>{\"name\": \"get_time\", \"arguments\": {\"tz\": \"UTC\"}}</call>"
        ));
        assert!(accepts(&g, "<call>{\"name\": \"get_date").is_none());
        assert!(accepts(&g, "<call>{\"name\": \"get_").is_some());
        assert!(!complete(
            &g,
            "<call>{\"name\": \"get_time\", \"arguments\": {}}"
        ));
        assert_eq!(
            Grammar::new(vec![Segment::OneOf(vec!["f".into(), "fg".into()])]),
            Err(GrammarError::Prefix {
                short: "f".into(),
                long: "fg".into()
            })
        );
        assert_eq!(Grammar::new(vec![]), Err(GrammarError::Empty));
    }
}
