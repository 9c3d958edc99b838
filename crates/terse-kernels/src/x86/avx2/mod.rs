//! The `avx2` level: AVX2 + FMA + F16C kernels for x86-64.
//!
//! The quantized dot products are ports of ggml's
//! `ggml-cpu/arch/x86/quants.c` AVX2 code: the integer part of every block is
//! computed exactly (so it equals the scalar reference bit for bit) and only
//! the order of the float accumulation differs. Where ggml shuffles a scale
//! out of a table, these broadcast it with `set1`, which gives the same lanes.
//!
//! Every `unsafe fn` here requires the CPU to have AVX2, FMA and F16C
//! ([`available`]) and its pointers to cover the number of blocks passed; the
//! safe wrappers at the bottom check the lengths and are only reachable
//! through [`KERNELS`], which [`crate::Kernels::for_level`] hands out only
//! after [`available`] said yes.

use crate::blocks::*;
use crate::matmul::MatmulKernel;
use crate::{reference, GgmlType, Kernels, Level, VecDotFn};
use half::f16;
use std::arch::x86_64::*;
use std::sync::OnceLock;

pub(crate) mod rows;

/// The `avx2` level's table.
pub(crate) static KERNELS: Kernels = Kernels {
    level: Level::Avx2,
    matmul_kernel,
    quantize_q8_0: checked_quantize_q8_0,
    quantize_q8_1: checked_quantize_q8_1,
    dot_f32: checked_dot_f32,
    dot_f16_rows: checked_dot_f16_rows,
    accumulate_weighted_f16_rows: checked_accumulate_weighted_f16_rows,
    f32_to_f16_row: checked_f32_to_f16_row,
    swiglu: checked_swiglu,
    exp_scaled_shifted: checked_exp_scaled_shifted,
    geglu_f16_table: checked_geglu_f16_table,
};

/// How a matmul of `weight` runs at this level: the multi-row kernels where
/// there is one, else this level's or the reference's dot product.
pub(crate) fn matmul_kernel(weight: GgmlType) -> Option<MatmulKernel> {
    rows::row_kernel(weight).or_else(|| {
        vec_dot_fn(weight)
            .or_else(|| reference::vec_dot_fn(weight))
            .map(MatmulKernel::Pairs)
    })
}

/// Whether this CPU runs the level (detected once, then cached).
pub(crate) fn available() -> bool {
    static AVAILABLE: OnceLock<bool> = OnceLock::new();
    *AVAILABLE.get_or_init(|| {
        is_x86_feature_detected!("avx2")
            && is_x86_feature_detected!("fma")
            && is_x86_feature_detected!("f16c")
    })
}

// ------------------------------------------------------------------ helpers

/// The f16 values at `a` and `b` as f32 in lanes 0 and 1.
///
/// Both halves go through one `vcvtph2ps` from a register filled by `vmovd`
/// (which zeroes the rest): converting a lone value lets LLVM merge it into
/// an arbitrary vector register, often the loop accumulator, and the false
/// dependency serialises the block loop.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn fp16x2(a: *const u8, b: *const u8) -> __m128 {
    let lo = (a as *const u16).read_unaligned() as u32;
    let hi = (b as *const u16).read_unaligned() as u32;
    _mm_cvtph_ps(_mm_cvtsi32_si128((lo | (hi << 16)) as i32))
}

/// Lane 0 times lane 1 of `v`, in lane 0.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn mul_lanes01(v: __m128) -> __m128 {
    _mm_mul_ss(v, _mm_movehdup_ps(v))
}

/// f16(a) · f16(b) broadcast to 8 lanes: the combined scale of a block pair.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn scale_product(a: *const u8, b: *const u8) -> __m256 {
    _mm256_broadcastss_ps(mul_lanes01(fp16x2(a, b)))
}

/// f16(a) · f16(b) as a scalar.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn fp16_product(a: *const u8, b: *const u8) -> f32 {
    _mm_cvtss_f32(mul_lanes01(fp16x2(a, b)))
}

/// The f16 at `p` as f32.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn fp16(p: *const u8) -> f32 {
    _mm_cvtss_f32(fp16x2(p, p))
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn load256(p: *const u8) -> __m256i {
    _mm256_loadu_si256(p as *const __m256i)
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn hsum_float_8(x: __m256) -> f32 {
    let mut res = _mm256_extractf128_ps(x, 1);
    res = _mm_add_ps(res, _mm256_castps256_ps128(x));
    res = _mm_add_ps(res, _mm_movehl_ps(res, res));
    res = _mm_add_ss(res, _mm_movehdup_ps(res));
    _mm_cvtss_f32(res)
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn hsum_i32_8(a: __m256i) -> i32 {
    let sum128 = _mm_add_epi32(_mm256_castsi256_si128(a), _mm256_extracti128_si256(a, 1));
    let hi64 = _mm_unpackhi_epi64(sum128, sum128);
    let sum64 = _mm_add_epi32(hi64, sum128);
    let hi32 = _mm_shuffle_epi32(sum64, 0b10_11_00_01);
    _mm_cvtsi128_si32(_mm_add_epi32(sum64, hi32))
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn hsum_i32_4(a: __m128i) -> i32 {
    let hi64 = _mm_unpackhi_epi64(a, a);
    let sum64 = _mm_add_epi32(hi64, a);
    let hi32 = _mm_shuffle_epi32(sum64, 0b10_11_00_01);
    _mm_cvtsi128_si32(_mm_add_epi32(sum64, hi32))
}

/// 32 nibbles (16 bytes: low nibbles first, then high) as 32 bytes in 0..=15.
///
/// The 16 bytes are loaded into both halves at once and only the upper half
/// is shifted (a per-lane shift; the bits it moves across bytes are masked
/// off): one instruction fewer than shifting a copy and inserting it.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn bytes_from_nibbles_32(p: *const u8) -> __m256i {
    let both = _mm256_broadcastsi128_si256(_mm_loadu_si128(p as *const __m128i));
    let high_half_shifted = _mm256_srlv_epi64(both, _mm256_set_epi64x(4, 4, 0, 0));
    _mm256_and_si256(_mm256_set1_epi8(0xF), high_half_shifted)
}

/// 32 bits as 32 bytes, each 0xFF where the bit is set and 0x00 elsewhere.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn bytes_from_bits_32(p: *const u8) -> __m256i {
    let x32 = (p as *const u32).read_unaligned();
    let shuf_mask = _mm256_set_epi64x(
        0x0303_0303_0303_0303,
        0x0202_0202_0202_0202,
        0x0101_0101_0101_0101,
        0,
    );
    let bytes = _mm256_shuffle_epi8(_mm256_set1_epi32(x32 as i32), shuf_mask);
    let bit_mask = _mm256_set1_epi64x(0x7fbf_dfef_f7fb_fdfe);
    _mm256_cmpeq_epi8(_mm256_or_si256(bytes, bit_mask), _mm256_set1_epi64x(-1))
}

/// 8 f16 values (as bits) widened to f32.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn load_h(p: *const u16) -> __m256 {
    _mm256_cvtph_ps(_mm_loadu_si128(p as *const __m128i))
}

