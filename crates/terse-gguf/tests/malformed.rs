//! Hand-made broken files: each must be rejected with the right typed error,
//! naming what is wrong and where.

use terse_gguf::{GgmlType, GgufError, GgufFile, GgufWriter, MetaArray, MetaValue};

/// Header is magic (4) + version (4) + tensor count (8) + kv count (8).
const HEADER_LEN: usize = 24;

fn parse_err(bytes: Vec<u8>) -> GgufError {
    match GgufFile::from_bytes(bytes) {
        Ok(f) => panic!("expected an error, got a file: {f:?}"),
        Err(e) => e,
    }
}

fn patch(bytes: &mut [u8], at: usize, with: &[u8]) {
    bytes[at..at + with.len()].copy_from_slice(with);
}

#[test]
fn truncated_gguf_is_rejected_with_offset() {
    let mut w = GgufWriter::new();
    w.add("general.architecture", "qwen2");
    let mut bytes = w.to_bytes();
    // Cut in the middle of the 20-byte key, which starts after its 8-byte length.
    bytes.truncate(HEADER_LEN + 8 + 10);
    match parse_err(bytes) {
        GgufError::Truncated {
            what,
            offset,
            needed,
            file_size,
        } => {
            assert_eq!(what, "key of metadata entry 0");
            assert_eq!(offset, 32);
            assert_eq!(needed, 20);
            assert_eq!(file_size, 42);
        }
        other => panic!("unexpected error: {other}"),
    }
}

#[test]
fn truncated_header_reports_the_field() {
    let bytes = GgufWriter::new().to_bytes();
    let err = parse_err(bytes[..10].to_vec());
    assert_eq!(
        err.to_string(),
        "truncated file: tensor count needs 8 bytes at offset 8, but the file is 10 bytes"
    );
    assert!(matches!(
        parse_err(Vec::new()),
        GgufError::Truncated {
            offset: 0,
            needed: 4,
            ..
        }
    ));
}

#[test]
fn bad_magic_is_rejected() {
    let mut bytes = GgufWriter::new().to_bytes();
    patch(&mut bytes, 0, b"GGML");
    assert!(matches!(parse_err(bytes), GgufError::BadMagic { found } if &found == b"GGML"));
}

#[test]
fn version_1_and_4_are_unsupported() {
    for version in [0, 1, 4] {
        let mut w = GgufWriter::new();
        w.set_version(version);
        match parse_err(w.to_bytes()) {
            GgufError::UnsupportedVersion { version: v } => assert_eq!(v, version),
            other => panic!("version {version}: unexpected error {other}"),
        }
    }
}

#[test]
fn big_endian_file_is_reported_as_such() {
    let mut bytes = GgufWriter::new().to_bytes();
    patch(&mut bytes, 4, &3u32.to_be_bytes());
    let err = parse_err(bytes);
    assert!(matches!(
        err,
        GgufError::UnsupportedVersion {
            version: 0x0300_0000
        }
    ));
    assert!(err.to_string().contains("big-endian"), "{err}");
}

#[test]
fn huge_string_length_is_rejected_before_allocating() {
    let mut w = GgufWriter::new();
    w.add("general.name", "x");
    let mut bytes = w.to_bytes();
    patch(&mut bytes, HEADER_LEN, &u64::MAX.to_le_bytes());
    match parse_err(bytes) {
        GgufError::Truncated {
            what,
            offset,
            needed,
            ..
        } => {
            assert_eq!(what, "key of metadata entry 0");
            assert_eq!((offset, needed), (32, u64::MAX));
        }
        other => panic!("unexpected error: {other}"),
    }
}

