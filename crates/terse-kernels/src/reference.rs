//! Plain scalar kernels: straight ports of ggml's `*_ref` quantizers,
//! `dequantize_row_*` and the `ggml_vec_dot_*_generic` dot products.
//!
//! They are the specification the fast levels are tested against, and the
//! `scalar` level (every CPU's fallback, and what `TERSE_KERNELS=scalar`
//! runs). Loops keep ggml's index structure (and its float accumulation
//! order) so they can be compared line by line with the C sources.
#![allow(clippy::needless_range_loop)]

use crate::blocks::*;
use crate::matmul::MatmulKernel;
use crate::{check_row, vec_dot_type, GgmlType, KernelError, Kernels, Level};
use half::f16;

/// The `scalar` level's table: every kernel of this module.
pub(crate) static KERNELS: Kernels = Kernels {
    level: Level::Scalar,
    matmul_kernel: |weight| vec_dot_fn(weight).map(MatmulKernel::Pairs),
    quantize_q8_0: quantize_row_q8_0,
    quantize_q8_1: quantize_row_q8_1,
    dot_f32,
    dot_f16_rows,
    accumulate_weighted_f16_rows: |acc, weights, values, n, _, _| {
        accumulate_weighted_f16_rows(acc, weights, values, n)
    },
    f32_to_f16_row,
    swiglu,
    exp_scaled_shifted,
    geglu_f16_table,
};

/// Quantizes one f32 activation row into the `vec_dot_type` of `weight`
/// with ggml's reference quantizers (`quantize_row_q8_0_ref`, `…q8_1_ref`,
/// `…q8_K_ref`); for float weights the row is copied as little-endian f32.
pub fn quantize_activation_row(
    weight: GgmlType,
    src: &[f32],
    dst: &mut [u8],
) -> Result<(), KernelError> {
    let act = vec_dot_type(weight).ok_or(KernelError::UnsupportedType { ty: weight })?;
    check_row(act, src.len(), dst.len(), "activation row bytes")?;
    quantize_row(act, src, dst);
    Ok(())
}

/// Quantizes `src` into `dst` of format `act` (lengths already checked).
pub(crate) fn quantize_row(act: GgmlType, src: &[f32], dst: &mut [u8]) {
    match act {
        GgmlType::Q8_0 => quantize_row_q8_0(src, dst),
        GgmlType::Q8_1 => quantize_row_q8_1(src, dst),
        GgmlType::Q8_K => quantize_row_q8_k(src, dst),
        _ => copy_f32_row(src, dst),
    }
}

/// Dequantizes one row of `dst.len()` elements of type `ty` from `src`.
pub fn dequantize_row(ty: GgmlType, src: &[u8], dst: &mut [f32]) -> Result<(), KernelError> {
    check_row(ty, dst.len(), src.len(), "quantized row bytes")?;
    dequantize(ty, src, dst)
}

/// Dequantizes `src` into `dst` (lengths already checked).
pub(crate) fn dequantize(ty: GgmlType, src: &[u8], dst: &mut [f32]) -> Result<(), KernelError> {
    match ty {
        GgmlType::F32 => {
            for (y, x) in dst.iter_mut().zip(src.chunks_exact(4)) {
                *y = f32_at(x, 0);
            }
        }
        GgmlType::F16 => {
            for (y, x) in dst.iter_mut().zip(src.chunks_exact(2)) {
                *y = f16_at(x, 0);
            }
        }
        GgmlType::BF16 => {
            for (y, x) in dst.iter_mut().zip(src.chunks_exact(2)) {
                *y = bf16_at(x, 0);
            }
        }
        GgmlType::Q4_0 => dequantize_q4_0(src, dst),
        GgmlType::Q4_1 => dequantize_q4_1(src, dst),
        GgmlType::Q5_0 => dequantize_q5_0(src, dst),
        GgmlType::Q5_1 => dequantize_q5_1(src, dst),
        GgmlType::Q8_0 => dequantize_q8_0(src, dst),
        GgmlType::Q8_1 => dequantize_q8_1(src, dst),
        GgmlType::Q2_K => dequantize_q2_k(src, dst),
        GgmlType::Q3_K => dequantize_q3_k(src, dst),
        GgmlType::Q4_K => dequantize_q4_k(src, dst),
        GgmlType::Q5_K => dequantize_q5_k(src, dst),
        GgmlType::Q6_K => dequantize_q6_k(src, dst),
        GgmlType::Q8_K => dequantize_q8_k(src, dst),
        _ => return Err(KernelError::UnsupportedType { ty }),
    }
    Ok(())
}

