//! GGUF metadata values: the thirteen value types, including arrays of any
//! element type and arrays of arrays.
//!
//! Values are decoded into owned Rust types once at open, so lookups after
//! that are plain borrows with no re-parsing.

use std::fmt;

/// GGUF value type ids as written in the file (`enum gguf_type`).
pub(crate) mod type_id {
    pub const U8: u32 = 0;
    pub const I8: u32 = 1;
    pub const U16: u32 = 2;
    pub const I16: u32 = 3;
    pub const U32: u32 = 4;
    pub const I32: u32 = 5;
    pub const F32: u32 = 6;
    pub const BOOL: u32 = 7;
    pub const STRING: u32 = 8;
    pub const ARRAY: u32 = 9;
    pub const U64: u32 = 10;
    pub const I64: u32 = 11;
    pub const F64: u32 = 12;
}

/// One metadata value.
#[derive(Debug, Clone, PartialEq)]
pub enum MetaValue {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    U64(u64),
    I64(i64),
    F32(f32),
    F64(f64),
    Bool(bool),
    String(String),
    Array(MetaArray),
}

/// A homogeneous metadata array; `Array` holds arrays of arrays, whose
/// inner arrays may each have their own element type.
#[derive(Debug, Clone, PartialEq)]
pub enum MetaArray {
    U8(Vec<u8>),
    I8(Vec<i8>),
    U16(Vec<u16>),
    I16(Vec<i16>),
    U32(Vec<u32>),
    I32(Vec<i32>),
    U64(Vec<u64>),
    I64(Vec<i64>),
    F32(Vec<f32>),
    F64(Vec<f64>),
    Bool(Vec<bool>),
    String(StrArray),
    Array(Vec<MetaArray>),
}

/// An array of strings kept as one text buffer and end offsets. A 262k-token
/// vocabulary as `Vec<String>` costs one heap allocation per token, several
/// times the bytes of the text itself.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct StrArray {
    text: String,
    ends: Vec<usize>,
}

impl StrArray {
    /// An empty array with room for `n` strings of `bytes` bytes in all.
    pub fn with_capacity(n: usize, bytes: usize) -> Self {
        StrArray {
            text: String::with_capacity(bytes),
            ends: Vec::with_capacity(n),
        }
    }

    pub fn push(&mut self, s: &str) {
        self.text.push_str(s);
        self.ends.push(self.text.len());
    }

    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// String `i`, if there is one.
    pub fn get(&self, i: usize) -> Option<&str> {
        let end = *self.ends.get(i)?;
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        self.text.get(start..end)
    }

    pub fn iter(&self) -> impl ExactSizeIterator<Item = &str> + '_ {
        (0..self.len()).map(|i| self.get(i).unwrap_or_default())
    }

    /// Bytes of text in all strings together.
    pub fn text_len(&self) -> usize {
        self.text.len()
    }
}

impl fmt::Debug for StrArray {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl<S: AsRef<str>> FromIterator<S> for StrArray {
    fn from_iter<I: IntoIterator<Item = S>>(iter: I) -> Self {
        let mut out = StrArray::default();
        for s in iter {
            out.push(s.as_ref());
        }
        out
    }
}

impl From<Vec<String>> for StrArray {
    fn from(v: Vec<String>) -> Self {
        v.iter().collect()
    }
}

impl<S: AsRef<str>> PartialEq<[S]> for StrArray {
    fn eq(&self, other: &[S]) -> bool {
        self.len() == other.len() && self.iter().zip(other).all(|(a, b)| a == b.as_ref())
    }
}

impl MetaValue {
    /// Short type name: `"u32"`, `"string"`, `"array of string"`, …
    pub fn type_name(&self) -> &'static str {
        match self {
            MetaValue::U8(_) => "u8",
            MetaValue::I8(_) => "i8",
            MetaValue::U16(_) => "u16",
            MetaValue::I16(_) => "i16",
            MetaValue::U32(_) => "u32",
            MetaValue::I32(_) => "i32",
            MetaValue::U64(_) => "u64",
            MetaValue::I64(_) => "i64",
            MetaValue::F32(_) => "f32",
            MetaValue::F64(_) => "f64",
            MetaValue::Bool(_) => "bool",
            MetaValue::String(_) => "string",
            MetaValue::Array(a) => a.type_name(),
        }
    }

    /// The value of any integer type, widened losslessly; `None` for
    /// non-integers (floats, bools, strings, arrays).
    pub fn as_integer(&self) -> Option<i128> {
        match *self {
            MetaValue::U8(v) => Some(v.into()),
            MetaValue::I8(v) => Some(v.into()),
            MetaValue::U16(v) => Some(v.into()),
            MetaValue::I16(v) => Some(v.into()),
            MetaValue::U32(v) => Some(v.into()),
            MetaValue::I32(v) => Some(v.into()),
            MetaValue::U64(v) => Some(v.into()),
            MetaValue::I64(v) => Some(v.into()),
            _ => None,
        }
    }

