//! Tiles of [`ROWS`] weight rows against up to [`TOKENS`] activation rows:
//! the `avx512` kernels of the formats the default models use (Q4_0, Q5_0,
//! Q8_0, Q4_K, Q6_K), for decode, batched decode and prefill alike.
//!
//! A tile's lanes are weight rows. `prepare` unpacks sixteen rows into bytes
//! (quants made unsigned, the fifth and sixth bits merged in) and transposes
//! them so that one 512-bit register holds the same four elements of every
//! row; one `vpdpbusd` then multiplies them with four activation bytes
//! broadcast from memory, for all sixteen rows at once. Each lane so sums its
//! row's block exactly in integers, and the float work per block (scale,
//! accumulate) is one vector operation for sixteen rows, where the row-wise
//! AVX2 kernels spend one per row and also unpack the weights once per group
//! of tokens instead of once per matmul.
//!
//! Numerics, the same for every number of tokens and every row (so batching
//! never changes a result):
//! - Q4_0, Q5_0, Q8_0: the block's exact integer dot product (stored quants
//!   minus `offset · Σq`, the offset from the side data), then the
//!   reference's float operations in its order, so the result equals
//!   [`crate::reference`]'s bit for bit.
//! - Q4_K, Q6_K: the block's exact integer sum over its scaled sub-blocks
//!   (and for Q4_K the exact `Σ min · bsum`), converted once per block:
//!   `acc += (d · dy) · total` (Q4_K then `acc -= (dmin · dy) · mins`). The
//!   reference sums eight lanes per block instead, so these differ from it by
//!   float rounding only.

use crate::blocks::*;
use crate::matmul::{Line, MatmulKernel, TileKernel};
use crate::{GgmlType, WeightMatrix};
use std::arch::x86_64::*;

/// Weight rows per tile: the sixteen 32-bit lanes of a register.
pub(crate) const ROWS: usize = 16;
/// Most activation rows per call: sixteen accumulators in registers beside
/// the tile's weights.
pub(crate) const TOKENS: usize = 8;

/// Cache lines per prepared block: Q4_0/Q5_0/Q8_0 (eight registers of quants,
/// the row scales), Q4_K (64 of quants, eight of sub-block scales, eight of
/// mins, d and dmin), Q6_K (64 of quants, sixteen of scales, eight of scale
/// pairs, d).
const Q8_0_FAMILY_LINES: usize = 9;
const Q4_K_LINES: usize = 82;
const Q6_K_LINES: usize = 89;

/// The tile kernel for `weight`, where there is one.
pub(crate) fn tile_kernel(weight: GgmlType) -> Option<MatmulKernel> {
    let block32 = |prepare, compute, fused, side_data| TileKernel {
        rows: ROWS,
        tokens: TOKENS,
        prepared_lines: |cols| cols / QK * Q8_0_FAMILY_LINES,
        prepare,
        side_words: |cols| 2 * (cols / QK),
        side_data,
        compute,
        fused,
    };
    let k_quant = |lines: fn(usize) -> usize, prepare, compute, fused| TileKernel {
        rows: ROWS,
        tokens: TOKENS,
        prepared_lines: lines,
        prepare,
        side_words: |_| 0,
        side_data: |_, _, _, _| {},
        compute,
        fused,
    };
    Some(MatmulKernel::Tiles(match weight {
        GgmlType::Q4_0 => block32(prepare_q4_0, tile_q4_0, fused_q4_0, side_data_q8_0::<8>),
        GgmlType::Q5_0 => block32(prepare_q5_0, tile_q5_0, fused_q5_0, side_data_q8_0::<16>),
        GgmlType::Q8_0 => block32(prepare_q8_0, tile_q8_0, fused_q8_0, side_data_q8_0::<128>),
        GgmlType::Q4_K => k_quant(
            |cols| cols / QK_K * Q4_K_LINES,
            prepare_q4_k,
            tile_q4_k,
            fused_q4_k,
        ),
        GgmlType::Q6_K => k_quant(
            |cols| cols / QK_K * Q6_K_LINES,
            prepare_q6_k,
            tile_q6_k,
            fused_q6_k,
        ),
        _ => return None,
    }))
}

// ------------------------------------------------------------- side data

/// Q8_0 activations, per row and block: the scale widened to f32, then
/// `OFFSET · Σq` as an `i32` bit pattern (what the weights' stored offset
/// adds to the dot product of the stored quants; exact: |Σq| ≤ 32 · 128).
fn side_data_q8_0<const OFFSET: i32>(
    acts: &[u8],
    row_bytes: usize,
    rows: usize,
    out: &mut Vec<f32>,
) {
    for row in acts.chunks_exact(row_bytes).take(rows) {
        for block in row.chunks_exact(Q8_0_BYTES) {
            out.push(f16_at(block, 0));
            let sum: i32 = block[2..].iter().map(|&q| i32::from(q as i8)).sum();
            out.push(f32::from_bits((OFFSET * sum) as u32));
        }
    }
}

// --------------------------------------------------------------- helpers

