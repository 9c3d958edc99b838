//! An opened, validated GGUF file: typed metadata lookups and zero-copy
//! tensor views.
//!
//! The file is memory-mapped (or held as owned bytes for tests and
//! fuzzing); tensor data is never copied, only sliced out of the mapping.

use std::fs::File;
use std::path::Path;

use memmap2::Mmap;

use crate::error::GgufError;
use crate::parse::{parse, Parsed};
use crate::types::GgmlType;
use crate::value::{MetaArray, MetaValue, StrArray};

/// Where one tensor's data lives and how it is laid out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorInfo {
    pub name: String,
    /// Dimensions in ggml order: `dims[0]` is the contiguous row length.
    pub dims: Vec<u64>,
    pub ggml_type: GgmlType,
    /// Absolute byte offset of the data in the file.
    pub offset: u64,
    /// Exact byte length of the data.
    pub size_bytes: u64,
}

impl TensorInfo {
    /// Total number of elements (product of the dimensions).
    pub fn n_elements(&self) -> u64 {
        self.dims.iter().fold(1u64, |acc, &d| acc.saturating_mul(d))
    }

    /// Elements per row: `dims[0]`.
    pub fn row_len(&self) -> u64 {
        self.dims.first().copied().unwrap_or(1)
    }

    /// Number of rows: the product of `dims[1..]`, 1 for a 1-D tensor.
    pub fn n_rows(&self) -> u64 {
        self.dims
            .iter()
            .skip(1)
            .fold(1u64, |acc, &d| acc.saturating_mul(d))
    }

    /// Bytes per row. Exact for tensors from a [`GgufFile`], whose shapes
    /// were validated; for a hand-built info with a partial block the
    /// trailing partial block is not counted.
    pub fn row_bytes(&self) -> u64 {
        let blocks = self.row_len() / self.ggml_type.block_size() as u64;
        blocks.saturating_mul(self.ggml_type.type_size() as u64)
    }
}

/// The bytes behind a [`GgufFile`].
enum Storage {
    Mapped(Mmap),
    Owned(Vec<u8>),
}

impl Storage {
    fn bytes(&self) -> &[u8] {
        match self {
            Storage::Mapped(m) => m,
            Storage::Owned(v) => v,
        }
    }
}

/// A parsed and fully validated GGUF v2/v3 file.
pub struct GgufFile {
    storage: Storage,
    parsed: Parsed,
}

impl std::fmt::Debug for GgufFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GgufFile")
            .field("version", &self.parsed.version)
            .field("file_size", &self.file_size())
            .field("metadata_entries", &self.parsed.metadata.len())
            .field("tensors", &self.parsed.tensors.len())
            .finish()
    }
}

impl GgufFile {
    /// Memory-maps, parses and validates the file at `path`. Errors name the path.
    pub fn open(path: impl AsRef<Path>) -> Result<GgufFile, GgufError> {
        let path = path.as_ref();
        let io_err = |source| GgufError::Io {
            path: path.to_path_buf(),
            source,
        };
        let file = File::open(path).map_err(io_err)?;
        let len = file.metadata().map_err(io_err)?.len();
        // Mapping an empty file fails on some platforms; an empty image
        // gives the proper "truncated magic" error instead.
        let storage = if len == 0 {
            Storage::Owned(Vec::new())
        } else {
            // SAFETY: the mapping is read-only and lives as long as `self`.
            // As with every mmap-based model loader, another process
            // truncating or rewriting the file while it is open is outside
            // what this reader can guard against.
            Storage::Mapped(unsafe { Mmap::map(&file) }.map_err(io_err)?)
        };
        Self::from_storage(storage).map_err(|e| GgufError::InFile {
            path: path.to_path_buf(),
            source: Box::new(e),
        })
    }

    /// Parses and validates an in-memory image, exactly as [`GgufFile::open`] does.
    pub fn from_bytes(bytes: Vec<u8>) -> Result<GgufFile, GgufError> {
        Self::from_storage(Storage::Owned(bytes))
    }