    pub(crate) fn type_id(&self) -> u32 {
        match self {
            MetaValue::U8(_) => type_id::U8,
            MetaValue::I8(_) => type_id::I8,
            MetaValue::U16(_) => type_id::U16,
            MetaValue::I16(_) => type_id::I16,
            MetaValue::U32(_) => type_id::U32,
            MetaValue::I32(_) => type_id::I32,
            MetaValue::U64(_) => type_id::U64,
            MetaValue::I64(_) => type_id::I64,
            MetaValue::F32(_) => type_id::F32,
            MetaValue::F64(_) => type_id::F64,
            MetaValue::Bool(_) => type_id::BOOL,
            MetaValue::String(_) => type_id::STRING,
            MetaValue::Array(_) => type_id::ARRAY,
        }
    }
}

impl MetaArray {
    /// Number of elements.
    pub fn len(&self) -> usize {
        match self {
            MetaArray::U8(v) => v.len(),
            MetaArray::I8(v) => v.len(),
            MetaArray::U16(v) => v.len(),
            MetaArray::I16(v) => v.len(),
            MetaArray::U32(v) => v.len(),
            MetaArray::I32(v) => v.len(),
            MetaArray::U64(v) => v.len(),
            MetaArray::I64(v) => v.len(),
            MetaArray::F32(v) => v.len(),
            MetaArray::F64(v) => v.len(),
            MetaArray::Bool(v) => v.len(),
            MetaArray::String(v) => v.len(),
            MetaArray::Array(v) => v.len(),
        }
    }

    /// Whether the array has no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Element type name: `"u8"`, …, `"string"`, `"array"`.
    pub fn element_type_name(&self) -> &'static str {
        match self {
            MetaArray::U8(_) => "u8",
            MetaArray::I8(_) => "i8",
            MetaArray::U16(_) => "u16",
            MetaArray::I16(_) => "i16",
            MetaArray::U32(_) => "u32",
            MetaArray::I32(_) => "i32",
            MetaArray::U64(_) => "u64",
            MetaArray::I64(_) => "i64",
            MetaArray::F32(_) => "f32",
            MetaArray::F64(_) => "f64",
            MetaArray::Bool(_) => "bool",
            MetaArray::String(_) => "string",
            MetaArray::Array(_) => "array",
        }
    }

    /// Type name of the whole array: `"array of string"`, …
    pub fn type_name(&self) -> &'static str {
        match self {
            MetaArray::U8(_) => "array of u8",
            MetaArray::I8(_) => "array of i8",
            MetaArray::U16(_) => "array of u16",
            MetaArray::I16(_) => "array of i16",
            MetaArray::U32(_) => "array of u32",
            MetaArray::I32(_) => "array of i32",
            MetaArray::U64(_) => "array of u64",
            MetaArray::I64(_) => "array of i64",
            MetaArray::F32(_) => "array of f32",
            MetaArray::F64(_) => "array of f64",
            MetaArray::Bool(_) => "array of bool",
            MetaArray::String(_) => "array of string",
            MetaArray::Array(_) => "array of array",
        }
    }

    pub(crate) fn element_type_id(&self) -> u32 {
        match self {
            MetaArray::U8(_) => type_id::U8,
            MetaArray::I8(_) => type_id::I8,
            MetaArray::U16(_) => type_id::U16,
            MetaArray::I16(_) => type_id::I16,
            MetaArray::U32(_) => type_id::U32,
            MetaArray::I32(_) => type_id::I32,
            MetaArray::U64(_) => type_id::U64,
            MetaArray::I64(_) => type_id::I64,
            MetaArray::F32(_) => type_id::F32,
            MetaArray::F64(_) => type_id::F64,
            MetaArray::Bool(_) => type_id::BOOL,
            MetaArray::String(_) => type_id::STRING,
            MetaArray::Array(_) => type_id::ARRAY,
        }
    }
}

/// Strings longer than this are cut in `Display` output (chat templates run to kilobytes).
const DISPLAY_STRING_CHARS: usize = 64;

