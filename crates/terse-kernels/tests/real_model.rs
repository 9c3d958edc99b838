//! Dequantizes rows of the real Qwen2.5-Coder-0.5B Q4_K_M GGUF and compares
//! them with values computed offline by the `gguf` Python package (an
//! independent numpy implementation). Skipped when the model is not present.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;
use terse_kernels::{
    activation_row_bytes, dequantize_row, quantize_activation_row, reference, vec_dot, GgmlType,
};

fn model_path() -> Option<PathBuf> {
    let home = std::env::var_os("HOME")?;
    let p = PathBuf::from(home)
        .join(".cache/terse/models/qwen2.5-coder-0.5b/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf");
    p.exists().then_some(p)
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
    let Some(path) = model_path() else {
        eprintln!("skipping: Qwen2.5-Coder-0.5B GGUF not found");
        return;
    };
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
        // activations, fast and reference agree and approximate Σw².
        let mut act = vec![0u8; activation_row_bytes(case.ty, case.cols).unwrap()];
        quantize_activation_row(case.ty, &row, &mut act).unwrap();
        let fast = vec_dot(case.ty, case.cols, &bytes, &act);
        let slow = reference::vec_dot(case.ty, case.cols, &bytes, &act);
        let sq: f32 = row.iter().map(|v| v * v).sum();
        assert!(
            (fast - slow).abs() <= 1e-5 * sq,
            "{}: {fast} vs {slow}",
            case.tensor
        );
        assert!(
            (fast - sq).abs() <= 0.01 * sq,
            "{}: dot {fast} vs Σw² {sq}",
            case.tensor
        );
    }
}