/// 8 bf16 values (as bits) widened to f32: bf16 is the top half of an f32.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn load_bf(p: *const u16) -> __m256 {
    let wide = _mm256_cvtepu16_epi32(_mm_loadu_si128(p as *const __m128i));
    _mm256_castsi256_ps(_mm256_slli_epi32(wide, 16))
}

/// Unsigned × signed bytes, summed in groups of 4, as 8 floats.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn mul_sum_us8_pairs_float(ax: __m256i, sy: __m256i) -> __m256 {
    let dot = _mm256_maddubs_epi16(ax, sy);
    _mm256_cvtepi32_ps(_mm256_madd_epi16(_mm256_set1_epi16(1), dot))
}

/// Per-16-element scales of a 32-byte maddubs product: `lo` for elements
/// 0..16 (the low 128-bit lane), `hi` for 16..32.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn scale_pair(lo: i16, hi: i16) -> __m256i {
    _mm256_set_m128i(_mm_set1_epi16(hi), _mm_set1_epi16(lo))
}

/// The mins (widened to i16, in a register) and scales of a Q4_K/Q5_K block
/// (see [`k4_scales_mins`]). The vector is built from the unpacked words in
/// registers: storing 16 bytes and reloading them as one vector defeats store
/// forwarding, a stall that took a quarter of the Q4_K prefill kernel's time.
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn k4_mins_scales(packed: *const u8) -> (__m128i, [u8; 8]) {
    let [s0, s1, m0, m1] = k4_scales_mins_words(std::slice::from_raw_parts(packed, 12));
    let mins = _mm_cvtepu8_epi16(_mm_cvtsi64_si128(
        (u64::from(m1) << 32 | u64::from(m0)) as i64,
    ));
    (mins, (u64::from(s1) << 32 | u64::from(s0)).to_le_bytes())
}

// ------------------------------------------------------ 32-element formats

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn q4_1_q8_1(nb: usize, x: *const u8, y: *const u8) -> f32 {
    let mut acc = _mm256_setzero_ps();
    let mut summs = 0.0f32;
    for ib in 0..nb {
        let xb = x.add(ib * Q4_1_BYTES);
        let yb = y.add(ib * Q8_1_BYTES);
        summs += fp16_product(xb.add(2), yb.add(2));
        let d0d1 = scale_product(xb, yb);
        let qx = bytes_from_nibbles_32(xb.add(4));
        let qy = load256(yb.add(4));
        acc = _mm256_fmadd_ps(d0d1, mul_sum_us8_pairs_float(qx, qy), acc);
    }
    hsum_float_8(acc) + summs
}

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn q5_1_q8_1(nb: usize, x: *const u8, y: *const u8) -> f32 {
    let bit5 = _mm256_set1_epi8(0x10);
    let mut acc = _mm256_setzero_ps();
    let mut summs = 0.0f32;
    for ib in 0..nb {
        let xb = x.add(ib * Q5_1_BYTES);
        let yb = y.add(ib * Q8_1_BYTES);
        summs += fp16_product(xb.add(2), yb.add(2));
        let dxdy = scale_product(xb, yb);
        let bxhi = _mm256_and_si256(bytes_from_bits_32(xb.add(4)), bit5);
        let qx = _mm256_or_si256(bytes_from_nibbles_32(xb.add(8)), bxhi);
        let qy = load256(yb.add(4));
        acc = _mm256_fmadd_ps(mul_sum_us8_pairs_float(qx, qy), dxdy, acc);
    }
    hsum_float_8(acc) + summs
}

