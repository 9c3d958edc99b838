//! End-to-end checks of the kernels: every level this CPU runs against the
//! scalar reference and against the other levels, the reference against
//! plain float math, activation quantization against ggml's semantics, and
//! shape validation.

mod common;

use common::*;
use half::f16;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use terse_kernels::{
    activation_row_bytes, dequantize_row, is_supported, quantize_activation_row, reference,
    vec_dot, vec_dot_type, GgmlType, KernelError, Kernels, Level,
};

fn dequantize(ty: GgmlType, bytes: &[u8], n: usize) -> Vec<f32> {
    let mut out = vec![0.0; n];
    dequantize_row(ty, bytes, &mut out).unwrap();
    out
}

fn quantized_activations(weight: GgmlType, x: &[f32]) -> Vec<u8> {
    let mut act = vec![0u8; activation_row_bytes(weight, x.len()).unwrap()];
    quantize_activation_row(weight, x, &mut act).unwrap();
    act
}

fn quantized_at(kernels: &Kernels, weight: GgmlType, x: &[f32]) -> Vec<u8> {
    let mut act = vec![0u8; activation_row_bytes(weight, x.len()).unwrap()];
    kernels
        .quantize_activation_row(weight, x, &mut act)
        .unwrap();
    act
}

/// Where a level's dot product equals the reference's bit for bit: the
/// `avx512` level sums each 32-element block exactly and then does the
/// reference's float operations in its order.
fn bit_identical_to_reference(level: Level, ty: GgmlType) -> bool {
    match level {
        Level::Scalar => true,
        Level::Avx2 => false,
        Level::Avx512 => matches!(ty, GgmlType::Q4_0 | GgmlType::Q5_0 | GgmlType::Q8_0),
    }
}

fn lengths_for(ty: GgmlType) -> Vec<usize> {
    match layout(ty).0 {
        1 => vec![1, 37, 1024],
        32 => vec![32, 96, 1024],
        _ => vec![256, 1024],
    }
}

#[test]
fn every_listed_type_is_supported() {
    for ty in SUPPORTED {
        assert!(is_supported(ty), "{ty}");
    }
    assert!(!is_supported(GgmlType::IQ4_NL));
    assert!(vec_dot_type(GgmlType::IQ4_NL).is_none());
}

#[test]
fn vec_dot_types_follow_ggml() {
    assert_eq!(vec_dot_type(GgmlType::Q4_0), Some(GgmlType::Q8_0));
    assert_eq!(vec_dot_type(GgmlType::Q5_0), Some(GgmlType::Q8_0));
    assert_eq!(vec_dot_type(GgmlType::Q8_0), Some(GgmlType::Q8_0));
    assert_eq!(vec_dot_type(GgmlType::Q4_1), Some(GgmlType::Q8_1));
    assert_eq!(vec_dot_type(GgmlType::Q5_1), Some(GgmlType::Q8_1));
    for k in [
        GgmlType::Q2_K,
        GgmlType::Q3_K,
        GgmlType::Q4_K,
        GgmlType::Q5_K,
        GgmlType::Q6_K,
        GgmlType::Q8_K,
    ] {
        assert_eq!(vec_dot_type(k), Some(GgmlType::Q8_K), "{k}");
    }
    for f in [GgmlType::F32, GgmlType::F16, GgmlType::BF16] {
        assert_eq!(vec_dot_type(f), Some(GgmlType::F32), "{f}");
    }
    assert_eq!(activation_row_bytes(GgmlType::Q4_K, 512).unwrap(), 2 * 292);
    assert_eq!(activation_row_bytes(GgmlType::Q4_0, 64).unwrap(), 2 * 34);
    assert_eq!(activation_row_bytes(GgmlType::Q5_1, 32).unwrap(), 36);
    assert_eq!(activation_row_bytes(GgmlType::F16, 5).unwrap(), 20);
}

