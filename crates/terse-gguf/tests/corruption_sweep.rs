//! Deterministic robustness sweep: every truncation and many seeded byte
//! corruptions of a valid file must give `Ok` or `Err`, never a panic, and
//! every accepted file must still honour the reader's invariants.

use terse_gguf::{GgmlType, GgufError, GgufFile, GgufWriter, MetaArray};

fn sample_file() -> Vec<u8> {
    let mut w = GgufWriter::new();
    w.add("general.architecture", "toy")
        .add("toy.block_count", 2u32)
        .add("toy.eps", 1e-5f32)
        .add("flag", true)
        .add("big", -7i64)
        .add("theta", 1e4f64)
        .add(
            "tokens",
            vec!["<s>".to_owned(), "é".to_owned(), "x".to_owned()],
        )
        .add("scores", vec![0.0f32, -1.0, 2.0])
        .add("types", vec![1i32, 2, 3])
        .add(
            "nested",
            MetaArray::Array(vec![MetaArray::U16(vec![1, 2]), MetaArray::Array(vec![])]),
        )
        .add_tensor("norm", GgmlType::F32, &[4], vec![1u8; 16])
        .add_tensor("q", GgmlType::Q8_0, &[32, 2], vec![2u8; 68])
        .add_tensor("k", GgmlType::Q4_K, &[256], vec![3u8; 144]);
    w.to_bytes()
}

/// What every successfully opened file must satisfy.
fn check_invariants(file: &GgufFile) {
    assert!(file.data_offset().is_multiple_of(file.alignment()));
    for t in file.tensors() {
        let data = file.tensor_data(t);
        assert_eq!(data.len() as u64, t.size_bytes, "{}", t.name);
        assert_eq!(t.offset % file.alignment(), 0);
        assert_eq!(t.row_bytes() * t.n_rows(), t.size_bytes);
        assert!(std::ptr::eq(file.tensor(&t.name).unwrap(), t));
    }
    for (k, v) in file.metadata() {
        // Pointer identity, not ==: a NaN value is not equal to itself.
        assert!(file.get(k).is_some_and(|found| std::ptr::eq(found, v)));
        // Display must not panic on anything that parsed.
        let _ = v.to_string();
    }
}

/// Small xorshift generator: deterministic without a dependency.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

#[test]
fn every_truncation_is_rejected_or_accepted_without_panic() {
    let bytes = sample_file();
    let full = GgufFile::from_bytes(bytes.clone()).unwrap();
    let data_end = full
        .tensors()
        .iter()
        .map(|t| t.offset + t.size_bytes)
        .max()
        .unwrap() as usize;
    for len in 0..bytes.len() {
        let result = GgufFile::from_bytes(bytes[..len].to_vec());
        match result {
            Ok(file) => {
                assert!(len >= data_end, "prefix of {len} bytes accepted");
                check_invariants(&file);
            }
            Err(GgufError::Truncated {
                offset,
                needed,
                file_size,
                ..
            }) => {
                assert_eq!(file_size, len as u64);
                assert!(offset.saturating_add(needed) > file_size);
            }
            Err(_) => {}
        }
    }
}

#[test]
fn seeded_byte_corruptions_never_panic() {
    let bytes = sample_file();
    let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
    let mut accepted = 0;
    for round in 0..20_000 {
        let mut mutated = bytes.clone();
        let flips = 1 + (round % 4);
        for _ in 0..flips {
            let at = (rng.next() % mutated.len() as u64) as usize;
            mutated[at] = match rng.next() % 4 {
                0 => mutated[at] ^ (1 << (rng.next() % 8)),
                1 => 0xFF,
                2 => 0,
                _ => rng.next() as u8,
            };
        }
        if let Ok(file) = GgufFile::from_bytes(mutated) {
            accepted += 1;
            check_invariants(&file);
        }
    }
    // Flips inside tensor data and padding leave the file valid, so some must pass.
    assert!(accepted > 0);
}
