//! [`Kernels`]: one level's complete set of kernels, behind checked methods.
//!
//! Each level module fills one static table; nothing outside this file picks
//! a kernel by CPU feature. The table's function pointers take arguments
//! whose shapes the methods here have checked (the pointers re-check what
//! their memory safety depends on), and a level's table is only handed out
//! by [`Kernels::for_level`] after the CPU was found to support it, which is
//! what makes the `target_feature` code behind the pointers sound to call.

use crate::matmul::{self, MatmulKernel};
use crate::{blocks, reference, vec_dot_type, GgmlType, KernelError, Level, ThreadPool};
use crate::{check_row, WeightMatrix};
use half::f16;

/// `(acc, weights, values, n, heads, rows)` of
/// [`Kernels::accumulate_weighted_f16_rows`], shape checked.
pub(crate) type AccumulateWeightedFn = fn(&mut [f32], &[f32], &[f16], usize, usize, usize);

/// The kernels of one [`Level`].
pub struct Kernels {
    pub(crate) level: Level,
    /// How a matmul (and so a lone dot product) of this weight type runs here.
    pub(crate) matmul_kernel: fn(GgmlType) -> Option<MatmulKernel>,
    /// Activation quantizers by format (Q8_K has one for every level: the
    /// reference, which the fast paths match exactly).
    pub(crate) quantize_q8_0: fn(&[f32], &mut [u8]),
    pub(crate) quantize_q8_1: fn(&[f32], &mut [u8]),
    pub(crate) dot_f32: fn(&[f32], &[f32]) -> f32,
    pub(crate) dot_f16_rows: fn(&[f16], &[f32], &mut [f32]),
    pub(crate) accumulate_weighted_f16_rows: AccumulateWeightedFn,
    pub(crate) f32_to_f16_row: fn(&[f32], &mut [f16]),
    pub(crate) swiglu: fn(&mut [f32], &[f32]),
    pub(crate) exp_scaled_shifted: fn(&mut [f32], f32, &[f32]),
    pub(crate) geglu_f16_table: fn(&mut [f32], &[f32], &[f32]),
}

impl std::fmt::Debug for Kernels {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Kernels")
            .field("level", &self.level)
            .finish_non_exhaustive()
    }
}

