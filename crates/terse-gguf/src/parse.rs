//! Decoding and validation of a whole GGUF image held in memory.
//!
//! Everything a later accessor relies on is checked here, once, before a
//! `GgufFile` exists: every length and count is bounded by the bytes that
//! remain (so a hostile count is rejected before anything is allocated),
//! strings are valid UTF-8, and every tensor's shape, type, alignment and
//! byte range are consistent with the file. Reading is sequential over the
//! borrowed bytes; the only copies made are the decoded metadata values.

use std::collections::HashMap;

use crate::error::GgufError;
use crate::file::{value_as_u32, TensorInfo};
use crate::types::GgmlType;
use crate::value::{type_id, MetaArray, MetaValue, StrArray};

/// `"GGUF"` as it appears at offset 0.
pub(crate) const MAGIC: [u8; 4] = *b"GGUF";
/// Alignment of the tensor data section when `general.alignment` is absent.
pub(crate) const DEFAULT_ALIGNMENT: u64 = 32;
/// Key that overrides [`DEFAULT_ALIGNMENT`].
pub(crate) const ALIGNMENT_KEY: &str = "general.alignment";
/// GGUF allows at most this many tensor dimensions (`GGML_MAX_DIMS`).
pub(crate) const MAX_DIMS: u32 = 4;
/// Arrays of arrays are decoded recursively; bounding the depth keeps a
/// hostile file from exhausting the stack (each level costs only 12 bytes).
pub(crate) const MAX_ARRAY_DEPTH: usize = 64;

/// Smallest possible encoding of one metadata entry: an empty key (8-byte
/// length), a 4-byte value type and a 1-byte value.
const MIN_KV_BYTES: u64 = 8 + 4 + 1;
/// Smallest possible encoding of one tensor info: empty name, n_dims, one
/// dimension, type, offset.
const MIN_TENSOR_INFO_BYTES: u64 = 8 + 4 + 8 + 4 + 8;

/// The decoded and validated contents of a GGUF image.
pub(crate) struct Parsed {
    pub version: u32,
    pub alignment: u64,
    pub data_offset: u64,
    pub metadata: Vec<(String, MetaValue)>,
    pub key_index: HashMap<String, usize>,
    pub tensors: Vec<TensorInfo>,
    pub tensor_index: HashMap<String, usize>,
}

/// A tensor info record as read, before its data range is checked.
struct RawTensor {
    name: String,
    dims: Vec<u64>,
    ggml_type: GgmlType,
    relative_offset: u64,
}

/// Parses and validates a complete GGUF image.
pub(crate) fn parse(bytes: &[u8]) -> Result<Parsed, GgufError> {
    let mut cur = Cursor { buf: bytes, pos: 0 };

    let magic: [u8; 4] = cur.fixed(&|| "magic".to_owned())?;
    if magic != MAGIC {
        return Err(GgufError::BadMagic { found: magic });
    }
    let version = cur.u32(&|| "version".to_owned())?;
    if version != 2 && version != 3 {
        return Err(GgufError::UnsupportedVersion { version });
    }
    let n_tensors = cur.count(&|| "tensor".to_owned(), MIN_TENSOR_INFO_BYTES)?;
    let n_kv = cur.count(&|| "metadata entry".to_owned(), MIN_KV_BYTES)?;

    let mut metadata = Vec::with_capacity(n_kv);
    let mut key_index = HashMap::with_capacity(n_kv);
    for i in 0..n_kv {
        let key = cur.string(&|| format!("key of metadata entry {i}"))?;
        if key_index.contains_key(&key) {
            return Err(GgufError::DuplicateKey { key });
        }
        let type_offset = cur.offset();
        let value_type = cur.u32(&|| format!("value type of key '{key}'"))?;
        let value = read_value(&mut cur, &key, value_type, type_offset)?;
        key_index.insert(key.clone(), metadata.len());
        metadata.push((key, value));
    }

    let mut raw_tensors = Vec::with_capacity(n_tensors);
    let mut tensor_index = HashMap::with_capacity(n_tensors);
    for i in 0..n_tensors {
        let name = cur.string(&|| format!("name of tensor {i}"))?;
        if tensor_index.contains_key(&name) {
            return Err(GgufError::DuplicateTensor { tensor: name });
        }
        let raw = read_tensor_info(&mut cur, name)?;
        tensor_index.insert(raw.name.clone(), raw_tensors.len());
        raw_tensors.push(raw);
    }
    let header_end = cur.offset();

    let alignment = match key_index.get(ALIGNMENT_KEY).and_then(|&i| metadata.get(i)) {
        None => DEFAULT_ALIGNMENT,
        Some((key, value)) => u64::from(value_as_u32(key, value)?),
    };
    if !alignment.is_power_of_two() {
        return Err(GgufError::BadAlignment { value: alignment });
    }
    // `alignment` is at most 2^31 and `header_end` fits in the file, so this cannot overflow.
    let data_offset = header_end.next_multiple_of(alignment);
    let file_size = cur.file_size();
    if !raw_tensors.is_empty() && data_offset > file_size {
        return Err(GgufError::Truncated {
            what: "padding before the tensor data section".to_owned(),
            offset: header_end,
            needed: data_offset - header_end,
            file_size,
        });
    }

    let tensors = raw_tensors
        .into_iter()
        .map(|raw| locate_tensor(raw, data_offset, alignment, file_size))
        .collect::<Result<Vec<_>, _>>()?;

    Ok(Parsed {
        version,
        alignment,
        data_offset,
        metadata,
        key_index,
        tensors,
        tensor_index,
    })
}

