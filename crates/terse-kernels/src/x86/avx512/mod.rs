//! The `avx512` level: AVX-512 F/BW/VL/DQ + VNNI kernels for x86-64.
//!
//! The matmuls of the formats the default models use run as tiles of sixteen
//! weight rows on 512-bit integer dot products ([`tiles`]). Everything else
//! (the other weight formats, the activation quantizers, attention and the
//! activation functions) is the `avx2` level's code, which every CPU with
//! these features runs too.

use super::avx2;
use crate::matmul::MatmulKernel;
use crate::{GgmlType, Kernels, Level};
use std::sync::OnceLock;

mod tiles;

/// The `avx512` level's table.
pub(crate) static KERNELS: Kernels = Kernels {
    level: Level::Avx512,
    matmul_kernel,
    quantize_q8_0: avx2::checked_quantize_q8_0,
    quantize_q8_1: avx2::checked_quantize_q8_1,
    dot_f32: avx2::checked_dot_f32,
    dot_f16_rows: avx2::checked_dot_f16_rows,
    accumulate_weighted_f16_rows: avx2::checked_accumulate_weighted_f16_rows,
    f32_to_f16_row: avx2::checked_f32_to_f16_row,
    swiglu: avx2::checked_swiglu,
    exp_scaled_shifted: avx2::checked_exp_scaled_shifted,
    geglu_f16_table: avx2::checked_geglu_f16_table,
};

/// Whether this CPU runs the level (detected once, then cached).
pub(crate) fn available() -> bool {
    static AVAILABLE: OnceLock<bool> = OnceLock::new();
    *AVAILABLE.get_or_init(|| {
        avx2::available()
            && is_x86_feature_detected!("avx512f")
            && is_x86_feature_detected!("avx512bw")
            && is_x86_feature_detected!("avx512vl")
            && is_x86_feature_detected!("avx512dq")
            && is_x86_feature_detected!("avx512vnni")
    })
}

/// How a matmul of `weight` runs at this level: tiles where there is a tile
/// kernel, else as at the `avx2` level.
fn matmul_kernel(weight: GgmlType) -> Option<MatmulKernel> {
    tiles::tile_kernel(weight).or_else(|| avx2::matmul_kernel(weight))
}