/// The CPU features every function here needs (what
/// [`super::available`] checks).
macro_rules! avx512_fn {
    ($(#[$meta:meta])* unsafe fn $($rest:tt)*) => {
        $(#[$meta])*
        #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx2,fma,f16c")]
        unsafe fn $($rest)*
    };
}

/// Byte offsets (from the tile's first row) of the sixteen rows of the tile
/// starting at row `first`; rows past the matrix repeat its last row.
fn tile_rows(w: &WeightMatrix, first: usize) -> (*const u8, [usize; ROWS]) {
    let row_bytes = w.row_bytes();
    assert!(
        first < w.rows
            && w.rows
                .checked_mul(row_bytes)
                .is_some_and(|b| w.data.len() >= b),
        "tile of rows from {first}: the matrix has {} rows of {row_bytes} bytes in {}",
        w.rows,
        w.data.len()
    );
    // The gathers index rows with i32 offsets.
    assert!(
        i32::try_from(ROWS * row_bytes).is_ok(),
        "rows of {row_bytes} bytes are too long for the tile kernels"
    );
    let last = w.rows - 1 - first;
    let offsets = std::array::from_fn(|r| r.min(last) * row_bytes);
    // SAFETY: `first` is a row of the matrix (checked above).
    (unsafe { w.data.as_ptr().add(first * row_bytes) }, offsets)
}

avx512_fn! {
    /// Lane r (of 16): dword `k` of the 16 bytes at `base + rows[r] + off`,
    /// for k in 0..4. Rows go into the 128-bit lanes of four registers (rows
    /// a, a + 4, a + 8, a + 12 in register a), then a 4×4 dword transpose in
    /// every 128-bit lane puts row 4L + a at dword 4L + a: natural order.
    #[inline]
    unsafe fn transpose_16x4(base: *const u8, rows: &[usize; ROWS], off: usize) -> [__m512i; 4] {
        // No closures here: they would not inherit the target features.
        let mut z = [_mm512_setzero_si512(); 4];
        for (a, z) in z.iter_mut().enumerate() {
            // Merge-masked broadcast loads rather than inserts: their merge
            // can run on either vector port, an insert only on port 5, which
            // the transposes and dot products keep busy.
            let row = |r: usize| base.add(rows[r] + off) as *const __m128i;
            let v = _mm512_broadcast_i32x4(_mm_loadu_si128(row(a)));
            let v = _mm512_mask_broadcast_i32x4(v, 0x00F0, _mm_loadu_si128(row(a + 4)));
            let v = _mm512_mask_broadcast_i32x4(v, 0x0F00, _mm_loadu_si128(row(a + 8)));
            *z = _mm512_mask_broadcast_i32x4(v, 0xF000, _mm_loadu_si128(row(a + 12)));
        }
        let t0 = _mm512_unpacklo_epi32(z[0], z[1]);
        let t1 = _mm512_unpackhi_epi32(z[0], z[1]);
        let t2 = _mm512_unpacklo_epi32(z[2], z[3]);
        let t3 = _mm512_unpackhi_epi32(z[2], z[3]);
        [
            _mm512_unpacklo_epi64(t0, t2),
            _mm512_unpackhi_epi64(t0, t2),
            _mm512_unpacklo_epi64(t1, t3),
            _mm512_unpackhi_epi64(t1, t3),
        ]
    }
}

avx512_fn! {
    /// Lane r: the dword at `base + rows[r] + off`.
    #[inline]
    unsafe fn gather_dwords(base: *const u8, rows: &[usize; ROWS], off: usize) -> __m512i {
        // In range of i32: `tile_rows` checked 16 rows' bytes fit.
        let index: [i32; ROWS] = std::array::from_fn(|r| (rows[r] + off) as i32);
        _mm512_i32gather_epi32::<1>(_mm512_loadu_si512(index.as_ptr() as *const _), base as *const i32)
    }
}

avx512_fn! {
    /// Asks for the share of block `b` of the tile after next into L2: the
    /// tiles' rows are contiguous, so while block b of this tile is prepared
    /// the bytes from b · 16 · block_bytes on of the tile two ahead are
    /// fetched (a hint: never faults, even past the matrix). One tile ahead
    /// was not far enough to keep decode's stream going. Row-wise reads of sixteen short rows
    /// (616 bytes in the 0.5B's 896-wide Q5_0 matrices) are too short for the
    /// hardware prefetchers to follow; decode waited on memory in the loads of
    /// `transpose_16x4`.
    #[inline]
    unsafe fn prefetch_next_tile(base: *const u8, b: usize, nb: usize, block_bytes: usize) {
        // The tile after next starts 2 · ROWS rows (of nb blocks) on.
        let share = ROWS * block_bytes;
        let start = base.wrapping_add(ROWS * (2 * nb + b) * block_bytes);
        let mut line = 0;
        while line < share {
            _mm_prefetch::<_MM_HINT_T1>(start.wrapping_add(line) as *const i8);
            line += 64;
        }
    }
}

avx512_fn! {
    /// The f16 in the low half of every dword of `v`, widened to f32.
    #[inline]
    unsafe fn low_halves_as_f32(v: __m512i) -> __m512 {
        _mm512_cvtph_ps(_mm512_cvtepi32_epi16(v))
    }
}

avx512_fn! {
    /// Four activation bytes (the same four elements of the block for every
    /// row) in every lane.
    #[inline]
    unsafe fn broadcast_dword(p: *const u8) -> __m512i {
        _mm512_set1_epi32((p as *const i32).read_unaligned())
    }
}

/// Checks what a tile call reads besides the weights: the activation rows,
/// the side data and the output.
fn check_tile(
    n_tok: usize,
    acts: &[u8],
    a_row_bytes: usize,
    act_bytes: usize,
    side: &[f32],
    side_words: usize,
    out: &[f32],
) {
    assert!(
        (1..=TOKENS).contains(&n_tok)
            && a_row_bytes >= act_bytes
            && acts.len() >= (n_tok - 1) * a_row_bytes + act_bytes
            && side.len() >= n_tok * side_words
            && out.len() == n_tok * ROWS,
        "tile kernel: inputs shorter than the tile needs"
    );
}

/// Expands `$body` once per value, with `$i` bound to it as a constant: loops
/// whose index picks registers, shifts or array elements must be unrolled for
/// those to stay in registers, and LLVM will not unroll bodies this big.
macro_rules! unroll {
    ($i:ident in [$($v:literal),*] $body:block) => {
        $( { let $i: usize = $v; $body } )*
    };
}

/// Calls `$kernel::<N, extra…>` for the `n_tok` of a call (1..=TOKENS,
/// checked by the caller).
macro_rules! by_tokens {
    ($kernel:ident, [$($extra:expr),*], $n_tok:expr, $($arg:expr),*) => {
        match $n_tok {
            1 => $kernel::<1, $($extra),*>($($arg),*),
            2 => $kernel::<2, $($extra),*>($($arg),*),
            3 => $kernel::<3, $($extra),*>($($arg),*),
            4 => $kernel::<4, $($extra),*>($($arg),*),
            5 => $kernel::<5, $($extra),*>($($arg),*),
            6 => $kernel::<6, $($extra),*>($($arg),*),
            7 => $kernel::<7, $($extra),*>($($arg),*),
            _ => $kernel::<8, $($extra),*>($($arg),*),
        }
    };
}

avx512_fn! {
    /// Stores the `N` rows' sums, sixteen weight rows each.
    #[inline]
    unsafe fn store_sums<const N: usize>(acc: &[__m512; N], out: *mut f32) {
        for (j, &acc) in acc.iter().enumerate() {
            _mm512_storeu_ps(out.add(ROWS * j), acc);
        }
    }
}

avx512_fn! {
    /// The activation blocks `b` of `N` rows `a_row_bytes` apart.
    #[inline]
    unsafe fn block_rows<const N: usize>(acts: *const u8, a_row_bytes: usize, block: usize) -> [*const u8; N] {
        let mut ys = [acts; N];
        for (j, y) in ys.iter_mut().enumerate() {
            *y = acts.add(j * a_row_bytes + block);
        }
        ys
    }
}

// ------------------------------------------------------ 32-element formats

/// The 32-element formats, as a const parameter.
const Q4_0: u8 = 0;
const Q5_0: u8 = 1;
const Q8_0: u8 = 2;

/// Bytes per block of a 32-element format.
const fn block32_bytes(format: u8) -> usize {
    match format {
        Q4_0 => Q4_0_BYTES,
        Q5_0 => Q5_0_BYTES,
        _ => Q8_0_BYTES,
    }
}

/// One 32-element block of a tile's sixteen rows: elements 4k..4k + 4 of
/// every row, made unsigned, in register k, and the rows' scales.
#[derive(Clone, Copy)]
struct Block32 {
    quants: [__m512i; 8],
    dx: __m512,
}

avx512_fn! {
    /// Unpacks block `b` of the tile's rows. Q4_0 quants are stored +8 and Q5_0
    /// +16 (used as they are, Q5_0's fifth bit, `qh` bit e for element e,
    /// added where set); Q8_0's are signed and get +128 (the sign bit flipped).
    #[inline]
    unsafe fn unpack_block32<const FORMAT: u8>(base: *const u8, rows: &[usize; ROWS], b: usize) -> Block32 {
        let off = b * block32_bytes(FORMAT);
        let mut quants = [_mm512_setzero_si512(); 8];
        if FORMAT == Q8_0 {
            let sign = _mm512_set1_epi8(-128);
            let lo = transpose_16x4(base, rows, off + 2);
            let hi = transpose_16x4(base, rows, off + 18);
            for m in 0..4 {
                quants[m] = _mm512_xor_si512(lo[m], sign);
                quants[m + 4] = _mm512_xor_si512(hi[m], sign);
            }
        } else {
            let m4 = _mm512_set1_epi8(0xF);
            let p = transpose_16x4(base, rows, off + if FORMAT == Q5_0 { 6 } else { 2 });
            for m in 0..4 {
                quants[m] = _mm512_and_si512(p[m], m4);
                quants[m + 4] = _mm512_and_si512(_mm512_srli_epi16(p[m], 4), m4);
            }
            if FORMAT == Q5_0 {
                let qh = gather_dwords(base, rows, off + 2);
                let sixteen = _mm512_set1_epi8(16);
                for (k, quant) in quants.iter_mut().enumerate() {
                    // Elements 4k..4k + 4 take bits 4k..4k + 4 of their row's
                    // qh: byte k / 2 copied to all four bytes of the dword,
                    // then byte j tests bit 4 (k % 2) + j.
                    let byte = (k / 2) as u8;
                    let spread = _mm512_shuffle_epi8(
                        qh,
                        _mm512_set4_epi32(
                            i32::from_le_bytes([byte + 12; 4]),
                            i32::from_le_bytes([byte + 8; 4]),
                            i32::from_le_bytes([byte + 4; 4]),
                            i32::from_le_bytes([byte; 4]),
                        ),
                    );
                    let bits = 0x0804_0201 << (4 * (k % 2));
                    let set = _mm512_test_epi8_mask(spread, _mm512_set1_epi32(bits));
                    *quant = _mm512_mask_add_epi8(*quant, set, *quant, sixteen);
                }
            }
        }
        Block32 {
            quants,
            dx: low_halves_as_f32(gather_dwords(base, rows, off)),
        }
    }
}

avx512_fn! {
    /// Adds block `b`'s products with `N` activation rows to `acc`: per row,
    /// the exact integer dot product (stored quants, minus `offset · Σq` from
    /// the side data), then Q5_0/Q8_0 `acc += (dx · dy) · sumi`, Q4_0
    /// `acc += (sumi · dx) · dy`: the reference's operations in its order.
    #[inline]
    unsafe fn dot_block32<const N: usize, const FORMAT: u8>(
        block: &Block32,
        b: usize,
        acts: *const u8,
        a_row_bytes: usize,
        side: *const f32,
        side_words: usize,
        acc: &mut [__m512; N],
    ) {
        let ys = block_rows::<N>(acts, a_row_bytes, b * Q8_0_BYTES + 2);
        for (j, (acc, &y)) in acc.iter_mut().zip(&ys).enumerate() {
            let mut dot = _mm512_setzero_si512();
            for (k, &q) in block.quants.iter().enumerate() {
                dot = _mm512_dpbusd_epi32(dot, q, broadcast_dword(y.add(4 * k)));
            }
            let s = side.add(j * side_words + 2 * b);
            let offset = _mm512_set1_epi32((*s.add(1)).to_bits() as i32);
            let sumi = _mm512_cvtepi32_ps(_mm512_sub_epi32(dot, offset));
            let dy = _mm512_set1_ps(*s);
            let product = if FORMAT == Q4_0 {
                _mm512_mul_ps(_mm512_mul_ps(sumi, block.dx), dy)
            } else {
                _mm512_mul_ps(_mm512_mul_ps(block.dx, dy), sumi)
            };
            *acc = _mm512_add_ps(*acc, product);
        }
    }
}

avx512_fn! {
    /// Every block of the tile, unpacked into `out`.
    unsafe fn prepare_block32<const FORMAT: u8>(base: *const u8, rows: &[usize; ROWS], nb: usize, out: *mut __m512i) {
        for b in 0..nb {
            prefetch_next_tile(base, b, nb, block32_bytes(FORMAT));
            let block = unpack_block32::<FORMAT>(base, rows, b);
            let lines = out.add(Q8_0_FAMILY_LINES * b);
            for (k, &q) in block.quants.iter().enumerate() {
                _mm512_store_si512(lines.add(k), q);
            }
            _mm512_store_ps(lines.add(8) as *mut f32, block.dx);
        }
    }
}

avx512_fn! {
    /// `N` activation rows against a prepared tile.
    unsafe fn tile_block32<const N: usize, const FORMAT: u8>(
        nb: usize,
        prepared: *const __m512i,
        acts: *const u8,
        a_row_bytes: usize,
        side: *const f32,
        side_words: usize,
        out: *mut f32,
    ) {
        let mut acc = [_mm512_setzero_ps(); N];
        for b in 0..nb {
            let lines = prepared.add(Q8_0_FAMILY_LINES * b);
            let mut quants = [_mm512_setzero_si512(); 8];
            for (k, q) in quants.iter_mut().enumerate() {
                *q = _mm512_load_si512(lines.add(k));
            }
            let block = Block32 {
                quants,
                dx: _mm512_load_ps(lines.add(8) as *const f32),
            };
            dot_block32::<N, FORMAT>(&block, b, acts, a_row_bytes, side, side_words, &mut acc);
        }
        store_sums(&acc, out);
    }
}

avx512_fn! {
    /// `N` activation rows against the tile's rows unpacked block by block
    /// straight into registers (one group of rows: nothing to reuse).
    #[allow(clippy::too_many_arguments)]
    unsafe fn fused_block32<const N: usize, const FORMAT: u8>(
        base: *const u8,
        rows: &[usize; ROWS],
        nb: usize,
        acts: *const u8,
        a_row_bytes: usize,
        side: *const f32,
        side_words: usize,
        out: *mut f32,
    ) {
        let mut acc = [_mm512_setzero_ps(); N];
        for b in 0..nb {
            prefetch_next_tile(base, b, nb, block32_bytes(FORMAT));
            let block = unpack_block32::<FORMAT>(base, rows, b);
            dot_block32::<N, FORMAT>(&block, b, acts, a_row_bytes, side, side_words, &mut acc);
        }
        store_sums(&acc, out);
    }
}

/// Defines a 32-element format's safe `prepare`, `compute` and `fused`.
macro_rules! block32_fns {
    ($prepare:ident, $compute:ident, $fused:ident, $format:expr) => {
        fn $prepare(w: &WeightMatrix, first: usize, out: &mut [Line]) {
            let nb = w.cols / QK;
            assert!(
                out.len() >= nb * Q8_0_FAMILY_LINES,
                "prepare: buffer too short"
            );
            let (base, rows) = tile_rows(w, first);
            // SAFETY: every row of the tile is a whole row of the matrix
            // (`tile_rows`), whose nb blocks the loads stay inside; `out` holds
            // the tile (checked above) and is 64-byte aligned (a `Line` slice);
            // only reachable through the avx512 table, handed out only when
            // `available()`.
            unsafe {
                prepare_block32::<{ $format }>(base, &rows, nb, out.as_mut_ptr() as *mut __m512i)
            }
        }

        fn $compute(
            prepared: &[Line],
            cols: usize,
            acts: &[u8],
            a_row_bytes: usize,
            side: &[f32],
            n_tok: usize,
            out: &mut [f32],
        ) {
            let nb = cols / QK;
            let words = 2 * nb;
            check_tile(n_tok, acts, a_row_bytes, nb * Q8_0_BYTES, side, words, out);
            assert!(
                prepared.len() >= nb * Q8_0_FAMILY_LINES,
                "tile: prepared tile too short"
            );
            let p = prepared.as_ptr() as *const __m512i;
            let (y, s, o) = (acts.as_ptr(), side.as_ptr(), out.as_mut_ptr());
            // SAFETY: lengths checked above; only reachable through the avx512
            // table, handed out only when `available()`.
            unsafe {
                by_tokens!(
                    tile_block32,
                    [$format],
                    n_tok,
                    nb,
                    p,
                    y,
                    a_row_bytes,
                    s,
                    words,
                    o
                )
            }
        }

        #[allow(clippy::too_many_arguments)]
        fn $fused(
            w: &WeightMatrix,
            first: usize,
            acts: &[u8],
            a_row_bytes: usize,
            side: &[f32],
            n_tok: usize,
            out: &mut [f32],
        ) {
            let nb = w.cols / QK;
            let words = 2 * nb;
            check_tile(n_tok, acts, a_row_bytes, nb * Q8_0_BYTES, side, words, out);
            let (base, rows) = tile_rows(w, first);
            let (y, s, o) = (acts.as_ptr(), side.as_ptr(), out.as_mut_ptr());
            // SAFETY: as in the two above.
            unsafe {
                by_tokens!(
                    fused_block32,
                    [$format],
                    n_tok,
                    base,
                    &rows,
                    nb,
                    y,
                    a_row_bytes,
                    s,
                    words,
                    o
                )
            }
        }
    };
}

block32_fns!(prepare_q4_0, tile_q4_0, fused_q4_0, Q4_0);
block32_fns!(prepare_q5_0, tile_q5_0, fused_q5_0, Q5_0);
block32_fns!(prepare_q8_0, tile_q8_0, fused_q8_0, Q8_0);

// ---------------------------------------------------------------- Q4_K

/// What a Q4_K block of sixteen rows has besides its quants: the eight
/// six-bit sub-block scales and mins as bytes (`scales[s / 4]` byte s % 4,
/// as `k4_scales_mins_words` lays them out), d and dmin. They stay packed
/// until used: sixteen registers of them would not leave room for the quants.
#[derive(Clone, Copy)]
struct Q4kScales {
    scales: [__m512i; 2],
    mins: [__m512i; 2],
    d: __m512,
    dmin: __m512,
}

avx512_fn! {
    /// The scales of block `b`: d | dmin, then the twelve packed bytes of
    /// scales and mins unpacked as `k4_scales_mins_words` does, sixteen rows
    /// at once.
    #[inline]
    unsafe fn unpack_q4_k_scales(base: *const u8, rows: &[usize; ROWS], b: usize) -> Q4kScales {
        let [d_dmin, u0, u1, u2] = transpose_16x4(base, rows, b * Q4_K_BYTES);
        let kmask1 = _mm512_set1_epi32(0x3f3f_3f3f);
        let kmask2 = _mm512_set1_epi32(0x0f0f_0f0f);
        let kmask3 = _mm512_set1_epi32(0x0303_0303);
        let top_bits_of_u0 = _mm512_slli_epi32::<4>(_mm512_and_si512(_mm512_srli_epi32::<6>(u0), kmask3));
        let top_bits_of_u1 = _mm512_slli_epi32::<4>(_mm512_and_si512(_mm512_srli_epi32::<6>(u1), kmask3));
        Q4kScales {
            scales: [
                _mm512_and_si512(u0, kmask1),
                _mm512_or_si512(_mm512_and_si512(u2, kmask2), top_bits_of_u0),
            ],
            mins: [
                _mm512_and_si512(u1, kmask1),
                _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi32::<4>(u2), kmask2), top_bits_of_u1),
            ],
            d: low_halves_as_f32(d_dmin),
            dmin: low_halves_as_f32(_mm512_srli_epi32::<16>(d_dmin)),
        }
    }
}