impl Kernels {
    /// The table of `level`, if this CPU can run it.
    pub fn for_level(level: Level) -> Result<&'static Kernels, KernelError> {
        let table: Option<&'static Kernels> = match level {
            Level::Scalar => Some(&reference::KERNELS),
            #[cfg(target_arch = "x86_64")]
            Level::Avx2 => Some(&crate::x86::avx2::KERNELS),
            #[cfg(target_arch = "x86_64")]
            Level::Avx512 => Some(&crate::x86::avx512::KERNELS),
            #[cfg(not(target_arch = "x86_64"))]
            Level::Avx2 | Level::Avx512 => None,
        };
        match table {
            Some(table) if level.is_supported() => Ok(table),
            _ => Err(KernelError::LevelUnsupported {
                level,
                features: level.features(),
                supported: Level::supported()
                    .iter()
                    .map(|l| l.name())
                    .collect::<Vec<_>>()
                    .join(", "),
            }),
        }
    }

    /// The level these kernels belong to.
    pub fn level(&self) -> Level {
        self.level
    }

    /// Quantizes one f32 activation row into the `vec_dot_type` of `weight`
    /// (ggml's `quantize_row_q8_0` / `q8_1` / `q8_K` semantics, including
    /// Q8_1's `s` and Q8_K's `bsums`; for float weights a little-endian f32
    /// copy).
    ///
    /// The x86 levels round Q8_0/Q8_1 like ggml's x86 code (ties to even,
    /// scale `127/amax`), which can differ by one quant from
    /// [`reference::quantize_activation_row`]; Q8_K is identical everywhere.
    pub fn quantize_activation_row(
        &self,
        weight: GgmlType,
        src: &[f32],
        dst: &mut [u8],
    ) -> Result<(), KernelError> {
        let act = vec_dot_type(weight).ok_or(KernelError::UnsupportedType { ty: weight })?;
        check_row(act, src.len(), dst.len(), "activation row bytes")?;
        match act {
            GgmlType::Q8_0 => (self.quantize_q8_0)(src, dst),
            GgmlType::Q8_1 => (self.quantize_q8_1)(src, dst),
            _ => reference::quantize_row(act, src, dst),
        }
        Ok(())
    }

    /// Dot product of one weight row (`n` elements of type `weight`) with one
    /// activation row already in `vec_dot_type(weight)` form, by the kernel
    /// [`Kernels::matmul`] runs for that pair (so bit-identical to it).
    ///
    /// # Panics
    /// If `weight` is unsupported, `n` is not a whole number of blocks, or a
    /// row is shorter than `n` elements need (callers validate shapes once
    /// per matmul, so this is a programming error, not an input error).
    pub fn vec_dot(&self, weight: GgmlType, n: usize, w_row: &[u8], act_row: &[u8]) -> f32 {
        let kernel = (self.matmul_kernel)(weight)
            .unwrap_or_else(|| panic!("vec_dot: unsupported weight type {weight}"));
        checked_vec_dot(weight, n, w_row, act_row, |w, a| {
            matmul::dot(&kernel, weight, n, w, a)
        })
    }

    /// `out[t * out_stride + r] = dot(weight row r, activation row t)` for `t`
    /// in `0..n_tokens`, `r` in `0..rows`, split by rows across `pool`. See
    /// [`crate::matmul`].
    pub fn matmul(
        &self,
        pool: &ThreadPool,
        w: &WeightMatrix,
        act: &[u8],
        n_tokens: usize,
        out: &mut [f32],
        out_stride: usize,
    ) {
        let kernel = (self.matmul_kernel)(w.ty)
            .unwrap_or_else(|| panic!("matmul: unsupported weight type {}", w.ty));
        matmul::run(&kernel, pool, w, act, n_tokens, out, out_stride);
    }

    /// Σ a[i]·b[i] (f32 accumulation; the fast levels' lane order differs
    /// from [`reference::dot_f32`]).
    ///
    /// # Panics
    /// If the lengths differ.
    pub fn dot_f32(&self, a: &[f32], b: &[f32]) -> f32 {
        assert_eq!(a.len(), b.len(), "dot_f32: length mismatch");
        (self.dot_f32)(a, b)
    }

    /// out[g] = Σᵢ f32(key[i]) · queries[g·n + i] for every query row g: one
    /// f16 key of n elements against the `out.len()` query heads that share it
    /// (grouped-query attention), converting the key once for all of them.
    ///
    /// llama.cpp converts the queries to f16 first; keeping them f32 is
    /// slightly more accurate and the difference is far below the f16 key
    /// rounding.
    ///
    /// # Panics
    /// If `queries.len() != out.len() * key.len()`.
    pub fn dot_f16_rows(&self, key: &[f16], queries: &[f32], out: &mut [f32]) {
        assert_eq!(
            queries.len(),
            out.len() * key.len(),
            "dot_f16_rows: length mismatch"
        );
        (self.dot_f16_rows)(key, queries, out)
    }

    /// acc[g·n + i] += Σ_p weights[p·heads + g] · f32(values[p·n + i]): the
    /// attention-weighted sum of `values.len() / n` f16 value rows into the
    /// `acc.len() / n` heads that share them (`weights` is position-major,
    /// `[rows, heads]`). The fast paths keep each head's partial sums in
    /// registers across all rows and touch `acc` once, where adding one row
    /// at a time loaded and stored it for every row.
    ///
    /// # Panics
    /// If `n` is 0 or does not divide `acc` and `values`, or `weights` does
    /// not hold one weight per row and head.
    pub fn accumulate_weighted_f16_rows(
        &self,
        acc: &mut [f32],
        weights: &[f32],
        values: &[f16],
        n: usize,
    ) {
        let (heads, rows) = weighted_rows_shape(acc.len(), weights.len(), values.len(), n);
        (self.accumulate_weighted_f16_rows)(acc, weights, values, n, heads, rows)
    }

    /// dst[i] = f16(src[i]), round to nearest even (bit-identical on every
    /// level).
    ///
    /// # Panics
    /// If the lengths differ.
    pub fn f32_to_f16_row(&self, src: &[f32], dst: &mut [f16]) {
        assert_eq!(src.len(), dst.len(), "f32_to_f16_row: length mismatch");
        (self.f32_to_f16_row)(src, dst)
    }

    /// gate[i] = SiLU(gate[i]) · up[i], SiLU(x) = x / (1 + e^-x) (the gated
    /// FFN activation of Qwen2/Llama). The fast levels' exponential is within
    /// about 1.5 ulp of [`reference::swiglu`]'s, as ggml's is.
    ///
    /// # Panics
    /// If the lengths differ.
    pub fn swiglu(&self, gate: &mut [f32], up: &[f32]) {
        assert_eq!(gate.len(), up.len(), "swiglu: length mismatch");
        (self.swiglu)(gate, up)
    }

    /// x[i] = e^(x[i] · scale - shift[i]): a softmax's exponentials, with the
    /// running maximum per element in `shift` (within about 1.5 ulp of
    /// [`reference::exp_scaled_shifted`] on the fast levels).
    ///
    /// # Panics
    /// If the lengths differ.
    pub fn exp_scaled_shifted(&self, x: &mut [f32], scale: f32, shift: &[f32]) {
        assert_eq!(x.len(), shift.len(), "exp_scaled_shifted: length mismatch");
        (self.exp_scaled_shifted)(x, scale, shift)
    }

    /// gate[i] = GELU(gate[i]) · up[i] (Gemma's gated FFN), GELU read from
    /// `table` by the f16 bits of the input as ggml does: 0 at or below -10,
    /// the input itself at or above 10. Bit-identical on every level.
    ///
    /// # Panics
    /// If the lengths differ or `table` does not hold 65536 values.
    pub fn geglu_f16_table(&self, gate: &mut [f32], up: &[f32], table: &[f32]) {
        assert_eq!(gate.len(), up.len(), "geglu_f16_table: length mismatch");
        assert_eq!(table.len(), 1 << 16, "geglu_f16_table: table of every f16");
        (self.geglu_f16_table)(gate, up, table)
    }
}