/// Reads one tensor info record after its name: dimensions, type, offset.
fn read_tensor_info(cur: &mut Cursor<'_>, name: String) -> Result<RawTensor, GgufError> {
    let n_dims_offset = cur.offset();
    let n_dims = cur.u32(&|| format!("dimension count of tensor '{name}'"))?;
    if n_dims == 0 || n_dims > MAX_DIMS {
        return Err(GgufError::BadShape {
            tensor: name,
            detail: format!(
                "{n_dims} dimensions (at offset {n_dims_offset}); GGUF allows 1 to {MAX_DIMS}"
            ),
        });
    }
    let mut dims = Vec::with_capacity(n_dims as usize);
    for d in 0..n_dims {
        let dim_offset = cur.offset();
        let dim = cur.u64(&|| format!("dimension {d} of tensor '{name}'"))?;
        if dim == 0 {
            return Err(GgufError::BadShape {
                tensor: name,
                detail: format!("dimension {d} (at offset {dim_offset}) is 0"),
            });
        }
        dims.push(dim);
    }
    let type_id = cur.u32(&|| format!("type of tensor '{name}'"))?;
    let Some(ggml_type) = GgmlType::from_id(type_id) else {
        return Err(GgufError::UnknownTensorType {
            tensor: name,
            type_id,
        });
    };
    let relative_offset = cur.u64(&|| format!("data offset of tensor '{name}'"))?;
    Ok(RawTensor {
        name,
        dims,
        ggml_type,
        relative_offset,
    })
}

/// Computes a tensor's byte size and absolute position, and checks that its
/// data is a whole number of blocks, aligned, and inside the file.
fn locate_tensor(
    raw: RawTensor,
    data_offset: u64,
    alignment: u64,
    file_size: u64,
) -> Result<TensorInfo, GgufError> {
    let RawTensor {
        name,
        dims,
        ggml_type,
        relative_offset,
    } = raw;
    let bad_shape = |detail: String| GgufError::BadShape {
        tensor: name.clone(),
        detail,
    };
    let n_elements = dims
        .iter()
        .try_fold(1u64, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| bad_shape(format!("element count of dims {dims:?} overflows u64")))?;
    let row_len = dims.first().copied().unwrap_or(1);
    let block_size = ggml_type.block_size() as u64;
    if row_len % block_size != 0 {
        return Err(bad_shape(format!(
            "row length {row_len} is not a multiple of the {ggml_type} block size {block_size}"
        )));
    }
    let row_bytes = ggml_type.row_bytes(row_len).ok_or_else(|| {
        bad_shape(format!(
            "byte size of a {ggml_type} row of {row_len} elements overflows u64"
        ))
    })?;
    let n_rows = n_elements / row_len;
    let size_bytes = row_bytes.checked_mul(n_rows).ok_or_else(|| {
        bad_shape(format!(
            "byte size of {ggml_type} dims {dims:?} overflows u64"
        ))
    })?;

    let out_of_bounds = |offset: u64| GgufError::TensorOutOfBounds {
        tensor: name.clone(),
        offset,
        size: size_bytes,
        file_size,
    };
    let offset = data_offset
        .checked_add(relative_offset)
        .ok_or_else(|| out_of_bounds(u64::MAX))?;
    if offset % alignment != 0 {
        return Err(GgufError::TensorMisaligned {
            tensor: name,
            offset,
        });
    }
    match offset.checked_add(size_bytes) {
        Some(end) if end <= file_size => {}
        _ => return Err(out_of_bounds(offset)),
    }
    Ok(TensorInfo {
        name,
        dims,
        ggml_type,
        offset,
        size_bytes,
    })
}