avx512_fn! {
    /// Byte `s % 4` of `packed[s / 4]`, as an i32 in every lane.
    #[inline]
    unsafe fn packed_byte(packed: &[__m512i; 2], s: usize) -> __m512i {
        let shift = _mm_cvtsi32_si128(8 * (s % 4) as i32);
        _mm512_and_si512(_mm512_srl_epi32(packed[s / 4], shift), _mm512_set1_epi32(0xFF))
    }
}

avx512_fn! {
    /// The eight mins as i16 pairs (m, m), to meet the activations'
    /// sixteen-element sums two at a time.
    #[inline]
    unsafe fn q4_k_min_pairs(sc: &Q4kScales) -> [__m512i; 8] {
        let mut pairs = [_mm512_setzero_si512(); 8];
        for (s, pair) in pairs.iter_mut().enumerate() {
            let min = packed_byte(&sc.mins, s);
            *pair = _mm512_or_si512(min, _mm512_slli_epi32::<16>(min));
        }
        pairs
    }
}

avx512_fn! {
    /// Chunk `k` of block `b` (32 bytes: sub-block 2k in the low nibbles, 2k + 1
    /// in the high): sub-block 2k's eight registers, then 2k + 1's.
    #[inline]
    unsafe fn unpack_q4_k_chunk(base: *const u8, rows: &[usize; ROWS], b: usize, k: usize) -> [__m512i; 16] {
        let off = b * Q4_K_BYTES + 16 + 32 * k;
        let lo = transpose_16x4(base, rows, off);
        let hi = transpose_16x4(base, rows, off + 16);
        let m4 = _mm512_set1_epi8(0xF);
        let mut quants = [_mm512_setzero_si512(); 16];
        for m in 0..8 {
            let packed = if m < 4 { lo[m] } else { hi[m - 4] };
            quants[m] = _mm512_and_si512(packed, m4);
            quants[8 + m] = _mm512_and_si512(_mm512_srli_epi16(packed, 4), m4);
        }
        quants
    }
}