/// Dot product of one weight row (`n` elements of `weight`) with one
/// activation row in `vec_dot_type(weight)` form.
///
/// # Panics
/// If `weight` is unsupported, `n` is not a whole number of blocks, or a row
/// is shorter than `n` elements need.
pub fn vec_dot(weight: GgmlType, n: usize, w_row: &[u8], act_row: &[u8]) -> f32 {
    let f =
        vec_dot_fn(weight).unwrap_or_else(|| panic!("vec_dot: unsupported weight type {weight}"));
    crate::table::checked_vec_dot(weight, n, w_row, act_row, |w, a| f(n, w, a))
}

/// A scalar vec_dot: `(n, weight row, activation row)`, lengths already checked.
pub(crate) type RefVecDot = fn(usize, &[u8], &[u8]) -> f32;

/// The reference dot product for `weight`, if supported.
pub(crate) fn vec_dot_fn(weight: GgmlType) -> Option<RefVecDot> {
    Some(match weight {
        GgmlType::F32 => vec_dot_f32,
        GgmlType::F16 => vec_dot_f16,
        GgmlType::BF16 => vec_dot_bf16,
        GgmlType::Q4_0 => vec_dot_q4_0_q8_0,
        GgmlType::Q4_1 => vec_dot_q4_1_q8_1,
        GgmlType::Q5_0 => vec_dot_q5_0_q8_0,
        GgmlType::Q5_1 => vec_dot_q5_1_q8_1,
        GgmlType::Q8_0 => vec_dot_q8_0_q8_0,
        GgmlType::Q2_K => vec_dot_q2_k_q8_k,
        GgmlType::Q3_K => vec_dot_q3_k_q8_k,
        GgmlType::Q4_K => vec_dot_q4_k_q8_k,
        GgmlType::Q5_K => vec_dot_q5_k_q8_k,
        GgmlType::Q6_K => vec_dot_q6_k_q8_k,
        _ => return None,
    })
}

// ---------------------------------------------------------------- quantize

fn copy_f32_row(src: &[f32], dst: &mut [u8]) {
    for (y, x) in dst.chunks_exact_mut(4).zip(src) {
        y.copy_from_slice(&x.to_le_bytes());
    }
}

/// `quantize_row_q8_0_ref`.
pub(crate) fn quantize_row_q8_0(src: &[f32], dst: &mut [u8]) {
    for (x, y) in src.chunks_exact(QK).zip(dst.chunks_exact_mut(Q8_0_BYTES)) {
        let mut amax = 0.0f32;
        for &v in x {
            amax = amax.max(v.abs());
        }
        let d = amax / 127.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        put_f16(y, 0, d);
        for j in 0..QK {
            // roundf: half away from zero.
            y[2 + j] = (x[j] * id).round() as i8 as u8;
        }
    }
}

/// `quantize_row_q8_1_ref`: like Q8_0 plus `s = d * Σq`.
pub(crate) fn quantize_row_q8_1(src: &[f32], dst: &mut [u8]) {
    for (x, y) in src.chunks_exact(QK).zip(dst.chunks_exact_mut(Q8_1_BYTES)) {
        let mut amax = 0.0f32;
        for &v in x {
            amax = amax.max(v.abs());
        }
        let d = amax / 127.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        put_f16(y, 0, d);
        let mut sum = 0i32;
        for j in 0..QK / 2 {
            let v0 = (x[j] * id).round() as i8;
            let v1 = (x[QK / 2 + j] * id).round() as i8;
            y[4 + j] = v0 as u8;
            y[4 + QK / 2 + j] = v1 as u8;
            sum += v0 as i32 + v1 as i32;
        }
        put_f16(y, 2, sum as f32 * d);
    }
}

/// `quantize_row_q8_K_ref`: scale from the signed value of largest
/// magnitude, ties-to-even rounding, and per-16 sums of the quants.
pub(crate) fn quantize_row_q8_k(src: &[f32], dst: &mut [u8]) {
    for (x, y) in src.chunks_exact(QK_K).zip(dst.chunks_exact_mut(Q8_K_BYTES)) {
        let mut max = 0.0f32;
        let mut amax = 0.0f32;
        for &v in x {
            let ax = v.abs();
            if ax > amax {
                amax = ax;
                max = v;
            }
        }
        if amax == 0.0 {
            // ggml leaves bsums untouched here; zero is what they sum to.
            y.fill(0);
            continue;
        }
        let iscale = -127.0 / max;
        for j in 0..QK_K {
            let v = nearest_int(iscale * x[j]);
            y[Q8_K_QS + j] = v.min(127) as i8 as u8;
        }
        for j in 0..QK_K / 16 {
            let mut sum = 0i32;
            for ii in 0..16 {
                sum += y[Q8_K_QS + j * 16 + ii] as i8 as i32;
            }
            let off = Q8_K_BSUMS + 2 * j;
            y[off..off + 2].copy_from_slice(&(sum as i16).to_le_bytes());
        }
        y[0..4].copy_from_slice(&(1.0 / iscale).to_le_bytes());
    }
}

