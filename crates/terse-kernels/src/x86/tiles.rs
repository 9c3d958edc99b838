//! One weight row against one to [`MAX_TOKENS`] activation rows at once: the
//! kernels of the formats the default models use (Q4_0, Q5_0, Q8_0, Q4_K,
//! Q6_K) for decode (one row), batched decode and prefill.
//!
//! A per-pair dot product would unpack every weight block again for each token;
//! here a block is unpacked once and dotted with every activation row, and the
//! independent per-token accumulators hide the latency of the float chain. What
//! can be derived from an activation row alone (f32 scales, block sums) comes
//! precomputed once per matmul ([`crate::activation_side_data`]). For each token
//! the operations are the same, in the same order, whatever the number of rows,
//! so every output is bit-identical to [`crate::vec_dot`] (the one-row call) —
//! batching never changes a result.

use super::*;
use crate::MultiDotFn;

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

/// The activation rows' block pointers for `N` tokens.
#[inline]
unsafe fn rows<const N: usize>(acts: *const u8, a_row_bytes: usize) -> [*const u8; N] {
    std::array::from_fn(|j| acts.add(j * a_row_bytes))
}

/// Kernels for the 32-element formats dotted with Q8_0 activations. `side`
/// holds, per token, the activation blocks' scales widened to f32 (`nb`
/// words) and, for the offset formats, `-offset · Σq` of every block (`nb`
/// more; see [`crate::activation_side_data`]).
///
/// - Q8_0 quants are signed: `maddubs` needs one unsigned operand, so the
///   weight's sign moves onto the activation (`sign`, as ggml does).
/// - Q4_0/Q5_0 quants are stored `+8`/`+16`, i.e. unsigned: they go into `maddubs`
///   as stored and the offset comes out once per block as `d · (-offset · Σq)`,
///   one FMA per block pair on two lanes, instead of two `sign`s per block.
///
/// Both scales of a block pair are widened by one conversion and multiplied
/// with the activation scales in one vector op: the combined scale of a block
/// was nine instructions when each f16 was converted and multiplied alone.
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
            let side_words = if OFFSET { 2 * nb } else { nb };
            let ys = rows::<N>(acts, a_row_bytes);
            let yd = |j: usize, b: usize| side.add(j * side_words + b);
            let yc = |j: usize, b: usize| side.add(j * side_words + nb + b);
            let mut acc = [_mm256_setzero_ps(); N];
            let mut acc_offset = [_mm_setzero_ps(); N];
            let mut first = 0;
            while first + 1 < nb {
                let (x0, x1) = (x.add(first * $w_bytes), x.add((first + 1) * $w_bytes));
                if N == 1 {
                    prefetch_ahead(x0);
                }
                let dx01 = fp16x2(x0, x1);
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
                    // Lanes 0 and 1: dx · dy of the two blocks (lanes 2, 3 are 0).
                    let d01 = _mm_mul_ps(dx01, load_f32x2(yd(j, first)));
                    let d0 = _mm256_broadcastss_ps(d01);
                    let d1 = _mm256_broadcastss_ps(_mm_movehdup_ps(d01));
                    let s0 = mul_sum_us8_pairs_float(
                        ax0,
                        matching_activation::<OFFSET>(load256(yb.add(2)), qx0),
                    );
                    let s1 = mul_sum_us8_pairs_float(
                        ax1,
                        matching_activation::<OFFSET>(load256(yb.add(Q8_0_BYTES + 2)), qx1),
                    );
                    acc[j] = _mm256_add_ps(acc[j], _mm256_fmadd_ps(d1, s1, _mm256_mul_ps(d0, s0)));
                    if OFFSET {
                        acc_offset[j] = _mm_fmadd_ps(d01, load_f32x2(yc(j, first)), acc_offset[j]);
                    }
                }
                first += 2;
            }
            if first < nb {
                let x0 = x.add(first * $w_bytes);
                // Lane 1 (the block's next two bytes) is unused; two distinct
                // loads keep LLVM from merging the conversion into a live
                // register (see `fp16x2`).
                let dx = fp16x2(x0, x0.add(2));
                let qx: __m256i = {
                    let $xb = x0;
                    $unpack
                };
                let ax = unsigned_operand::<OFFSET>(qx);
                for j in 0..N {
                    let yb = ys[j].add(first * Q8_0_BYTES);
                    // Lane 0: dx · dy; zeros above (`mul_ss` would keep dx there).
                    let d = _mm_set_ss(_mm_cvtss_f32(dx) * *yd(j, first));
                    let s = mul_sum_us8_pairs_float(
                        ax,
                        matching_activation::<OFFSET>(load256(yb.add(2)), qx),
                    );
                    acc[j] = _mm256_fmadd_ps(_mm256_broadcastss_ps(d), s, acc[j]);
                    if OFFSET {
                        acc_offset[j] = _mm_fmadd_ps(d, _mm_load_ss(yc(j, first)), acc_offset[j]);
                    }
                }
            }
            for j in 0..N {
                let offset = _mm_add_ss(acc_offset[j], _mm_movehdup_ps(acc_offset[j]));
                out[j] = hsum_float_8(acc[j]) + _mm_cvtss_f32(offset);
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

/// Two f32 at `p` in lanes 0 and 1, zeros above.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn load_f32x2(p: *const f32) -> __m128 {
    _mm_castpd_ps(_mm_load_sd(p as *const f64))
}