#[test]
fn huge_array_count_is_rejected_before_allocating() {
    // Key "tokens": count sits after its length (8), name (6), value type (4), element type (4).
    let count_at = HEADER_LEN + 8 + 6 + 4 + 4;
    for array in [
        MetaValue::from(vec!["a".to_owned(), "b".to_owned()]),
        MetaValue::from(vec![1u64, 2]),
        MetaValue::from(MetaArray::Array(vec![MetaArray::U8(vec![])])),
    ] {
        let mut w = GgufWriter::new();
        w.add("tokens", array.clone());
        let mut bytes = w.to_bytes();
        patch(&mut bytes, count_at, &(u64::MAX / 2).to_le_bytes());
        match parse_err(bytes) {
            GgufError::CountTooLarge {
                what,
                count,
                offset,
            } => {
                assert_eq!(what, "elements of array 'tokens'");
                assert_eq!((count, offset), (u64::MAX / 2, count_at as u64));
            }
            other => panic!("{array}: unexpected error {other}"),
        }
    }
}

#[test]
fn huge_tensor_count_is_rejected() {
    let mut bytes = GgufWriter::new().to_bytes();
    patch(&mut bytes, 8, &u64::MAX.to_le_bytes());
    assert!(matches!(
        parse_err(bytes),
        GgufError::CountTooLarge { ref what, count: u64::MAX, offset: 8 } if what == "tensor"
    ));
}

#[test]
fn huge_metadata_count_is_rejected() {
    let mut bytes = GgufWriter::new().to_bytes();
    patch(&mut bytes, 16, &(1u64 << 40).to_le_bytes());
    assert!(matches!(
        parse_err(bytes),
        GgufError::CountTooLarge { ref what, offset: 16, .. } if what == "metadata entry"
    ));
}

#[test]
fn unknown_value_type_is_rejected_with_key_and_offset() {
    let mut w = GgufWriter::new();
    w.add("k", 1u8);
    let mut bytes = w.to_bytes();
    let type_at = HEADER_LEN + 8 + 1;
    patch(&mut bytes, type_at, &13u32.to_le_bytes());
    match parse_err(bytes) {
        GgufError::UnknownValueType {
            type_id,
            key,
            offset,
        } => {
            assert_eq!((type_id, key.as_str(), offset), (13, "k", type_at as u64));
        }
        other => panic!("unexpected error: {other}"),
    }
}

#[test]
fn unknown_array_element_type_is_rejected() {
    let mut w = GgufWriter::new();
    w.add("arr", vec![1u8, 2]);
    let mut bytes = w.to_bytes();
    let elem_type_at = HEADER_LEN + 8 + 3 + 4;
    patch(&mut bytes, elem_type_at, &0xFFu32.to_le_bytes());
    assert!(matches!(
        parse_err(bytes),
        GgufError::UnknownValueType { type_id: 0xFF, ref key, offset } if key == "arr" && offset == elem_type_at as u64
    ));
}

#[test]
fn unknown_tensor_type_is_rejected() {
    let mut w = GgufWriter::new();
    // Id 4 was Q4_2, removed from ggml.
    w.add_raw_tensor("blk.0.w", 4, &[32], vec![0u8; 20], None);
    assert!(matches!(
        parse_err(w.to_bytes()),
        GgufError::UnknownTensorType { ref tensor, type_id: 4 } if tensor == "blk.0.w"
    ));
}

#[test]
fn tensor_beyond_eof_is_rejected() {
    let mut w = GgufWriter::new();
    w.add_raw_tensor("w", GgmlType::F32.id(), &[8], vec![0u8; 32], Some(1024));
    let bytes = w.to_bytes();
    let file_size = bytes.len() as u64;
    match parse_err(bytes) {
        GgufError::TensorOutOfBounds {
            tensor,
            offset,
            size,
            file_size: fs,
        } => {
            assert_eq!(tensor, "w");
            assert_eq!(offset % 32, 0);
            assert!(offset >= 1024 + 24, "offset {offset} must be absolute");
            assert_eq!((size, fs), (32, file_size));
        }
        other => panic!("unexpected error: {other}"),
    }
}