avx512_fn! {
    /// Adds sub-block `s`'s integer dot products (`quants`: its eight
    /// registers), times its scales, to the `N` rows' block totals.
    #[inline]
    unsafe fn dot_k_sub_block<const N: usize, const REGS: usize>(
        quants: &[__m512i],
        scale: __m512i,
        ys: &[*const u8; N],
        first_byte: usize,
        total: &mut [__m512i; N],
    ) {
        for (total, &y) in total.iter_mut().zip(ys) {
            let y = y.add(Q8_K_QS + first_byte);
            let mut dot = _mm512_setzero_si512();
            for (m, &q) in quants[..REGS].iter().enumerate() {
                dot = _mm512_dpbusd_epi32(dot, q, broadcast_dword(y.add(4 * m)));
            }
            *total = _mm512_add_epi32(*total, _mm512_mullo_epi32(dot, scale));
        }
    }
}

avx512_fn! {
    /// Ends a Q4_K block for `N` rows: the exact `Σ min · bsum`, then
    /// `acc += (d · dy) · total`, `acc -= (dmin · dy) · mins`.
    #[inline]
    unsafe fn finish_q4_k_block<const N: usize>(
        mins: &[__m512i; 8],
        d: __m512,
        dmin: __m512,
        ys: &[*const u8; N],
        total: &[__m512i; N],
        acc: &mut [__m512; N],
    ) {
        for ((acc, &total), &y) in acc.iter_mut().zip(total).zip(ys) {
            let mut min_sum = _mm512_setzero_si512();
            for (s, &min) in mins.iter().enumerate() {
                let pair = broadcast_dword(y.add(Q8_K_BSUMS + 4 * s));
                min_sum = _mm512_dpwssd_epi32(min_sum, min, pair);
            }
            let dy = _mm512_set1_ps((y as *const f32).read_unaligned());
            let scaled = _mm512_mul_ps(_mm512_mul_ps(d, dy), _mm512_cvtepi32_ps(total));
            *acc = _mm512_add_ps(*acc, scaled);
            let mins = _mm512_mul_ps(_mm512_mul_ps(dmin, dy), _mm512_cvtepi32_ps(min_sum));
            *acc = _mm512_sub_ps(*acc, mins);
        }
    }
}

