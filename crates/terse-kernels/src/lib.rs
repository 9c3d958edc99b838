//! Quantized CPU kernels and the worker pool that runs them.
//!
//! Weights stay in their GGUF block formats (read straight from a memory
//! map); activations are quantized on the fly to the matching 8-bit block
//! format ([`vec_dot_type`]) so dot products run on integers, exactly as
//! ggml does. Numerics follow ggml closely because the engine is tested
//! against llama.cpp's logits.
//!
//! Every kernel has a plain scalar version in [`reference`] (straight ports
//! of ggml's reference code) and, on x86-64 CPUs with AVX2 + FMA + F16C, a
//! fast path selected once at run time. [`matmul`] splits a weight matrix by
//! rows across a persistent [`ThreadPool`].

mod blocks;
mod matmul;
mod pool;
pub mod reference;
#[cfg(target_arch = "x86_64")]
mod x86;

pub use matmul::{matmul, WeightMatrix};
pub use pool::ThreadPool;
pub use terse_gguf::GgmlType;

use half::f16;

/// Errors from validating kernel inputs.
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

/// The instruction set the fast paths use on this CPU: `"avx2+fma+f16c"`
/// or `"scalar"` (the [`reference`] kernels).
pub fn simd_level() -> &'static str {
    #[cfg(target_arch = "x86_64")]
    if x86::available() {
        return "avx2+fma+f16c";
    }
    "scalar"
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

/// Quantizes one f32 activation row into the `vec_dot_type` of `weight`
/// (ggml's `quantize_row_q8_0` / `q8_1` / `q8_K` semantics, including Q8_1's
/// `s` and Q8_K's `bsums`; for float weights a little-endian f32 copy).
///
/// On x86 with AVX2 the Q8_0/Q8_1 rounding is that of ggml's x86 code
/// (ties to even, scale `127/amax`), which can differ by one quant from
/// [`reference::quantize_activation_row`]; Q8_K is identical to it.
pub fn quantize_activation_row(
    weight: GgmlType,
    src: &[f32],
    dst: &mut [u8],
) -> Result<(), KernelError> {
    let act = vec_dot_type(weight).ok_or(KernelError::UnsupportedType { ty: weight })?;
    check_row(act, src.len(), dst.len(), "activation row bytes")?;
    #[cfg(target_arch = "x86_64")]
    if x86::available() {
        match act {
            // SAFETY: the CPU features were detected; the quantizers only use
            // safe slice code compiled for those features.
            GgmlType::Q8_0 => unsafe { x86::quantize_row_q8_0(src, dst) },
            GgmlType::Q8_1 => unsafe { x86::quantize_row_q8_1(src, dst) },
            _ => reference::quantize_row(act, src, dst),
        }
        return Ok(());
    }
    reference::quantize_row(act, src, dst);
    Ok(())
}

/// Dequantizes one row of `dst.len()` elements of type `ty` from `src`
/// (F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q8_1, Q2_K…Q6_K, Q8_K).
pub fn dequantize_row(ty: GgmlType, src: &[u8], dst: &mut [f32]) -> Result<(), KernelError> {
    reference::dequantize_row(ty, src, dst)
}

/// The fastest dot product available on this CPU for `weight`.
pub(crate) fn vec_dot_fn(weight: GgmlType) -> Option<VecDotFn> {
    #[cfg(target_arch = "x86_64")]
    if let Some(f) = x86::vec_dot_fn(weight) {
        return Some(f);
    }
    reference::vec_dot_fn(weight)
}

/// Most activation rows a multi-row kernel takes per call.
#[cfg(target_arch = "x86_64")]
pub(crate) const MULTI_TOKENS: usize = x86::tiles::MAX_TOKENS;
#[cfg(not(target_arch = "x86_64"))]
pub(crate) const MULTI_TOKENS: usize = 1;

/// Dots one weight row with several activation rows in one pass over the row
/// (bit-identical to [`vec_dot`] per pair): `(n, weight row, activations,
/// activation row bytes, group side data, out)` with `out.len()` ≤
/// [`MULTI_TOKENS`] rows; the side data comes from [`group_side_data`] over
/// the same rows.
pub(crate) type MultiDotFn = fn(usize, &[u8], &[u8], usize, &[f32], &mut [f32]);

