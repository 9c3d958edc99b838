//! One weight row against one to [`MAX_TOKENS`] activation rows at once: the
//! AVX2 kernels of the formats the default models use (Q4_0, Q5_0, Q8_0, Q4_K,
//! Q6_K) for decode (one row), batched decode and prefill, and the lane layout
//! of the activation side data they read ([`group_side_data`]).
//!
//! A per-pair dot product would unpack every weight block again for each token;
//! here a block is unpacked once and dotted with every activation row, and the
//! independent per-token accumulators hide the latency of the float chain. What
//! can be derived from the activation rows alone (f32 scales, block sums) comes
//! precomputed once per matmul, one lane per row ([`group_side_data`]), so a
//! block's scales for all rows take one multiply. For each token the
//! operations are the same, in the same order, whatever the number of rows, so
//! every output is bit-identical to the one-row call — batching never changes
//! a result.

use super::*;
use crate::blocks;
use crate::matmul::{MatmulKernel, MultiDotFn, RowKernel};
use half::f16;

/// Most activation rows one call handles.
pub(crate) const MAX_TOKENS: usize = 8;
/// How far ahead of the block being read a one-row (decode) kernel prefetches
/// its weight row. Decode streams each weight byte from memory once; the
/// hardware prefetcher alone left the 896-long rows of the 0.5B's Q8_0 output
/// head at about 20 GB/s of 28–35 available (`kernel_speed 2 Q8_0 151936x896`:
/// 17–20 → 23–25 GB/s with 2 KiB, no better with 4 KiB).
const PREFETCH_BYTES: usize = 2048;

/// Asks for the cache line `PREFETCH_BYTES` past `p` (a hint: it never faults,
/// even past the end of the mapping).
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn prefetch_ahead(p: *const u8) {
    _mm_prefetch::<_MM_HINT_T0>(p.wrapping_add(PREFETCH_BYTES) as *const i8);
}

