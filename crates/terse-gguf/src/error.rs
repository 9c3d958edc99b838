//! The one error type of this crate.
//!
//! Every variant names what was wrong and where (byte offset, key or tensor
//! name), so a bad model file can be diagnosed from the message alone.

use std::path::PathBuf;

/// Why a GGUF file could not be read, or why a metadata lookup failed.
#[derive(Debug, thiserror::Error)]
pub enum GgufError {
    #[error("cannot read GGUF file {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// A parse or validation error in the file at `path` (from [`crate::GgufFile::open`]).
    #[error("invalid GGUF file {}: {source}", path.display())]
    InFile {
        path: PathBuf,
        #[source]
        source: Box<GgufError>,
    },

    #[error("not a GGUF file: magic bytes {found:02x?} at offset 0, expected \"GGUF\"")]
    BadMagic { found: [u8; 4] },

    #[error("unsupported GGUF version {version} (supported: 2 and 3){}", version_hint(*version))]
    UnsupportedVersion { version: u32 },

    #[error("truncated file: {what} needs {needed} bytes at offset {offset}, but the file is {file_size} bytes")]
    Truncated {
        what: String,
        offset: u64,
        needed: u64,
        file_size: u64,
    },

    #[error("{what} count {count} at offset {offset} cannot fit in the rest of the file")]
    CountTooLarge {
        what: String,
        count: u64,
        offset: u64,
    },

    #[error("{what} at offset {offset} is not valid UTF-8")]
    InvalidUtf8 { what: String, offset: u64 },

    #[error("metadata key '{key}' has unknown value type {type_id} at offset {offset}")]
    UnknownValueType {
        type_id: u32,
        key: String,
        offset: u64,
    },

    #[error("metadata key '{key}' nests arrays deeper than {max_depth} levels at offset {offset}")]
    NestingTooDeep {
        key: String,
        offset: u64,
        max_depth: usize,
    },

    #[error("tensor '{tensor}' has unknown ggml type id {type_id}")]
    UnknownTensorType { tensor: String, type_id: u32 },

    #[error("general.alignment is {value}, but it must be a non-zero power of two")]
    BadAlignment { value: u64 },

    #[error("tensor '{tensor}' data ({size} bytes at offset {offset}) extends past the end of the file ({file_size} bytes)")]
    TensorOutOfBounds {
        tensor: String,
        offset: u64,
        size: u64,
        file_size: u64,
    },

    #[error("tensor '{tensor}' data at offset {offset} is not a multiple of general.alignment")]
    TensorMisaligned { tensor: String, offset: u64 },

    #[error("tensor '{tensor}' has a bad shape: {detail}")]
    BadShape { tensor: String, detail: String },

    #[error("metadata key '{key}' appears more than once")]
    DuplicateKey { key: String },

    #[error("tensor '{tensor}' appears more than once")]
    DuplicateTensor { tensor: String },

    #[error("metadata key '{key}' is missing")]
    MissingKey { key: String },

    #[error("metadata key '{key}' has type {found}, expected {expected}")]
    WrongType {
        key: String,
        expected: &'static str,
        found: &'static str,
    },

    #[error(
        "metadata key '{key}' has value {value}, which is out of range for the requested type"
    )]
    OutOfRange { key: String, value: String },
}

impl GgufError {
    /// The underlying error, looking through the path wrapper that
    /// [`crate::GgufFile::open`] adds.
    pub fn root(&self) -> &GgufError {
        match self {
            GgufError::InFile { source, .. } => source.root(),
            other => other,
        }
    }
}

/// A byte-swapped small version (3 reads as 0x0300_0000) means the file was
/// written big-endian, which this little-endian-only reader cannot read.
fn version_hint(version: u32) -> &'static str {
    if version != 0 && version & 0xFFFF == 0 {
        "; this looks like a big-endian GGUF file, and only little-endian files are supported"
    } else {
        ""
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn big_endian_version_is_explained() {
        let msg = GgufError::UnsupportedVersion {
            version: 0x0300_0000,
        }
        .to_string();
        assert!(msg.contains("big-endian"), "{msg}");
        let msg = GgufError::UnsupportedVersion { version: 4 }.to_string();
        assert!(!msg.contains("big-endian"), "{msg}");
    }

    #[test]
    fn root_sees_through_path_wrapper() {
        let e = GgufError::InFile {
            path: "m.gguf".into(),
            source: Box::new(GgufError::BadAlignment { value: 3 }),
        };
        assert!(matches!(e.root(), GgufError::BadAlignment { value: 3 }));
        assert!(e.to_string().contains("m.gguf"));
    }
}