/// Words [`group_side_data`] appends for a group of `rows` rows of `n` elements.
pub(crate) fn group_side_words(weight: GgmlType, n: usize, rows: usize) -> usize {
    let lanes = MULTI_TOKENS;
    match weight {
        GgmlType::Q8_0 => lanes * (n / blocks::QK),
        GgmlType::Q4_0 | GgmlType::Q5_0 => 2 * lanes * (n / blocks::QK),
        GgmlType::Q4_K if rows == 1 => (lanes + 4) * (n / blocks::QK_K),
        GgmlType::Q4_K => (lanes + 4 * lanes) * (n / blocks::QK_K),
        GgmlType::Q6_K => lanes * (n / blocks::QK_K),
        _ => 0,
    }
}

/// What Q4_0/Q5_0 quants are stored above their signed values.
fn stored_offset(weight: GgmlType) -> Option<f32> {
    match weight {
        GgmlType::Q4_0 => Some(8.0),
        GgmlType::Q5_0 => Some(16.0),
        _ => None,
    }
}

/// Appends to `out` what the multi-row kernels would otherwise recompute from
/// a group of up to [`MULTI_TOKENS`] activation rows (`rows` of them, each
/// `row_bytes` long in `acts`) for every weight row: they read it once per
/// matmul. Per-block values come block-major with one lane per row (rows
/// past `rows` are 0), so a kernel scales all the rows of a block with one
/// vector multiply:
/// - Q8_0 activations: each block's f16 scale widened to f32, then, for Q4_0
///   and Q5_0 weights (stored `+offset`), each block's `-offset · Σq` (exact in
///   f32: |Σq| ≤ 32 · 127);
/// - Q8_K activations of Q4_K and Q6_K weights: each block's f32 scale; for
///   Q4_K then each block's eight sums over 32 elements (its sixteen
///   16-element `bsums` added in pairs) as `i16`, two per word (one word per
///   pair and row, one lane only for a lone row), stored as f32 bit patterns
///   that are only ever reloaded as integers;
/// - anything else: nothing.
pub(crate) fn group_side_data(
    weight: GgmlType,
    acts: &[u8],
    row_bytes: usize,
    rows: usize,
    out: &mut Vec<f32>,
) {
    let row = |j: usize| &acts[j * row_bytes..(j + 1) * row_bytes];
    // For every block, one value per lane: f(row j's block) for j < rows, else 0.
    let block_major = |out: &mut Vec<f32>, block_bytes: usize, f: &dyn Fn(&[u8]) -> f32| {
        for b in 0..row_bytes / block_bytes {
            out.extend((0..MULTI_TOKENS).map(|j| {
                if j < rows {
                    f(&row(j)[b * block_bytes..(b + 1) * block_bytes])
                } else {
                    0.0
                }
            }));
        }
    };
    let f16_at_0 = |b: &[u8]| f16::from_bits(u16::from_le_bytes([b[0], b[1]])).to_f32();
    let f32_at_0 = |b: &[u8]| f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    match weight {
        GgmlType::Q8_0 | GgmlType::Q4_0 | GgmlType::Q5_0 => {
            block_major(out, blocks::Q8_0_BYTES, &f16_at_0);
            if let Some(offset) = stored_offset(weight) {
                block_major(out, blocks::Q8_0_BYTES, &|b| {
                    let sum: i32 = b[2..].iter().map(|&q| i32::from(q as i8)).sum();
                    -offset * sum as f32
                });
            }
        }
        GgmlType::Q4_K | GgmlType::Q6_K => {
            block_major(out, blocks::Q8_K_BYTES, &f32_at_0);
            if weight == GgmlType::Q4_K {
                // Per block, per pair of 32-element sub-blocks, one word per row
                // (just the one for a lone row).
                let lanes = if rows == 1 { 1 } else { MULTI_TOKENS };
                for b in 0..row_bytes / blocks::Q8_K_BYTES {
                    for pair in 0..4 {
                        out.extend((0..lanes).map(|j| {
                            if j >= rows {
                                return 0.0;
                            }
                            let block = &row(j)[b * blocks::Q8_K_BYTES..];
                            let bsums = &block[blocks::Q8_K_BSUMS..blocks::Q8_K_BSUMS + 32];
                            let bsum =
                                |i: usize| i16::from_le_bytes([bsums[2 * i], bsums[2 * i + 1]]);
                            // |sum of 32 i8| <= 4064: the pair sum cannot overflow.
                            let sum32 = |k: usize| (bsum(2 * k) + bsum(2 * k + 1)) as u16 as u32;
                            f32::from_bits(sum32(2 * pair) | sum32(2 * pair + 1) << 16)
                        }));
                    }
                }
            }
        }
        _ => {}
    }
}