avx512_fn! {
    /// Every Q4_K block of the tile into `out`: sub-block s's quants at lines
    /// 8s..8s + 8, then scales, mins, d, dmin.
    unsafe fn prepare_q4_k_unchecked(base: *const u8, rows: &[usize; ROWS], nb: usize, out: *mut __m512i) {
        for b in 0..nb {
            prefetch_next_tile(base, b, nb, Q4_K_BYTES);
            let lines = out.add(Q4_K_LINES * b);
            for k in 0..QK_K / 64 {
                let quants = unpack_q4_k_chunk(base, rows, b, k);
                for (m, &q) in quants.iter().enumerate() {
                    _mm512_store_si512(lines.add(16 * k + m), q);
                }
            }
            let sc = unpack_q4_k_scales(base, rows, b);
            for (s, &min) in q4_k_min_pairs(&sc).iter().enumerate() {
                _mm512_store_si512(lines.add(64 + s), packed_byte(&sc.scales, s));
                _mm512_store_si512(lines.add(72 + s), min);
            }
            _mm512_store_ps(lines.add(80) as *mut f32, sc.d);
            _mm512_store_ps(lines.add(81) as *mut f32, sc.dmin);
        }
    }
}

avx512_fn! {
    /// `N` Q8_K activation rows against a prepared Q4_K tile.
    unsafe fn tile_q4_k_unchecked<const N: usize>(
        nb: usize,
        prepared: *const __m512i,
        acts: *const u8,
        a_row_bytes: usize,
        out: *mut f32,
    ) {
        let mut acc = [_mm512_setzero_ps(); N];
        for b in 0..nb {
            let lines = prepared.add(Q4_K_LINES * b);
            let ys = block_rows::<N>(acts, a_row_bytes, b * Q8_K_BYTES);
            let mut total = [_mm512_setzero_si512(); N];
            for s in 0..QK_K / 32 {
                let mut quants = [_mm512_setzero_si512(); 8];
                for (m, q) in quants.iter_mut().enumerate() {
                    *q = _mm512_load_si512(lines.add(8 * s + m));
                }
                let scale = _mm512_load_si512(lines.add(64 + s));
                dot_k_sub_block::<N, 8>(&quants, scale, &ys, 32 * s, &mut total);
            }
            let mut mins = [_mm512_setzero_si512(); 8];
            for (s, min) in mins.iter_mut().enumerate() {
                *min = _mm512_load_si512(lines.add(72 + s));
            }
            let d = _mm512_load_ps(lines.add(80) as *const f32);
            let dmin = _mm512_load_ps(lines.add(81) as *const f32);
            finish_q4_k_block(&mins, d, dmin, &ys, &total, &mut acc);
        }
        store_sums(&acc, out);
    }
}