// -------------------------------------------------------------- dequantize

fn dequantize_q4_0(src: &[u8], dst: &mut [f32]) {
    for (x, y) in src.chunks_exact(Q4_0_BYTES).zip(dst.chunks_exact_mut(QK)) {
        let d = f16_at(x, 0);
        for j in 0..QK / 2 {
            let x0 = (x[2 + j] & 0x0F) as i32 - 8;
            let x1 = (x[2 + j] >> 4) as i32 - 8;
            y[j] = x0 as f32 * d;
            y[j + QK / 2] = x1 as f32 * d;
        }
    }
}

fn dequantize_q4_1(src: &[u8], dst: &mut [f32]) {
    for (x, y) in src.chunks_exact(Q4_1_BYTES).zip(dst.chunks_exact_mut(QK)) {
        let d = f16_at(x, 0);
        let m = f16_at(x, 2);
        for j in 0..QK / 2 {
            let x0 = (x[4 + j] & 0x0F) as i32;
            let x1 = (x[4 + j] >> 4) as i32;
            y[j] = x0 as f32 * d + m;
            y[j + QK / 2] = x1 as f32 * d + m;
        }
    }
}

fn dequantize_q5_0(src: &[u8], dst: &mut [f32]) {
    for (x, y) in src.chunks_exact(Q5_0_BYTES).zip(dst.chunks_exact_mut(QK)) {
        let d = f16_at(x, 0);
        let qh = u32_at(x, 2);
        for j in 0..QK / 2 {
            let xh_0 = (((qh >> j) << 4) & 0x10) as u8;
            let xh_1 = ((qh >> (j + 12)) & 0x10) as u8;
            let x0 = ((x[6 + j] & 0x0F) | xh_0) as i32 - 16;
            let x1 = ((x[6 + j] >> 4) | xh_1) as i32 - 16;
            y[j] = x0 as f32 * d;
            y[j + QK / 2] = x1 as f32 * d;
        }
    }
}

fn dequantize_q5_1(src: &[u8], dst: &mut [f32]) {
    for (x, y) in src.chunks_exact(Q5_1_BYTES).zip(dst.chunks_exact_mut(QK)) {
        let d = f16_at(x, 0);
        let m = f16_at(x, 2);
        let qh = u32_at(x, 4);
        for j in 0..QK / 2 {
            let xh_0 = (((qh >> j) << 4) & 0x10) as u8;
            let xh_1 = ((qh >> (j + 12)) & 0x10) as u8;
            let x0 = ((x[8 + j] & 0x0F) | xh_0) as i32;
            let x1 = ((x[8 + j] >> 4) | xh_1) as i32;
            y[j] = x0 as f32 * d + m;
            y[j + QK / 2] = x1 as f32 * d + m;
        }
    }
}

fn dequantize_q8_0(src: &[u8], dst: &mut [f32]) {
    for (x, y) in src.chunks_exact(Q8_0_BYTES).zip(dst.chunks_exact_mut(QK)) {
        let d = f16_at(x, 0);
        for j in 0..QK {
            y[j] = x[2 + j] as i8 as f32 * d;
        }
    }
}

fn dequantize_q8_1(src: &[u8], dst: &mut [f32]) {
    for (x, y) in src.chunks_exact(Q8_1_BYTES).zip(dst.chunks_exact_mut(QK)) {
        let d = f16_at(x, 0);
        for j in 0..QK {
            y[j] = x[4 + j] as i8 as f32 * d;
        }
    }
}

fn dequantize_q2_k(src: &[u8], dst: &mut [f32]) {
    for (x, y) in src.chunks_exact(Q2_K_BYTES).zip(dst.chunks_exact_mut(QK_K)) {
        let scales = &x[0..16];
        let d = f16_at(x, 80);
        let min = f16_at(x, 82);
        let mut out = 0;
        let mut is = 0;
        for n in 0..QK_K / 128 {
            let q = &x[16 + 32 * n..16 + 32 * n + 32];
            for shift in [0, 2, 4, 6] {
                for half in 0..2 {
                    let sc = scales[is];
                    is += 1;
                    let dl = d * (sc & 0xF) as f32;
                    let ml = min * (sc >> 4) as f32;
                    for l in 0..16 {
                        y[out] = dl * ((q[16 * half + l] >> shift) & 3) as f32 - ml;
                        out += 1;
                    }
                }
            }
        }
    }
}