// ---------------------------------------------------------------- k-quants

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn q2_k_q8_k(nb: usize, x: *const u8, y: *const u8) -> f32 {
    let m3 = _mm256_set1_epi8(3);
    let m4 = _mm_set1_epi8(0xF);
    let mut acc = _mm256_setzero_ps();
    let mut sum_mins = 0.0f32;
    for i in 0..nb {
        let xb = x.add(i * Q2_K_BYTES);
        let yb = y.add(i * Q8_K_BYTES);
        let yd = (yb as *const f32).read_unaligned();
        let d_dmin = fp16x2(xb.add(80), xb.add(82));
        let dall = yd * _mm_cvtss_f32(d_dmin);
        let dmin = yd * _mm_cvtss_f32(_mm_movehdup_ps(d_dmin));

        let sc128 = _mm_loadu_si128(xb as *const __m128i);
        let mins = _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(sc128, 4), m4));
        let bsums = load256(yb.add(Q8_K_BSUMS));
        sum_mins += dmin * hsum_i32_8(_mm256_madd_epi16(mins, bsums)) as f32;

        let sc = std::slice::from_raw_parts(xb, 16);
        let mut q2 = xb.add(16);
        let mut q8 = yb.add(Q8_K_QS);
        let mut sumi = _mm256_setzero_si256();
        for j in 0..2 {
            let q2bits = load256(q2);
            q2 = q2.add(32);
            for k in 0..4 {
                let q2k = _mm256_and_si256(
                    _mm256_srl_epi16(q2bits, _mm_cvtsi32_si128(2 * k as i32)),
                    m3,
                );
                let p = _mm256_maddubs_epi16(q2k, load256(q8));
                q8 = q8.add(32);
                let scale = scale_pair(
                    (sc[8 * j + 2 * k] & 0xF) as i16,
                    (sc[8 * j + 2 * k + 1] & 0xF) as i16,
                );
                sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(scale, p));
            }
        }
        acc = _mm256_fmadd_ps(_mm256_set1_ps(dall), _mm256_cvtepi32_ps(sumi), acc);
    }
    hsum_float_8(acc) - sum_mins
}

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn q3_k_q8_k(nb: usize, x: *const u8, y: *const u8) -> f32 {
    let m3 = _mm256_set1_epi8(3);
    let four = _mm256_set1_epi8(4);
    let zero = _mm256_setzero_si256();
    let mut acc = _mm256_setzero_ps();
    for i in 0..nb {
        let xb = x.add(i * Q3_K_BYTES);
        let yb = y.add(i * Q8_K_BYTES);
        let d = (yb as *const f32).read_unaligned() * fp16(xb.add(108));
        let scales = q3k_scales(std::slice::from_raw_parts(xb.add(96), 12));
        let hbits = load256(xb);
        let mut q3 = xb.add(32);
        let mut q8 = yb.add(Q8_K_QS);
        let mut sumi = _mm256_setzero_si256();
        let mut bit = 0;
        for j in 0..2 {
            let q3bits = load256(q3);
            q3 = q3.add(32);
            for k in 0..4 {
                let q3l = _mm256_and_si256(
                    _mm256_srl_epi16(q3bits, _mm_cvtsi32_si128(2 * k as i32)),
                    m3,
                );
                // The stored high bit is set when the value is not offset by -4.
                let mask = _mm256_set1_epi8((1u8 << bit) as i8);
                let q3h =
                    _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(hbits, mask), zero), four);
                bit += 1;
                let q8k = load256(q8);
                q8 = q8.add(32);
                let p16 = _mm256_sub_epi16(
                    _mm256_maddubs_epi16(q3l, q8k),
                    _mm256_maddubs_epi16(q3h, q8k),
                );
                let scale = scale_pair(
                    scales[8 * j + 2 * k] as i16,
                    scales[8 * j + 2 * k + 1] as i16,
                );
                sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(scale, p16));
            }
        }
        acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi), acc);
    }
    hsum_float_8(acc)
}

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn q5_k_q8_k(nb: usize, x: *const u8, y: *const u8) -> f32 {
    let m4 = _mm256_set1_epi8(0xF);
    let bit5 = _mm256_set1_epi8(0x10);
    let mut acc = _mm256_setzero_ps();
    let mut summs = 0.0f32;
    for i in 0..nb {
        let xb = x.add(i * Q5_K_BYTES);
        let yb = y.add(i * Q8_K_BYTES);
        let yd = (yb as *const f32).read_unaligned();
        let d_dmin = fp16x2(xb, xb.add(2));
        let d = yd * _mm_cvtss_f32(d_dmin);
        let dmin = -yd * _mm_cvtss_f32(_mm_movehdup_ps(d_dmin));
        let (mins, sm) = k4_mins_scales(xb.add(4));
        let q8sums = load256(yb.add(Q8_K_BSUMS));
        let q8s = _mm_hadd_epi16(
            _mm256_castsi256_si128(q8sums),
            _mm256_extracti128_si256(q8sums, 1),
        );
        let prod = _mm_madd_epi16(mins, q8s);
        summs += dmin * hsum_i32_4(prod) as f32;

        let hbits = load256(xb.add(16));
        let mut q5 = xb.add(48);
        let mut q8 = yb.add(Q8_K_QS);
        let mut sumi = _mm256_setzero_si256();
        for j in 0..QK_K / 64 {
            let scale_0 = _mm256_set1_epi16(sm[2 * j] as i16);
            let scale_1 = _mm256_set1_epi16(sm[2 * j + 1] as i16);
            let q5bits = load256(q5);
            q5 = q5.add(32);
            let hmask0 = _mm256_set1_epi8((1u8 << (2 * j)) as i8);
            let hmask1 = _mm256_set1_epi8((1u8 << (2 * j + 1)) as i8);
            let q5h_0 = _mm256_and_si256(
                _mm256_cmpeq_epi8(_mm256_and_si256(hbits, hmask0), hmask0),
                bit5,
            );
            let q5h_1 = _mm256_and_si256(
                _mm256_cmpeq_epi8(_mm256_and_si256(hbits, hmask1), hmask1),
                bit5,
            );
            let q5_0 = _mm256_add_epi8(_mm256_and_si256(q5bits, m4), q5h_0);
            let q5_1 = _mm256_add_epi8(_mm256_and_si256(_mm256_srli_epi16(q5bits, 4), m4), q5h_1);
            let p16_0 = _mm256_madd_epi16(scale_0, _mm256_maddubs_epi16(q5_0, load256(q8)));
            let p16_1 = _mm256_madd_epi16(scale_1, _mm256_maddubs_epi16(q5_1, load256(q8.add(32))));
            q8 = q8.add(64);
            sumi = _mm256_add_epi32(sumi, _mm256_add_epi32(p16_0, p16_1));
        }
        acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi), acc);
    }
    hsum_float_8(acc) + summs
}

/// Scales `2p` and `2p + 1` of a Q6_K block, from its sixteen scales widened
/// to i16 (`scales16`), laid out like [`scale_pair`]. Shuffling them out of
/// the vector is cheaper than a scalar load and broadcast per scale.
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn q6_k_scale_pair(scales16: __m256i, p: usize) -> __m256i {
    let pair = _mm256_permutevar8x32_epi32(scales16, _mm256_set1_epi32(p as i32));
    _mm256_shuffle_epi8(
        pair,
        _mm256_setr_epi8(
            0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, //
            2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3,
        ),
    )
}

/// Q6_K quants are stored +32: the integer sum of a block starts at
/// `-32 · Σ scale_s · bsum_s` (its sixteen 16-element groups), so the inner loop
/// multiplies the stored quants directly instead of re-centring every product.
#[inline]
#[target_feature(enable = "avx2")]
pub(crate) unsafe fn q6_k_offset(scales16: __m256i, bsums: *const u8) -> __m256i {
    // |scale · bsum| <= 128 · 2048: two of them times 32 stay far inside i32.
    let scaled = _mm256_madd_epi16(scales16, load256(bsums));
    _mm256_sub_epi32(_mm256_setzero_si256(), _mm256_slli_epi32(scaled, 5))
}

// ------------------------------------------------------------------ floats