avx512_fn! {
    /// `N` Q8_K activation rows against the tile's Q4_K rows unpacked chunk by
    /// chunk straight into registers.
    unsafe fn fused_q4_k_unchecked<const N: usize>(
        base: *const u8,
        rows: &[usize; ROWS],
        nb: usize,
        acts: *const u8,
        a_row_bytes: usize,
        out: *mut f32,
    ) {
        let mut acc = [_mm512_setzero_ps(); N];
        for b in 0..nb {
            prefetch_next_tile(base, b, nb, Q4_K_BYTES);
            let ys = block_rows::<N>(acts, a_row_bytes, b * Q8_K_BYTES);
            let sc = unpack_q4_k_scales(base, rows, b);
            let mut total = [_mm512_setzero_si512(); N];
            unroll!(k in [0, 1, 2, 3] {
                let quants = unpack_q4_k_chunk(base, rows, b, k);
                let (lo, hi) = (packed_byte(&sc.scales, 2 * k), packed_byte(&sc.scales, 2 * k + 1));
                dot_k_sub_block::<N, 8>(&quants[..8], lo, &ys, 64 * k, &mut total);
                dot_k_sub_block::<N, 8>(&quants[8..], hi, &ys, 64 * k + 32, &mut total);
            });
            finish_q4_k_block(&q4_k_min_pairs(&sc), sc.d, sc.dmin, &ys, &total, &mut acc);
        }
        store_sums(&acc, out);
    }
}

// ---------------------------------------------------------------- Q6_K

/// What a Q6_K block of sixteen rows has besides its quants: the sixteen
/// signed sub-block scales as bytes (`bytes[s / 4]` byte s % 4), d. They stay
/// packed until used, like Q4_K's.
#[derive(Clone, Copy)]
struct Q6kScales {
    bytes: [__m512i; 4],
    d: __m512,
}

/// The `vpshufb` control of dword `lane` (of a 128-bit lane) that moves bytes
/// `4 lane + a` and `4 lane + a + 1` to the tops of its two words (zeros
/// below).
const fn scale_pair_shuffle(lane: i32, a: i32) -> i32 {
    let (lo, hi) = (4 * lane + a, 4 * lane + a + 1);
    0x80 | (lo << 8) | (0x80 << 16) | (hi << 24)
}

avx512_fn! {
    /// The scales of block `b`.
    #[inline]
    unsafe fn unpack_q6_k_scales(base: *const u8, rows: &[usize; ROWS], b: usize) -> Q6kScales {
        let off = b * Q6_K_BYTES;
        Q6kScales {
            bytes: transpose_16x4(base, rows, off + 192),
            // d sits in the top half of the dword at 206.
            d: low_halves_as_f32(_mm512_srli_epi32::<16>(gather_dwords(base, rows, off + 206))),
        }
    }
}

avx512_fn! {
    /// Sub-block `s`'s scale, sign-extended to i32.
    #[inline]
    unsafe fn q6_k_scale(sc: &Q6kScales, s: usize) -> __m512i {
        let byte_at_top = _mm512_sll_epi32(sc.bytes[s / 4], _mm_cvtsi32_si128(24 - 8 * (s % 4) as i32));
        _mm512_srai_epi32::<24>(byte_at_top)
    }
}

avx512_fn! {
    /// The scales as i16 pairs (scale 2p, scale 2p + 1), to meet the
    /// activations' sixteen-element sums two at a time: bytes 2p, 2p + 1 to
    /// the tops of the two words of a dword, then sign-extended.
    #[inline]
    unsafe fn q6_k_scale_pairs(sc: &Q6kScales) -> [__m512i; 8] {
        let mut pairs = [_mm512_setzero_si512(); 8];
        for (p, pair) in pairs.iter_mut().enumerate() {
            let a = (2 * p % 4) as i32;
            let lanes = _mm512_set4_epi32(
                scale_pair_shuffle(3, a),
                scale_pair_shuffle(2, a),
                scale_pair_shuffle(1, a),
                scale_pair_shuffle(0, a),
            );
            *pair = _mm512_srai_epi16::<8>(_mm512_shuffle_epi8(sc.bytes[p / 2], lanes));
        }
        pairs
    }
}

/// The Q6_K quants (stored +32) of half `h` of a block, elements
/// 128h + 32g + 4i.. (i < 8): their low bits are dword 16h + 8(g % 2) + i of
/// the low bits (the low nibbles for g < 2, the high ones after; `$low`: the
/// eight dwords for this g % 2), their high bits bits 2g.. of dword 8h + i of
/// the high bits (`$high`); they are dword i % 4 of sub-block
/// 8h + 2g + i / 4.
macro_rules! q6_k_quants {
    ($low:expr, $high:expr, $g:expr) => {{
        let (low, high, g) = ($low, $high, $g);
        let m4 = _mm512_set1_epi8(0xF);
        let bits45 = _mm512_set1_epi8(0x30);
        let mut quants = [_mm512_setzero_si512(); 8];
        unroll!(i in [0, 1, 2, 3, 4, 5, 6, 7] {
            let low = if g < 2 { low[i] } else { _mm512_srli_epi16(low[i], 4) };
            let high = match g {
                0 => _mm512_slli_epi16(high[i], 4),
                1 => _mm512_slli_epi16(high[i], 2),
                2 => high[i],
                _ => _mm512_srli_epi16(high[i], 2),
            };
            // (low & 0x0F) | (high & 0x30) in one instruction.
            quants[i] = _mm512_ternarylogic_epi32::<0xF8>(_mm512_and_si512(low, m4), high, bits45);
        });
        quants
    }};
}

/// Lane r of register k: dword k of the 32 bytes at `$base + $rows[r] + $off`
/// (two [`transpose_16x4`]s side by side).
macro_rules! transpose_16x8 {
    ($base:expr, $rows:expr, $off:expr) => {{
        let (lo, hi) = (
            transpose_16x4($base, $rows, $off),
            transpose_16x4($base, $rows, $off + 16),
        );
        [lo[0], lo[1], lo[2], lo[3], hi[0], hi[1], hi[2], hi[3]]
    }};
}