    fn from_storage(storage: Storage) -> Result<GgufFile, GgufError> {
        let parsed = parse(storage.bytes())?;
        Ok(GgufFile { storage, parsed })
    }

    /// GGUF format version (2 or 3).
    pub fn version(&self) -> u32 {
        self.parsed.version
    }

    pub fn file_size(&self) -> u64 {
        self.bytes().len() as u64
    }

    /// Alignment of tensor data (`general.alignment`, default 32).
    pub fn alignment(&self) -> u64 {
        self.parsed.alignment
    }

    /// Absolute offset of the tensor data section (end of the header,
    /// rounded up to the alignment).
    pub fn data_offset(&self) -> u64 {
        self.parsed.data_offset
    }

    /// All metadata entries in file order.
    pub fn metadata(&self) -> &[(String, MetaValue)] {
        &self.parsed.metadata
    }

    pub fn get(&self, key: &str) -> Option<&MetaValue> {
        let &i = self.parsed.key_index.get(key)?;
        self.parsed.metadata.get(i).map(|(_, v)| v)
    }

    fn require(&self, key: &str) -> Result<&MetaValue, GgufError> {
        self.get(key).ok_or_else(|| GgufError::MissingKey {
            key: key.to_owned(),
        })
    }

    pub fn get_str(&self, key: &str) -> Result<&str, GgufError> {
        match self.require(key)? {
            MetaValue::String(s) => Ok(s),
            other => Err(wrong_type(key, "string", other)),
        }
    }

    /// Any integer type whose value fits in a u32.
    pub fn get_u32(&self, key: &str) -> Result<u32, GgufError> {
        value_as_u32(key, self.require(key)?)
    }

    /// Any integer type whose value fits in a u64.
    pub fn get_u64(&self, key: &str) -> Result<u64, GgufError> {
        let value = self.require(key)?;
        let n = value
            .as_integer()
            .ok_or_else(|| wrong_type(key, "u64", value))?;
        u64::try_from(n).map_err(|_| out_of_range(key, value))
    }

    /// An f32, or an f64 narrowed to f32.
    pub fn get_f32(&self, key: &str) -> Result<f32, GgufError> {
        match self.require(key)? {
            MetaValue::F32(v) => Ok(*v),
            MetaValue::F64(v) => Ok(*v as f32),
            other => Err(wrong_type(key, "f32", other)),
        }
    }

    pub fn get_bool(&self, key: &str) -> Result<bool, GgufError> {
        match self.require(key)? {
            MetaValue::Bool(v) => Ok(*v),
            other => Err(wrong_type(key, "bool", other)),
        }
    }

    /// Any array.
    pub fn get_array(&self, key: &str) -> Result<&MetaArray, GgufError> {
        match self.require(key)? {
            MetaValue::Array(a) => Ok(a),
            other => Err(wrong_type(key, "array", other)),
        }
    }

    pub fn get_str_array(&self, key: &str) -> Result<&StrArray, GgufError> {
        match self.require(key)? {
            MetaValue::Array(MetaArray::String(v)) => Ok(v),
            other => Err(wrong_type(key, "array of string", other)),
        }
    }

    pub fn get_f32_array(&self, key: &str) -> Result<&[f32], GgufError> {
        match self.require(key)? {
            MetaValue::Array(MetaArray::F32(v)) => Ok(v),
            other => Err(wrong_type(key, "array of f32", other)),
        }
    }

    pub fn get_i32_array(&self, key: &str) -> Result<&[i32], GgufError> {
        match self.require(key)? {
            MetaValue::Array(MetaArray::I32(v)) => Ok(v),
            other => Err(wrong_type(key, "array of i32", other)),
        }
    }

    /// `None` if absent; an error if present with the wrong type.
    pub fn opt_str(&self, key: &str) -> Result<Option<&str>, GgufError> {
        self.optional(key, Self::get_str)
    }