#[test]
fn tensor_cut_short_by_truncation_is_rejected() {
    let mut w = GgufWriter::new();
    w.add_tensor("w", GgmlType::F32, &[8], vec![7u8; 32]);
    let mut bytes = w.to_bytes();
    bytes.truncate(bytes.len() - 1);
    assert!(
        matches!(parse_err(bytes), GgufError::TensorOutOfBounds { ref tensor, size: 32, .. } if tensor == "w")
    );
}

#[test]
fn tensor_offset_overflow_is_rejected() {
    let mut w = GgufWriter::new();
    w.add_raw_tensor(
        "w",
        GgmlType::F32.id(),
        &[8],
        vec![0u8; 32],
        Some(u64::MAX - 31),
    );
    assert!(matches!(
        parse_err(w.to_bytes()),
        GgufError::TensorOutOfBounds { .. }
    ));
}

#[test]
fn misaligned_tensor_is_rejected() {
    let mut w = GgufWriter::new();
    w.add_tensor("a", GgmlType::F32, &[8], vec![0u8; 32]);
    w.add_raw_tensor("b", GgmlType::F32.id(), &[1], vec![0u8; 4], Some(36));
    match parse_err(w.to_bytes()) {
        GgufError::TensorMisaligned { tensor, offset } => {
            assert_eq!(tensor, "b");
            assert_eq!(offset % 32, 4, "absolute offset {offset}");
        }
        other => panic!("unexpected error: {other}"),
    }
}

#[test]
fn non_power_of_two_alignment_is_rejected() {
    for value in [0u32, 3, 48] {
        let mut w = GgufWriter::new();
        w.add("general.alignment", value);
        match parse_err(w.to_bytes()) {
            GgufError::BadAlignment { value: v } => assert_eq!(v, u64::from(value)),
            other => panic!("alignment {value}: unexpected error {other}"),
        }
    }
    let mut w = GgufWriter::new();
    w.add("general.alignment", "32");
    assert!(matches!(
        parse_err(w.to_bytes()),
        GgufError::WrongType { ref key, expected: "u32", found: "string" } if key == "general.alignment"
    ));
    let mut w = GgufWriter::new();
    w.add("general.alignment", -32i32);
    assert!(
        matches!(parse_err(w.to_bytes()), GgufError::OutOfRange { ref value, .. } if value == "-32")
    );
}

#[test]
fn duplicate_key_is_rejected() {
    let mut w = GgufWriter::new();
    w.add("general.name", "a")
        .add("x", 1u32)
        .add("general.name", "b");
    assert!(
        matches!(parse_err(w.to_bytes()), GgufError::DuplicateKey { ref key } if key == "general.name")
    );
}

#[test]
fn duplicate_tensor_is_rejected() {
    let mut w = GgufWriter::new();
    w.add_tensor("w", GgmlType::F32, &[1], vec![0u8; 4]);
    w.add_tensor("w", GgmlType::F32, &[1], vec![0u8; 4]);
    assert!(
        matches!(parse_err(w.to_bytes()), GgufError::DuplicateTensor { ref tensor } if tensor == "w")
    );
}

#[test]
fn partial_block_row_is_rejected() {
    let mut w = GgufWriter::new();
    w.add_tensor("q", GgmlType::Q4_K, &[128, 2], vec![0u8; 144]);
    match parse_err(w.to_bytes()) {
        GgufError::BadShape { tensor, detail } => {
            assert_eq!(tensor, "q");
            assert_eq!(
                detail,
                "row length 128 is not a multiple of the Q4_K block size 256"
            );
        }
        other => panic!("unexpected error: {other}"),
    }
}

