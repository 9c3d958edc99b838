//! Every weight matrix of a GGUF file through `matmul` at each level this CPU
//! runs: weight bytes per second of decode (one token; a pass over all the
//! matrices streams them from memory, as generating a token does) and tokens
//! per second of a prefill of `tokens` tokens, summed per weight type as one
//! forward pass sees them (the token embedding only where the model has no
//! separate output head and it serves as one), the median of the rounds. The levels take turns
//! pass by pass, each first in every other round, so a noisy machine slows
//! them alike.
//!
//! `cargo run --release -p terse-kernels --example model_matmuls MODEL.gguf [threads] [tokens] [rounds] [levels]`
//! (defaults: 2 threads, 64 tokens, 5 rounds, every supported level; levels
//! comma-separated, e.g. `avx2,avx512`).

use std::collections::BTreeMap;
use std::hint::black_box;
use std::time::{Duration, Instant};
use terse_gguf::GgufFile;
use terse_kernels::{activation_row_bytes, Kernels, Level, ThreadPool, WeightMatrix};

/// One round of one level over the matrices of one type: decode time,
/// prefill time, weight bytes.
type Round = (Duration, Duration, usize);

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let path = args
        .get(1)
        .ok_or("usage: model_matmuls MODEL.gguf [threads] [tokens] [rounds] [levels]")?;
    let threads = args.get(2).map_or(Ok(2), |a| a.parse())?;
    let tokens: usize = args.get(3).map_or(Ok(64), |a| a.parse())?;
    let rounds: usize = args.get(4).map_or(Ok(5), |a| a.parse())?;
    let levels: Vec<&Kernels> = match args.get(5) {
        Some(names) => names
            .split(',')
            .map(|n| Kernels::for_level(n.parse()?))
            .collect::<Result<_, _>>()?,
        None => Level::supported()
            .into_iter()
            .filter(|&l| l != Level::Scalar)
            .map(Kernels::for_level)
            .collect::<Result<_, _>>()?,
    };
    let gguf = GgufFile::open(path)?;
    let pool = ThreadPool::new(threads);
    let tied_head = gguf.tensor("output.weight").is_none();
    let matrices: Vec<WeightMatrix> = gguf
        .tensors()
        .iter()
        .filter(|t| t.dims.len() == 2 && (tied_head || t.name != "token_embd.weight"))
        .filter_map(|t| {
            let (cols, rows) = (t.dims[0] as usize, t.dims[1] as usize);
            WeightMatrix::new(gguf.tensor_data(t), t.ggml_type, rows, cols).ok()
        })
        .collect();
    let mut totals: BTreeMap<(Level, &str), Vec<Round>> = BTreeMap::new();
    // Activations per weight type's format, quantized once per level.
    let cols_max = matrices.iter().map(|w| w.cols).max().unwrap_or(0);
    let x: Vec<f32> = (0..cols_max)
        .map(|i| ((i * 37 % 101) as f32 - 50.0) / 50.0)
        .collect();
    let mut out = vec![0.0f32; matrices.iter().map(|w| w.rows).max().unwrap_or(0) * tokens];
    for round in 0..rounds {
        // Each level goes first in every other round.
        let order: Vec<&Kernels> = if round % 2 == 0 {
            levels.clone()
        } else {
            levels.iter().rev().copied().collect()
        };
        for kernels in &order {
            let acts: Vec<Vec<u8>> = matrices
                .iter()
                .map(|w| {
                    let a_bytes = activation_row_bytes(w.ty, w.cols)?;
                    let mut act = vec![0u8; a_bytes * tokens];
                    for row in act.chunks_exact_mut(a_bytes) {
                        kernels.quantize_activation_row(w.ty, &x[..w.cols], row)?;
                    }
                    Ok(act)
                })
                .collect::<Result<_, terse_kernels::KernelError>>()?;
            // A decode pass over the whole model streams it from memory, as
            // generating a token does; then the prefill pass.
            for n in [1, tokens] {
                for (w, act) in matrices.iter().zip(&acts) {
                    let start = Instant::now();
                    kernels.matmul(&pool, w, act, n, &mut out, w.rows);
                    let elapsed = start.elapsed();
                    black_box(&out);
                    let rounds_so_far = totals.entry((kernels.level(), w.ty.name())).or_default();
                    if rounds_so_far.len() <= round {
                        rounds_so_far.push(Default::default());
                    }
                    let entry = &mut rounds_so_far[round];
                    if n == 1 {
                        entry.0 += elapsed;
                        entry.2 += w.data.len();
                    } else {
                        entry.1 += elapsed;
                    }
                }
            }
        }
    }
    println!("{threads} threads, prefill of {tokens} tokens, {rounds} rounds");
    println!(
        "{:<8} {:<6} {:>12} {:>14}",
        "level", "type", "decode GB/s", "prefill tok/s"
    );
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    for ((level, ty), per_round) in &totals {
        let decode = per_round
            .iter()
            .map(|(d, _, bytes)| *bytes as f64 / d.as_secs_f64() / 1e9);
        let prefill = per_round
            .iter()
            .map(|(_, p, _)| tokens as f64 / p.as_secs_f64());
        println!(
            "{:<8} {:<6} {:>12.2} {:>14.1}",
            level.name(),
            ty,
            median(decode.collect()),
            median(prefill.collect()),
        );
    }
    Ok(())
}