/// Words [`group_side_data`] appends for a group of `rows` rows of `n` elements.
pub(crate) fn group_side_words(weight: GgmlType, n: usize, rows: usize) -> usize {
    let lanes = MAX_TOKENS;
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
/// a group of up to [`MAX_TOKENS`] activation rows (`rows` of them, each
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
            out.extend((0..MAX_TOKENS).map(|j| {
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
                let lanes = if rows == 1 { 1 } else { MAX_TOKENS };
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

/// The activation rows' block pointers for `N` tokens.
#[inline]
unsafe fn rows<const N: usize>(acts: *const u8, a_row_bytes: usize) -> [*const u8; N] {
    std::array::from_fn(|j| acts.add(j * a_row_bytes))
}

/// Row j's block scale in all eight lanes, from the block's [`scales`].
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn lane<const N: usize>(v: __m256, j: usize) -> __m256 {
    if N == 1 {
        v
    } else {
        _mm256_permutevar8x32_ps(v, _mm256_set1_epi32(j as i32))
    }
}

/// `weight_scale` (broadcast) times the eight rows' activation scales at
/// `act_scales`: lane j is row j's combined scale. With one row (decode) the
/// product is formed on the broadcast scale instead, so lane 0 is already in
/// every lane and [`lane`] has nothing to shuffle; the products are the same.
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn scales<const N: usize>(weight_scale: __m256, act_scales: *const f32) -> __m256 {
    if N == 1 {
        _mm256_mul_ps(weight_scale, _mm256_broadcast_ss(&*act_scales))
    } else {
        _mm256_mul_ps(weight_scale, _mm256_loadu_ps(act_scales))
    }
}

/// Kernels for the 32-element formats dotted with Q8_0 activations. `side`
/// holds, block by block, the eight rows' activation scales widened to f32
/// and, for the offset formats, then each block's `-offset · Σq` per row (see
/// [`group_side_data`]): one multiply gives a block's combined scale
/// `dx · dy` for every row, where each row converted and multiplied its own.
///
/// - Q8_0 quants are signed: `maddubs` needs one unsigned operand, so the
///   weight's sign moves onto the activation (`sign`, as ggml does).
/// - Q4_0/Q5_0 quants are stored `+8`/`+16`, i.e. unsigned: they go into `maddubs`
///   as stored and the offset comes out as `dx · dy · (-offset · Σq)`, one FMA
///   per block for all rows at once, instead of two `sign`s per block and row.
///
/// Blocks are summed in pairs (multiply, FMA, one add) to halve the FMA-latency
/// chain.
macro_rules! q8_0_family {
    ($name:ident, $w_bytes:expr, offset: $offset:expr, |$xb:ident| $unpack:expr) => {
        #[target_feature(enable = "avx2,fma,f16c")]
        unsafe fn $name<const N: usize>(
            nb: usize,
            x: *const u8,
            acts: *const u8,
            a_row_bytes: usize,
            side: *const f32,
            out: &mut [f32],
        ) {
            const OFFSET: bool = $offset;
            let ys = rows::<N>(acts, a_row_bytes);
            let lanes = MAX_TOKENS;
            let yd = |b: usize| side.add(lanes * b);
            let offsets = |b: usize| side.add(lanes * (nb + b));
            let mut acc = [_mm256_setzero_ps(); N];
            // Lane j: row j's offset term, over even and over odd blocks (two
            // chains: one FMA after another per pair was the one-row loop's
            // critical path).
            let mut acc_offset = [_mm256_setzero_ps(); 2];
            // The same for one row, as scalars: lane 0 of a vector would drag
            // its other lanes along.
            let mut row_offset = [0.0f32; 2];
            let mut first = 0;
            while first + 1 < nb {
                let (x0, x1) = (x.add(first * $w_bytes), x.add((first + 1) * $w_bytes));
                if N == 1 {
                    prefetch_ahead(x0);
                }
                let dx01 = fp16x2(x0, x1);
                let (dx0, dx1) = (
                    _mm256_broadcastss_ps(dx01),
                    _mm256_broadcastss_ps(_mm_movehdup_ps(dx01)),
                );
                // Lane j: dx · dy of row j, for each block of the pair.
                let (d0, d1) = (scales::<N>(dx0, yd(first)), scales::<N>(dx1, yd(first + 1)));
                if OFFSET {
                    if N == 1 {
                        let d0 = _mm256_cvtss_f32(d0);
                        let d1 = _mm256_cvtss_f32(d1);
                        row_offset[0] = d0.mul_add(*offsets(first), row_offset[0]);
                        row_offset[1] = d1.mul_add(*offsets(first + 1), row_offset[1]);
                    } else {
                        let c0 = _mm256_loadu_ps(offsets(first));
                        let c1 = _mm256_loadu_ps(offsets(first + 1));
                        acc_offset[0] = _mm256_fmadd_ps(d0, c0, acc_offset[0]);
                        acc_offset[1] = _mm256_fmadd_ps(d1, c1, acc_offset[1]);
                    }
                }
                let qx0: __m256i = {
                    let $xb = x0;
                    $unpack
                };
                let qx1: __m256i = {
                    let $xb = x1;
                    $unpack
                };
                let (ax0, ax1) = (
                    unsigned_operand::<OFFSET>(qx0),
                    unsigned_operand::<OFFSET>(qx1),
                );
                for j in 0..N {
                    let yb = ys[j].add(first * Q8_0_BYTES);
                    let s0 = mul_sum_us8_pairs_float(
                        ax0,
                        matching_activation::<OFFSET>(load256(yb.add(2)), qx0),
                    );
                    let s1 = mul_sum_us8_pairs_float(
                        ax1,
                        matching_activation::<OFFSET>(load256(yb.add(Q8_0_BYTES + 2)), qx1),
                    );
                    let pair =
                        _mm256_fmadd_ps(lane::<N>(d1, j), s1, _mm256_mul_ps(lane::<N>(d0, j), s0));
                    acc[j] = _mm256_add_ps(acc[j], pair);
                }
                first += 2;
            }
            if first < nb {
                let x0 = x.add(first * $w_bytes);
                // Lane 1 (the block's next two bytes) is unused; two distinct
                // loads keep LLVM from merging the conversion into a live
                // register (see `fp16x2`).
                let d = scales::<N>(_mm256_broadcastss_ps(fp16x2(x0, x0.add(2))), yd(first));
                if OFFSET {
                    if N == 1 {
                        row_offset[0] = _mm256_cvtss_f32(d).mul_add(*offsets(first), row_offset[0]);
                    } else {
                        let c = _mm256_loadu_ps(offsets(first));
                        acc_offset[0] = _mm256_fmadd_ps(d, c, acc_offset[0]);
                    }
                }
                let qx: __m256i = {
                    let $xb = x0;
                    $unpack
                };
                let ax = unsigned_operand::<OFFSET>(qx);
                for j in 0..N {
                    let yb = ys[j].add(first * Q8_0_BYTES);
                    let s = mul_sum_us8_pairs_float(
                        ax,
                        matching_activation::<OFFSET>(load256(yb.add(2)), qx),
                    );
                    acc[j] = _mm256_fmadd_ps(lane::<N>(d, j), s, acc[j]);
                }
            }
            let mut offset = [row_offset[0] + row_offset[1]; MAX_TOKENS];
            if N > 1 {
                _mm256_storeu_ps(
                    offset.as_mut_ptr(),
                    _mm256_add_ps(acc_offset[0], acc_offset[1]),
                );
            }
            for j in 0..N {
                out[j] = hsum_float_8(acc[j]) + offset[j];
            }
        }
    };
}

/// The weight block as `maddubs`'s unsigned operand: as stored for the offset
/// formats, its absolute value for Q8_0.
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn unsigned_operand<const OFFSET: bool>(qx: __m256i) -> __m256i {
    if OFFSET {
        qx
    } else {
        _mm256_sign_epi8(qx, qx)
    }
}

/// The activation block `y` matching [`unsigned_operand`]: Q8_0's weight signs
/// move onto it.
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn matching_activation<const OFFSET: bool>(y: __m256i, qx: __m256i) -> __m256i {
    if OFFSET {
        y
    } else {
        _mm256_sign_epi8(y, qx)
    }
}

q8_0_family!(q4_0_rows, Q4_0_BYTES, offset: true, |xb| bytes_from_nibbles_32(xb.add(2)));
q8_0_family!(q5_0_rows, Q5_0_BYTES, offset: true, |xb| {
    let bit4 = _mm256_and_si256(bytes_from_bits_32(xb.add(2)), _mm256_set1_epi8(0x10));
    _mm256_or_si256(bytes_from_nibbles_32(xb.add(6)), bit4)
});
q8_0_family!(q8_0_rows, Q8_0_BYTES, offset: false, |xb| load256(xb.add(2)));

/// `side` holds the rows' activation block scales block by block (eight
/// lanes), then each block's sums over 32 elements, a pair of them per word,
/// one word per row (see [`group_side_data`]): folding them out of
/// `bsums` for every weight row cost as much as the dot products themselves.
/// The mins term `-dmin · dy · Σ min · sum` of all rows is one vector, lane j
/// for row j (four `madd`s per block for all rows); one row (decode) has its
/// four words side by side and sums them as a scalar: the same integers and
/// product.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn q4_k_rows<const N: usize>(
    nb: usize,
    x: *const u8,
    acts: *const u8,
    a_row_bytes: usize,
    side: *const f32,
    out: &mut [f32],
) {
    let ys = rows::<N>(acts, a_row_bytes);
    let sums32 = side.add(MAX_TOKENS * nb) as *const i32;
    let m4 = _mm256_set1_epi8(0xF);
    let mut acc = [_mm256_setzero_ps(); N];
    // Lane j: row j's mins term (one row: a scalar).
    let mut acc_mins = _mm256_setzero_ps();
    let mut row_mins = 0.0f32;
    for i in 0..nb {
        let xb = x.add(i * Q4_K_BYTES);
        let d_dmin = fp16x2(xb, xb.add(2));
        // Lane j: row j's scale times the block's d, and times -dmin.
        let yd = side.add(MAX_TOKENS * i);
        let d = scales::<N>(_mm256_broadcastss_ps(d_dmin), yd);
        let neg_dmin = _mm_sub_ps(_mm_setzero_ps(), _mm_movehdup_ps(d_dmin));
        let dmin = scales::<N>(_mm256_broadcastss_ps(neg_dmin), yd);
        let (mins, sm) = k4_mins_scales(xb.add(4));
        let mut sumi = [_mm256_setzero_si256(); N];
        for k in 0..QK_K / 64 {
            if N == 1 {
                prefetch_ahead(xb.add(16 + 32 * k));
            }
            let scale_l = _mm256_set1_epi16(sm[2 * k] as i16);
            let scale_h = _mm256_set1_epi16(sm[2 * k + 1] as i16);
            let q4bits = load256(xb.add(16 + 32 * k));
            let q4l = _mm256_and_si256(q4bits, m4);
            let q4h = _mm256_and_si256(_mm256_srli_epi16(q4bits, 4), m4);
            for j in 0..N {
                let q8 = ys[j].add(i * Q8_K_BYTES + Q8_K_QS + 64 * k);
                let p16l = _mm256_madd_epi16(scale_l, _mm256_maddubs_epi16(q4l, load256(q8)));
                let p16h =
                    _mm256_madd_epi16(scale_h, _mm256_maddubs_epi16(q4h, load256(q8.add(32))));
                sumi[j] = _mm256_add_epi32(sumi[j], _mm256_add_epi32(p16l, p16h));
            }
        }
        // Word p of block i, row j: sums32[(4i + p)·8 + j] (one row: [4i + p]).
        let words = sums32.add(4 * if N == 1 { 1 } else { MAX_TOKENS } * i);
        if N == 1 {
            let q8s = _mm_loadu_si128(words as *const __m128i);
            let sum = hsum_i32_4(_mm_madd_epi16(mins, q8s)) as f32;
            row_mins = _mm256_cvtss_f32(dmin).mul_add(sum, row_mins);
        } else {
            let mut sums = _mm256_setzero_si256();
            for p in 0..4 {
                // Mins 2p and 2p + 1 (word p of the eight i16) in every lane.
                let pair = _mm256_permutevar8x32_epi32(
                    _mm256_castsi128_si256(mins),
                    _mm256_set1_epi32(p as i32),
                );
                let row_words = _mm256_loadu_si256(words.add(8 * p) as *const __m256i);
                sums = _mm256_add_epi32(sums, _mm256_madd_epi16(pair, row_words));
            }
            acc_mins = _mm256_fmadd_ps(dmin, _mm256_cvtepi32_ps(sums), acc_mins);
        }
        for j in 0..N {
            acc[j] = _mm256_fmadd_ps(lane::<N>(d, j), _mm256_cvtepi32_ps(sumi[j]), acc[j]);
        }
    }
    let mut mins_term = [row_mins; MAX_TOKENS];
    if N > 1 {
        _mm256_storeu_ps(mins_term.as_mut_ptr(), acc_mins);
    }
    for j in 0..N {
        out[j] = hsum_float_8(acc[j]) + mins_term[j];
    }
}

/// `side` holds the rows' activation block scales block by block (eight
/// lanes, see [`group_side_data`]).
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn q6_k_rows<const N: usize>(
    nb: usize,
    x: *const u8,
    acts: *const u8,
    a_row_bytes: usize,
    side: *const f32,
    out: &mut [f32],
) {
    let ys = rows::<N>(acts, a_row_bytes);
    let m4 = _mm256_set1_epi8(0xF);
    let m3 = _mm256_set1_epi8(3);
    let mut acc = [_mm256_setzero_ps(); N];
    for i in 0..nb {
        let xb = x.add(i * Q6_K_BYTES);
        // Lane j: row j's scale times the block's.
        let d = scales::<N>(
            _mm256_broadcastss_ps(fp16x2(xb.add(208), xb.add(206))),
            side.add(MAX_TOKENS * i),
        );
        let scales16 = _mm256_cvtepi8_epi16(_mm_loadu_si128(xb.add(192) as *const __m128i));
        let mut sumi: [__m256i; N] =
            std::array::from_fn(|j| q6_k_offset(scales16, ys[j].add(i * Q8_K_BYTES + Q8_K_BSUMS)));
        for h in 0..QK_K / 128 {
            if N == 1 {
                prefetch_ahead(xb.add(64 * h));
                prefetch_ahead(xb.add(64 * h + 64));
            }
            let q4bits1 = load256(xb.add(64 * h));
            let q4bits2 = load256(xb.add(64 * h + 32));
            let q4bits_h = load256(xb.add(128 + 32 * h));
            let q4h_0 = _mm256_slli_epi16(_mm256_and_si256(q4bits_h, m3), 4);
            let q4h_1 = _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(q4bits_h, 2), m3), 4);
            let q4h_2 = _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(q4bits_h, 4), m3), 4);
            let q4h_3 = _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(q4bits_h, 6), m3), 4);
            let quants = [
                _mm256_or_si256(_mm256_and_si256(q4bits1, m4), q4h_0),
                _mm256_or_si256(_mm256_and_si256(q4bits2, m4), q4h_1),
                _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(q4bits1, 4), m4), q4h_2),
                _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(q4bits2, 4), m4), q4h_3),
            ];
            for (k, q) in quants.into_iter().enumerate() {
                let scale = q6_k_scale_pair(scales16, 4 * h + k);
                for j in 0..N {
                    let q8k = load256(ys[j].add(i * Q8_K_BYTES + Q8_K_QS + 128 * h + 32 * k));
                    let p16 = _mm256_maddubs_epi16(q, q8k);
                    sumi[j] = _mm256_add_epi32(sumi[j], _mm256_madd_epi16(scale, p16));
                }
            }
        }
        for j in 0..N {
            acc[j] = _mm256_fmadd_ps(lane::<N>(d, j), _mm256_cvtepi32_ps(sumi[j]), acc[j]);
        }
    }
    for j in 0..N {
        out[j] = hsum_float_8(acc[j]);
    }
}