#[test]
fn zero_dimension_and_too_many_dimensions_are_rejected() {
    let mut w = GgufWriter::new();
    w.add_tensor("z", GgmlType::F32, &[4, 0], vec![]);
    assert!(
        matches!(parse_err(w.to_bytes()), GgufError::BadShape { ref detail, .. } if detail.starts_with("dimension 1 (at offset"))
    );
    let mut w = GgufWriter::new();
    w.add_tensor("five", GgmlType::F32, &[1, 1, 1, 1, 1], vec![0u8; 4]);
    assert!(
        matches!(parse_err(w.to_bytes()), GgufError::BadShape { ref tensor, .. } if tensor == "five")
    );
    let mut w = GgufWriter::new();
    w.add_tensor("scalar", GgmlType::F32, &[], vec![0u8; 4]);
    assert!(
        matches!(parse_err(w.to_bytes()), GgufError::BadShape { ref tensor, .. } if tensor == "scalar")
    );
}

#[test]
fn element_count_overflow_is_rejected() {
    let mut w = GgufWriter::new();
    w.add_tensor("big", GgmlType::F32, &[1 << 32, 1 << 32], vec![]);
    assert!(
        matches!(parse_err(w.to_bytes()), GgufError::BadShape { ref detail, .. } if detail.contains("overflows"))
    );
    let mut w = GgufWriter::new();
    w.add_tensor("bytes", GgmlType::F64, &[1 << 62], vec![]);
    assert!(
        matches!(parse_err(w.to_bytes()), GgufError::BadShape { ref detail, .. } if detail.contains("overflows"))
    );
}

#[test]
fn invalid_utf8_is_rejected_with_offset() {
    let mut w = GgufWriter::new();
    w.add("abcd", "ok");
    let mut bytes = w.to_bytes();
    bytes[HEADER_LEN + 8 + 2] = 0xFF;
    assert!(matches!(
        parse_err(bytes),
        GgufError::InvalidUtf8 { ref what, offset: 34 } if what == "key of metadata entry 0"
    ));
}

#[test]
fn excessive_array_nesting_is_rejected() {
    let mut nested = MetaArray::U8(vec![]);
    for _ in 0..terse_gguf::MAX_ARRAY_DEPTH {
        nested = MetaArray::Array(vec![nested]);
    }
    let mut w = GgufWriter::new();
    w.add("deep", nested);
    assert!(matches!(
        parse_err(w.to_bytes()),
        GgufError::NestingTooDeep { ref key, max_depth: terse_gguf::MAX_ARRAY_DEPTH, .. } if key == "deep"
    ));
}

#[test]
fn missing_tensor_data_padding_is_rejected() {
    let mut w = GgufWriter::new();
    w.add("k", 1u8)
        .add_tensor("w", GgmlType::F32, &[1], vec![0u8; 4]);
    let bytes = w.to_bytes();
    // Keep the header and tensor info, drop the padding and the data.
    let header_end = HEADER_LEN + (8 + 1 + 4 + 1) + (8 + 1 + 4 + 8 + 4 + 8);
    assert!(matches!(
        parse_err(bytes[..header_end + 1].to_vec()),
        GgufError::Truncated { offset, .. } if offset == header_end as u64
    ));
}

#[test]
fn open_errors_name_the_path() {
    let dir = std::env::temp_dir().join(format!("terse-gguf-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("bad.gguf");
    std::fs::write(&path, b"GGUF\x01\x00\x00\x00").unwrap();
    let err = GgufFile::open(&path).unwrap_err();
    assert!(err.to_string().contains("bad.gguf"), "{err}");
    assert!(matches!(
        err.root(),
        GgufError::UnsupportedVersion { version: 1 }
    ));

    let empty = dir.join("empty.gguf");
    std::fs::write(&empty, b"").unwrap();
    let err = GgufFile::open(&empty).unwrap_err();
    assert!(
        matches!(err.root(), GgufError::Truncated { offset: 0, .. }),
        "{err}"
    );

    let missing = dir.join("missing.gguf");
    let err = GgufFile::open(&missing).unwrap_err();
    assert!(matches!(err, GgufError::Io { ref path, .. } if path == &missing));
    assert!(err.to_string().contains("missing.gguf"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}
