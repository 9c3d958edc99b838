//! Files built with `GgufWriter` must read back through `GgufFile` exactly:
//! every value type, nested arrays, tensors, and the typed getters.

use terse_gguf::{GgmlType, GgufError, GgufFile, GgufWriter, MetaArray, MetaValue};

fn every_value_type() -> Vec<(String, MetaValue)> {
    let entries: Vec<(&str, MetaValue)> = vec![
        ("u8", MetaValue::U8(250)),
        ("i8", MetaValue::I8(-120)),
        ("u16", MetaValue::U16(65000)),
        ("i16", MetaValue::I16(-32000)),
        ("u32", MetaValue::U32(4_000_000_000)),
        ("i32", MetaValue::I32(-2_000_000_000)),
        ("u64", MetaValue::U64(u64::MAX)),
        ("i64", MetaValue::I64(i64::MIN)),
        ("f32", MetaValue::F32(1e-6)),
        ("f64", MetaValue::F64(-2.5e300)),
        ("bool.t", MetaValue::Bool(true)),
        ("bool.f", MetaValue::Bool(false)),
        ("string", MetaValue::from("héllo ✓ Ġ")),
        ("string.empty", MetaValue::from("")),
        ("arr.u8", vec![0u8, 255].into()),
        ("arr.i8", vec![-128i8, 127].into()),
        ("arr.u16", vec![1u16, 65535].into()),
        ("arr.i16", vec![-1i16, 300].into()),
        ("arr.u32", vec![7u32, u32::MAX].into()),
        ("arr.i32", vec![1i32, -3, 5].into()),
        ("arr.u64", vec![u64::MAX, 0].into()),
        ("arr.i64", vec![i64::MIN, i64::MAX].into()),
        ("arr.f32", vec![0.5f32, -1.25, f32::INFINITY].into()),
        ("arr.f64", vec![1e-300f64, 3.0].into()),
        ("arr.bool", vec![true, false, true].into()),
        (
            "arr.string",
            vec!["a".to_owned(), String::new(), "ü".to_owned()].into(),
        ),
        ("arr.empty", MetaValue::Array(MetaArray::I32(vec![]))),
    ];
    entries
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
}

#[test]
fn every_value_type_round_trips() {
    let entries = every_value_type();
    let mut w = GgufWriter::new();
    for (k, v) in &entries {
        w.add(k.clone(), v.clone());
    }
    let file = GgufFile::from_bytes(w.to_bytes()).unwrap();
    assert_eq!(file.metadata(), entries.as_slice());
    for (k, v) in &entries {
        assert_eq!(file.get(k), Some(v), "{k}");
    }
    assert_eq!(file.version(), 3);
    assert!(file.tensors().is_empty());
}

#[test]
fn nested_arrays_round_trip() {
    let nested = MetaArray::Array(vec![
        MetaArray::U8(vec![1, 2, 3]),
        MetaArray::Array(vec![
            MetaArray::from(vec!["deep".to_owned()]),
            MetaArray::Array(vec![]),
        ]),
        MetaArray::F64(vec![]),
        MetaArray::Bool(vec![true]),
    ]);
    let mut w = GgufWriter::new();
    w.add("nested", nested.clone()).add("after", 9u32);
    let file = GgufFile::from_bytes(w.to_bytes()).unwrap();
    assert_eq!(file.get("nested"), Some(&MetaValue::Array(nested)));
    assert_eq!(file.get_u32("after").unwrap(), 9);
    assert_eq!(file.get("nested").unwrap().to_string(), "[array; 4]");
}

#[test]
fn version_2_files_are_read() {
    let mut w = GgufWriter::new();
    w.set_version(2).add("general.architecture", "llama");
    let file = GgufFile::from_bytes(w.to_bytes()).unwrap();
    assert_eq!(file.version(), 2);
    assert_eq!(file.architecture().unwrap(), "llama");
}