/// Runs `dot(weight row, activation row)` on the rows cut to exactly `n`
/// elements, after checking `n` and both row lengths for `weight`.
pub(crate) fn checked_vec_dot(
    weight: GgmlType,
    n: usize,
    w_row: &[u8],
    act_row: &[u8],
    dot: impl FnOnce(&[u8], &[u8]) -> f32,
) -> f32 {
    let w_bytes = blocks::row_bytes(weight, n)
        .unwrap_or_else(|| panic!("vec_dot: {n} elements are not whole {weight} blocks"));
    let a_bytes = vec_dot_type(weight)
        .and_then(|act| blocks::row_bytes(act, n))
        .unwrap_or_else(|| panic!("vec_dot: {n} elements do not form a {weight} activation row"));
    assert!(
        w_row.len() >= w_bytes && act_row.len() >= a_bytes,
        "vec_dot: {weight} rows of {n} elements need {w_bytes} weight and {a_bytes} activation bytes, got {} and {}",
        w_row.len(),
        act_row.len()
    );
    dot(&w_row[..w_bytes], &act_row[..a_bytes])
}

/// `(heads, rows)` of an [`Kernels::accumulate_weighted_f16_rows`] call,
/// checked.
pub(crate) fn weighted_rows_shape(
    acc: usize,
    weights: usize,
    values: usize,
    n: usize,
) -> (usize, usize) {
    assert!(
        n > 0 && acc.is_multiple_of(n) && values.is_multiple_of(n),
        "accumulate_weighted_f16_rows: {acc} accumulators and {values} values are not rows of {n}"
    );
    let (heads, rows) = (acc / n, values / n);
    assert_eq!(
        weights,
        heads * rows,
        "accumulate_weighted_f16_rows: {heads} heads × {rows} rows need that many weights"
    );
    (heads, rows)
}