fn dequantize_q3_k(src: &[u8], dst: &mut [f32]) {
    for (x, y) in src.chunks_exact(Q3_K_BYTES).zip(dst.chunks_exact_mut(QK_K)) {
        let hm = &x[0..32];
        let scales = q3k_scales(&x[96..108]);
        let d_all = f16_at(x, 108);
        let mut m = 1u8;
        let mut out = 0;
        let mut is = 0;
        for n in 0..QK_K / 128 {
            let q = &x[32 + 32 * n..32 + 32 * n + 32];
            for shift in [0, 2, 4, 6] {
                for half in 0..2 {
                    let dl = d_all * scales[is] as f32;
                    is += 1;
                    for l in 0..16 {
                        let low = ((q[16 * half + l] >> shift) & 3) as i32;
                        let high = if hm[16 * half + l] & m != 0 { 0 } else { 4 };
                        y[out] = dl * (low - high) as f32;
                        out += 1;
                    }
                }
                m <<= 1;
            }
        }
    }
}

fn dequantize_q4_k(src: &[u8], dst: &mut [f32]) {
    for (x, y) in src.chunks_exact(Q4_K_BYTES).zip(dst.chunks_exact_mut(QK_K)) {
        let d = f16_at(x, 0);
        let min = f16_at(x, 2);
        let sm = k4_scales_mins(&x[4..16]);
        for j in 0..QK_K / 64 {
            let q = &x[16 + 32 * j..16 + 32 * j + 32];
            let d1 = d * sm[2 * j] as f32;
            let m1 = min * sm[8 + 2 * j] as f32;
            let d2 = d * sm[2 * j + 1] as f32;
            let m2 = min * sm[8 + 2 * j + 1] as f32;
            let y = &mut y[64 * j..64 * j + 64];
            for l in 0..32 {
                y[l] = d1 * (q[l] & 0xF) as f32 - m1;
                y[32 + l] = d2 * (q[l] >> 4) as f32 - m2;
            }
        }
    }
}

fn dequantize_q5_k(src: &[u8], dst: &mut [f32]) {
    for (x, y) in src.chunks_exact(Q5_K_BYTES).zip(dst.chunks_exact_mut(QK_K)) {
        let d = f16_at(x, 0);
        let min = f16_at(x, 2);
        let sm = k4_scales_mins(&x[4..16]);
        let qh = &x[16..48];
        let mut u1 = 1u8;
        let mut u2 = 2u8;
        for j in 0..QK_K / 64 {
            let ql = &x[48 + 32 * j..48 + 32 * j + 32];
            let d1 = d * sm[2 * j] as f32;
            let m1 = min * sm[8 + 2 * j] as f32;
            let d2 = d * sm[2 * j + 1] as f32;
            let m2 = min * sm[8 + 2 * j + 1] as f32;
            let y = &mut y[64 * j..64 * j + 64];
            for l in 0..32 {
                let h1 = if qh[l] & u1 != 0 { 16 } else { 0 };
                let h2 = if qh[l] & u2 != 0 { 16 } else { 0 };
                y[l] = d1 * ((ql[l] & 0xF) + h1) as f32 - m1;
                y[32 + l] = d2 * ((ql[l] >> 4) + h2) as f32 - m2;
            }
            u1 <<= 2;
            u2 <<= 2;
        }
    }
}

fn dequantize_q6_k(src: &[u8], dst: &mut [f32]) {
    for (x, y) in src.chunks_exact(Q6_K_BYTES).zip(dst.chunks_exact_mut(QK_K)) {
        let d = f16_at(x, 208);
        for n in 0..QK_K / 128 {
            let ql = &x[64 * n..64 * n + 64];
            let qh = &x[128 + 32 * n..128 + 32 * n + 32];
            let sc = &x[192 + 8 * n..192 + 8 * n + 8];
            let y = &mut y[128 * n..128 * n + 128];
            for l in 0..32 {
                let is = l / 16;
                let q1 = ((ql[l] & 0xF) | ((qh[l] & 3) << 4)) as i32 - 32;
                let q2 = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) as i32 - 32;
                let q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) as i32 - 32;
                let q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) as i32 - 32;
                y[l] = d * sc[is] as i8 as f32 * q1 as f32;
                y[l + 32] = d * sc[is + 2] as i8 as f32 * q2 as f32;
                y[l + 64] = d * sc[is + 4] as i8 as f32 * q3 as f32;
                y[l + 96] = d * sc[is + 6] as i8 as f32 * q4 as f32;
            }
        }
    }
}

fn dequantize_q8_k(src: &[u8], dst: &mut [f32]) {
    for (x, y) in src.chunks_exact(Q8_K_BYTES).zip(dst.chunks_exact_mut(QK_K)) {
        let d = f32_at(x, 0);
        for j in 0..QK_K {
            y[j] = d * x[Q8_K_QS + j] as i8 as f32;
        }
    }
}