#[test]
fn tensors_round_trip_zero_copy_and_aligned() {
    let q4k: Vec<u8> = (0..2 * 144).map(|i| i as u8).collect();
    let f32s: Vec<u8> = [1.0f32, 2.0, 3.0]
        .iter()
        .flat_map(|f| f.to_le_bytes())
        .collect();
    let q8: Vec<u8> = (0..34 * 4).map(|i| (i * 7) as u8).collect();
    let mut w = GgufWriter::new();
    w.add("general.architecture", "toy")
        .add_tensor("blk.0.ffn.weight", GgmlType::Q4_K, &[256, 2], q4k.clone())
        .add_tensor("norm", GgmlType::F32, &[3], f32s.clone())
        .add_tensor("embd", GgmlType::Q8_0, &[64, 2, 1], q8.clone());
    let bytes = w.to_bytes();
    let file = GgufFile::from_bytes(bytes.clone()).unwrap();

    assert_eq!(file.file_size(), bytes.len() as u64);
    assert_eq!(file.bytes(), bytes.as_slice());
    assert_eq!(file.alignment(), 32);
    assert_eq!(file.data_offset() % 32, 0);
    let names: Vec<&str> = file.tensors().iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["blk.0.ffn.weight", "norm", "embd"]);

    let ffn = file.tensor("blk.0.ffn.weight").unwrap();
    assert_eq!(ffn.ggml_type, GgmlType::Q4_K);
    assert_eq!(ffn.dims, [256, 2]);
    assert_eq!(
        (ffn.n_elements(), ffn.n_rows(), ffn.row_bytes()),
        (512, 2, 144)
    );
    assert_eq!(ffn.offset, file.data_offset());
    assert_eq!(ffn.size_bytes, 288);
    assert_eq!(file.tensor_data(ffn), q4k.as_slice());

    let norm = file.tensor("norm").unwrap();
    assert_eq!(norm.offset, file.data_offset() + 288);
    assert_eq!(file.tensor_data(norm), f32s.as_slice());

    let embd = file.tensor("embd").unwrap();
    assert_eq!(embd.offset % 32, 0);
    assert_eq!((embd.n_rows(), embd.size_bytes), (2, 136));
    assert_eq!(file.tensor_data(embd), q8.as_slice());
    // The slice borrows from the file's own bytes.
    let start = embd.offset as usize;
    assert!(std::ptr::eq(
        file.tensor_data(embd).as_ptr(),
        file.bytes()[start..].as_ptr()
    ));
    assert!(file.tensor("missing").is_none());
}

#[test]
fn custom_alignment_is_honoured() {
    let mut w = GgufWriter::new();
    w.add("general.alignment", 256u32)
        .add_tensor("a", GgmlType::I8, &[3], vec![1, 2, 3])
        .add_tensor("b", GgmlType::I8, &[1], vec![4]);
    let file = GgufFile::from_bytes(w.to_bytes()).unwrap();
    assert_eq!(file.alignment(), 256);
    assert_eq!(file.data_offset() % 256, 0);
    let b = file.tensor("b").unwrap();
    assert_eq!(b.offset, file.data_offset() + 256);
    assert_eq!(file.tensor_data(b), &[4]);
}

#[test]
fn tensor_data_of_foreign_info_is_empty_not_a_panic() {
    let mut w = GgufWriter::new();
    w.add_tensor("a", GgmlType::F32, &[1], vec![0; 4]);
    let file = GgufFile::from_bytes(w.to_bytes()).unwrap();
    let mut foreign = file.tensor("a").unwrap().clone();
    foreign.offset = u64::MAX - 1;
    assert!(file.tensor_data(&foreign).is_empty());
}

fn getter_file() -> GgufFile {
    let mut w = GgufWriter::new();
    w.add("general.architecture", "qwen2")
        .add("small", 24u8)
        .add("wide", 3_000_000_000u64)
        .add("negative", -1i32)
        .add("eps", 1e-6f32)
        .add("theta", 1e6f64)
        .add("flag", true)
        .add("tokens", vec!["a".to_owned(), "b".to_owned()])
        .add("scores", vec![0.5f32, -0.5])
        .add("types", vec![1i32, 3]);
    GgufFile::from_bytes(w.to_bytes()).unwrap()
}

#[test]
fn integer_getters_accept_any_fitting_integer_type() {
    let f = getter_file();
    assert_eq!(f.get_u32("small").unwrap(), 24);
    assert_eq!(f.get_u64("small").unwrap(), 24);
    assert_eq!(f.get_u64("wide").unwrap(), 3_000_000_000);
    assert_eq!(f.get_u32("wide").unwrap(), 3_000_000_000);
    assert!(matches!(
        f.get_u64("negative"),
        Err(GgufError::OutOfRange { ref key, ref value }) if key == "negative" && value == "-1"
    ));
    assert!(matches!(
        f.get_u32("eps"),
        Err(GgufError::WrongType { ref key, expected: "u32", found: "f32" }) if key == "eps"
    ));
}