#[test]
fn every_level_matches_the_reference_and_the_other_levels_for_every_type() {
    let levels = levels("every_level_matches_the_reference_and_the_other_levels_for_every_type");
    let mut rng = StdRng::seed_from_u64(1);
    for ty in SUPPORTED {
        for n in lengths_for(ty) {
            for trial in 0..20 {
                let w = random_weight_row(ty, n, &mut rng);
                let x = random_activations(n, &mut rng);
                // Every level dots the same activations (the quantizers differ).
                let act = quantized_activations(ty, &x);
                let slow = reference::vec_dot(ty, n, &w, &act);
                let a_deq = dequantize(vec_dot_type(ty).unwrap(), &act, n);
                let scale = abs_dot(&dequantize(ty, &w, n), &a_deq);
                // Integer parts are exact; only the float accumulation order
                // differs (mins terms can exceed Σ|w·a|, hence the factor 4).
                let tol = 4e-5 * scale + 1e-30;
                let results: Vec<(Level, f32)> = levels
                    .iter()
                    .map(|k| (k.level(), k.vec_dot(ty, n, &w, &act)))
                    .collect();
                for &(level, fast) in &results {
                    if bit_identical_to_reference(level, ty) {
                        assert_eq!(
                            fast.to_bits(),
                            slow.to_bits(),
                            "{level} {ty} n={n} trial {trial}: {fast} vs reference {slow}"
                        );
                    }
                    assert!(
                        (fast - slow).abs() <= tol,
                        "{level} {ty} n={n} trial {trial}: {fast} vs reference {slow} (tol {tol})"
                    );
                    for &(other, theirs) in &results {
                        assert!(
                            (fast - theirs).abs() <= 2.0 * tol,
                            "{ty} n={n} trial {trial}: {level} {fast} vs {other} {theirs}"
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn reference_vec_dot_equals_dot_of_dequantized_rows() {
    let mut rng = StdRng::seed_from_u64(2);
    for ty in SUPPORTED {
        for n in lengths_for(ty) {
            for trial in 0..10 {
                let w = random_weight_row(ty, n, &mut rng);
                let x = random_activations(n, &mut rng);
                let act = quantized_activations(ty, &x);
                let w_deq = dequantize(ty, &w, n);
                let a_deq = dequantize(vec_dot_type(ty).unwrap(), &act, n);
                let expected: f64 = w_deq
                    .iter()
                    .zip(&a_deq)
                    .map(|(a, b)| *a as f64 * *b as f64)
                    .sum();
                let got = reference::vec_dot(ty, n, &w, &act);
                // Q8_1 stores s = d·Σq rounded to f16, which the float dot
                // does not see.
                let rel = if vec_dot_type(ty) == Some(GgmlType::Q8_1) {
                    2e-3
                } else {
                    1e-4
                };
                let tol = rel * abs_dot(&w_deq, &a_deq) + 1e-30;
                assert!(
                    (got as f64 - expected).abs() <= tol as f64,
                    "{ty} n={n} trial {trial}: vec_dot {got} vs dequantized dot {expected} (tol {tol})"
                );
                // And against the unquantized activations: within activation
                // quantization error (≤ half a step of amax/127 per element).
                let exact: f64 = w_deq
                    .iter()
                    .zip(&x)
                    .map(|(a, b)| *a as f64 * *b as f64)
                    .sum();
                let q_tol = 0.02 * abs_dot(&w_deq, &x).max(1e-30);
                assert!(
                    (got as f64 - exact).abs() <= (q_tol + tol) as f64,
                    "{ty} n={n} trial {trial}: vec_dot {got} vs float dot {exact}"
                );
            }
        }
    }
}

/// ggml's x86 `quantize_row_q8_0`/`q8_1`, written out in scalar form: scale
/// `127/amax`, round half to even.
fn ggml_x86_q8(x: &[f32], with_sum: bool) -> Vec<u8> {
    let block_bytes = if with_sum { 36 } else { 34 };
    let qs_off = if with_sum { 4 } else { 2 };
    let mut out = Vec::new();
    for b in x.chunks_exact(32) {
        let amax = b.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let d = amax / 127.0;
        let id = if amax != 0.0 { 127.0 / amax } else { 0.0 };
        let mut blk = vec![0u8; block_bytes];
        blk[0..2].copy_from_slice(&f16::from_f32(d).to_bits().to_le_bytes());
        let mut sum = 0i32;
        for (j, v) in b.iter().enumerate() {
            let q = (v * id).round_ties_even() as i8;
            sum += q as i32;
            blk[qs_off + j] = q as u8;
        }
        if with_sum {
            blk[2..4].copy_from_slice(&f16::from_f32(d * sum as f32).to_bits().to_le_bytes());
        }
        out.extend(blk);
    }
    out
}

#[test]
fn activation_quantization_follows_ggml_per_level() {
    let mut rng = StdRng::seed_from_u64(3);
    let n = 4096;
    for kernels in levels("activation_quantization_follows_ggml_per_level") {
        let level = kernels.level();
        for (weight, with_sum) in [(GgmlType::Q4_0, false), (GgmlType::Q4_1, true)] {
            let mut x = random_activations(n, &mut rng);
            // Exact ties: with amax = 127 the scale is 1, so 2.5 must round to 2 on
            // x86 (ties to even) and to 3 in the reference (roundf).
            x[0] = 127.0;
            x[1] = 2.5;
            let fast = quantized_at(kernels, weight, &x);
            let mut slow = vec![0u8; fast.len()];
            reference::quantize_activation_row(weight, &x, &mut slow).unwrap();
            if level == Level::Scalar {
                assert_eq!(fast, slow, "{weight}: the scalar level is the reference");
                continue;
            }
            assert_eq!(
                fast,
                ggml_x86_q8(&x, with_sum),
                "{level} {weight}: must match ggml's x86 quantizer"
            );
            let qs_off = if with_sum { 4 } else { 2 };
            let block_bytes = if with_sum { 36 } else { 34 };
            assert_eq!(fast[qs_off + 1] as i8, 2);
            assert_eq!(slow[qs_off + 1] as i8, 3);
            for (fb, sb) in fast
                .chunks_exact(block_bytes)
                .zip(slow.chunks_exact(block_bytes))
            {
                assert_eq!(fb[0..2], sb[0..2], "{weight}: block scales agree");
                for (a, b) in fb[qs_off..].iter().zip(&sb[qs_off..]) {
                    assert!(
                        (*a as i8 as i32 - *b as i8 as i32).abs() <= 1,
                        "{weight}: quants differ by more than one"
                    );
                }
            }
        }
    }
}

#[test]
fn q8_k_quantization_is_bit_identical_to_reference_and_sums_blocks() {
    let mut rng = StdRng::seed_from_u64(4);
    let n = 2048;
    for trial in 0..10 {
        let mut x = random_activations(n, &mut rng);
        if trial == 0 {
            x[256..512].fill(0.0); // an all-zero super-block
        }
        let fast = quantized_activations(GgmlType::Q4_K, &x);
        let mut slow = vec![0u8; fast.len()];
        reference::quantize_activation_row(GgmlType::Q4_K, &x, &mut slow).unwrap();
        assert_eq!(fast, slow, "trial {trial}");
        for (b, xs) in fast.chunks_exact(292).zip(x.chunks_exact(256)) {
            let d = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
            let qs: Vec<i32> = b[4..260].iter().map(|&q| q as i8 as i32).collect();
            for g in 0..16 {
                let bsum = i16::from_le_bytes([b[260 + 2 * g], b[261 + 2 * g]]) as i32;
                assert_eq!(
                    bsum,
                    qs[16 * g..16 * g + 16].iter().sum::<i32>(),
                    "bsum {g}"
                );
            }
            let amax = xs.iter().fold(0.0f32, |m, v| m.max(v.abs()));
            if amax == 0.0 {
                assert_eq!(d, 0.0);
                assert!(qs.iter().all(|&q| q == 0));
            } else {
                assert!(
                    qs.iter().any(|&q| q.abs() == 127),
                    "the extreme value maps to ±127"
                );
                for (q, v) in qs.iter().zip(xs) {
                    assert!(
                        (*q as f32 * d - v).abs() <= 0.5001 * d.abs(),
                        "{q}·{d} vs {v}"
                    );
                }
            }
        }
    }
}

#[test]
fn float_weight_activations_are_plain_f32() {
    let x = [1.5f32, -2.25, 3.0];
    let mut act = vec![0u8; 12];
    quantize_activation_row(GgmlType::F16, &x, &mut act).unwrap();
    let back: Vec<f32> = act
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect();
    assert_eq!(back, x);
}

#[test]
fn bad_shapes_are_rejected_with_details() {
    let mut out = vec![0.0f32; 33];
    match dequantize_row(GgmlType::Q4_0, &[0u8; 36], &mut out) {
        Err(KernelError::NotBlockMultiple { ty, n }) => assert_eq!((ty, n), (GgmlType::Q4_0, 33)),
        other => panic!("expected NotBlockMultiple, got {other:?}"),
    }
    let mut out = vec![0.0f32; 64];
    match dequantize_row(GgmlType::Q4_0, &[0u8; 35], &mut out) {
        Err(KernelError::LengthMismatch {
            expected, found, ..
        }) => assert_eq!((expected, found), (36, 35)),
        other => panic!("expected LengthMismatch, got {other:?}"),
    }
    match dequantize_row(GgmlType::IQ4_NL, &[0u8; 18], &mut out[..32]) {
        Err(KernelError::UnsupportedType { ty }) => assert_eq!(ty, GgmlType::IQ4_NL),
        other => panic!("expected UnsupportedType, got {other:?}"),
    }
    let mut act = vec![0u8; 291];
    assert!(matches!(
        quantize_activation_row(GgmlType::Q6_K, &[0.0; 256], &mut act),
        Err(KernelError::LengthMismatch {
            expected: 292,
            found: 291,
            ..
        })
    ));
    assert!(matches!(
        activation_row_bytes(GgmlType::Q4_K, 100),
        Err(KernelError::NotBlockMultiple {
            ty: GgmlType::Q8_K,
            n: 100
        })
    ));
    let msg = KernelError::LengthMismatch {
        what: "weight matrix bytes",
        expected: 10,
        found: 9,
    }
    .to_string();
    assert_eq!(msg, "weight matrix bytes: expected 10, found 9");
}

#[test]
#[should_panic(expected = "vec_dot")]
fn vec_dot_panics_on_short_rows_instead_of_reading_past_them() {
    let w = vec![0u8; 144];
    let act = vec![0u8; 292];
    vec_dot(GgmlType::Q4_K, 512, &w, &act);
}

#[test]
fn known_blocks_dequantize_to_hand_computed_values() {
    // Q4_0: d = 0.5, first byte 0x2F → low nibble 15 → (15-8)·0.5, high 2 → (2-8)·0.5.
    let mut b = vec![0u8; 18];
    b[0..2].copy_from_slice(&f16::from_f32(0.5).to_bits().to_le_bytes());
    b[2] = 0x2F;
    let y = dequantize(GgmlType::Q4_0, &b, 32);
    assert_eq!(y[0], 3.5);
    assert_eq!(y[16], -3.0);
    assert_eq!(y[1], -4.0);

    // Q5_0: fifth bit of element 0 set → (15 | 16) - 16 = 15.
    let mut b = vec![0u8; 22];
    b[0..2].copy_from_slice(&f16::from_f32(2.0).to_bits().to_le_bytes());
    b[2] = 1; // qh bit 0
    b[6] = 0x0F;
    let y = dequantize(GgmlType::Q5_0, &b, 32);
    assert_eq!(y[0], 30.0);
    assert_eq!(y[16], -32.0);

    // Q6_K: ql = 0, qh = 0 → q = -32 everywhere; scale 2, d = 0.25 → -16.
    let mut b = vec![0u8; 210];
    b[192..208].fill(2);
    b[208..210].copy_from_slice(&f16::from_f32(0.25).to_bits().to_le_bytes());
    let y = dequantize(GgmlType::Q6_K, &b, 256);
    assert!(y.iter().all(|&v| v == -16.0));
}

#[test]
fn random_f16_weights_dequantize_exactly() {
    let mut rng = StdRng::seed_from_u64(5);
    let vals: Vec<f16> = (0..100)
        .map(|_| f16::from_f32(rng.gen_range(-4.0..4.0)))
        .collect();
    let bytes: Vec<u8> = vals
        .iter()
        .flat_map(|v| v.to_bits().to_le_bytes())
        .collect();
    let y = dequantize(GgmlType::F16, &bytes, 100);
    assert!(y.iter().zip(&vals).all(|(a, b)| *a == b.to_f32()));
}
