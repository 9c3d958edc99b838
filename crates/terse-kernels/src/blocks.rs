//! Byte layouts of the ggml block formats the kernels read and write.
//!
//! Blocks are handled as raw little-endian bytes (as they sit in a GGUF memory
//! map) rather than `#[repr(C)]` structs, so no alignment is assumed. The
//! offsets below mirror the struct definitions in ggml's `ggml-common.h`.

use crate::GgmlType;
use half::{bf16, f16};

/// Elements per block of the 32-element formats (Q4_0 … Q8_1).
pub(crate) const QK: usize = 32;
/// Elements per super-block of the k-quants (Q2_K … Q8_K).
pub(crate) const QK_K: usize = 256;

pub(crate) const Q4_0_BYTES: usize = 18; // d: f16, qs: [u8; 16]
pub(crate) const Q4_1_BYTES: usize = 20; // d: f16, m: f16, qs: [u8; 16]
pub(crate) const Q5_0_BYTES: usize = 22; // d: f16, qh: [u8; 4], qs: [u8; 16]
pub(crate) const Q5_1_BYTES: usize = 24; // d: f16, m: f16, qh: [u8; 4], qs: [u8; 16]
pub(crate) const Q8_0_BYTES: usize = 34; // d: f16, qs: [i8; 32]
pub(crate) const Q8_1_BYTES: usize = 36; // d: f16, s: f16, qs: [i8; 32]
pub(crate) const Q2_K_BYTES: usize = 84; // scales: [u8; 16], qs: [u8; 64], d: f16, dmin: f16
pub(crate) const Q3_K_BYTES: usize = 110; // hmask: [u8; 32], qs: [u8; 64], scales: [u8; 12], d: f16
pub(crate) const Q4_K_BYTES: usize = 144; // d: f16, dmin: f16, scales: [u8; 12], qs: [u8; 128]
pub(crate) const Q5_K_BYTES: usize = 176; // d: f16, dmin: f16, scales: [u8; 12], qh: [u8; 32], qs: [u8; 128]
pub(crate) const Q6_K_BYTES: usize = 210; // ql: [u8; 128], qh: [u8; 64], scales: [i8; 16], d: f16
pub(crate) const Q8_K_BYTES: usize = 292; // d: f32, qs: [i8; 256], bsums: [i16; 16]

/// Offsets inside a Q8_K block.
pub(crate) const Q8_K_QS: usize = 4;
pub(crate) const Q8_K_BSUMS: usize = 4 + QK_K;

/// Elements per block and bytes per block of the types the kernels handle
/// (weights and activation formats); `None` for anything else.
pub(crate) fn layout(ty: GgmlType) -> Option<(usize, usize)> {
    Some(match ty {
        GgmlType::F32 => (1, 4),
        GgmlType::F16 => (1, 2),
        GgmlType::BF16 => (1, 2),
        GgmlType::Q4_0 => (QK, Q4_0_BYTES),
        GgmlType::Q4_1 => (QK, Q4_1_BYTES),
        GgmlType::Q5_0 => (QK, Q5_0_BYTES),
        GgmlType::Q5_1 => (QK, Q5_1_BYTES),
        GgmlType::Q8_0 => (QK, Q8_0_BYTES),
        GgmlType::Q8_1 => (QK, Q8_1_BYTES),
        GgmlType::Q2_K => (QK_K, Q2_K_BYTES),
        GgmlType::Q3_K => (QK_K, Q3_K_BYTES),
        GgmlType::Q4_K => (QK_K, Q4_K_BYTES),
        GgmlType::Q5_K => (QK_K, Q5_K_BYTES),
        GgmlType::Q6_K => (QK_K, Q6_K_BYTES),
        GgmlType::Q8_K => (QK_K, Q8_K_BYTES),
        _ => return None,
    })
}

/// Bytes of `n` elements of `ty`, or `None` if `ty` is unknown here, `n` is
/// not a whole number of blocks, or the size overflows.
pub(crate) fn row_bytes(ty: GgmlType, n: usize) -> Option<usize> {
    let (block, bytes) = layout(ty)?;
    if !n.is_multiple_of(block) {
        return None;
    }
    (n / block).checked_mul(bytes)
}

/// Reads the little-endian f16 at `b[off..off + 2]` as f32.
#[inline(always)]
pub(crate) fn f16_at(b: &[u8], off: usize) -> f32 {
    f16::from_bits(u16::from_le_bytes([b[off], b[off + 1]])).to_f32()
}

/// Writes `v` rounded to f16 (round to nearest even, like ggml) at `b[off..off + 2]`.
#[inline(always)]
pub(crate) fn put_f16(b: &mut [u8], off: usize, v: f32) {
    b[off..off + 2].copy_from_slice(&f16::from_f32(v).to_bits().to_le_bytes());
}

/// Reads the little-endian f32 at `b[off..off + 4]`.
#[inline(always)]
pub(crate) fn f32_at(b: &[u8], off: usize) -> f32 {
    f32::from_le_bytes([b[off], b[off + 1], b[off + 2], b[off + 3]])
}

/// Reads the little-endian bf16 at `b[off..off + 2]` as f32.
#[inline(always)]
pub(crate) fn bf16_at(b: &[u8], off: usize) -> f32 {
    bf16::from_bits(u16::from_le_bytes([b[off], b[off + 1]])).to_f32()
}

/// Reads the little-endian u32 at `b[off..off + 4]`.
#[inline(always)]
pub(crate) fn u32_at(b: &[u8], off: usize) -> u32 {
    u32::from_le_bytes([b[off], b[off + 1], b[off + 2], b[off + 3]])
}