/// Defines a safe multi-row dot: checks the rows cover `n / $block` blocks (and
/// the activation side data its kernel reads), then runs the kernel
/// instantiated for the number of tokens.
macro_rules! multi_dot {
    ($name:ident, $kernel:ident, $ty:expr, $block:expr, $w_bytes:expr, $a_bytes:expr) => {
        fn $name(
            n: usize,
            w: &[u8],
            acts: &[u8],
            a_row_bytes: usize,
            act_side: &[f32],
            out: &mut [f32],
        ) {
            let nb = n / $block;
            let n_tok = out.len();
            assert!(
                (1..=MAX_TOKENS).contains(&n_tok)
                    && w.len() >= nb * $w_bytes
                    && a_row_bytes >= nb * $a_bytes
                    && acts.len() >= (n_tok - 1) * a_row_bytes + nb * $a_bytes
                    && act_side.len() >= group_side_words($ty, n, n_tok),
                "multi-row dot: rows shorter than n elements"
            );
            let (x, y, side) = (w.as_ptr(), acts.as_ptr(), act_side.as_ptr());
            // SAFETY: every row covers nb blocks (checked above) and this function
            // is only reachable through the AVX2 table, handed out only when
            // `available()`.
            unsafe {
                match n_tok {
                    1 => $kernel::<1>(nb, x, y, a_row_bytes, side, out),
                    2 => $kernel::<2>(nb, x, y, a_row_bytes, side, out),
                    3 => $kernel::<3>(nb, x, y, a_row_bytes, side, out),
                    4 => $kernel::<4>(nb, x, y, a_row_bytes, side, out),
                    5 => $kernel::<5>(nb, x, y, a_row_bytes, side, out),
                    6 => $kernel::<6>(nb, x, y, a_row_bytes, side, out),
                    7 => $kernel::<7>(nb, x, y, a_row_bytes, side, out),
                    _ => $kernel::<8>(nb, x, y, a_row_bytes, side, out),
                }
            }
        }
    };
}