thread_local! {
    /// Scratch for the activation side data of the current matmul or
    /// [`vec_dot`] (reused, so decoding allocates nothing per step).
    pub(crate) static ACT_SIDE: std::cell::RefCell<Vec<f32>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

/// The multi-row kernel for `weight` on this CPU, if there is one.
pub(crate) fn multi_dot_fn(weight: GgmlType) -> Option<MultiDotFn> {
    #[cfg(target_arch = "x86_64")]
    return x86::tiles::multi_dot_fn(weight);
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = weight;
        None
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

/// Dot product of one weight row (`n` elements of type `weight`) with one
/// activation row already in `vec_dot_type(weight)` form, by the kernel
/// [`matmul`] runs for that pair (so bit-identical to it).
///
/// # Panics
/// If `weight` is unsupported, `n` is not a whole number of blocks, or a row
/// is shorter than `n` elements need (callers validate shapes once per
/// matmul, so this is a programming error, not an input error).
pub fn vec_dot(weight: GgmlType, n: usize, w_row: &[u8], act_row: &[u8]) -> f32 {
    if let Some(multi) = multi_dot_fn(weight) {
        return checked_vec_dot(weight, n, w_row, act_row, |w, a| {
            ACT_SIDE.with_borrow_mut(|side| {
                side.clear();
                group_side_data(weight, a, a.len(), 1, side);
                let mut out = [0.0f32];
                multi(n, w, a, a.len(), side, &mut out);
                out[0]
            })
        });
    }
    let f =
        vec_dot_fn(weight).unwrap_or_else(|| panic!("vec_dot: unsupported weight type {weight}"));
    checked_vec_dot(weight, n, w_row, act_row, |w, a| f(n, w, a))
}

/// Σ a[i]·b[i] (f32 accumulation; lane order differs from
/// [`reference::dot_f32`] on the fast path).
///
/// # Panics
/// If the lengths differ.
pub fn dot_f32(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "dot_f32: length mismatch");
    #[cfg(target_arch = "x86_64")]
    if x86::available() {
        // SAFETY: equal lengths checked; features detected.
        return unsafe { x86::dot_f32(a.len(), a.as_ptr(), b.as_ptr()) };
    }
    reference::dot_f32(a, b)
}

/// out[g] = Σᵢ f32(key[i]) · queries[g·n + i] for every query row g: one f16 key
/// of n elements against the `out.len()` query heads that share it (grouped-query
/// attention), converting the key once for all of them.
///
/// llama.cpp converts the queries to f16 first; keeping them f32 is slightly more
/// accurate and the difference is far below the f16 key rounding.
///
/// # Panics
/// If `queries.len() != out.len() * key.len()`.
pub fn dot_f16_rows(key: &[f16], queries: &[f32], out: &mut [f32]) {
    assert_eq!(
        queries.len(),
        out.len() * key.len(),
        "dot_f16_rows: length mismatch"
    );
    #[cfg(target_arch = "x86_64")]
    if x86::available() {
        // SAFETY: lengths checked; f16 is a transparent u16; features detected.
        unsafe {
            x86::dot_f16_rows(
                key.len(),
                key.as_ptr() as *const u16,
                queries.as_ptr(),
                out.len(),
                out.as_mut_ptr(),
            )
        };
        return;
    }
    reference::dot_f16_rows(key, queries, out)
}

/// acc[g·n + i] += Σ_p weights[p·heads + g] · f32(values[p·n + i]): the
/// attention-weighted sum of `values.len() / n` f16 value rows into the
/// `acc.len() / n` heads that share them (`weights` is position-major,
/// `[rows, heads]`). The fast path keeps each head's partial sums in registers
/// across all rows and touches `acc` once, where adding one row at a time
/// loaded and stored it for every row.
///
/// # Panics
/// If `n` is 0 or does not divide `acc` and `values`, or `weights` does not
/// hold one weight per row and head.
pub fn accumulate_weighted_f16_rows(acc: &mut [f32], weights: &[f32], values: &[f16], n: usize) {
    let (heads, rows) = weighted_rows_shape(acc.len(), weights.len(), values.len(), n);
    #[cfg(target_arch = "x86_64")]
    if x86::available() {
        // SAFETY: shapes checked; f16 is a transparent u16; features detected.
        unsafe {
            x86::accumulate_weighted_f16_rows(
                n,
                heads,
                rows,
                acc.as_mut_ptr(),
                weights.as_ptr(),
                values.as_ptr() as *const u16,
            )
        };
        return;
    }
    reference::accumulate_weighted_f16_rows(acc, weights, values, n)
}

/// `(heads, rows)` of an [`accumulate_weighted_f16_rows`] call, checked.
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

/// dst[i] = f16(src[i]), round to nearest even (bit-identical on every path).
///
/// # Panics
/// If the lengths differ.
pub fn f32_to_f16_row(src: &[f32], dst: &mut [f16]) {
    assert_eq!(src.len(), dst.len(), "f32_to_f16_row: length mismatch");
    #[cfg(target_arch = "x86_64")]
    if x86::available() {
        // SAFETY: equal lengths checked; f16 is a transparent u16; features detected.
        unsafe { x86::f32_to_f16(src.len(), src.as_ptr(), dst.as_mut_ptr() as *mut u16) };
        return;
    }
    reference::f32_to_f16_row(src, dst)
}

/// gate[i] = SiLU(gate[i]) · up[i], SiLU(x) = x / (1 + e^-x) (the gated FFN
/// activation of Qwen2/Llama). The fast path's exponential is within about
/// 1.5 ulp of [`reference::swiglu`]'s, as ggml's is.
///
/// # Panics
/// If the lengths differ.
pub fn swiglu(gate: &mut [f32], up: &[f32]) {
    assert_eq!(gate.len(), up.len(), "swiglu: length mismatch");
    #[cfg(target_arch = "x86_64")]
    if x86::available() {
        // SAFETY: equal lengths checked; features detected.
        unsafe { x86::swiglu(gate.len(), gate.as_mut_ptr(), up.as_ptr()) };
        return;
    }
    reference::swiglu(gate, up)
}

/// x[i] = e^(x[i] · scale - shift[i]): a softmax's exponentials, with the
/// running maximum per element in `shift` (within about 1.5 ulp of
/// [`reference::exp_scaled_shifted`] on the fast path).
///
/// # Panics
/// If the lengths differ.
pub fn exp_scaled_shifted(x: &mut [f32], scale: f32, shift: &[f32]) {
    assert_eq!(x.len(), shift.len(), "exp_scaled_shifted: length mismatch");
    #[cfg(target_arch = "x86_64")]
    if x86::available() {
        // SAFETY: equal lengths checked; features detected.
        unsafe { x86::exp_scaled_shifted(x.len(), x.as_mut_ptr(), scale, shift.as_ptr()) };
        return;
    }
    reference::exp_scaled_shifted(x, scale, shift)
}

/// gate[i] = GELU(gate[i]) · up[i] (Gemma's gated FFN), GELU read from `table`
/// by the f16 bits of the input as ggml does: 0 at or below -10, the input
/// itself at or above 10. Bit-identical on every path.
///
/// # Panics
/// If the lengths differ or `table` does not hold 65536 values.
pub fn geglu_f16_table(gate: &mut [f32], up: &[f32], table: &[f32]) {
    assert_eq!(gate.len(), up.len(), "geglu_f16_table: length mismatch");
    assert_eq!(table.len(), 1 << 16, "geglu_f16_table: table of every f16");
    #[cfg(target_arch = "x86_64")]
    if x86::available() {
        // SAFETY: lengths checked; the table covers every u16 index; features detected.
        unsafe { x86::geglu_f16_table(gate.len(), gate.as_mut_ptr(), up.as_ptr(), table.as_ptr()) };
        return;
    }
    reference::geglu_f16_table(gate, up, table)
}
