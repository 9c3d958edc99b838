//! An in-memory GGUF writer for tests: synthetic models, fixtures for other
//! crates, and deliberately malformed files.
//!
//! It writes exactly what it is given, without validating it, so tests can
//! also produce bad files (unknown tensor type ids, wrong data lengths,
//! misplaced offsets, duplicate keys); [`crate::GgufFile`] is the judge.
//! Tensor data is laid out in insertion order, each tensor starting on the
//! alignment and padded to it, as llama.cpp's and gguf-py's writers do.

use crate::parse::{ALIGNMENT_KEY, DEFAULT_ALIGNMENT, MAGIC};
use crate::types::GgmlType;
use crate::value::{MetaArray, MetaValue};

/// Builds a GGUF file in memory.
///
/// ```
/// use terse_gguf::{GgmlType, GgufFile, GgufWriter};
/// let mut w = GgufWriter::new();
/// w.add("general.architecture", "toy")
///     .add_tensor("w", GgmlType::F32, &[2], [0u8; 8]);
/// let file = GgufFile::from_bytes(w.to_bytes()).unwrap();
/// assert_eq!(file.architecture().unwrap(), "toy");
/// ```
#[derive(Debug, Clone)]
pub struct GgufWriter {
    version: u32,
    metadata: Vec<(String, MetaValue)>,
    tensors: Vec<PendingTensor>,
}

#[derive(Debug, Clone)]
struct PendingTensor {
    name: String,
    type_id: u32,
    dims: Vec<u64>,
    data: Vec<u8>,
    declared_offset: Option<u64>,
}

impl Default for GgufWriter {
    fn default() -> Self {
        Self::new()
    }
}

impl GgufWriter {
    /// An empty GGUF v3 file.
    pub fn new() -> Self {
        GgufWriter {
            version: 3,
            metadata: Vec::new(),
            tensors: Vec::new(),
        }
    }

    /// Sets the version number written in the header (any value, for tests).
    pub fn set_version(&mut self, version: u32) -> &mut Self {
        self.version = version;
        self
    }

    /// Appends a metadata entry (duplicates are written as given). A
    /// `general.alignment` entry also sets the padding used for tensor data.
    pub fn add(&mut self, key: impl Into<String>, value: impl Into<MetaValue>) -> &mut Self {
        self.metadata.push((key.into(), value.into()));
        self
    }

    /// Appends a tensor; `data` is written verbatim at the next aligned offset.
    pub fn add_tensor(
        &mut self,
        name: impl Into<String>,
        ggml_type: GgmlType,
        dims: &[u64],
        data: impl Into<Vec<u8>>,
    ) -> &mut Self {
        self.add_raw_tensor(name, ggml_type.id(), dims, data, None)
    }

    /// Appends a tensor with a raw type id and, if given, a declared data
    /// offset (relative to the data section) that replaces the real one in
    /// the tensor info; the data is still placed at the next aligned offset.
    pub fn add_raw_tensor(
        &mut self,
        name: impl Into<String>,
        type_id: u32,
        dims: &[u64],
        data: impl Into<Vec<u8>>,
        declared_offset: Option<u64>,
    ) -> &mut Self {
        self.tensors.push(PendingTensor {
            name: name.into(),
            type_id,
            dims: dims.to_vec(),
            data: data.into(),
            declared_offset,
        });
        self
    }

    /// The alignment the output will use: the first usable
    /// `general.alignment` value, else 32.
    pub fn alignment(&self) -> u64 {
        self.metadata
            .iter()
            .find(|(k, _)| k == ALIGNMENT_KEY)
            .and_then(|(_, v)| v.as_integer())
            .and_then(|n| u32::try_from(n).ok())
            .filter(|&n| n > 0)
            .map_or(DEFAULT_ALIGNMENT, u64::from)
    }

    /// Serializes the file.
    pub fn to_bytes(&self) -> Vec<u8> {
        let alignment = self.alignment();
        let mut out = Vec::new();
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&self.version.to_le_bytes());
        put_u64(&mut out, self.tensors.len() as u64);
        put_u64(&mut out, self.metadata.len() as u64);
        for (key, value) in &self.metadata {
            put_str(&mut out, key);
            out.extend_from_slice(&value.type_id().to_le_bytes());
            put_value(&mut out, value);
        }

        let mut next_offset = 0u64;
        let mut data_offsets = Vec::with_capacity(self.tensors.len());
        for t in &self.tensors {
            data_offsets.push(next_offset);
            put_str(&mut out, &t.name);
            out.extend_from_slice(&(t.dims.len() as u32).to_le_bytes());
            for &d in &t.dims {
                put_u64(&mut out, d);
            }
            out.extend_from_slice(&t.type_id.to_le_bytes());
            put_u64(&mut out, t.declared_offset.unwrap_or(next_offset));
            next_offset = (next_offset + t.data.len() as u64).next_multiple_of(alignment);
        }