// ------------------------------------------------------------ dot products

fn vec_dot_f32(n: usize, w: &[u8], a: &[u8]) -> f32 {
    let mut sum = 0.0f64;
    for i in 0..n {
        sum += (f32_at(w, 4 * i) * f32_at(a, 4 * i)) as f64;
    }
    sum as f32
}

fn vec_dot_f16(n: usize, w: &[u8], a: &[u8]) -> f32 {
    let mut sum = 0.0f64;
    for i in 0..n {
        sum += (f16_at(w, 2 * i) * f32_at(a, 4 * i)) as f64;
    }
    sum as f32
}

fn vec_dot_bf16(n: usize, w: &[u8], a: &[u8]) -> f32 {
    let mut sum = 0.0f64;
    for i in 0..n {
        sum += (bf16_at(w, 2 * i) * f32_at(a, 4 * i)) as f64;
    }
    sum as f32
}

fn vec_dot_q4_0_q8_0(n: usize, w: &[u8], a: &[u8]) -> f32 {
    let mut sumf = 0.0f32;
    for (x, y) in w
        .chunks_exact(Q4_0_BYTES)
        .zip(a.chunks_exact(Q8_0_BYTES))
        .take(n / QK)
    {
        let mut sumi0 = 0i32;
        let mut sumi1 = 0i32;
        for j in 0..QK / 2 {
            let v0 = (x[2 + j] & 0x0F) as i32 - 8;
            let v1 = (x[2 + j] >> 4) as i32 - 8;
            sumi0 += v0 * y[2 + j] as i8 as i32;
            sumi1 += v1 * y[2 + j + QK / 2] as i8 as i32;
        }
        let sumi = sumi0 + sumi1;
        sumf += sumi as f32 * f16_at(x, 0) * f16_at(y, 0);
    }
    sumf
}

fn vec_dot_q4_1_q8_1(n: usize, w: &[u8], a: &[u8]) -> f32 {
    let mut sumf = 0.0f32;
    for (x, y) in w
        .chunks_exact(Q4_1_BYTES)
        .zip(a.chunks_exact(Q8_1_BYTES))
        .take(n / QK)
    {
        let mut sumi0 = 0i32;
        let mut sumi1 = 0i32;
        for j in 0..QK / 2 {
            let v0 = (x[4 + j] & 0x0F) as i32;
            let v1 = (x[4 + j] >> 4) as i32;
            sumi0 += v0 * y[4 + j] as i8 as i32;
            sumi1 += v1 * y[4 + j + QK / 2] as i8 as i32;
        }
        let sumi = sumi0 + sumi1;
        sumf += (f16_at(x, 0) * f16_at(y, 0)) * sumi as f32 + f16_at(x, 2) * f16_at(y, 2);
    }
    sumf
}

fn vec_dot_q5_0_q8_0(n: usize, w: &[u8], a: &[u8]) -> f32 {
    let mut sumf = 0.0f32;
    for (x, y) in w
        .chunks_exact(Q5_0_BYTES)
        .zip(a.chunks_exact(Q8_0_BYTES))
        .take(n / QK)
    {
        let qh = u32_at(x, 2);
        let mut sumi0 = 0i32;
        let mut sumi1 = 0i32;
        for j in 0..QK / 2 {
            let xh_0 = (((qh & (1 << j)) >> j) << 4) as u8;
            let xh_1 = ((qh & (1 << (j + 16))) >> (j + 12)) as u8;
            let x0 = ((x[6 + j] & 0x0F) | xh_0) as i32 - 16;
            let x1 = ((x[6 + j] >> 4) | xh_1) as i32 - 16;
            sumi0 += x0 * y[2 + j] as i8 as i32;
            sumi1 += x1 * y[2 + j + QK / 2] as i8 as i32;
        }
        let sumi = sumi0 + sumi1;
        sumf += (f16_at(x, 0) * f16_at(y, 0)) * sumi as f32;
    }
    sumf
}

fn vec_dot_q5_1_q8_1(n: usize, w: &[u8], a: &[u8]) -> f32 {
    let mut sumf = 0.0f32;
    for (x, y) in w
        .chunks_exact(Q5_1_BYTES)
        .zip(a.chunks_exact(Q8_1_BYTES))
        .take(n / QK)
    {
        let qh = u32_at(x, 4);
        let mut sumi0 = 0i32;
        let mut sumi1 = 0i32;
        for j in 0..QK / 2 {
            let xh_0 = (((qh >> j) << 4) & 0x10) as u8;
            let xh_1 = ((qh >> (j + 12)) & 0x10) as u8;
            let x0 = ((x[8 + j] & 0xF) | xh_0) as i32;
            let x1 = ((x[8 + j] >> 4) | xh_1) as i32;
            sumi0 += x0 * y[4 + j] as i8 as i32;
            sumi1 += x1 * y[4 + j + QK / 2] as i8 as i32;
        }
        let sumi = sumi0 + sumi1;
        sumf += (f16_at(x, 0) * f16_at(y, 0)) * sumi as f32 + f16_at(x, 2) * f16_at(y, 2);
    }
    sumf
}

