//! terse-gguf: a validating reader (and a small writer) for GGUF v2/v3
//! model files, the format llama.cpp uses for weights and metadata.
//!
//! [`GgufFile::open`] memory-maps a file and checks everything before
//! returning: header, every metadata value (all thirteen value types,
//! nested arrays included), and every tensor's type, shape, alignment and
//! byte range. After that, metadata lookups are borrows and
//! [`GgufFile::tensor_data`] is an infallible zero-copy slice. Malformed
//! input of any kind yields a [`GgufError`] naming what and where; it never
//! panics. [`writer::GgufWriter`] builds files in memory for tests.

mod error;
mod file;
mod parse;
mod types;
mod value;
pub mod writer;

pub use error::GgufError;
pub use file::{GgufFile, TensorInfo};
pub use types::GgmlType;
pub use value::{MetaArray, MetaValue, StrArray};
pub use writer::GgufWriter;

/// Deepest nesting of arrays of arrays that the reader accepts.
pub const MAX_ARRAY_DEPTH: usize = parse::MAX_ARRAY_DEPTH;