q8_0_family!(q4_0_rows, Q4_0_BYTES, offset: true, |xb| bytes_from_nibbles_32(xb.add(2)));
q8_0_family!(q5_0_rows, Q5_0_BYTES, offset: true, |xb| {
    let bit4 = _mm256_and_si256(bytes_from_bits_32(xb.add(2)), _mm256_set1_epi8(0x10));
    _mm256_or_si256(bytes_from_nibbles_32(xb.add(6)), bit4)
});
q8_0_family!(q8_0_rows, Q8_0_BYTES, offset: false, |xb| load256(xb.add(2)));

/// `sums32` holds each token's per-block 32-element activation sums (four
/// words per block, token-major, see [`crate::activation_side_data`]): folding
/// them out of `bsums` for every weight row cost as much as the dot products
/// themselves.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn q4_k_rows<const N: usize>(
    nb: usize,
    x: *const u8,
    acts: *const u8,
    a_row_bytes: usize,
    sums32: *const f32,
    out: &mut [f32],
) {
    let ys = rows::<N>(acts, a_row_bytes);
    let m4 = _mm256_set1_epi8(0xF);
    let mut acc = [_mm256_setzero_ps(); N];
    let mut acc_m = [_mm_setzero_ps(); N];
    for i in 0..nb {
        let xb = x.add(i * Q4_K_BYTES);
        let d_dmin = fp16x2(xb, xb.add(2));
        let (xd, xdmin) = (
            _mm_cvtss_f32(d_dmin),
            _mm_cvtss_f32(_mm_movehdup_ps(d_dmin)),
        );
        let (mins, sm) = k4_mins_scales(xb.add(4));
        let mut sumi = [_mm256_setzero_si256(); N];
        for k in 0..QK_K / 64 {
            let scale_l = _mm256_set1_epi16(sm[2 * k] as i16);
            let scale_h = _mm256_set1_epi16(sm[2 * k + 1] as i16);
            if N == 1 {
                prefetch_ahead(xb.add(16 + 32 * k));
            }
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
        for j in 0..N {
            let yd = (ys[j].add(i * Q8_K_BYTES) as *const f32).read_unaligned();
            let q8s = _mm_loadu_si128(sums32.add((j * nb + i) * 4) as *const __m128i);
            let prod = _mm_madd_epi16(mins, q8s);
            acc_m[j] = _mm_fmadd_ps(_mm_set1_ps(-yd * xdmin), _mm_cvtepi32_ps(prod), acc_m[j]);
            acc[j] = _mm256_fmadd_ps(_mm256_set1_ps(yd * xd), _mm256_cvtepi32_ps(sumi[j]), acc[j]);
        }
    }
    for j in 0..N {
        let mut m = _mm_add_ps(acc_m[j], _mm_movehl_ps(acc_m[j], acc_m[j]));
        m = _mm_add_ss(m, _mm_movehdup_ps(m));
        out[j] = hsum_float_8(acc[j]) + _mm_cvtss_f32(m);
    }
}

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn q6_k_rows<const N: usize>(
    nb: usize,
    x: *const u8,
    acts: *const u8,
    a_row_bytes: usize,
    _side: *const f32,
    out: &mut [f32],
) {
    let ys = rows::<N>(acts, a_row_bytes);
    let m4 = _mm256_set1_epi8(0xF);
    let m3 = _mm256_set1_epi8(3);
    let mut acc = [_mm256_setzero_ps(); N];
    for i in 0..nb {
        let xb = x.add(i * Q6_K_BYTES);
        let xd = fp16(xb.add(208));
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
            let d = (ys[j].add(i * Q8_K_BYTES) as *const f32).read_unaligned() * xd;
            acc[j] = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi[j]), acc[j]);
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
    ($name:ident, $kernel:ident, $block:expr, $w_bytes:expr, $a_bytes:expr, $side_words:expr) => {
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
                    && act_side.len() >= n_tok * nb * $side_words,
                "multi-row dot: rows shorter than n elements"
            );
            let (x, y, side) = (w.as_ptr(), acts.as_ptr(), act_side.as_ptr());
            // SAFETY: every row covers nb blocks (checked above) and this function
            // is only reachable through `multi_dot_fn`, which requires `available()`.
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

multi_dot!(multi_q4_0, q4_0_rows, QK, Q4_0_BYTES, Q8_0_BYTES, 2);
multi_dot!(multi_q5_0, q5_0_rows, QK, Q5_0_BYTES, Q8_0_BYTES, 2);
multi_dot!(multi_q8_0, q8_0_rows, QK, Q8_0_BYTES, Q8_0_BYTES, 1);
multi_dot!(multi_q4_k, q4_k_rows, QK_K, Q4_K_BYTES, Q8_K_BYTES, 4);
multi_dot!(multi_q6_k, q6_k_rows, QK_K, Q6_K_BYTES, Q8_K_BYTES, 0);

/// The multi-row kernel for `weight`, where one exists on this CPU.
pub(crate) fn multi_dot_fn(weight: GgmlType) -> Option<MultiDotFn> {
    if !available() {
        return None;
    }
    Some(match weight {
        GgmlType::Q4_0 => multi_q4_0,
        GgmlType::Q5_0 => multi_q5_0,
        GgmlType::Q8_0 => multi_q8_0,
        GgmlType::Q4_K => multi_q4_k,
        GgmlType::Q6_K => multi_q6_k,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{activation_row_bytes, quantize_activation_row, vec_dot};
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
        if !available() {
            return;
        }
        let mut rng = rand::rngs::StdRng::seed_from_u64(42);
        for ty in [
            GgmlType::Q4_0,
            GgmlType::Q5_0,
            GgmlType::Q8_0,
            GgmlType::Q4_K,
            GgmlType::Q6_K,
        ] {
            let n = 512;
            let f = multi_dot_fn(ty).expect("kernel");
            let w = random_row(&mut rng, ty, n);
            let arb = activation_row_bytes(ty, n).expect("activation bytes");
            let mut acts = vec![0u8; MAX_TOKENS * arb];
            for t in 0..MAX_TOKENS {
                let x: Vec<f32> = (0..n).map(|_| rng.gen_range(-3.0..3.0)).collect();
                quantize_activation_row(ty, &x, &mut acts[t * arb..(t + 1) * arb])
                    .expect("quantize");
            }
            let mut scales = Vec::new();
            for t in 0..MAX_TOKENS {
                crate::activation_side_data(ty, &acts[t * arb..(t + 1) * arb], &mut scales);
            }
            for n_tok in 1..=MAX_TOKENS {
                let mut out = vec![0.0f32; n_tok];
                f(n, &w, &acts, arb, &scales, &mut out);
                for (t, &v) in out.iter().enumerate() {
                    let single = vec_dot(ty, n, &w, &acts[t * arb..(t + 1) * arb]);
                    assert_eq!(v.to_bits(), single.to_bits(), "{ty} token {t} of {n_tok}");
                }
            }
        }
    }
}