/// Σ a[i]·b[i] over `n` f32 values at unaligned pointers.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn dot_f32(n: usize, a: *const f32, b: *const f32) -> f32 {
    let mut acc0 = _mm256_setzero_ps();
    let mut acc1 = _mm256_setzero_ps();
    let mut acc2 = _mm256_setzero_ps();
    let mut acc3 = _mm256_setzero_ps();
    let mut i = 0;
    while i + 32 <= n {
        acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(a.add(i)), _mm256_loadu_ps(b.add(i)), acc0);
        acc1 = _mm256_fmadd_ps(
            _mm256_loadu_ps(a.add(i + 8)),
            _mm256_loadu_ps(b.add(i + 8)),
            acc1,
        );
        acc2 = _mm256_fmadd_ps(
            _mm256_loadu_ps(a.add(i + 16)),
            _mm256_loadu_ps(b.add(i + 16)),
            acc2,
        );
        acc3 = _mm256_fmadd_ps(
            _mm256_loadu_ps(a.add(i + 24)),
            _mm256_loadu_ps(b.add(i + 24)),
            acc3,
        );
        i += 32;
    }
    while i + 8 <= n {
        acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(a.add(i)), _mm256_loadu_ps(b.add(i)), acc0);
        i += 8;
    }
    let mut sum = hsum_float_8(_mm256_add_ps(
        _mm256_add_ps(acc0, acc1),
        _mm256_add_ps(acc2, acc3),
    ));
    while i < n {
        sum += a.add(i).read_unaligned() * b.add(i).read_unaligned();
        i += 1;
    }
    sum
}

/// out[g] = Σᵢ f32(key[i])·q[g·n + i] for g < rows; `key` holds f16 bits. Each key
/// vector is widened once for two query rows at a time. Every row sums in the same
/// order as a lone dot product (four accumulators over 32-value strides): attention
/// is sensitive enough that grouping heads should not move a result.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn dot_f16_rows(
    n: usize,
    key: *const u16,
    q: *const f32,
    rows: usize,
    out: *mut f32,
) {
    let mut g = 0;
    while g < rows {
        let (qg, og) = (q.add(g * n), out.add(g));
        if rows - g == 1 {
            dot_f16_rows_n::<1>(n, key, qg, og);
        } else {
            dot_f16_rows_n::<2>(n, key, qg, og);
        }
        g += 2;
    }
}

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dot_f16_rows_n<const M: usize>(n: usize, key: *const u16, q: *const f32, out: *mut f32) {
    let mut acc = [[_mm256_setzero_ps(); 4]; M];
    let mut i = 0;
    while i + 32 <= n {
        let keys = [0, 8, 16, 24].map(|s| load_h(key.add(i + s)));
        for (r, acc_r) in acc.iter_mut().enumerate() {
            for (s, (a, k)) in acc_r.iter_mut().zip(keys).enumerate() {
                *a = _mm256_fmadd_ps(k, _mm256_loadu_ps(q.add(r * n + i + 8 * s)), *a);
            }
        }
        i += 32;
    }
    while i + 8 <= n {
        let k = load_h(key.add(i));
        for (r, acc_r) in acc.iter_mut().enumerate() {
            acc_r[0] = _mm256_fmadd_ps(k, _mm256_loadu_ps(q.add(r * n + i)), acc_r[0]);
        }
        i += 8;
    }
    for (r, [a0, a1, a2, a3]) in acc.into_iter().enumerate() {
        let mut sum = hsum_float_8(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
        for j in i..n {
            sum += fp16(key.add(j) as *const u8) * q.add(r * n + j).read_unaligned();
        }
        *out.add(r) = sum;
    }
}

/// Σ f32(a[i])·b[i] over `n` values; `a` holds bf16 bits.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dot_bf16_f32(n: usize, a: *const u16, b: *const f32) -> f32 {
    let mut acc0 = _mm256_setzero_ps();
    let mut acc1 = _mm256_setzero_ps();
    let mut i = 0;
    while i + 16 <= n {
        acc0 = _mm256_fmadd_ps(load_bf(a.add(i)), _mm256_loadu_ps(b.add(i)), acc0);
        acc1 = _mm256_fmadd_ps(load_bf(a.add(i + 8)), _mm256_loadu_ps(b.add(i + 8)), acc1);
        i += 16;
    }
    let mut sum = hsum_float_8(_mm256_add_ps(acc0, acc1));
    while i < n {
        let bits = (a.add(i).read_unaligned() as u32) << 16;
        sum += f32::from_bits(bits) * b.add(i).read_unaligned();
        i += 1;
    }
    sum
}

/// acc[g·n + i] += Σ_p w[p·heads + g]·f32(x[p·n + i]) for g < heads, p < rows;
/// `x` holds f16 bits. Heads go in groups of up to eight, whose partial sums
/// stay in registers while every value row is widened once per group.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn accumulate_weighted_f16_rows(
    n: usize,
    heads: usize,
    rows: usize,
    acc: *mut f32,
    w: *const f32,
    x: *const u16,
) {
    let mut g = 0;
    while g < heads {
        let (acc, w) = (acc.add(g * n), w.add(g));
        match heads - g {
            1 => weighted_rows_n::<1>(n, heads, rows, acc, w, x),
            2 => weighted_rows_n::<2>(n, heads, rows, acc, w, x),
            3 => weighted_rows_n::<3>(n, heads, rows, acc, w, x),
            4 => weighted_rows_n::<4>(n, heads, rows, acc, w, x),
            5 => weighted_rows_n::<5>(n, heads, rows, acc, w, x),
            6 => weighted_rows_n::<6>(n, heads, rows, acc, w, x),
            7 => weighted_rows_n::<7>(n, heads, rows, acc, w, x),
            _ => weighted_rows_n::<8>(n, heads, rows, acc, w, x),
        }
        g += 8;
    }
}

/// [`accumulate_weighted_f16_rows`] for `M` heads starting at `acc` and `w`
/// (whose rows are still `heads` weights apart).
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn weighted_rows_n<const M: usize>(
    n: usize,
    heads: usize,
    rows: usize,
    acc: *mut f32,
    w: *const f32,
    x: *const u16,
) {
    let mut i = 0;
    while i + 8 <= n {
        let mut sums = [_mm256_setzero_ps(); M];
        for p in 0..rows {
            let xv = load_h(x.add(p * n + i));
            for (g, sum) in sums.iter_mut().enumerate() {
                *sum = _mm256_fmadd_ps(_mm256_set1_ps(*w.add(p * heads + g)), xv, *sum);
            }
        }
        for (g, sum) in sums.into_iter().enumerate() {
            let o = acc.add(g * n + i);
            _mm256_storeu_ps(o, _mm256_add_ps(_mm256_loadu_ps(o), sum));
        }
        i += 8;
    }
    for j in i..n {
        for g in 0..M {
            let mut sum = 0.0f32;
            for p in 0..rows {
                sum += *w.add(p * heads + g) * fp16(x.add(p * n + j) as *const u8);
            }
            *acc.add(g * n + j) += sum;
        }
    }
}

