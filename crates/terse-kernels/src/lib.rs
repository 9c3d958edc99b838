//! Quantized CPU kernels and the worker pool that runs them.
//!
//! Weights stay in their GGUF block formats (read straight from a memory
//! map); activations are quantized on the fly to the matching 8-bit block
//! format ([`vec_dot_type`]) so dot products run on integers, exactly as
//! ggml does. Numerics follow ggml closely because the engine is tested
//! against llama.cpp's logits.
//!
//! The kernels come in [`Level`]s, one complete [`Kernels`] table per
//! instruction set: `scalar` ([`reference`], straight ports of ggml's
//! reference code, the yardstick every other level is tested against),
//! `avx2` (AVX2 + FMA + F16C) and `avx512` (AVX-512 with VNNI). The process
//! runs at one level, the best the CPU has unless `TERSE_KERNELS` or
//! [`select`] says otherwise; the free functions here run the active level's
//! kernels. [`matmul`] splits a weight matrix by rows across a persistent
//! [`ThreadPool`].

mod blocks;
mod level;
mod matmul;
mod pool;
pub mod reference;
mod table;
#[cfg(target_arch = "x86_64")]
mod x86;

pub use level::{kernels, level, level_from_env, select, select_from_env, Level, LEVEL_ENV};
pub use matmul::WeightMatrix;
pub use pool::ThreadPool;
pub use table::Kernels;
pub use terse_gguf::GgmlType;

use half::f16;

/// Errors from validating kernel inputs and choosing a level.
#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    /// The type has no kernels here (no dequantize/vec_dot).
    #[error("tensor type {ty} is not supported by the CPU kernels")]
    UnsupportedType { ty: GgmlType },
    /// A buffer does not have the length its shape requires.
    #[error("{what}: expected {expected}, found {found}")]
    LengthMismatch {
        what: &'static str,
        expected: usize,
        found: usize,
    },
    /// A row length is not a whole number of blocks of its type.
    #[error("row of {n} elements is not a whole number of {ty} blocks")]
    NotBlockMultiple { ty: GgmlType, n: usize },
    /// rows × row bytes does not fit in memory.
    #[error("weight matrix of {rows} rows of {cols} {ty} elements overflows usize")]
    SizeOverflow {
        ty: GgmlType,
        rows: usize,
        cols: usize,
    },
    /// A kernel level was asked for by a name that is none.
    #[error("no kernel level is called {name:?}; the levels are {valid}")]
    UnknownLevel { name: String, valid: String },
    /// A kernel level this CPU cannot run was asked for.
    #[error(
        "this CPU cannot run the {level} kernels (they need {features}); it can run {supported}"
    )]
    LevelUnsupported {
        level: Level,
        features: &'static str,
        supported: String,
    },
    /// A second, different level was asked for after one was in use.
    #[error("kernel level {requested} requested, but {active} is already in use")]
    LevelAlreadyChosen { requested: Level, active: Level },
}

/// A dot product over one weight row and one activation row:
/// `(n elements, weight row bytes, activation row bytes)`. Implementations
/// check the rows cover `n` elements (panicking otherwise) before reading.
pub(crate) type VecDotFn = fn(usize, &[u8], &[u8]) -> f32;

/// The activation format a weight type's dot product consumes: Q8_0 for
/// Q4_0/Q5_0/Q8_0, Q8_1 for Q4_1/Q5_1, Q8_K for Q2_K…Q6_K (and Q8_K), F32
/// for F32/F16/BF16 (activations stay f32 for float weights). `None` if
/// unsupported.
pub fn vec_dot_type(weight: GgmlType) -> Option<GgmlType> {
    Some(match weight {
        GgmlType::Q4_0 | GgmlType::Q5_0 | GgmlType::Q8_0 => GgmlType::Q8_0,
        GgmlType::Q4_1 | GgmlType::Q5_1 => GgmlType::Q8_1,
        GgmlType::Q2_K
        | GgmlType::Q3_K
        | GgmlType::Q4_K
        | GgmlType::Q5_K
        | GgmlType::Q6_K
        | GgmlType::Q8_K => GgmlType::Q8_K,
        GgmlType::F32 | GgmlType::F16 | GgmlType::BF16 => GgmlType::F32,
        _ => return None,
    })
}

/// Whether `weight` has both a dequantizer and a dot product here.
pub fn is_supported(weight: GgmlType) -> bool {
    vec_dot_type(weight).is_some() && reference::vec_dot_fn(weight).is_some()
}

/// Bytes of one activation row of `n` elements in `vec_dot_type(weight)` form.
pub fn activation_row_bytes(weight: GgmlType, n: usize) -> Result<usize, KernelError> {
    let act = vec_dot_type(weight).ok_or(KernelError::UnsupportedType { ty: weight })?;
    match blocks::layout(act) {
        Some((block, _)) if !n.is_multiple_of(block) => {
            Err(KernelError::NotBlockMultiple { ty: act, n })
        }
        _ => blocks::row_bytes(act, n).ok_or(KernelError::SizeOverflow {
            ty: act,
            rows: 1,
            cols: n,
        }),
    }
}