fn vec_dot_q8_0_q8_0(n: usize, w: &[u8], a: &[u8]) -> f32 {
    let mut sumf = 0.0f32;
    for (x, y) in w
        .chunks_exact(Q8_0_BYTES)
        .zip(a.chunks_exact(Q8_0_BYTES))
        .take(n / QK)
    {
        let mut sumi = 0i32;
        for j in 0..QK {
            sumi += x[2 + j] as i8 as i32 * y[2 + j] as i8 as i32;
        }
        sumf += sumi as f32 * (f16_at(x, 0) * f16_at(y, 0));
    }
    sumf
}

fn vec_dot_q2_k_q8_k(n: usize, w: &[u8], a: &[u8]) -> f32 {
    let mut sumf = 0.0f32;
    for (x, y) in w
        .chunks_exact(Q2_K_BYTES)
        .zip(a.chunks_exact(Q8_K_BYTES))
        .take(n / QK_K)
    {
        let sc = &x[0..16];
        let q8 = &y[Q8_K_QS..Q8_K_QS + QK_K];
        let mut summs = 0i32;
        for j in 0..16 {
            summs += i16_at(y, Q8_K_BSUMS + 2 * j) as i32 * (sc[j] >> 4) as i32;
        }
        let yd = f32_at(y, 0);
        let dall = yd * f16_at(x, 80);
        let dmin = yd * f16_at(x, 82);

        let mut isum = 0i32;
        let mut is = 0;
        let mut q8_off = 0;
        for k in 0..QK_K / 128 {
            let q2 = &x[16 + 32 * k..16 + 32 * k + 32];
            for shift in [0, 2, 4, 6] {
                let d = (sc[is] & 0xF) as i32;
                is += 1;
                let mut isuml = 0i32;
                for l in 0..16 {
                    isuml += q8[q8_off + l] as i8 as i32 * ((q2[l] >> shift) & 3) as i32;
                }
                isum += d * isuml;
                let d = (sc[is] & 0xF) as i32;
                is += 1;
                isuml = 0;
                for l in 16..32 {
                    isuml += q8[q8_off + l] as i8 as i32 * ((q2[l] >> shift) & 3) as i32;
                }
                isum += d * isuml;
                q8_off += 32;
            }
        }
        sumf += dall * isum as f32 - dmin * summs as f32;
    }
    sumf
}

/// Shared tail of the q3_K…q6_K generic dot products: `aux8` holds the 256
/// signed weights of a block, `scale(j)` the scale of its j-th group of 16.
/// Accumulates into ggml's 8 integer lanes, exactly as the C code does.
fn dot_aux8(aux8: &[i8; QK_K], q8: &[u8], scale: impl Fn(usize) -> i32) -> [i32; 8] {
    let mut aux32 = [0i32; 8];
    for j in 0..QK_K / 16 {
        let s = scale(j);
        for half in 0..2 {
            let base = 16 * j + 8 * half;
            for l in 0..8 {
                let aux16 = (q8[base + l] as i8 as i16) * (aux8[base + l] as i16);
                aux32[l] += s * aux16 as i32;
            }
        }
    }
    aux32
}

fn vec_dot_q3_k_q8_k(n: usize, w: &[u8], a: &[u8]) -> f32 {
    let mut sums = [0.0f32; 8];
    let mut aux8 = [0i8; QK_K];
    for (x, y) in w
        .chunks_exact(Q3_K_BYTES)
        .zip(a.chunks_exact(Q8_K_BYTES))
        .take(n / QK_K)
    {
        let hm = &x[0..32];
        let mut m = 1u8;
        let mut out = 0;
        for chunk in 0..QK_K / 128 {
            let q3 = &x[32 + 32 * chunk..32 + 32 * chunk + 32];
            for shift in [0, 2, 4, 6] {
                for l in 0..32 {
                    let low = ((q3[l] >> shift) & 3) as i8;
                    aux8[out + l] = low - if hm[l] & m != 0 { 0 } else { 4 };
                }
                out += 32;
                m <<= 1;
            }
        }
        let scales = q3k_scales(&x[96..108]);
        let aux32 = dot_aux8(&aux8, &y[Q8_K_QS..Q8_K_QS + QK_K], |j| scales[j] as i32);
        let d = f16_at(x, 108) * f32_at(y, 0);
        for l in 0..8 {
            sums[l] += d * aux32[l] as f32;
        }
    }
    let mut sumf = 0.0f32;
    for s in sums {
        sumf += s;
    }
    sumf
}