/// dst[i] = f16 bits of src[i] (round to nearest even) over `n` values.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn f32_to_f16(n: usize, src: *const f32, dst: *mut u16) {
    let mut i = 0;
    while i + 8 <= n {
        let h = _mm256_cvtps_ph(_mm256_loadu_ps(src.add(i)), _MM_FROUND_TO_NEAREST_INT);
        _mm_storeu_si128(dst.add(i) as *mut __m128i, h);
        i += 8;
    }
    while i < n {
        let h = _mm_cvtps_ph(_mm_set_ss(*src.add(i)), _MM_FROUND_TO_NEAREST_INT);
        *dst.add(i) = _mm_extract_epi16(h, 0) as u16;
        i += 1;
    }
}

// ------------------------------------------------------------ exponentials

/// e^x in 8 lanes, within about 1.5 ulp: the polynomial of ARM's optimized
/// routines that ggml's `ggml_v_expf` uses (ln 2 split in two for the range
/// reduction, a degree-5 polynomial, exact scaling by 2^n). Inputs whose
/// scaling would leave the normal range (|n| > 126) take a slower tail that
/// splits the scale in two, so large arguments give inf and very negative ones
/// 0 or denormals instead of garbage.
#[inline]
#[target_feature(enable = "avx2,fma")]
pub(crate) unsafe fn exp_ps(x: __m256) -> __m256 {
    let f = _mm256_set1_ps;
    let round_bias = f(f32::from_bits(0x4b40_0000)); // 0x1.8p23: rounds to an integer
    let z = _mm256_fmadd_ps(x, f(std::f32::consts::LOG2_E), round_bias);
    let n = _mm256_sub_ps(z, round_bias);
    // b = x - n·ln2, with ln2 in a high and a low part.
    let b = _mm256_fnmadd_ps(
        n,
        f(f32::from_bits(0x35bf_be8e)), // 0x1.7f7d1cp-20
        _mm256_fnmadd_ps(n, f(f32::from_bits(0x3f31_7200)), x), // 0x1.62e4p-1
    );
    let e = _mm256_slli_epi32(_mm256_castps_si256(z), 23);
    let k = _mm256_castsi256_ps(_mm256_add_epi32(e, _mm256_castps_si256(f(1.0))));
    let abs_n = _mm256_andnot_ps(f(-0.0), n);
    let out_of_range = _mm256_cmp_ps::<_CMP_GT_OQ>(abs_n, f(126.0));
    let u = _mm256_mul_ps(b, b);
    let j = _mm256_fmadd_ps(
        _mm256_fmadd_ps(
            _mm256_fmadd_ps(
                f(f32::from_bits(0x3c07_2010)), // 0x1.0e4020p-7
                b,
                f(f32::from_bits(0x3d2b_9f17)), // 0x1.573e2ep-5
            ),
            u,
            _mm256_fmadd_ps(
                f(f32::from_bits(0x3e2a_af33)), // 0x1.555e66p-3
                b,
                f(f32::from_bits(0x3eff_fedb)), // 0x1.fffdb6p-2
            ),
        ),
        u,
        _mm256_mul_ps(f(f32::from_bits(0x3f7f_fff6)), b), // 0x1.ffffecp-1
    );
    if _mm256_movemask_ps(out_of_range) == 0 {
        return _mm256_fmadd_ps(j, k, k);
    }
    let negative = _mm256_castps_si256(_mm256_cmp_ps::<_CMP_LE_OQ>(n, _mm256_setzero_ps()));
    let d = _mm256_and_si256(negative, _mm256_set1_epi32(0x8200_0000u32 as i32));
    let s1 = _mm256_castsi256_ps(_mm256_add_epi32(d, _mm256_set1_epi32(0x7f00_0000)));
    let s2 = _mm256_castsi256_ps(_mm256_sub_epi32(e, d));
    let far = _mm256_cmp_ps::<_CMP_GT_OQ>(abs_n, f(192.0));
    let split = _mm256_mul_ps(_mm256_fmadd_ps(s2, j, s2), s1);
    let in_range = _mm256_fmadd_ps(k, j, k);
    _mm256_blendv_ps(
        _mm256_blendv_ps(in_range, split, out_of_range),
        _mm256_mul_ps(s1, s1),
        far,
    )
}

/// `f` over `n` values of `x` (read and written) and `y` (read), eight at a
/// time. The last partial group goes through `f` too, padded with zeros: an
/// element's result must not depend on where it falls in a call, or batching
/// tokens together (which moves the ends of the calls) would change results.
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn map_pairs_8(n: usize, x: *mut f32, y: *const f32, f: impl Fn(__m256, __m256) -> __m256) {
    let mut i = 0;
    while i + 8 <= n {
        let v = f(_mm256_loadu_ps(x.add(i)), _mm256_loadu_ps(y.add(i)));
        _mm256_storeu_ps(x.add(i), v);
        i += 8;
    }
    if i < n {
        let (mut xs, mut ys) = ([0.0f32; 8], [0.0f32; 8]);
        std::ptr::copy_nonoverlapping(x.add(i), xs.as_mut_ptr(), n - i);
        std::ptr::copy_nonoverlapping(y.add(i), ys.as_mut_ptr(), n - i);
        let v = f(_mm256_loadu_ps(xs.as_ptr()), _mm256_loadu_ps(ys.as_ptr()));
        _mm256_storeu_ps(xs.as_mut_ptr(), v);
        std::ptr::copy_nonoverlapping(xs.as_ptr(), x.add(i), n - i);
    }
}

/// gate[i] = gate[i] / (1 + e^-gate[i]) · up[i] over `n` values.
#[target_feature(enable = "avx2,fma")]
pub(crate) unsafe fn swiglu(n: usize, gate: *mut f32, up: *const f32) {
    let one = _mm256_set1_ps(1.0);
    map_pairs_8(n, gate, up, |g, u| {
        let e = exp_ps(_mm256_sub_ps(_mm256_setzero_ps(), g));
        _mm256_mul_ps(_mm256_div_ps(g, _mm256_add_ps(one, e)), u)
    });
}

/// x[i] = e^(x[i] · scale - shift[i]) over `n` values.
#[target_feature(enable = "avx2,fma")]
pub(crate) unsafe fn exp_scaled_shifted(n: usize, x: *mut f32, scale: f32, shift: *const f32) {
    let scale_v = _mm256_set1_ps(scale);
    map_pairs_8(n, x, shift, |v, s| exp_ps(_mm256_fmsub_ps(v, scale_v, s)));
}