        pad_to(&mut out, alignment);
        let data_start = out.len() as u64;
        for (t, rel) in self.tensors.iter().zip(data_offsets) {
            pad_to_len(&mut out, data_start + rel);
            out.extend_from_slice(&t.data);
        }
        if !self.tensors.is_empty() {
            pad_to(&mut out, alignment);
        }
        out
    }
}

fn put_u64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    put_u64(out, s.len() as u64);
    out.extend_from_slice(s.as_bytes());
}

fn pad_to(out: &mut Vec<u8>, alignment: u64) {
    let target = (out.len() as u64).next_multiple_of(alignment);
    pad_to_len(out, target);
}

fn pad_to_len(out: &mut Vec<u8>, len: u64) {
    out.resize(len as usize, 0);
}

fn put_value(out: &mut Vec<u8>, value: &MetaValue) {
    match value {
        MetaValue::U8(v) => out.extend_from_slice(&v.to_le_bytes()),
        MetaValue::I8(v) => out.extend_from_slice(&v.to_le_bytes()),
        MetaValue::U16(v) => out.extend_from_slice(&v.to_le_bytes()),
        MetaValue::I16(v) => out.extend_from_slice(&v.to_le_bytes()),
        MetaValue::U32(v) => out.extend_from_slice(&v.to_le_bytes()),
        MetaValue::I32(v) => out.extend_from_slice(&v.to_le_bytes()),
        MetaValue::U64(v) => out.extend_from_slice(&v.to_le_bytes()),
        MetaValue::I64(v) => out.extend_from_slice(&v.to_le_bytes()),
        MetaValue::F32(v) => out.extend_from_slice(&v.to_le_bytes()),
        MetaValue::F64(v) => out.extend_from_slice(&v.to_le_bytes()),
        MetaValue::Bool(v) => out.push(u8::from(*v)),
        MetaValue::String(s) => put_str(out, s),
        MetaValue::Array(a) => put_array(out, a),
    }
}

/// Writes an array body: element type, count, elements.
fn put_array(out: &mut Vec<u8>, array: &MetaArray) {
    out.extend_from_slice(&array.element_type_id().to_le_bytes());
    put_u64(out, array.len() as u64);
    match array {
        MetaArray::U8(v) => out.extend_from_slice(v),
        MetaArray::I8(v) => v
            .iter()
            .for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
        MetaArray::U16(v) => v
            .iter()
            .for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
        MetaArray::I16(v) => v
            .iter()
            .for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
        MetaArray::U32(v) => v
            .iter()
            .for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
        MetaArray::I32(v) => v
            .iter()
            .for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
        MetaArray::U64(v) => v
            .iter()
            .for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
        MetaArray::I64(v) => v
            .iter()
            .for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
        MetaArray::F32(v) => v
            .iter()
            .for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
        MetaArray::F64(v) => v
            .iter()
            .for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
        MetaArray::Bool(v) => out.extend(v.iter().map(|&b| u8::from(b))),
        MetaArray::String(v) => v.iter().for_each(|s| put_str(out, s)),
        MetaArray::Array(v) => v.iter().for_each(|a| put_array(out, a)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_layout_is_magic_version_counts() {
        let mut w = GgufWriter::new();
        w.add("a", 7u8);
        let bytes = w.to_bytes();
        assert_eq!(&bytes[0..4], b"GGUF");
        assert_eq!(&bytes[4..8], &3u32.to_le_bytes());
        assert_eq!(&bytes[8..16], &0u64.to_le_bytes());
        assert_eq!(&bytes[16..24], &1u64.to_le_bytes());
        // key "a": len 1, 'a', type u8 (0), value 7; then zero padding to 32.
        assert_eq!(
            &bytes[24..38],
            &[1, 0, 0, 0, 0, 0, 0, 0, b'a', 0, 0, 0, 0, 7]
        );
        assert_eq!(bytes.len(), 64);
        assert!(bytes[38..].iter().all(|&b| b == 0));
    }

    #[test]
    fn tensor_data_is_aligned_and_padded() {
        let mut w = GgufWriter::new();
        w.add("general.alignment", 64u32)
            .add_tensor("a", GgmlType::F32, &[3], [1u8; 12])
            .add_tensor("b", GgmlType::I8, &[5], [2u8; 5]);
        assert_eq!(w.alignment(), 64);
        let bytes = w.to_bytes();
        assert_eq!(bytes.len() % 64, 0);
        let b_start = bytes.len() - 64;
        assert_eq!(&bytes[b_start..b_start + 5], &[2u8; 5]);
        assert_eq!(&bytes[b_start - 64..b_start - 52], &[1u8; 12]);
    }

    #[test]
    fn unusable_alignment_falls_back_to_default_padding() {
        let mut w = GgufWriter::new();
        w.add("general.alignment", "wide");
        assert_eq!(w.alignment(), 32);
        let mut w = GgufWriter::new();
        w.add("general.alignment", 0u32);
        assert_eq!(w.alignment(), 32);
    }
}