fn vec_dot_q4_k_q8_k(n: usize, w: &[u8], a: &[u8]) -> f32 {
    let mut sums = [0.0f32; 8];
    let mut aux8 = [0i8; QK_K];
    let mut sumf = 0.0f32;
    for (x, y) in w
        .chunks_exact(Q4_K_BYTES)
        .zip(a.chunks_exact(Q8_K_BYTES))
        .take(n / QK_K)
    {
        for j in 0..QK_K / 64 {
            let q4 = &x[16 + 32 * j..16 + 32 * j + 32];
            for l in 0..32 {
                aux8[64 * j + l] = (q4[l] & 0xF) as i8;
                aux8[64 * j + 32 + l] = (q4[l] >> 4) as i8;
            }
        }
        let sm = k4_scales_mins(&x[4..16]);
        let mut sumi = 0i32;
        for j in 0..QK_K / 16 {
            sumi += i16_at(y, Q8_K_BSUMS + 2 * j) as i32 * sm[8 + j / 2] as i32;
        }
        let aux32 = dot_aux8(&aux8, &y[Q8_K_QS..Q8_K_QS + QK_K], |j| sm[j / 2] as i32);
        let yd = f32_at(y, 0);
        let d = f16_at(x, 0) * yd;
        for l in 0..8 {
            sums[l] += d * aux32[l] as f32;
        }
        let dmin = f16_at(x, 2) * yd;
        sumf -= dmin * sumi as f32;
    }
    for s in sums {
        sumf += s;
    }
    sumf
}

fn vec_dot_q5_k_q8_k(n: usize, w: &[u8], a: &[u8]) -> f32 {
    let mut sums = [0.0f32; 8];
    let mut aux8 = [0i8; QK_K];
    let mut sumf = 0.0f32;
    for (x, y) in w
        .chunks_exact(Q5_K_BYTES)
        .zip(a.chunks_exact(Q8_K_BYTES))
        .take(n / QK_K)
    {
        let hm = &x[16..48];
        let mut m = 1u8;
        for j in 0..QK_K / 64 {
            let q4 = &x[48 + 32 * j..48 + 32 * j + 32];
            for l in 0..32 {
                let h = if hm[l] & m != 0 { 16 } else { 0 };
                aux8[64 * j + l] = ((q4[l] & 0xF) + h) as i8;
            }
            m <<= 1;
            for l in 0..32 {
                let h = if hm[l] & m != 0 { 16 } else { 0 };
                aux8[64 * j + 32 + l] = ((q4[l] >> 4) + h) as i8;
            }
            m <<= 1;
        }
        let sm = k4_scales_mins(&x[4..16]);
        let mut sumi = 0i32;
        for j in 0..QK_K / 16 {
            sumi += i16_at(y, Q8_K_BSUMS + 2 * j) as i32 * sm[8 + j / 2] as i32;
        }
        let aux32 = dot_aux8(&aux8, &y[Q8_K_QS..Q8_K_QS + QK_K], |j| sm[j / 2] as i32);
        let yd = f32_at(y, 0);
        let d = f16_at(x, 0) * yd;
        for l in 0..8 {
            sums[l] += d * aux32[l] as f32;
        }
        let dmin = f16_at(x, 2) * yd;
        sumf -= dmin * sumi as f32;
    }
    for s in sums {
        sumf += s;
    }
    sumf
}

