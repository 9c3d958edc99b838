//! Microbenchmark per weight type: weight bytes per second of the scalar
//! reference dot product (one thread) and of a one-token matmul on the pool
//! (the decode kernel), tokens per second of a 64-token matmul (prefill), and
//! the pool's dispatch latency.
//!
//! `cargo run --release -p terse-kernels --example kernel_speed [threads] [TYPE,…] [ROWSxCOLS]`
//! (default 2048x4096; a model's output head, e.g. 151936x896, shows per-row overhead).
//! `TERSE_KERNELS=avx2` (or another level) picks the kernels to time.

use std::hint::black_box;
use std::time::Instant;
use terse_kernels::{
    activation_row_bytes, level, matmul, quantize_activation_row, reference, GgmlType, ThreadPool,
    WeightMatrix,
};

/// Deterministic pseudo-random bytes (xorshift), no dependency needed.
fn bytes(n: usize, seed: u64) -> Vec<u8> {
    let mut s = seed | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            s as u8
        })
        .collect()
}

/// Random quant bits with every f16 field replaced by a small finite scale.
fn weights(ty: GgmlType, rows: usize, cols: usize) -> Vec<u8> {
    let row_bytes = (cols / ty.block_size()) * ty.type_size();
    let mut data = bytes(rows * row_bytes, 7);
    let scale = half::f16::from_f32(0.01).to_bits().to_le_bytes();
    let f16_fields: &[usize] = match ty {
        GgmlType::Q4_0 | GgmlType::Q5_0 | GgmlType::Q8_0 => &[0],
        GgmlType::Q4_1 | GgmlType::Q5_1 | GgmlType::Q4_K | GgmlType::Q5_K => &[0, 2],
        GgmlType::Q2_K => &[80, 82],
        GgmlType::Q3_K => &[108],
        GgmlType::Q6_K => &[208],
        _ => &[],
    };
    for block in data.chunks_exact_mut(ty.type_size()) {
        for &off in f16_fields {
            block[off..off + 2].copy_from_slice(&scale);
        }
    }
    if matches!(ty, GgmlType::F32) {
        for v in data.chunks_exact_mut(4) {
            v.copy_from_slice(&0.5f32.to_le_bytes());
        }
    }
    data
}

fn main() {
    let threads: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(2);
    let only: Option<Vec<String>> = std::env::args()
        .nth(2)
        .map(|a| a.split(',').map(|t| t.to_ascii_uppercase()).collect());
    let pool = ThreadPool::new(threads);
    println!("kernels: {}, pool threads: {}", level(), pool.n_threads());
    let (rows, cols) = std::env::args()
        .nth(3)
        .and_then(|a| {
            let (r, c) = a.split_once('x')?;
            Some((r.parse().ok()?, c.parse().ok()?))
        })
        .unwrap_or((2048, 4096));
    let x: Vec<f32> = (0..cols)
        .map(|i| ((i * 37 % 101) as f32 - 50.0) / 50.0)
        .collect();
    println!(
        "{:<6} {:>12} {:>14} {:>16}",
        "type", "ref GB/s", "decode GB/s", "prefill 64 tok/s"
    );
    for ty in [
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
        GgmlType::F16,
        GgmlType::F32,
    ] {
        if only
            .as_ref()
            .is_some_and(|only| !only.iter().any(|t| t == ty.name()))
        {
            continue;
        }
        let data = weights(ty, rows, cols);
        let row_bytes = data.len() / rows;
        let mut act = vec![0u8; activation_row_bytes(ty, cols).unwrap()];
        quantize_activation_row(ty, &x, &mut act).unwrap();

        let time = |f: &dyn Fn(&[u8]) -> f32| {
            let start = Instant::now();
            let mut reps = 0;
            while start.elapsed().as_secs_f64() < 0.3 {
                for row in data.chunks_exact(row_bytes) {
                    black_box(f(row));
                }
                reps += 1;
            }
            (reps * data.len()) as f64 / start.elapsed().as_secs_f64() / 1e9
        };
        let slow = time(&|row| reference::vec_dot(ty, cols, row, &act));

        let w = WeightMatrix::new(&data, ty, rows, cols).unwrap();
        let mut out = vec![0.0f32; rows * 64];
        let start = Instant::now();
        let mut reps = 0;
        while start.elapsed().as_secs_f64() < 0.3 {
            matmul(&pool, &w, &act, 1, &mut out, rows);
            reps += 1;
        }
        let mm = (reps * data.len()) as f64 / start.elapsed().as_secs_f64() / 1e9;

        let acts: Vec<u8> = act.iter().copied().cycle().take(act.len() * 64).collect();
        let start = Instant::now();
        let mut reps = 0;
        while start.elapsed().as_secs_f64() < 0.3 {
            matmul(&pool, &w, &acts, 64, &mut out, rows);
            reps += 1;
        }
        let tok_s = (reps * 64) as f64 / start.elapsed().as_secs_f64();
        println!("{:<6} {slow:>12.2} {mm:>14.2} {tok_s:>16.1}", ty.name());
    }

    let n = 100_000;
    let start = Instant::now();
    for _ in 0..n {
        pool.run(pool.n_threads(), &|i| {
            black_box(i);
        });
    }
    println!(
        "pool dispatch: {:.2} µs per run of {} tiny tasks",
        start.elapsed().as_secs_f64() * 1e6 / n as f64,
        pool.n_threads()
    );
}