/// Reads a value of type `value_type` (a scalar, string or array).
fn read_value(
    cur: &mut Cursor<'_>,
    key: &str,
    value_type: u32,
    type_offset: u64,
) -> Result<MetaValue, GgufError> {
    let what = || format!("value of key '{key}'");
    Ok(match value_type {
        type_id::U8 => MetaValue::U8(u8::from_le_bytes(cur.fixed(&what)?)),
        type_id::I8 => MetaValue::I8(i8::from_le_bytes(cur.fixed(&what)?)),
        type_id::U16 => MetaValue::U16(u16::from_le_bytes(cur.fixed(&what)?)),
        type_id::I16 => MetaValue::I16(i16::from_le_bytes(cur.fixed(&what)?)),
        type_id::U32 => MetaValue::U32(u32::from_le_bytes(cur.fixed(&what)?)),
        type_id::I32 => MetaValue::I32(i32::from_le_bytes(cur.fixed(&what)?)),
        type_id::U64 => MetaValue::U64(u64::from_le_bytes(cur.fixed(&what)?)),
        type_id::I64 => MetaValue::I64(i64::from_le_bytes(cur.fixed(&what)?)),
        type_id::F32 => MetaValue::F32(f32::from_le_bytes(cur.fixed(&what)?)),
        type_id::F64 => MetaValue::F64(f64::from_le_bytes(cur.fixed(&what)?)),
        type_id::BOOL => MetaValue::Bool(cur.fixed::<1>(&what)? != [0]),
        type_id::STRING => MetaValue::String(cur.string(&what)?),
        type_id::ARRAY => MetaValue::Array(read_array(cur, key, 1)?),
        type_id => {
            return Err(GgufError::UnknownValueType {
                type_id,
                key: key.to_owned(),
                offset: type_offset,
            })
        }
    })
}

/// Reads an array body (element type, count, elements); `depth` is 1 for
/// the outermost array of a key.
fn read_array(cur: &mut Cursor<'_>, key: &str, depth: usize) -> Result<MetaArray, GgufError> {
    let type_offset = cur.offset();
    if depth > MAX_ARRAY_DEPTH {
        return Err(GgufError::NestingTooDeep {
            key: key.to_owned(),
            offset: type_offset,
            max_depth: MAX_ARRAY_DEPTH,
        });
    }
    let elem_type = cur.u32(&|| format!("array element type of key '{key}'"))?;
    let min_elem_bytes = match elem_type {
        type_id::U8 | type_id::I8 | type_id::BOOL => 1,
        type_id::U16 | type_id::I16 => 2,
        type_id::U32 | type_id::I32 | type_id::F32 => 4,
        type_id::U64 | type_id::I64 | type_id::F64 => 8,
        // A string is at least its 8-byte length.
        type_id::STRING => 8,
        // A nested array is at least its element type and count.
        type_id::ARRAY => 4 + 8,
        type_id => {
            return Err(GgufError::UnknownValueType {
                type_id,
                key: key.to_owned(),
                offset: type_offset,
            })
        }
    };
    let what = || format!("elements of array '{key}'");
    let n = cur.count(&what, min_elem_bytes)?;
    Ok(match elem_type {
        type_id::U8 => MetaArray::U8(cur.take(n as u64, &what)?.to_vec()),
        type_id::I8 => MetaArray::I8(cur.numbers(n, &what, i8::from_le_bytes)?),
        type_id::U16 => MetaArray::U16(cur.numbers(n, &what, u16::from_le_bytes)?),
        type_id::I16 => MetaArray::I16(cur.numbers(n, &what, i16::from_le_bytes)?),
        type_id::U32 => MetaArray::U32(cur.numbers(n, &what, u32::from_le_bytes)?),
        type_id::I32 => MetaArray::I32(cur.numbers(n, &what, i32::from_le_bytes)?),
        type_id::U64 => MetaArray::U64(cur.numbers(n, &what, u64::from_le_bytes)?),
        type_id::I64 => MetaArray::I64(cur.numbers(n, &what, i64::from_le_bytes)?),
        type_id::F32 => MetaArray::F32(cur.numbers(n, &what, f32::from_le_bytes)?),
        type_id::F64 => MetaArray::F64(cur.numbers(n, &what, f64::from_le_bytes)?),
        type_id::BOOL => MetaArray::Bool(cur.numbers(n, &what, |b: [u8; 1]| b != [0])?),
        type_id::STRING => {
            let mut strings = StrArray::with_capacity(n, 0);
            for j in 0..n {
                strings.push(cur.str(&|| format!("element {j} of array '{key}'"))?);
            }
            MetaArray::String(strings)
        }
        _ => {
            let mut arrays = Vec::with_capacity(n);
            for _ in 0..n {
                arrays.push(read_array(cur, key, depth + 1)?);
            }
            MetaArray::Array(arrays)
        }
    })
}