multi_dot!(
    multi_q4_0,
    q4_0_rows,
    GgmlType::Q4_0,
    QK,
    Q4_0_BYTES,
    Q8_0_BYTES
);
multi_dot!(
    multi_q5_0,
    q5_0_rows,
    GgmlType::Q5_0,
    QK,
    Q5_0_BYTES,
    Q8_0_BYTES
);
multi_dot!(
    multi_q8_0,
    q8_0_rows,
    GgmlType::Q8_0,
    QK,
    Q8_0_BYTES,
    Q8_0_BYTES
);
multi_dot!(
    multi_q4_k,
    q4_k_rows,
    GgmlType::Q4_K,
    QK_K,
    Q4_K_BYTES,
    Q8_K_BYTES
);
multi_dot!(
    multi_q6_k,
    q6_k_rows,
    GgmlType::Q6_K,
    QK_K,
    Q6_K_BYTES,
    Q8_K_BYTES
);

/// The multi-row kernel for `weight`, where there is one.
pub(crate) fn row_kernel(weight: GgmlType) -> Option<MatmulKernel> {
    let dot: MultiDotFn = match weight {
        GgmlType::Q4_0 => multi_q4_0,
        GgmlType::Q5_0 => multi_q5_0,
        GgmlType::Q8_0 => multi_q8_0,
        GgmlType::Q4_K => multi_q4_k,
        GgmlType::Q6_K => multi_q6_k,
        _ => return None,
    };
    Some(MatmulKernel::Rows(RowKernel {
        dot,
        tokens: MAX_TOKENS,
        side_data: group_side_data,
        side_words: group_side_words,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{activation_row_bytes, Level};
    use rand::{Rng, SeedableRng};

    /// Random bytes are valid blocks for these types once the f16 scales are
    /// set to sane values (random bits could be NaN or huge).
    fn random_row(rng: &mut rand::rngs::StdRng, ty: GgmlType, n: usize) -> Vec<u8> {
        let bytes = crate::blocks::row_bytes(ty, n).expect("row bytes");
        let mut row: Vec<u8> = (0..bytes).map(|_| rng.gen()).collect();
        let (block, block_bytes) = crate::blocks::layout(ty).expect("layout");
        let scale_offsets: &[usize] = match ty {
            GgmlType::Q4_K => &[0, 2],
            GgmlType::Q6_K => &[208],
            _ => &[0],
        };
        for b in 0..n / block {
            for &o in scale_offsets {
                let v = half::f16::from_f32(rng.gen_range(-0.05..0.05));
                row[b * block_bytes + o..b * block_bytes + o + 2]
                    .copy_from_slice(&v.to_bits().to_le_bytes());
            }
        }
        row
    }

    #[test]
    fn multi_row_kernels_equal_vec_dot_bit_for_bit() {
        let Some(kernels) = crate::testing::level_or_report(
            Level::Avx2,
            "multi_row_kernels_equal_vec_dot_bit_for_bit",
        ) else {
            return;
        };
        let mut rng = rand::rngs::StdRng::seed_from_u64(42);
        for ty in [
            GgmlType::Q4_0,
            GgmlType::Q5_0,
            GgmlType::Q8_0,
            GgmlType::Q4_K,
            GgmlType::Q6_K,
        ] {
            let n = 512;
            let Some(MatmulKernel::Rows(kernel)) = row_kernel(ty) else {
                panic!("{ty} has a row kernel");
            };
            let w = random_row(&mut rng, ty, n);
            let arb = activation_row_bytes(ty, n).expect("activation bytes");
            let mut acts = vec![0u8; MAX_TOKENS * arb];
            for t in 0..MAX_TOKENS {
                let x: Vec<f32> = (0..n).map(|_| rng.gen_range(-3.0..3.0)).collect();
                kernels
                    .quantize_activation_row(ty, &x, &mut acts[t * arb..(t + 1) * arb])
                    .expect("quantize");
            }
            for n_tok in 1..=MAX_TOKENS {
                let mut side = Vec::new();
                group_side_data(ty, &acts[..n_tok * arb], arb, n_tok, &mut side);
                let mut out = vec![0.0f32; n_tok];
                (kernel.dot)(n, &w, &acts, arb, &side, &mut out);
                for (t, &v) in out.iter().enumerate() {
                    let single = kernels.vec_dot(ty, n, &w, &acts[t * arb..(t + 1) * arb]);
                    assert_eq!(v.to_bits(), single.to_bits(), "{ty} token {t} of {n_tok}");
                }
            }
        }
    }
}