/// gate[i] = T(gate[i]) · up[i] over `n` values, T read from the 65536-entry
/// `table` by the f16 bits of the input (0 at or below -10, the input at or
/// above 10): eight conversions in one instruction and a gather.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn geglu_f16_table(n: usize, gate: *mut f32, up: *const f32, table: *const f32) {
    let (low, high) = (_mm256_set1_ps(-10.0), _mm256_set1_ps(10.0));
    let mut i = 0;
    while i + 8 <= n {
        let x = _mm256_loadu_ps(gate.add(i));
        let bits = _mm256_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(x);
        let looked_up = _mm256_i32gather_ps::<4>(table, _mm256_cvtepu16_epi32(bits));
        let y = _mm256_blendv_ps(looked_up, x, _mm256_cmp_ps::<_CMP_GE_OQ>(x, high));
        let y = _mm256_andnot_ps(_mm256_cmp_ps::<_CMP_LE_OQ>(x, low), y);
        _mm256_storeu_ps(gate.add(i), _mm256_mul_ps(y, _mm256_loadu_ps(up.add(i))));
        i += 8;
    }
    crate::reference::geglu_f16_table(
        std::slice::from_raw_parts_mut(gate.add(i), n - i),
        std::slice::from_raw_parts(up.add(i), n - i),
        std::slice::from_raw_parts(table, 1 << 16),
    );
}

// ------------------------------------------------------ activation quantizers

/// ggml's x86 `quantize_row_q8_0`: unlike the `_ref` version it scales by
/// `127 / amax` and rounds ties to even (`_mm256_round_ps`), so a quant can
/// differ from the reference by one. This is what llama.cpp runs on x86.
/// Eight lanes at a time, with the same operations per element as a scalar
/// loop (so the same quants).
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn quantize_row_q8_0(src: &[f32], dst: &mut [u8]) {
    let sign_bit = _mm256_set1_ps(-0.0);
    for (x, y) in src.chunks_exact(QK).zip(dst.chunks_exact_mut(Q8_0_BYTES)) {
        let v = [0, 8, 16, 24].map(|i| _mm256_loadu_ps(x.as_ptr().add(i)));
        let abs_max = v.iter().fold(_mm256_setzero_ps(), |m, &vi| {
            _mm256_max_ps(m, _mm256_andnot_ps(sign_bit, vi))
        });
        let mut m4 = _mm_max_ps(
            _mm256_extractf128_ps(abs_max, 1),
            _mm256_castps256_ps128(abs_max),
        );
        m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
        m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
        let amax = _mm_cvtss_f32(m4);
        put_f16(y, 0, amax / 127.0);
        let id = _mm256_set1_ps(if amax != 0.0 { 127.0 / amax } else { 0.0 });
        let q = v.map(|vi| {
            _mm256_cvtps_epi32(_mm256_round_ps::<
                { _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC },
            >(_mm256_mul_ps(vi, id)))
        });
        // Packing interleaves the 128-bit lanes; the permute restores the order.
        let q16 = [
            _mm256_packs_epi32(q[0], q[1]),
            _mm256_packs_epi32(q[2], q[3]),
        ];
        let q8 = _mm256_packs_epi16(q16[0], q16[1]);
        let ordered = _mm256_permutevar8x32_epi32(q8, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
        _mm256_storeu_si256(y.as_mut_ptr().add(2) as *mut __m256i, ordered);
    }
}

/// ggml's x86 `quantize_row_q8_1` (same rounding as [`quantize_row_q8_0`]),
/// with `s = d · Σq`.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn quantize_row_q8_1(src: &[f32], dst: &mut [u8]) {
    for (x, y) in src.chunks_exact(QK).zip(dst.chunks_exact_mut(Q8_1_BYTES)) {
        let amax = x.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let d = amax / 127.0;
        let id = if amax != 0.0 { 127.0 / amax } else { 0.0 };
        put_f16(y, 0, d);
        let mut sum = 0i32;
        for (q, v) in y[4..].iter_mut().zip(x) {
            let qi = (v * id).round_ties_even() as i8;
            sum += qi as i32;
            *q = qi as u8;
        }
        put_f16(y, 2, d * sum as f32);
    }
}

// ------------------------------------------------------------ safe wrappers

/// Defines a safe vec_dot over whole blocks: checks both rows cover `n / $block`
/// blocks, then runs the AVX2 kernel.
macro_rules! block_dot {
    ($name:ident, $kernel:ident, $block:expr, $w_bytes:expr, $a_bytes:expr) => {
        fn $name(n: usize, w: &[u8], a: &[u8]) -> f32 {
            let nb = n / $block;
            assert!(
                w.len() >= nb * $w_bytes && a.len() >= nb * $a_bytes,
                "vec_dot: row shorter than n elements"
            );
            // SAFETY: both rows cover nb blocks (checked above) and this
            // function is only reachable through a table of a level that
            // requires `available()`.
            unsafe { $kernel(nb, w.as_ptr(), a.as_ptr()) }
        }
    };
}

block_dot!(dot_q4_1, q4_1_q8_1, QK, Q4_1_BYTES, Q8_1_BYTES);
block_dot!(dot_q5_1, q5_1_q8_1, QK, Q5_1_BYTES, Q8_1_BYTES);
block_dot!(dot_q2_k, q2_k_q8_k, QK_K, Q2_K_BYTES, Q8_K_BYTES);
block_dot!(dot_q3_k, q3_k_q8_k, QK_K, Q3_K_BYTES, Q8_K_BYTES);
block_dot!(dot_q5_k, q5_k_q8_k, QK_K, Q5_K_BYTES, Q8_K_BYTES);

fn dot_f32_weights(n: usize, w: &[u8], a: &[u8]) -> f32 {
    assert!(
        w.len() >= 4 * n && a.len() >= 4 * n,
        "vec_dot: row shorter than n elements"
    );
    // SAFETY: lengths checked; loads are unaligned; features as in `block_dot!`.
    unsafe { dot_f32(n, w.as_ptr() as *const f32, a.as_ptr() as *const f32) }
}