#[test]
fn out_of_range_integer_is_reported() {
    let mut w = GgufWriter::new();
    w.add("n", 5_000_000_000u64);
    let f = GgufFile::from_bytes(w.to_bytes()).unwrap();
    assert!(
        matches!(f.get_u32("n"), Err(GgufError::OutOfRange { ref value, .. }) if value == "5000000000")
    );
    assert!(f.opt_u32("n").is_err());
}

#[test]
fn float_bool_and_string_getters() {
    let f = getter_file();
    assert_eq!(f.get_f32("eps").unwrap(), 1e-6);
    assert_eq!(f.get_f32("theta").unwrap(), 1e6);
    assert!(f.get_bool("flag").unwrap());
    assert_eq!(f.architecture().unwrap(), "qwen2");
    assert!(matches!(
        f.get_str("flag"),
        Err(GgufError::WrongType {
            expected: "string",
            found: "bool",
            ..
        })
    ));
    assert!(matches!(
        f.get_f32("small"),
        Err(GgufError::WrongType { found: "u8", .. })
    ));
    assert!(
        matches!(f.get_bool("missing"), Err(GgufError::MissingKey { ref key }) if key == "missing")
    );
}

#[test]
fn array_getters_check_element_type() {
    let f = getter_file();
    assert_eq!(
        f.get_str_array("tokens")
            .unwrap()
            .iter()
            .collect::<Vec<_>>(),
        ["a", "b"]
    );
    assert_eq!(f.get_f32_array("scores").unwrap(), [0.5, -0.5]);
    assert_eq!(f.get_i32_array("types").unwrap(), [1, 3]);
    assert_eq!(f.get_array("types").unwrap().len(), 2);
    assert!(matches!(
        f.get_i32_array("scores"),
        Err(GgufError::WrongType {
            expected: "array of i32",
            found: "array of f32",
            ..
        })
    ));
    assert!(matches!(
        f.get_str_array("small"),
        Err(GgufError::WrongType {
            expected: "array of string",
            found: "u8",
            ..
        })
    ));
}

#[test]
fn optional_getters_distinguish_absent_from_wrong_type() {
    let f = getter_file();
    assert_eq!(f.opt_str("nope").unwrap(), None);
    assert_eq!(f.opt_u32("nope").unwrap(), None);
    assert_eq!(f.opt_u64("nope").unwrap(), None);
    assert_eq!(f.opt_f32("nope").unwrap(), None);
    assert_eq!(f.opt_bool("nope").unwrap(), None);
    assert_eq!(f.opt_str("general.architecture").unwrap(), Some("qwen2"));
    assert_eq!(f.opt_u32("small").unwrap(), Some(24));
    assert_eq!(f.opt_f32("eps").unwrap(), Some(1e-6));
    assert_eq!(f.opt_bool("flag").unwrap(), Some(true));
    assert!(matches!(
        f.opt_bool("eps"),
        Err(GgufError::WrongType { .. })
    ));
    assert!(matches!(
        f.opt_str("small"),
        Err(GgufError::WrongType { .. })
    ));
}

#[test]
fn file_without_architecture_reports_missing_key() {
    let f = GgufFile::from_bytes(GgufWriter::new().to_bytes()).unwrap();
    assert!(matches!(
        f.architecture(),
        Err(GgufError::MissingKey { ref key }) if key == "general.architecture"
    ));
}

#[test]
fn open_reads_a_file_from_disk() {
    let dir = std::env::temp_dir().join(format!("terse-gguf-rt-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("toy.gguf");
    let mut w = GgufWriter::new();
    w.add("general.architecture", "toy")
        .add_tensor("w", GgmlType::F16, &[4], vec![9u8; 8]);
    std::fs::write(&path, w.to_bytes()).unwrap();
    let file = GgufFile::open(&path).unwrap();
    assert_eq!(file.architecture().unwrap(), "toy");
    let t = file.tensor("w").unwrap();
    assert_eq!(file.tensor_data(t), &[9u8; 8]);
    drop(file);
    std::fs::remove_dir_all(&dir).unwrap();
}