impl fmt::Display for MetaValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MetaValue::U8(v) => write!(f, "{v}"),
            MetaValue::I8(v) => write!(f, "{v}"),
            MetaValue::U16(v) => write!(f, "{v}"),
            MetaValue::I16(v) => write!(f, "{v}"),
            MetaValue::U32(v) => write!(f, "{v}"),
            MetaValue::I32(v) => write!(f, "{v}"),
            MetaValue::U64(v) => write!(f, "{v}"),
            MetaValue::I64(v) => write!(f, "{v}"),
            MetaValue::F32(v) => write!(f, "{v}"),
            MetaValue::F64(v) => write!(f, "{v}"),
            MetaValue::Bool(v) => write!(f, "{v}"),
            MetaValue::String(s) => {
                let char_count = s.chars().count();
                if char_count <= DISPLAY_STRING_CHARS {
                    write!(f, "{s:?}")
                } else {
                    let head: String = s.chars().take(DISPLAY_STRING_CHARS).collect();
                    write!(f, "{head:?}… ({char_count} chars)")
                }
            }
            MetaValue::Array(a) => write!(f, "{a}"),
        }
    }
}

impl fmt::Display for MetaArray {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{}; {}]", self.element_type_name(), self.len())
    }
}

macro_rules! impl_from {
    ($($t:ty => $variant:ident),* $(,)?) => {$(
        impl From<$t> for MetaValue {
            fn from(v: $t) -> Self {
                MetaValue::$variant(v)
            }
        }
        impl From<Vec<$t>> for MetaArray {
            fn from(v: Vec<$t>) -> Self {
                MetaArray::$variant(v)
            }
        }
        impl From<Vec<$t>> for MetaValue {
            fn from(v: Vec<$t>) -> Self {
                MetaValue::Array(MetaArray::$variant(v))
            }
        }
    )*};
}

impl_from!(
    u8 => U8, i8 => I8, u16 => U16, i16 => I16, u32 => U32, i32 => I32,
    u64 => U64, i64 => I64, f32 => F32, f64 => F64, bool => Bool,
);

impl From<String> for MetaValue {
    fn from(v: String) -> Self {
        MetaValue::String(v)
    }
}

impl From<Vec<String>> for MetaArray {
    fn from(v: Vec<String>) -> Self {
        MetaArray::String(v.into())
    }
}

impl From<Vec<String>> for MetaValue {
    fn from(v: Vec<String>) -> Self {
        MetaValue::Array(v.into())
    }
}

impl From<StrArray> for MetaValue {
    fn from(v: StrArray) -> Self {
        MetaValue::Array(MetaArray::String(v))
    }
}

impl From<&str> for MetaValue {
    fn from(v: &str) -> Self {
        MetaValue::String(v.to_owned())
    }
}

impl From<MetaArray> for MetaValue {
    fn from(v: MetaArray) -> Self {
        MetaValue::Array(v)
    }
}

impl From<Vec<MetaArray>> for MetaArray {
    fn from(v: Vec<MetaArray>) -> Self {
        MetaArray::Array(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn str_array_keeps_every_string_including_empty_ones() {
        let a = StrArray::from_iter(["a", "", "ccc", "▁x"]);
        assert_eq!(a.len(), 4);
        assert_eq!(a.get(1), Some(""));
        assert_eq!(a.get(3), Some("▁x"));
        assert_eq!(a.get(4), None);
        assert_eq!(a.iter().collect::<Vec<_>>(), ["a", "", "ccc", "▁x"]);
        assert_eq!(a.text_len(), 1 + 3 + "▁x".len());
        assert_eq!(format!("{a:?}"), r#"["a", "", "ccc", "▁x"]"#);
        assert!(StrArray::default().is_empty());
    }

    #[test]
    fn display_is_short() {
        assert_eq!(MetaValue::U32(24).to_string(), "24");
        assert_eq!(MetaValue::from("qwen2").to_string(), "\"qwen2\"");
        let tokens = MetaValue::from(vec![String::new(); 151936]);
        assert_eq!(tokens.to_string(), "[string; 151936]");
        let long = MetaValue::String("x".repeat(2507));
        assert_eq!(
            long.to_string(),
            format!("{:?}… (2507 chars)", "x".repeat(64))
        );
        let nested = MetaValue::from(MetaArray::Array(vec![MetaArray::U8(vec![1])]));
        assert_eq!(nested.to_string(), "[array; 1]");
    }

    #[test]
    fn type_names_describe_arrays() {
        assert_eq!(MetaValue::from(vec![1i32]).type_name(), "array of i32");
        assert_eq!(MetaValue::F64(1.0).type_name(), "f64");
        assert_eq!(MetaArray::Bool(vec![]).element_type_name(), "bool");
    }

    #[test]
    fn as_integer_widens_every_integer_type() {
        assert_eq!(
            MetaValue::U64(u64::MAX).as_integer(),
            Some(u64::MAX as i128)
        );
        assert_eq!(
            MetaValue::I64(i64::MIN).as_integer(),
            Some(i64::MIN as i128)
        );
        assert_eq!(MetaValue::I8(-3).as_integer(), Some(-3));
        assert_eq!(MetaValue::F32(1.0).as_integer(), None);
        assert_eq!(MetaValue::Bool(true).as_integer(), None);
    }
}