fn dot_f16_weights(n: usize, w: &[u8], a: &[u8]) -> f32 {
    assert!(
        w.len() >= 2 * n && a.len() >= 4 * n,
        "vec_dot: row shorter than n elements"
    );
    // SAFETY: as in `dot_f32_weights`.
    unsafe {
        let mut out = 0.0f32;
        dot_f16_rows(
            n,
            w.as_ptr() as *const u16,
            a.as_ptr() as *const f32,
            1,
            &mut out,
        );
        out
    }
}

fn dot_bf16_weights(n: usize, w: &[u8], a: &[u8]) -> f32 {
    assert!(
        w.len() >= 2 * n && a.len() >= 4 * n,
        "vec_dot: row shorter than n elements"
    );
    // SAFETY: as in `dot_f32_weights`.
    unsafe { dot_bf16_f32(n, w.as_ptr() as *const u16, a.as_ptr() as *const f32) }
}

/// The AVX2 dot product for `weight`, where there is one.
pub(crate) fn vec_dot_fn(weight: GgmlType) -> Option<VecDotFn> {
    Some(match weight {
        GgmlType::F32 => dot_f32_weights,
        GgmlType::F16 => dot_f16_weights,
        GgmlType::BF16 => dot_bf16_weights,
        GgmlType::Q4_1 => dot_q4_1,
        GgmlType::Q5_1 => dot_q5_1,
        GgmlType::Q2_K => dot_q2_k,
        GgmlType::Q3_K => dot_q3_k,
        GgmlType::Q5_K => dot_q5_k,
        _ => return None,
    })
}

// ----------------------------------------------------- the table's wrappers
//
// SAFETY (every wrapper): the lengths each kernel reads are checked here, and
// the wrappers are only reachable through a table of a level that requires
// `available()`.

pub(crate) fn checked_quantize_q8_0(src: &[f32], dst: &mut [u8]) {
    assert_eq!(src.len() / QK * Q8_0_BYTES, dst.len(), "quantize_row_q8_0");
    unsafe { quantize_row_q8_0(src, dst) }
}

pub(crate) fn checked_quantize_q8_1(src: &[f32], dst: &mut [u8]) {
    assert_eq!(src.len() / QK * Q8_1_BYTES, dst.len(), "quantize_row_q8_1");
    unsafe { quantize_row_q8_1(src, dst) }
}

pub(crate) fn checked_dot_f32(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "dot_f32: length mismatch");
    unsafe { dot_f32(a.len(), a.as_ptr(), b.as_ptr()) }
}

pub(crate) fn checked_dot_f16_rows(key: &[f16], queries: &[f32], out: &mut [f32]) {
    assert_eq!(queries.len(), out.len() * key.len(), "dot_f16_rows");
    // f16 is a transparent u16.
    unsafe {
        dot_f16_rows(
            key.len(),
            key.as_ptr() as *const u16,
            queries.as_ptr(),
            out.len(),
            out.as_mut_ptr(),
        )
    }
}

pub(crate) fn checked_accumulate_weighted_f16_rows(
    acc: &mut [f32],
    weights: &[f32],
    values: &[f16],
    n: usize,
    heads: usize,
    rows: usize,
) {
    assert!(
        acc.len() == heads * n && values.len() == rows * n && weights.len() == heads * rows,
        "accumulate_weighted_f16_rows: shape"
    );
    // f16 is a transparent u16.
    unsafe {
        accumulate_weighted_f16_rows(
            n,
            heads,
            rows,
            acc.as_mut_ptr(),
            weights.as_ptr(),
            values.as_ptr() as *const u16,
        )
    }
}

pub(crate) fn checked_f32_to_f16_row(src: &[f32], dst: &mut [f16]) {
    assert_eq!(src.len(), dst.len(), "f32_to_f16_row: length mismatch");
    // f16 is a transparent u16.
    unsafe { f32_to_f16(src.len(), src.as_ptr(), dst.as_mut_ptr() as *mut u16) }
}

pub(crate) fn checked_swiglu(gate: &mut [f32], up: &[f32]) {
    assert_eq!(gate.len(), up.len(), "swiglu: length mismatch");
    unsafe { swiglu(gate.len(), gate.as_mut_ptr(), up.as_ptr()) }
}

pub(crate) fn checked_exp_scaled_shifted(x: &mut [f32], scale: f32, shift: &[f32]) {
    assert_eq!(x.len(), shift.len(), "exp_scaled_shifted: length mismatch");
    unsafe { exp_scaled_shifted(x.len(), x.as_mut_ptr(), scale, shift.as_ptr()) }
}

