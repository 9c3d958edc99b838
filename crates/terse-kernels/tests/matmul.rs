//! matmul against a naive loop of vec_dot, and the float helpers against
//! their scalar references, at every level this CPU runs.

mod common;

use common::*;
use half::f16;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use terse_kernels::{
    activation_row_bytes, matmul, quantize_activation_row, reference, vec_dot, GgmlType,
    KernelError, ThreadPool, WeightMatrix,
};

#[test]
fn matmul_equals_naive_vec_dot_loop_exactly_at_every_level() {
    let mut rng = StdRng::seed_from_u64(10);
    let pools = [ThreadPool::new(1), ThreadPool::new(2)];
    for kernels in levels("matmul_equals_naive_vec_dot_loop_exactly_at_every_level") {
        let level = kernels.level();
        for ty in SUPPORTED {
            let cols = if layout(ty).0 == 256 { 512 } else { 96 };
            // 33: tiles of rows with a last partial one.
            for rows in [1, 7, 33, 67] {
                let data: Vec<u8> = (0..rows)
                    .flat_map(|_| random_weight_row(ty, cols, &mut rng))
                    .collect();
                let w = WeightMatrix::new(&data, ty, rows, cols).unwrap();
                // 17: a last group of one row, whose side data is laid out apart.
                for n_tokens in [1, 7, 8, 17, 19] {
                    let a_bytes = activation_row_bytes(ty, cols).unwrap();
                    let mut act = vec![0u8; n_tokens * a_bytes];
                    for t in 0..n_tokens {
                        let x = random_activations(cols, &mut rng);
                        quantize_activation_row(ty, &x, &mut act[t * a_bytes..(t + 1) * a_bytes])
                            .unwrap();
                    }
                    let stride = rows + 3;
                    let mut expected = vec![f32::NAN; n_tokens * stride];
                    for t in 0..n_tokens {
                        for r in 0..rows {
                            expected[t * stride + r] = kernels.vec_dot(
                                ty,
                                cols,
                                w.row(r),
                                &act[t * a_bytes..(t + 1) * a_bytes],
                            );
                        }
                    }
                    for pool in &pools {
                        let mut out = vec![f32::NAN; n_tokens * stride];
                        kernels.matmul(pool, &w, &act, n_tokens, &mut out, stride);
                        for t in 0..n_tokens {
                            for r in 0..stride {
                                let (got, want) = (out[t * stride + r], expected[t * stride + r]);
                                if r < rows {
                                    assert_eq!(
                                    got.to_bits(),
                                    want.to_bits(),
                                    "{level} {ty} rows {rows} tokens {n_tokens} threads {}: out[{t}][{r}]",
                                    pool.n_threads()
                                );
                                } else {
                                    assert!(got.is_nan(), "padding beyond rows must be untouched");
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

#[test]
fn large_matmul_splits_across_many_tasks_correctly() {
    let mut rng = StdRng::seed_from_u64(11);
    let (ty, rows, cols) = (GgmlType::Q4_K, 1001, 1024);
    let data: Vec<u8> = (0..rows)
        .flat_map(|_| random_weight_row(ty, cols, &mut rng))
        .collect();
    let w = WeightMatrix::new(&data, ty, rows, cols).unwrap();
    let x = random_activations(cols, &mut rng);
    let mut act = vec![0u8; activation_row_bytes(ty, cols).unwrap()];
    quantize_activation_row(ty, &x, &mut act).unwrap();
    let pool = ThreadPool::new(4);
    let mut out = vec![0.0; rows];
    matmul(&pool, &w, &act, 1, &mut out, rows);
    for (r, got) in out.iter().enumerate() {
        assert_eq!(
            got.to_bits(),
            vec_dot(ty, cols, w.row(r), &act).to_bits(),
            "row {r}"
        );
    }
}

#[test]
fn weight_matrix_rejects_inconsistent_shapes() {
    let data = vec![0u8; 144 * 3];
    assert!(WeightMatrix::new(&data, GgmlType::Q4_K, 3, 256).is_ok());
    assert!(matches!(
        WeightMatrix::new(&data, GgmlType::Q4_K, 4, 256),
        Err(KernelError::LengthMismatch {
            expected: 576,
            found: 432,
            ..
        })
    ));
    assert!(matches!(
        WeightMatrix::new(&data, GgmlType::Q4_K, 3, 200),
        Err(KernelError::NotBlockMultiple { n: 200, .. })
    ));
    assert!(matches!(
        WeightMatrix::new(&data, GgmlType::IQ4_NL, 3, 256),
        Err(KernelError::UnsupportedType { .. })
    ));
    assert!(matches!(
        WeightMatrix::new(&data, GgmlType::Q8_0, usize::MAX, 32),
        Err(KernelError::SizeOverflow { .. })
    ));
}

#[test]
#[should_panic(expected = "matmul: activations")]
fn matmul_panics_on_short_activations() {
    let data = vec![0u8; 34 * 2];
    let w = WeightMatrix::new(&data, GgmlType::Q8_0, 2, 32).unwrap();
    let mut out = vec![0.0; 4];
    matmul(&ThreadPool::new(1), &w, &[0u8; 34], 2, &mut out, 2);
}

fn random_f16(n: usize, rng: &mut StdRng) -> Vec<f16> {
    (0..n)
        .map(|_| f16::from_f32(rng.gen_range(-2.0..2.0)))
        .collect()
}

#[test]
fn float_helpers_match_scalar_references_at_every_level() {
    let mut rng = StdRng::seed_from_u64(12);
    for kernels in levels("float_helpers_match_scalar_references_at_every_level") {
        let level = kernels.level();
        for n in [0, 1, 7, 8, 31, 32, 33, 64, 100, 1000] {
            let a: Vec<f32> = (0..n).map(|_| rng.gen_range(-2.0..2.0)).collect();
            let b: Vec<f32> = (0..n).map(|_| rng.gen_range(-2.0..2.0)).collect();
            let h = random_f16(n, &mut rng);
            let h32: Vec<f32> = h.iter().map(|v| v.to_f32()).collect();
            let tol = 1e-5 * abs_dot(&a, &b) + 1e-6;

            let (fast, slow) = (kernels.dot_f32(&a, &b), reference::dot_f32(&a, &b));
            assert!(
                (fast - slow).abs() <= tol,
                "{level} dot_f32 n={n}: {fast} vs {slow}"
            );

            // Up to 7 query heads sharing one key / value row.
            for rows in [1, 3, 4, 7, 9] {
                let queries: Vec<f32> = (0..rows * n).map(|_| rng.gen_range(-2.0..2.0)).collect();
                let (mut fast, mut slow) = (vec![0.0; rows], vec![0.0; rows]);
                kernels.dot_f16_rows(&h, &queries, &mut fast);
                reference::dot_f16_rows(&h, &queries, &mut slow);
                for (g, query) in queries.chunks_exact(n.max(1)).enumerate().take(rows) {
                    let tol_h = 1e-5 * abs_dot(&h32, query) + 1e-6;
                    assert!(
                        (fast[g] - slow[g]).abs() <= tol_h,
                        "{level} dot_f16_rows n={n} row {g}: {} vs {}",
                        fast[g],
                        slow[g]
                    );
                }

                if n == 0 {
                    continue;
                }
                // `rows` heads sharing 5 value rows (the first is `h`).
                let n_values = 5;
                let mut values = h.clone();
                values.extend(
                    (0..(n_values - 1) * n).map(|_| f16::from_f32(rng.gen_range(-2.0..2.0))),
                );
                let weights: Vec<f32> = (0..n_values * rows)
                    .map(|_| rng.gen_range(0.0..1.0))
                    .collect();
                let start: Vec<f32> = (0..rows * n).map(|_| rng.gen_range(-2.0..2.0)).collect();
                let (mut out_fast, mut out_slow) = (start.clone(), start);
                kernels.accumulate_weighted_f16_rows(&mut out_fast, &weights, &values, n);
                reference::accumulate_weighted_f16_rows(&mut out_slow, &weights, &values, n);
                for (i, (x, y)) in out_fast.iter().zip(&out_slow).enumerate() {
                    // The fast path fuses the multiply-adds: a rounding fewer per row.
                    assert!(
                        (x - y).abs() <= 1e-5 * (1.0 + x.abs()),
                        "{level} accumulate_weighted_f16_rows n={n} heads={rows} [{i}]: {x} vs {y}"
                    );
                }
            }

            let mut wide: Vec<f32> = a.iter().map(|v| v * 1e3).collect();
            if n > 3 {
                wide[1] = 1e-6; // subnormal in f16
                wide[2] = 7e4; // overflows f16
                wide[3] = 2049.0; // exact tie between two f16 values
            }
            let mut h_fast = vec![f16::ZERO; n];
            let mut h_slow = vec![f16::ZERO; n];
            kernels.f32_to_f16_row(&wide, &mut h_fast);
            reference::f32_to_f16_row(&wide, &mut h_slow);
            assert_eq!(
                h_fast.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                h_slow.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                "{level} f32_to_f16_row n={n}"
            );
        }
    }
}