/// Runs `$body` for every sub-block pair of a Q6_K block at byte `$off`, with
/// `$g` (0..4), `$h` (0, 1) and `$quants` (sub-blocks 8h + 2g and
/// 8h + 2g + 1, four registers each) bound; a pair of g at a time (0 and 2,
/// then 1 and 3, which share their low bits) keeps what is live within the
/// registers.
macro_rules! for_q6_k_sub_block_pairs {
    ($base:expr, $rows:expr, $off:expr, |$h:ident, $g:ident, $quants:ident| $body:block) => {{
        let (base, rows, off) = ($base, $rows, $off);
        unroll!($h in [0, 1] {
            let high = transpose_16x8!(base, rows, off + 128 + 32 * $h);
            unroll!(gp in [0, 1] {
                let low = transpose_16x8!(base, rows, off + 64 * $h + 32 * gp);
                unroll!(gi in [0, 2] {
                    let $g = gp + gi;
                    let $quants = q6_k_quants!(&low, &high, $g);
                    $body
                });
            });
        });
    }};
}

avx512_fn! {
    /// Ends a Q6_K block for `N` rows: the stored +32 taken out
    /// (`32 · Σ scale · bsum`), then `acc += (d · dy) · total`.
    #[inline]
    unsafe fn finish_q6_k_block<const N: usize>(
        pairs: &[__m512i; 8],
        d: __m512,
        ys: &[*const u8; N],
        total: &[__m512i; N],
        acc: &mut [__m512; N],
    ) {
        for ((acc, &total), &y) in acc.iter_mut().zip(total).zip(ys) {
            let mut offset = _mm512_setzero_si512();
            for (p, &pair) in pairs.iter().enumerate() {
                let sums = broadcast_dword(y.add(Q8_K_BSUMS + 4 * p));
                offset = _mm512_dpwssd_epi32(offset, pair, sums);
            }
            let total = _mm512_sub_epi32(total, _mm512_slli_epi32::<5>(offset));
            let dy = _mm512_set1_ps((y as *const f32).read_unaligned());
            let scaled = _mm512_mul_ps(_mm512_mul_ps(d, dy), _mm512_cvtepi32_ps(total));
            *acc = _mm512_add_ps(*acc, scaled);
        }
    }
}

avx512_fn! {
    /// Every Q6_K block of the tile into `out`: sub-block s's quants at lines
    /// 4s..4s + 4, then scales, scale pairs, d.
    unsafe fn prepare_q6_k_unchecked(base: *const u8, rows: &[usize; ROWS], nb: usize, out: *mut __m512i) {
        for b in 0..nb {
            prefetch_next_tile(base, b, nb, Q6_K_BYTES);
            let lines = out.add(Q6_K_LINES * b);
            for_q6_k_sub_block_pairs!(base, rows, b * Q6_K_BYTES, |h, g, quants| {
                for (i, &q) in quants.iter().enumerate() {
                    _mm512_store_si512(lines.add(32 * h + 8 * g + i), q);
                }
            });
            let sc = unpack_q6_k_scales(base, rows, b);
            for s in 0..16 {
                _mm512_store_si512(lines.add(64 + s), q6_k_scale(&sc, s));
            }
            for (p, &pair) in q6_k_scale_pairs(&sc).iter().enumerate() {
                _mm512_store_si512(lines.add(80 + p), pair);
            }
            _mm512_store_ps(lines.add(88) as *mut f32, sc.d);
        }
    }
}

avx512_fn! {
    /// `N` Q8_K activation rows against a prepared Q6_K tile.
    unsafe fn tile_q6_k_unchecked<const N: usize>(
        nb: usize,
        prepared: *const __m512i,
        acts: *const u8,
        a_row_bytes: usize,
        out: *mut f32,
    ) {
        let mut acc = [_mm512_setzero_ps(); N];
        for b in 0..nb {
            let lines = prepared.add(Q6_K_LINES * b);
            let ys = block_rows::<N>(acts, a_row_bytes, b * Q8_K_BYTES);
            let mut total = [_mm512_setzero_si512(); N];
            for s in 0..QK_K / 16 {
                let mut quants = [_mm512_setzero_si512(); 4];
                for (m, q) in quants.iter_mut().enumerate() {
                    *q = _mm512_load_si512(lines.add(4 * s + m));
                }
                let scale = _mm512_load_si512(lines.add(64 + s));
                dot_k_sub_block::<N, 4>(&quants, scale, &ys, 16 * s, &mut total);
            }
            let mut pairs = [_mm512_setzero_si512(); 8];
            for (p, pair) in pairs.iter_mut().enumerate() {
                *pair = _mm512_load_si512(lines.add(80 + p));
            }
            let d = _mm512_load_ps(lines.add(88) as *const f32);
            finish_q6_k_block(&pairs, d, &ys, &total, &mut acc);
        }
        store_sums(&acc, out);
    }
}

avx512_fn! {
    /// `N` Q8_K activation rows against the tile's Q6_K rows unpacked half
    /// block by half block straight into registers.
    unsafe fn fused_q6_k_unchecked<const N: usize>(
        base: *const u8,
        rows: &[usize; ROWS],
        nb: usize,
        acts: *const u8,
        a_row_bytes: usize,
        out: *mut f32,
    ) {
        let mut acc = [_mm512_setzero_ps(); N];
        for b in 0..nb {
            prefetch_next_tile(base, b, nb, Q6_K_BYTES);
            let ys = block_rows::<N>(acts, a_row_bytes, b * Q8_K_BYTES);
            let sc = unpack_q6_k_scales(base, rows, b);
            let mut total = [_mm512_setzero_si512(); N];
            for_q6_k_sub_block_pairs!(base, rows, b * Q6_K_BYTES, |h, g, quants| {
                unroll!(half in [0, 1] {
                    let sub = 8 * h + 2 * g + half;
                    let scale = q6_k_scale(&sc, sub);
                    dot_k_sub_block::<N, 4>(&quants[4 * half..], scale, &ys, 16 * sub, &mut total);
                });
            });
            finish_q6_k_block(&q6_k_scale_pairs(&sc), sc.d, &ys, &total, &mut acc);
        }
        store_sums(&acc, out);
    }
}