fn vec_dot_q6_k_q8_k(n: usize, w: &[u8], a: &[u8]) -> f32 {
    let mut sums = [0.0f32; 8];
    let mut aux8 = [0i8; QK_K];
    for (x, y) in w
        .chunks_exact(Q6_K_BYTES)
        .zip(a.chunks_exact(Q8_K_BYTES))
        .take(n / QK_K)
    {
        for chunk in 0..QK_K / 128 {
            let q4 = &x[64 * chunk..64 * chunk + 64];
            let qh = &x[128 + 32 * chunk..128 + 32 * chunk + 32];
            let a = &mut aux8[128 * chunk..128 * chunk + 128];
            for l in 0..32 {
                a[l] = ((q4[l] & 0xF) | ((qh[l] & 3) << 4)) as i8 - 32;
                a[l + 32] = ((q4[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) as i8 - 32;
                a[l + 64] = ((q4[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) as i8 - 32;
                a[l + 96] = ((q4[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) as i8 - 32;
            }
        }
        let scales = &x[192..208];
        let aux32 = dot_aux8(&aux8, &y[Q8_K_QS..Q8_K_QS + QK_K], |j| {
            scales[j] as i8 as i32
        });
        let d = f16_at(x, 208) * f32_at(y, 0);
        for l in 0..8 {
            sums[l] += d * aux32[l] as f32;
        }
    }
    let mut sumf = 0.0f32;
    for s in sums {
        sumf += s;
    }
    sumf
}

// ---------------------------------------------------------- float helpers

/// Σ a[i]·b[i], accumulated left to right in f32.
///
/// # Panics
/// If the lengths differ.
pub fn dot_f32(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "dot_f32: length mismatch");
    let mut sum = 0.0f32;
    for (x, y) in a.iter().zip(b) {
        sum += x * y;
    }
    sum
}

/// out[g] = Σᵢ f32(key[i])·queries[g·n + i], each accumulated left to right in f32.
///
/// # Panics
/// If `queries.len() != out.len() * key.len()`.
pub fn dot_f16_rows(key: &[f16], queries: &[f32], out: &mut [f32]) {
    assert_eq!(
        queries.len(),
        out.len() * key.len(),
        "dot_f16_rows: length mismatch"
    );
    for (o, query) in out.iter_mut().zip(queries.chunks_exact(key.len().max(1))) {
        let mut sum = 0.0f32;
        for (k, q) in key.iter().zip(query) {
            sum += k.to_f32() * q;
        }
        *o = sum;
    }
}

/// acc[g·n + i] += Σ_p weights[p·heads + g] · f32(values[p·n + i]) for every
/// head g (`acc.len() / n` of them) over the `values.len() / n` rows p: the
/// sum over p is formed first and then added to `acc`.
///
/// # Panics
/// If `n` is 0 or does not divide `acc` and `values`, or `weights` does not
/// hold one weight per row and head.
pub fn accumulate_weighted_f16_rows(acc: &mut [f32], weights: &[f32], values: &[f16], n: usize) {
    let (heads, rows) =
        crate::table::weighted_rows_shape(acc.len(), weights.len(), values.len(), n);
    for g in 0..heads {
        for i in 0..n {
            let sum: f32 = (0..rows)
                .map(|p| weights[p * heads + g] * values[p * n + i].to_f32())
                .sum();
            acc[g * n + i] += sum;
        }
    }
}

/// dst[i] = f16(src[i]), rounding to nearest even.
///
/// # Panics
/// If the lengths differ.
pub fn f32_to_f16_row(src: &[f32], dst: &mut [f16]) {
    assert_eq!(src.len(), dst.len(), "f32_to_f16_row: length mismatch");
    for (d, s) in dst.iter_mut().zip(src) {
        *d = f16::from_f32(*s);
    }
}

/// gate[i] = SiLU(gate[i]) · up[i] with SiLU(x) = x / (1 + e^-x).
///
/// # Panics
/// If `up` is shorter than `gate`.
pub fn swiglu(gate: &mut [f32], up: &[f32]) {
    assert!(up.len() >= gate.len(), "swiglu: up shorter than gate");
    for (g, &u) in gate.iter_mut().zip(up) {
        *g = *g / (1.0 + (-*g).exp()) * u;
    }
}

/// x[i] = e^(x[i] · scale - shift[i]) (the exponentials of a softmax).
///
/// # Panics
/// If `shift` is shorter than `x`.
pub fn exp_scaled_shifted(x: &mut [f32], scale: f32, shift: &[f32]) {
    assert!(
        shift.len() >= x.len(),
        "exp_scaled_shifted: shift shorter than x"
    );
    for (v, &s) in x.iter_mut().zip(shift) {
        *v = (*v * scale - s).exp();
    }
}

/// gate[i] = GELU(gate[i]) · up[i] with GELU read from `table`, indexed by the
/// f16 bits of the input (ggml's method): 0 at or below -10, the input itself
/// at or above 10.
///
/// # Panics
/// If `up` is shorter than `gate` or `table` does not hold 65536 values.
pub fn geglu_f16_table(gate: &mut [f32], up: &[f32], table: &[f32]) {
    assert!(
        up.len() >= gate.len(),
        "geglu_f16_table: up shorter than gate"
    );
    assert_eq!(table.len(), 1 << 16, "geglu_f16_table: table of every f16");
    for (g, &u) in gate.iter_mut().zip(up) {
        let x = *g;
        let y = if x <= -10.0 {
            0.0
        } else if x >= 10.0 {
            x
        } else {
            table[usize::from(f16::from_f32(x).to_bits())]
        };
        *g = y * u;
    }
}
