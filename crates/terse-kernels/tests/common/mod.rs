//! Random test data shaped like real GGUF weights: random quant bits with
//! finite, realistically sized block scales, and the levels to test.

// Each test binary uses its own subset of these helpers.
#![allow(dead_code)]

use half::{bf16, f16};
use rand::rngs::StdRng;
use rand::Rng;
use std::io::Write;
use terse_kernels::{GgmlType, Kernels, Level};

/// The kernel table of every level this CPU runs, slowest (the reference)
/// first. Each level it lacks is reported as not tested on the test output
/// (written past the harness's capture, so it shows even when `test` passes).
pub fn levels(test: &str) -> Vec<&'static Kernels> {
    Level::ALL
        .into_iter()
        .filter_map(|level| match Kernels::for_level(level) {
            Ok(kernels) => Some(kernels),
            Err(e) => {
                let _ = writeln!(
                    std::io::stderr(),
                    "NOT TESTED: {test} at level {level}: {e}"
                );
                None
            }
        })
        .collect()
}

/// Weight types with a dequantizer and a dot product.
pub const SUPPORTED: [GgmlType; 13] = [
    GgmlType::F32,
    GgmlType::F16,
    GgmlType::BF16,
    GgmlType::Q4_0,
    GgmlType::Q4_1,
    GgmlType::Q5_0,
    GgmlType::Q5_1,
    GgmlType::Q8_0,
    GgmlType::Q2_K,
    GgmlType::Q3_K,
    GgmlType::Q4_K,
    GgmlType::Q5_K,
    GgmlType::Q6_K,
];

/// (elements, bytes) per block, as in ggml-common.h.
pub fn layout(ty: GgmlType) -> (usize, usize) {
    match ty {
        GgmlType::F32 => (1, 4),
        GgmlType::F16 | GgmlType::BF16 => (1, 2),
        GgmlType::Q4_0 => (32, 18),
        GgmlType::Q4_1 => (32, 20),
        GgmlType::Q5_0 => (32, 22),
        GgmlType::Q5_1 => (32, 24),
        GgmlType::Q8_0 => (32, 34),
        GgmlType::Q8_1 => (32, 36),
        GgmlType::Q2_K => (256, 84),
        GgmlType::Q3_K => (256, 110),
        GgmlType::Q4_K => (256, 144),
        GgmlType::Q5_K => (256, 176),
        GgmlType::Q6_K => (256, 210),
        GgmlType::Q8_K => (256, 292),
        other => panic!("no layout for {other}"),
    }
}

fn put_f16(b: &mut [u8], off: usize, v: f32) {
    b[off..off + 2].copy_from_slice(&f16::from_f32(v).to_bits().to_le_bytes());
}

/// A scale of realistic magnitude (1e-4 … 3e-2), optionally signed.
fn scale(rng: &mut StdRng, signed: bool) -> f32 {
    let mag = 10f32.powf(rng.gen_range(-4.0..-1.5));
    if signed && rng.gen_bool(0.5) {
        -mag
    } else {
        mag
    }
}

/// A random row of `n` elements of weight type `ty`.
pub fn random_weight_row(ty: GgmlType, n: usize, rng: &mut StdRng) -> Vec<u8> {
    let (block, bytes) = layout(ty);
    assert_eq!(n % block, 0);
    let mut row = vec![0u8; n / block * bytes];
    match ty {
        GgmlType::F32 => {
            for c in row.chunks_exact_mut(4) {
                c.copy_from_slice(&rng.gen_range(-1.0f32..1.0).to_le_bytes());
            }
            return row;
        }
        GgmlType::F16 => {
            for c in row.chunks_exact_mut(2) {
                c.copy_from_slice(
                    &f16::from_f32(rng.gen_range(-1.0..1.0))
                        .to_bits()
                        .to_le_bytes(),
                );
            }
            return row;
        }
        GgmlType::BF16 => {
            for c in row.chunks_exact_mut(2) {
                c.copy_from_slice(
                    &bf16::from_f32(rng.gen_range(-1.0..1.0))
                        .to_bits()
                        .to_le_bytes(),
                );
            }
            return row;
        }
        _ => {}
    }
    rng.fill(&mut row[..]);
    for b in row.chunks_exact_mut(bytes) {
        match ty {
            GgmlType::Q4_0 | GgmlType::Q5_0 => put_f16(b, 0, scale(rng, true)),
            GgmlType::Q8_0 => {
                put_f16(b, 0, scale(rng, true));
                // Real Q8_0 quants never use -128.
                for q in &mut b[2..] {
                    if *q == 0x80 {
                        *q = 0x81;
                    }
                }
            }
            GgmlType::Q4_1 | GgmlType::Q5_1 => {
                put_f16(b, 0, scale(rng, false));
                put_f16(b, 2, -scale(rng, false) * 8.0);
            }
            GgmlType::Q2_K => {
                put_f16(b, 80, scale(rng, false));
                put_f16(b, 82, scale(rng, false));
            }
            GgmlType::Q3_K => put_f16(b, 108, scale(rng, true)),
            GgmlType::Q4_K | GgmlType::Q5_K => {
                put_f16(b, 0, scale(rng, false));
                put_f16(b, 2, scale(rng, false));
            }
            GgmlType::Q6_K => put_f16(b, 208, scale(rng, true)),
            other => panic!("no generator for {other}"),
        }
    }
    row
}

/// Activations with a spread of magnitudes, as hidden states have.
pub fn random_activations(n: usize, rng: &mut StdRng) -> Vec<f32> {
    (0..n)
        .map(|_| {
            let v: f32 = rng.gen_range(-1.0..1.0);
            if rng.gen_bool(0.02) {
                v * 20.0
            } else {
                v
            }
        })
        .collect()
}

/// Σ|a[i]·b[i]|: the scale float-accumulation error is measured against.
pub fn abs_dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| (x * y).abs()).sum()
}