/// Checks that `n_elements` of `ty` are whole blocks taking exactly `n_bytes`.
pub(crate) fn check_row(
    ty: GgmlType,
    n_elements: usize,
    n_bytes: usize,
    what: &'static str,
) -> Result<(), KernelError> {
    let (block, _) = blocks::layout(ty).ok_or(KernelError::UnsupportedType { ty })?;
    if !n_elements.is_multiple_of(block) {
        return Err(KernelError::NotBlockMultiple { ty, n: n_elements });
    }
    let expected = blocks::row_bytes(ty, n_elements).ok_or(KernelError::SizeOverflow {
        ty,
        rows: 1,
        cols: n_elements,
    })?;
    if n_bytes != expected {
        return Err(KernelError::LengthMismatch {
            what,
            expected,
            found: n_bytes,
        });
    }
    Ok(())
}

/// [`Kernels::quantize_activation_row`] at the active level.
pub fn quantize_activation_row(
    weight: GgmlType,
    src: &[f32],
    dst: &mut [u8],
) -> Result<(), KernelError> {
    kernels().quantize_activation_row(weight, src, dst)
}

/// Dequantizes one row of `dst.len()` elements of type `ty` from `src`
/// (F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q8_1, Q2_K…Q6_K, Q8_K).
pub fn dequantize_row(ty: GgmlType, src: &[u8], dst: &mut [f32]) -> Result<(), KernelError> {
    reference::dequantize_row(ty, src, dst)
}

/// [`Kernels::vec_dot`] at the active level: bit-identical to what
/// [`matmul`] gives for the same pair.
pub fn vec_dot(weight: GgmlType, n: usize, w_row: &[u8], act_row: &[u8]) -> f32 {
    kernels().vec_dot(weight, n, w_row, act_row)
}

/// [`Kernels::matmul`] at the active level: `out[t * out_stride + r] =
/// dot(weight row r, activation row t)`; see [`WeightMatrix`] and
/// [`Kernels::matmul`].
pub fn matmul(
    pool: &ThreadPool,
    w: &WeightMatrix,
    act: &[u8],
    n_tokens: usize,
    out: &mut [f32],
    out_stride: usize,
) {
    kernels().matmul(pool, w, act, n_tokens, out, out_stride)
}

/// [`Kernels::dot_f32`] at the active level.
pub fn dot_f32(a: &[f32], b: &[f32]) -> f32 {
    kernels().dot_f32(a, b)
}

/// [`Kernels::dot_f16_rows`] at the active level.
pub fn dot_f16_rows(key: &[f16], queries: &[f32], out: &mut [f32]) {
    kernels().dot_f16_rows(key, queries, out)
}

/// [`Kernels::accumulate_weighted_f16_rows`] at the active level.
pub fn accumulate_weighted_f16_rows(acc: &mut [f32], weights: &[f32], values: &[f16], n: usize) {
    kernels().accumulate_weighted_f16_rows(acc, weights, values, n)
}

/// [`Kernels::f32_to_f16_row`] at the active level.
pub fn f32_to_f16_row(src: &[f32], dst: &mut [f16]) {
    kernels().f32_to_f16_row(src, dst)
}

/// [`Kernels::swiglu`] at the active level.
pub fn swiglu(gate: &mut [f32], up: &[f32]) {
    kernels().swiglu(gate, up)
}

/// [`Kernels::exp_scaled_shifted`] at the active level.
pub fn exp_scaled_shifted(x: &mut [f32], scale: f32, shift: &[f32]) {
    kernels().exp_scaled_shifted(x, scale, shift)
}

/// [`Kernels::geglu_f16_table`] at the active level.
pub fn geglu_f16_table(gate: &mut [f32], up: &[f32], table: &[f32]) {
    kernels().geglu_f16_table(gate, up, table)
}

/// What the unit tests of the x86 levels share.
#[cfg(all(test, target_arch = "x86_64"))]
pub(crate) mod testing {
    use crate::{Kernels, Level};
    use std::io::Write;

    /// `level`'s table if this CPU runs it; otherwise reports `test` as not
    /// tested at that level on the test output (past the harness's capture,
    /// so it shows even though the test passes).
    pub(crate) fn level_or_report(level: Level, test: &str) -> Option<&'static Kernels> {
        match Kernels::for_level(level) {
            Ok(kernels) => Some(kernels),
            Err(e) => {
                let _ = writeln!(
                    std::io::stderr(),
                    "NOT TESTED: {test} at level {level}: {e}"
                );
                None
            }
        }
    }
}