    /// `None` if absent; an error if present with the wrong type or out of range.
    pub fn opt_u32(&self, key: &str) -> Result<Option<u32>, GgufError> {
        self.optional(key, Self::get_u32)
    }

    /// `None` if absent; an error if present with the wrong type or out of range.
    pub fn opt_u64(&self, key: &str) -> Result<Option<u64>, GgufError> {
        self.optional(key, Self::get_u64)
    }

    /// `None` if absent; an error if present with the wrong type.
    pub fn opt_f32(&self, key: &str) -> Result<Option<f32>, GgufError> {
        self.optional(key, Self::get_f32)
    }

    /// `None` if absent; an error if present with the wrong type.
    pub fn opt_bool(&self, key: &str) -> Result<Option<bool>, GgufError> {
        self.optional(key, Self::get_bool)
    }

    fn optional<'s, T>(
        &'s self,
        key: &str,
        get: fn(&'s Self, &str) -> Result<T, GgufError>,
    ) -> Result<Option<T>, GgufError> {
        if self.parsed.key_index.contains_key(key) {
            get(self, key).map(Some)
        } else {
            Ok(None)
        }
    }

    /// `general.architecture`, e.g. `"qwen2"`.
    pub fn architecture(&self) -> Result<&str, GgufError> {
        self.get_str("general.architecture")
    }

    /// All tensor infos in file order.
    pub fn tensors(&self) -> &[TensorInfo] {
        &self.parsed.tensors
    }

    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        let &i = self.parsed.tensor_index.get(name)?;
        self.parsed.tensors.get(i)
    }

    /// The data of `t`, exactly `t.size_bytes` long, borrowed from the
    /// mapping. Its range was validated at open; an info that does not come
    /// from this file and does not fit in it yields an empty slice.
    pub fn tensor_data(&self, t: &TensorInfo) -> &[u8] {
        let range = usize::try_from(t.offset).ok().and_then(|start| {
            let len = usize::try_from(t.size_bytes).ok()?;
            Some(start..start.checked_add(len)?)
        });
        range.and_then(|r| self.bytes().get(r)).unwrap_or_default()
    }

    /// The whole file.
    pub fn bytes(&self) -> &[u8] {
        self.storage.bytes()
    }
}

/// Integer metadata as u32, shared by the getters and the alignment check.
pub(crate) fn value_as_u32(key: &str, value: &MetaValue) -> Result<u32, GgufError> {
    let n = value
        .as_integer()
        .ok_or_else(|| wrong_type(key, "u32", value))?;
    u32::try_from(n).map_err(|_| out_of_range(key, value))
}

fn wrong_type(key: &str, expected: &'static str, found: &MetaValue) -> GgufError {
    GgufError::WrongType {
        key: key.to_owned(),
        expected,
        found: found.type_name(),
    }
}

fn out_of_range(key: &str, value: &MetaValue) -> GgufError {
    GgufError::OutOfRange {
        key: key.to_owned(),
        value: value.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(ggml_type: GgmlType, dims: &[u64]) -> TensorInfo {
        TensorInfo {
            name: "t".into(),
            dims: dims.to_vec(),
            ggml_type,
            offset: 0,
            size_bytes: 0,
        }
    }

    #[test]
    fn tensor_info_shape_helpers() {
        let t = info(GgmlType::Q8_0, &[896, 151936]);
        assert_eq!(t.n_elements(), 896 * 151936);
        assert_eq!(t.row_len(), 896);
        assert_eq!(t.n_rows(), 151936);
        assert_eq!(t.row_bytes(), 952);
        let v = info(GgmlType::F32, &[896]);
        assert_eq!((v.n_rows(), v.row_bytes()), (1, 3584));
        let t3 = info(GgmlType::Q4_K, &[256, 3, 5]);
        assert_eq!((t3.n_rows(), t3.n_elements()), (15, 3840));
    }

    #[test]
    fn file_is_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<GgufFile>();
    }
}