/// Reads the little-endian i16 at `b[off..off + 2]`.
#[inline(always)]
pub(crate) fn i16_at(b: &[u8], off: usize) -> i16 {
    i16::from_le_bytes([b[off], b[off + 1]])
}

/// ggml's `nearest_int`: round to nearest, ties to even, via the 1.5·2^23
/// trick (valid for |x| ≤ 2^22, which every caller guarantees).
#[inline(always)]
pub(crate) fn nearest_int(x: f32) -> i32 {
    let v = x + 12_582_912.0;
    (v.to_bits() & 0x007f_ffff) as i32 - 0x0040_0000
}

/// Unpacks the 8 six-bit scales and 8 six-bit mins of a Q4_K/Q5_K block from
/// its 12 packed bytes (ggml's `utmp` shuffle): returns `[scales.., mins..]`.
#[inline(always)]
pub(crate) fn k4_scales_mins(packed: &[u8]) -> [u8; 16] {
    let mut out = [0u8; 16];
    for (dst, word) in out.chunks_exact_mut(4).zip(k4_scales_mins_words(packed)) {
        dst.copy_from_slice(&word.to_le_bytes());
    }
    out
}

/// [`k4_scales_mins`] as four little-endian words, for SIMD code that moves
/// them straight into a register.
#[inline(always)]
pub(crate) fn k4_scales_mins_words(packed: &[u8]) -> [u32; 4] {
    const KMASK1: u32 = 0x3f3f_3f3f;
    const KMASK2: u32 = 0x0f0f_0f0f;
    const KMASK3: u32 = 0x0303_0303;
    let mut utmp = [u32_at(packed, 0), u32_at(packed, 4), u32_at(packed, 8), 0];
    utmp[3] = ((utmp[2] >> 4) & KMASK2) | (((utmp[1] >> 6) & KMASK3) << 4);
    let uaux = utmp[1] & KMASK1;
    utmp[1] = (utmp[2] & KMASK2) | (((utmp[0] >> 6) & KMASK3) << 4);
    utmp[2] = uaux;
    utmp[0] &= KMASK1;
    utmp
}

/// Unpacks the 16 six-bit scales of a Q3_K block (stored biased by 32) from
/// its 12 packed bytes and removes the bias.
#[inline(always)]
pub(crate) fn q3k_scales(packed: &[u8]) -> [i8; 16] {
    const KMASK1: u32 = 0x0303_0303;
    const KMASK2: u32 = 0x0f0f_0f0f;
    let a0 = u32_at(packed, 0);
    let a1 = u32_at(packed, 4);
    let tmp = u32_at(packed, 8);
    let words = [
        (a0 & KMASK2) | ((tmp & KMASK1) << 4),
        (a1 & KMASK2) | (((tmp >> 2) & KMASK1) << 4),
        ((a0 >> 4) & KMASK2) | (((tmp >> 4) & KMASK1) << 4),
        ((a1 >> 4) & KMASK2) | (((tmp >> 6) & KMASK1) << 4),
    ];
    let mut out = [0i8; 16];
    for (dst, word) in out.chunks_exact_mut(4).zip(words) {
        for (d, b) in dst.iter_mut().zip(word.to_le_bytes()) {
            *d = (b as i8).wrapping_sub(32);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_int_rounds_half_to_even() {
        assert_eq!(nearest_int(0.5), 0);
        assert_eq!(nearest_int(1.5), 2);
        assert_eq!(nearest_int(2.5), 2);
        assert_eq!(nearest_int(-0.5), 0);
        assert_eq!(nearest_int(-1.5), -2);
        assert_eq!(nearest_int(-126.7), -127);
        assert_eq!(nearest_int(3.49), 3);
    }

    #[test]
    fn k4_scales_match_get_scale_min_k4() {
        // get_scale_min_k4 from ggml-quants.c, the readable form of the shuffle.
        fn get_scale_min_k4(j: usize, q: &[u8]) -> (u8, u8) {
            if j < 4 {
                (q[j] & 63, q[j + 4] & 63)
            } else {
                (
                    (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4),
                    (q[j + 4] >> 4) | ((q[j] >> 6) << 4),
                )
            }
        }
        let packed: Vec<u8> = (0..12u32).map(|i| (i * 89 + 17) as u8).collect();
        let unpacked = k4_scales_mins(&packed);
        for j in 0..8 {
            let (sc, m) = get_scale_min_k4(j, &packed);
            assert_eq!(unpacked[j], sc, "scale {j}");
            assert_eq!(unpacked[8 + j], m, "min {j}");
        }
    }

    #[test]
    fn q3k_scales_match_bitwise_definition() {
        let packed: Vec<u8> = (0..12u32).map(|i| (i * 113 + 5) as u8).collect();
        let scales = q3k_scales(&packed);
        for (j, &s) in scales.iter().enumerate() {
            // quantize_row_q3_K_ref's packing, read back.
            let low = if j < 8 {
                packed[j] & 0xF
            } else {
                packed[j - 8] >> 4
            };
            let high = (packed[8 + j % 4] >> (2 * (j / 4))) & 3;
            assert_eq!(s as i32, (low | (high << 4)) as i32 - 32, "scale {j}");
        }
    }

    #[test]
    fn row_bytes_requires_whole_blocks() {
        assert_eq!(row_bytes(GgmlType::Q4_K, 512), Some(288));
        assert_eq!(row_bytes(GgmlType::Q8_K, 256), Some(292));
        assert_eq!(row_bytes(GgmlType::Q8_0, 33), None);
        assert_eq!(row_bytes(GgmlType::F32, 3), Some(12));
        assert_eq!(row_bytes(GgmlType::IQ4_NL, 32), None);
    }
}