pub(crate) fn checked_geglu_f16_table(gate: &mut [f32], up: &[f32], table: &[f32]) {
    assert!(
        gate.len() == up.len() && table.len() == 1 << 16,
        "geglu_f16_table: shape"
    );
    unsafe { geglu_f16_table(gate.len(), gate.as_mut_ptr(), up.as_ptr(), table.as_ptr()) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use half::f16;

    /// Relative error of `got` against `want`, with anything below the
    /// smallest normal treated as absolute.
    fn relative_error(got: f32, want: f32) -> f32 {
        (got - want).abs() / want.abs().max(f32::MIN_POSITIVE)
    }

    #[test]
    fn vector_exp_is_within_a_few_ulp_of_the_scalar_one_over_its_whole_range() {
        if crate::testing::level_or_report(
            Level::Avx2,
            "vector_exp_is_within_a_few_ulp_of_the_scalar_one_over_its_whole_range",
        )
        .is_none()
        {
            return;
        }
        // Every 997th f32 bit pattern between -104 and 89 (beyond: 0 and inf),
        // plus the ends and the points where the fast path hands over.
        let mut xs: Vec<f32> = (0..u32::MAX / 997)
            .map(|i| f32::from_bits(i * 997))
            .filter(|x| (-104.0..89.0).contains(x))
            .collect();
        xs.extend([
            0.0, -0.0, 87.3, 88.72, 88.8, 89.0, -87.3, -87.4, -103.9, -120.0, -1e4,
        ]);
        let mut out = xs.clone();
        let zeros = vec![0.0; xs.len()];
        // SAFETY: features checked; both buffers hold xs.len() values.
        unsafe { exp_scaled_shifted(xs.len(), out.as_mut_ptr(), 1.0, zeros.as_ptr()) };
        for (&x, &got) in xs.iter().zip(&out) {
            let want = x.exp();
            if want.is_infinite() {
                assert!(got.is_infinite(), "exp({x}) = {got}, want inf");
            } else {
                assert!(
                    relative_error(got, want) <= 4.0 * f32::EPSILON,
                    "exp({x}) = {got}, want {want}"
                );
            }
        }
    }

    #[test]
    fn vector_swiglu_matches_the_scalar_reference() {
        if crate::testing::level_or_report(
            Level::Avx2,
            "vector_swiglu_matches_the_scalar_reference",
        )
        .is_none()
        {
            return;
        }
        let gate: Vec<f32> = (0..1003).map(|i| (i as f32 - 500.0) * 0.037).collect();
        let up: Vec<f32> = (0..1003)
            .map(|i| ((i * 7919) % 211) as f32 / 50.0 - 2.0)
            .collect();
        let (mut fast, mut slow) = (gate.clone(), gate);
        // SAFETY: features checked; both buffers hold 1003 values.
        unsafe { swiglu(fast.len(), fast.as_mut_ptr(), up.as_ptr()) };
        crate::reference::swiglu(&mut slow, &up);
        for (i, (&f, &s)) in fast.iter().zip(&slow).enumerate() {
            assert!(
                relative_error(f, s) <= 8.0 * f32::EPSILON,
                "element {i}: {f} vs {s}"
            );
        }
    }

    #[test]
    fn an_element_gets_the_same_exp_and_swiglu_wherever_a_call_ends() {
        if crate::testing::level_or_report(
            Level::Avx2,
            "an_element_gets_the_same_exp_and_swiglu_wherever_a_call_ends",
        )
        .is_none()
        {
            return;
        }
        // Batching moves where calls start and end: an element in a partial last
        // group must get exactly what it gets inside a full group.
        let x: Vec<f32> = (0..37).map(|i| (i as f32 - 18.0) * 0.71).collect();
        let y: Vec<f32> = (0..37).map(|i| (i % 5) as f32 * 0.3 - 0.4).collect();
        // SAFETY (both closures): features checked; the buffers hold `len` values.
        let whole_then_split = |f: &dyn Fn(usize, *mut f32, *const f32)| {
            let mut whole = x.clone();
            f(whole.len(), whole.as_mut_ptr(), y.as_ptr());
            for split in 1..x.len() {
                let mut parts = x.clone();
                let (head, tail) = parts.split_at_mut(split);
                f(head.len(), head.as_mut_ptr(), y.as_ptr());
                f(tail.len(), tail.as_mut_ptr(), y[split..].as_ptr());
                for (i, (a, b)) in whole.iter().zip(&parts).enumerate() {
                    assert_eq!(
                        a.to_bits(),
                        b.to_bits(),
                        "element {i}, calls split at {split}"
                    );
                }
            }
        };
        whole_then_split(&|n, x, y| unsafe { swiglu(n, x, y) });
        whole_then_split(&|n, x, y| unsafe { exp_scaled_shifted(n, x, 0.9, y) });
    }

    #[test]
    fn vector_q8_0_quantizer_equals_its_scalar_form_bit_for_bit() {
        if crate::testing::level_or_report(
            Level::Avx2,
            "vector_q8_0_quantizer_equals_its_scalar_form_bit_for_bit",
        )
        .is_none()
        {
            return;
        }
        // Scales over many magnitudes, exact ties (x.5 after scaling), zeros.
        let mut src: Vec<f32> = (0..32 * 64)
            .map(|i: i32| ((i * 7919 % 4001) as f32 - 2000.0) * 10f32.powi(i % 9 - 6))
            .collect();
        src[..32].fill(0.0);
        for (i, v) in src[32..64].iter_mut().enumerate() {
            *v = i as f32 + 0.5 - 16.0;
        }
        let mut fast = vec![0u8; 64 * Q8_0_BYTES];
        // SAFETY: features checked above.
        unsafe { quantize_row_q8_0(&src, &mut fast) };
        for (b, (x, y)) in src
            .chunks_exact(QK)
            .zip(fast.chunks_exact(Q8_0_BYTES))
            .enumerate()
        {
            let amax = x.iter().fold(0.0f32, |m, v| m.max(v.abs()));
            let d = f16::from_f32(amax / 127.0).to_bits().to_le_bytes();
            assert_eq!(y[..2], d, "block {b} scale");
            let id = if amax != 0.0 { 127.0 / amax } else { 0.0 };
            for (i, (&q, v)) in y[2..].iter().zip(x).enumerate() {
                assert_eq!(
                    q as i8,
                    (v * id).round_ties_even() as i8,
                    "block {b} quant {i}"
                );
            }
        }
    }

    #[test]
    fn vector_geglu_table_lookup_equals_the_scalar_one_bit_for_bit() {
        if crate::testing::level_or_report(
            Level::Avx2,
            "vector_geglu_table_lookup_equals_the_scalar_one_bit_for_bit",
        )
        .is_none()
        {
            return;
        }
        let table: Vec<f32> = (0..=u16::MAX)
            .map(|b| f16::from_bits(b).to_f32() * 0.5 + 1.0)
            .collect();
        let mut gate: Vec<f32> = (0..2003).map(|i| (i as f32 - 1000.0) * 0.0131).collect();
        gate.extend([
            -10.0, 10.0, -9.999, 9.999, -1e6, 1e6, 0.0, -0.0, 65504.0, 1e-8,
        ]);
        let up: Vec<f32> = (0..gate.len())
            .map(|i| 1.0 + (i % 13) as f32 * 0.25)
            .collect();
        let (mut fast, mut slow) = (gate.clone(), gate);
        // SAFETY: features checked; the table covers every u16.
        unsafe { geglu_f16_table(fast.len(), fast.as_mut_ptr(), up.as_ptr(), table.as_ptr()) };
        crate::reference::geglu_f16_table(&mut slow, &up, &table);
        for (i, (f, s)) in fast.iter().zip(&slow).enumerate() {
            assert_eq!(f.to_bits(), s.to_bits(), "element {i}: {f} vs {s}");
        }
    }

    #[test]
    fn scalar_f16_conversion_is_exact_for_every_bit_pattern() {
        if crate::testing::level_or_report(
            Level::Avx2,
            "scalar_f16_conversion_is_exact_for_every_bit_pattern",
        )
        .is_none()
        {
            return;
        }
        for bits in 0..=u16::MAX {
            let want = f16::from_bits(bits).to_f32();
            // SAFETY: features checked above; reads two bytes from a local.
            let got = unsafe { fp16(bits.to_le_bytes().as_ptr()) };
            if want.is_nan() {
                assert!(got.is_nan(), "{bits:#06x}");
            } else {
                assert_eq!(got.to_bits(), want.to_bits(), "{bits:#06x}");
            }
        }
    }
}
