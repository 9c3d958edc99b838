//! Dequantizes rows of the real Qwen2.5-Coder-0.5B Q4_K_M GGUF and compares
//! them with values computed offline by the `gguf` Python package (an
//! independent numpy implementation), then dots them at every level. Fails
//! when the model is not in the cache: CI pulls it first.

mod common;

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;
use terse_kernels::{activation_row_bytes, dequantize_row, reference, GgmlType};

/// The pulled model, in the cache `terse models pull` fills (`$TERSE_HOME`,
/// default `~/.cache/terse`).
fn model_path() -> PathBuf {
    let cache = std::env::var_os("TERSE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/terse")))
        .expect("TERSE_HOME or HOME must be set to find the model cache");
    let p = cache.join("models/qwen2.5-coder-0.5b/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf");
    assert!(
        p.exists(),
        "{} is missing: run `cargo run --release -p terse -- models pull qwen2.5-coder-0.5b`",
        p.display()
    );
    p
}

fn read_at(path: &PathBuf, offset: u64, len: usize) -> Vec<u8> {
    let mut f = File::open(path).unwrap();
    f.seek(SeekFrom::Start(offset)).unwrap();
    let mut buf = vec![0u8; len];
    f.read_exact(&mut buf).unwrap();
    buf
}

struct Case {
    tensor: &'static str,
    ty: GgmlType,
    cols: usize,
    row_bytes: usize,
    /// Absolute file offset of row 5.
    offset: u64,
    first: [f32; 6],
    picks: [(usize, f32); 3],
    sum: f64,
}

const CASES: [Case; 4] = [
    Case {
        tensor: "output.weight",
        ty: GgmlType::Q8_0,
        cols: 896,
        row_bytes: 952,
        offset: 5_952_536,
        first: [
            -0.021408081,
            -0.04248166,
            0.027429104,
            -0.017394066,
            0.011707544,
            0.012376547,
        ],
        picks: [(7, -0.001338005), (451, 0.004337311), (895, -0.016556501)],
        sum: -0.272884726524353,
    },
    Case {
        tensor: "token_embd.weight",
        ty: GgmlType::Q5_0,
        cols: 896,
        row_bytes: 616,
        offset: 150_593_928,
        first: [
            -0.021240234,
            -0.04248047,
            0.026550293,
            -0.018585205,
            0.01062012,
            0.013275146,
        ],
        picks: [(7, -0.002655029), (451, 0.004302979), (895, -0.015594482)],
        sum: -0.23651885986328125,
    },
    Case {
        tensor: "blk.0.ffn_down.weight",
        ty: GgmlType::Q6_K,
        cols: 4864,
        row_bytes: 3990,
        offset: 244_206_958,
        first: [
            -0.0031445026,
            0.002358377,
            0.025156021,
            0.0039306283,
            -0.0039306283,
            0.0055028796,
        ],
        picks: [(7, -0.00078612566), (2435, 0.013087034), (4863, 0.01363635)],
        sum: 0.5313671827316284,
    },
    Case {
        tensor: "blk.11.ffn_down.weight",
        ty: GgmlType::Q4_K,
        cols: 4864,
        row_bytes: 2736,
        offset: 276_852_208,
        first: [
            -0.002106607,
            -0.0064142346,
            -0.004260421,
            0.0043548346,
            0.008662462,
            -0.004260421,
        ],
        picks: [(7, 0.0022010207), (2435, -0.01606083), (4863, -0.009813309)],
        sum: -0.6152703762054443,
    },
];

fn close(a: f32, b: f32) -> bool {
    (a - b).abs() <= 1e-7 + 1e-6 * b.abs()
}

#[test]
fn real_qwen_rows_dequantize_like_gguf_py() {
    let path = model_path();
    let levels = common::levels("real_qwen_rows_dequantize_like_gguf_py");
    for case in &CASES {
        let bytes = read_at(&path, case.offset, case.row_bytes);
        let mut row = vec![0.0f32; case.cols];
        dequantize_row(case.ty, &bytes, &mut row).unwrap();
        for (i, want) in case.first.iter().enumerate() {
            assert!(
                close(row[i], *want),
                "{} [{i}]: {} vs {want}",
                case.tensor,
                row[i]
            );
        }
        for (i, want) in case.picks {
            assert!(
                close(row[i], want),
                "{} [{i}]: {} vs {want}",
                case.tensor,
                row[i]
            );
        }
        let sum: f64 = row.iter().map(|&v| v as f64).sum();
        assert!(
            (sum - case.sum).abs() < 1e-5,
            "{} row sum {sum} vs {}",
            case.tensor,
            case.sum
        );

        // The same row through the dot product: against the row itself as
        // activations, every level and the reference agree and approximate Σw².
        let sq: f32 = row.iter().map(|v| v * v).sum();
        for kernels in &levels {
            let level = kernels.level();
            let mut act = vec![0u8; activation_row_bytes(case.ty, case.cols).unwrap()];
            kernels
                .quantize_activation_row(case.ty, &row, &mut act)
                .unwrap();
            let fast = kernels.vec_dot(case.ty, case.cols, &bytes, &act);
            let slow = reference::vec_dot(case.ty, case.cols, &bytes, &act);
            assert!(
                (fast - slow).abs() <= 1e-5 * sq,
                "{level} {}: {fast} vs {slow}",
                case.tensor
            );
            assert!(
                (fast - sq).abs() <= 0.01 * sq,
                "{level} {}: dot {fast} vs Σw² {sq}",
                case.tensor
            );
        }
    }
}