/// A read position in the image. Every read is bounds-checked and reports
/// what it was reading on failure; `what` is only formatted on error, so the
/// hot path (hundreds of thousands of token strings) allocates nothing extra.
struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

type What<'w> = &'w dyn Fn() -> String;

impl<'a> Cursor<'a> {
    fn offset(&self) -> u64 {
        self.pos as u64
    }

    fn file_size(&self) -> u64 {
        self.buf.len() as u64
    }

    fn remaining(&self) -> u64 {
        self.file_size() - self.offset()
    }

    fn truncated(&self, what: What<'_>, needed: u64) -> GgufError {
        GgufError::Truncated {
            what: what(),
            offset: self.offset(),
            needed,
            file_size: self.file_size(),
        }
    }

    /// The next `n` bytes.
    fn take(&mut self, n: u64, what: What<'_>) -> Result<&'a [u8], GgufError> {
        let slice = usize::try_from(n)
            .ok()
            .and_then(|n| self.pos.checked_add(n))
            .and_then(|end| self.buf.get(self.pos..end))
            .ok_or_else(|| self.truncated(what, n))?;
        self.pos += slice.len();
        Ok(slice)
    }

    /// The next `N` bytes as an array.
    fn fixed<const N: usize>(&mut self, what: What<'_>) -> Result<[u8; N], GgufError> {
        let chunk = self
            .buf
            .get(self.pos..)
            .and_then(|rest| rest.first_chunk::<N>())
            .ok_or_else(|| self.truncated(what, N as u64))?;
        self.pos += N;
        Ok(*chunk)
    }

    fn u32(&mut self, what: What<'_>) -> Result<u32, GgufError> {
        self.fixed(what).map(u32::from_le_bytes)
    }

    fn u64(&mut self, what: What<'_>) -> Result<u64, GgufError> {
        self.fixed(what).map(u64::from_le_bytes)
    }

    /// A u64 element count, rejected unless `count * min_elem_bytes` fits in
    /// the rest of the file — checked before the caller allocates for it.
    fn count(&mut self, what: What<'_>, min_elem_bytes: u64) -> Result<usize, GgufError> {
        let offset = self.offset();
        let count = self.u64(&|| format!("{} count", what()))?;
        if count > self.remaining() / min_elem_bytes {
            return Err(GgufError::CountTooLarge {
                what: what(),
                count,
                offset,
            });
        }
        // Bounded by the image length, which is a usize.
        usize::try_from(count).map_err(|_| GgufError::CountTooLarge {
            what: what(),
            count,
            offset,
        })
    }

    /// `n` fixed-size little-endian numbers.
    fn numbers<T, const N: usize>(
        &mut self,
        n: usize,
        what: What<'_>,
        decode: fn([u8; N]) -> T,
    ) -> Result<Vec<T>, GgufError> {
        let bytes = self.take((n as u64).saturating_mul(N as u64), what)?;
        Ok(bytes
            .chunks_exact(N)
            .filter_map(|c| <[u8; N]>::try_from(c).ok())
            .map(decode)
            .collect())
    }

    /// A u64-length-prefixed UTF-8 string.
    fn string(&mut self, what: What<'_>) -> Result<String, GgufError> {
        self.str(what).map(str::to_owned)
    }

    fn str(&mut self, what: What<'_>) -> Result<&'a str, GgufError> {
        let len = self.u64(&|| format!("length of {}", what()))?;
        let start = self.offset();
        let bytes = self.take(len, what)?;
        match std::str::from_utf8(bytes) {
            Ok(s) => Ok(s),
            Err(e) => Err(GgufError::InvalidUtf8 {
                what: what(),
                offset: start + e.valid_up_to() as u64,
            }),
        }
    }
}
