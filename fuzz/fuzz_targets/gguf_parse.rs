//! Fuzz target: any byte string given to the GGUF reader must produce a
//! file or an error, never a panic, and an accepted file must uphold the
//! invariants its accessors rely on.

#![no_main]

use libfuzzer_sys::fuzz_target;
use terse_gguf::GgufFile;

fuzz_target!(|data: &[u8]| {
    let Ok(file) = GgufFile::from_bytes(data.to_vec()) else {
        return;
    };
    assert_eq!(file.data_offset() % file.alignment(), 0);
    for t in file.tensors() {
        assert_eq!(file.tensor_data(t).len() as u64, t.size_bytes);
        assert_eq!(t.row_bytes() * t.n_rows(), t.size_bytes);
        assert!(file.tensor(&t.name).is_some());
    }
    for (key, value) in file.metadata() {
        // Pointer identity, not ==: a NaN value is not equal to itself.
        assert!(file.get(key).is_some_and(|v| std::ptr::eq(v, value)));
        let _ = value.to_string();
        let _ = file.get_u32(key);
        let _ = file.get_f32(key);
        let _ = file.get_str_array(key);
    }
    let _ = file.architecture();
});