/// Defines a k-quant format's safe `prepare`, `compute` and `fused`.
macro_rules! k_quant_fns {
    ($prepare:ident, $compute:ident, $fused:ident, $lines:expr, $prep:ident, $tile:ident, $fuse:ident) => {
        fn $prepare(w: &WeightMatrix, first: usize, out: &mut [Line]) {
            let nb = w.cols / QK_K;
            assert!(out.len() >= nb * $lines, "prepare: buffer too short");
            let (base, rows) = tile_rows(w, first);
            // SAFETY: as for the 32-element formats.
            unsafe { $prep(base, &rows, nb, out.as_mut_ptr() as *mut __m512i) }
        }

        fn $compute(
            prepared: &[Line],
            cols: usize,
            acts: &[u8],
            a_row_bytes: usize,
            side: &[f32],
            n_tok: usize,
            out: &mut [f32],
        ) {
            let nb = cols / QK_K;
            check_tile(n_tok, acts, a_row_bytes, nb * Q8_K_BYTES, side, 0, out);
            assert!(
                prepared.len() >= nb * $lines,
                "tile: prepared tile too short"
            );
            let p = prepared.as_ptr() as *const __m512i;
            let (y, o) = (acts.as_ptr(), out.as_mut_ptr());
            // SAFETY: lengths checked above; only reachable through the avx512
            // table, handed out only when `available()`.
            unsafe { by_tokens!($tile, [], n_tok, nb, p, y, a_row_bytes, o) }
        }

        #[allow(clippy::too_many_arguments)]
        fn $fused(
            w: &WeightMatrix,
            first: usize,
            acts: &[u8],
            a_row_bytes: usize,
            side: &[f32],
            n_tok: usize,
            out: &mut [f32],
        ) {
            let nb = w.cols / QK_K;
            check_tile(n_tok, acts, a_row_bytes, nb * Q8_K_BYTES, side, 0, out);
            let (base, rows) = tile_rows(w, first);
            let (y, o) = (acts.as_ptr(), out.as_mut_ptr());
            // SAFETY: as in the two above.
            unsafe { by_tokens!($fuse, [], n_tok, base, &rows, nb, y, a_row_bytes, o) }
        }
    };
}

k_quant_fns!(
    prepare_q4_k,
    tile_q4_k,
    fused_q4_k,
    Q4_K_LINES,
    prepare_q4_k_unchecked,
    tile_q4_k_unchecked,
    fused_q4_k_unchecked
);
k_quant_fns!(
    prepare_q6_k,
    tile_q6_k,
    fused_q6_k,
    Q6_K_LINES,
    prepare_q6_k_unchecked,
    tile_q6_k_unchecked,
    fused_q6_k_unchecked
);

#[cfg(test)]
mod tests {
    use crate::blocks::*;
    use crate::{GgmlType, Level};
    use rand::{Rng, SeedableRng};

    /// The tile kernels' k-quant numerics, one row and one activation row at a
    /// time in plain code: the block's exact integer total, one conversion,
    /// `acc += (d · dy) · total` (Q4_K then `acc -= (dmin · dy) · mins`).
    fn k_quant_model(ty: GgmlType, n: usize, w: &[u8], a: &[u8]) -> f32 {
        let mut acc = 0.0f32;
        for b in 0..n / QK_K {
            let y = &a[b * Q8_K_BYTES..(b + 1) * Q8_K_BYTES];
            let dy = f32_at(y, 0);
            let q8 = |e: usize| i32::from(y[Q8_K_QS + e] as i8);
            let bsum = |i: usize| i32::from(i16_at(y, Q8_K_BSUMS + 2 * i));
            if ty == GgmlType::Q4_K {
                let x = &w[b * Q4_K_BYTES..(b + 1) * Q4_K_BYTES];
                let sm = k4_scales_mins(&x[4..16]);
                let quant = |e: usize| {
                    let byte = x[16 + 32 * (e / 64) + e % 32];
                    i32::from(if e % 64 < 32 { byte & 0xF } else { byte >> 4 })
                };
                let total: i32 = (0..8)
                    .map(|s| {
                        i32::from(sm[s])
                            * (32 * s..32 * s + 32).map(|e| quant(e) * q8(e)).sum::<i32>()
                    })
                    .sum();
                let mins: i32 = (0..8)
                    .map(|s| i32::from(sm[8 + s]) * (bsum(2 * s) + bsum(2 * s + 1)))
                    .sum();
                acc += (f16_at(x, 0) * dy) * total as f32;
                acc -= (f16_at(x, 2) * dy) * mins as f32;
            } else {
                let x = &w[b * Q6_K_BYTES..(b + 1) * Q6_K_BYTES];
                let quant = |e: usize| {
                    let (h, r) = (e / 128, e % 128);
                    let (g, l) = (r / 32, r % 32);
                    let low = x[64 * h + 32 * (g % 2) + l];
                    let low = if g < 2 { low & 0xF } else { low >> 4 };
                    let high = (x[128 + 32 * h + l] >> (2 * g)) & 3;
                    i32::from(low | (high << 4)) - 32
                };
                let total: i32 = (0..16)
                    .map(|s| {
                        i32::from(x[192 + s] as i8)
                            * (16 * s..16 * s + 16).map(|e| quant(e) * q8(e)).sum::<i32>()
                    })
                    .sum();
                acc += (f16_at(x, 208) * dy) * total as f32;
            }
        }
        acc
    }

    #[test]
    fn k_quant_tiles_equal_their_scalar_model_bit_for_bit() {
        let Some(kernels) = crate::testing::level_or_report(
            Level::Avx512,
            "k_quant_tiles_equal_their_scalar_model_bit_for_bit",
        ) else {
            return;
        };
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        for ty in [GgmlType::Q4_K, GgmlType::Q6_K] {
            let n = 1024;
            let (_, block_bytes) = layout(ty).expect("layout");
            for trial in 0..20 {
                let mut w: Vec<u8> = (0..n / QK_K * block_bytes).map(|_| rng.gen()).collect();
                for block in w.chunks_exact_mut(block_bytes) {
                    let offsets: &[usize] = if ty == GgmlType::Q4_K {
                        &[0, 2]
                    } else {
                        &[208]
                    };
                    for &o in offsets {
                        put_f16(block, o, rng.gen_range(-0.05..0.05));
                    }
                }
                let x: Vec<f32> = (0..n).map(|_| rng.gen_range(-3.0..3.0)).collect();
                let mut a = vec![0u8; n / QK_K * Q8_K_BYTES];
                kernels
                    .quantize_activation_row(ty, &x, &mut a)
                    .expect("quantize");
                let got = kernels.vec_dot(ty, n, &w, &a);
                let want = k_quant_model(ty, n, &w, &a);
                assert_eq!(
                    got.to_bits(),
                    want.to_bits(),
                    "{ty} trial {trial}: {got} vs {want}"
                );
            }
        }
    }
}
