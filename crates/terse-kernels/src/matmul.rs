//! Weight-matrix × activation products, split by rows across the pool.
//!
//! Decode (one token) reads each weight byte once: per row, one kernel call
//! with lengths checked once per matmul. Prefill (many tokens) reuses weights:
//! a task owns a chunk of rows and walks the tokens in groups, so each weight
//! row is unpacked once per group while it is dotted with every activation row
//! of the group, and the chunk stays in L2 across groups.
//!
//! How a level computes the products is its [`MatmulKernel`] for the weight
//! type:
//! - `Pairs`: one (weight row, activation row) pair per call;
//! - `Rows`: one weight row against a group of activation rows, with side
//!   data the level derives from the activations once per matmul;
//! - `Tiles`: a tile of weight rows against a group of activation rows. With
//!   more than one group, a task unpacks each of its tiles once into the
//!   level's layout (a thread-local buffer) and dots every group with it;
//!   with one group (decode, batched decode) the level's `fused` kernel
//!   unpacks straight into registers, with the same results bit for bit.
//!
//! Whatever the kernel, an output depends only on its own row pair: never on
//! how many tokens share the call or which path ran, so batching never
//! changes a result.

use crate::blocks;
use crate::pool::ThreadPool;
use crate::{activation_row_bytes, is_supported, GgmlType, KernelError, VecDotFn};

/// Target bytes of weights per task: small enough to balance across
/// threads, large enough that claiming a task is negligible.
const TASK_BYTES: usize = 64 * 1024;
/// Bounds on rows per task.
const MIN_ROWS_PER_TASK: usize = 4;
const MAX_ROWS_PER_TASK: usize = 64;
/// Task size for one token (decode), where nothing is reused: every task
/// start breaks the weight stream the prefetchers were following, and the
/// output heads' short rows made 64-row tasks only 40–60 KiB
/// (`kernel_speed 2 Q8_0 262144x640`: 22.8 → 25.8 GB/s with these).
const DECODE_TASK_BYTES: usize = 1 << 20;
const DECODE_MAX_ROWS_PER_TASK: usize = 1024;

/// Weight matrix view: `rows` output features, each a row of `cols`
/// elements of type `ty`, stored contiguously (a GGUF 2-D tensor with dims
/// `[cols, rows]`).
#[derive(Debug, Clone, Copy)]
pub struct WeightMatrix<'a> {
    pub data: &'a [u8],
    pub ty: GgmlType,
    pub rows: usize,
    pub cols: usize,
}

impl<'a> WeightMatrix<'a> {
    /// Checks that `ty` is supported, `cols` is a whole number of blocks and
    /// `data` holds exactly `rows` rows.
    pub fn new(
        data: &'a [u8],
        ty: GgmlType,
        rows: usize,
        cols: usize,
    ) -> Result<Self, KernelError> {
        if !is_supported(ty) {
            return Err(KernelError::UnsupportedType { ty });
        }
        let row = Self::row_bytes_of(ty, cols)?;
        let expected = row
            .checked_mul(rows)
            .ok_or(KernelError::SizeOverflow { ty, rows, cols })?;
        if data.len() != expected {
            return Err(KernelError::LengthMismatch {
                what: "weight matrix bytes",
                expected,
                found: data.len(),
            });
        }
        // Activation rows must exist in the matching format too.
        activation_row_bytes(ty, cols)?;
        Ok(WeightMatrix {
            data,
            ty,
            rows,
            cols,
        })
    }

    fn row_bytes_of(ty: GgmlType, cols: usize) -> Result<usize, KernelError> {
        let (block, _) = blocks::layout(ty).ok_or(KernelError::UnsupportedType { ty })?;
        if !cols.is_multiple_of(block) {
            return Err(KernelError::NotBlockMultiple { ty, n: cols });
        }
        blocks::row_bytes(ty, cols).ok_or(KernelError::SizeOverflow { ty, rows: 1, cols })
    }

    /// Bytes of one weight row (0 if the struct was built by hand with a
    /// type or column count that `new` would have rejected).
    pub fn row_bytes(&self) -> usize {
        blocks::row_bytes(self.ty, self.cols).unwrap_or(0)
    }

    /// The bytes of weight row `r`.
    ///
    /// # Panics
    /// If `r >= rows`.
    pub fn row(&self, r: usize) -> &'a [u8] {
        let rb = self.row_bytes();
        &self.data[r * rb..(r + 1) * rb]
    }
}

/// Dots one weight row with several activation rows in one pass over the row
/// (bit-identical to a lone pair's result for each of them): `(n, weight row,
/// activations, activation row bytes, group side data, out)` with `out.len()`
/// at most [`RowKernel::tokens`]; the side data comes from the kernel's
/// `side_data` over the same rows.
pub(crate) type MultiDotFn = fn(usize, &[u8], &[u8], usize, &[f32], &mut [f32]);

/// A level's way of running a matmul of one weight type.
#[derive(Clone, Copy)]
// Only the x86 levels build rows and tiles (the scalar one takes pairs).
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
pub(crate) enum MatmulKernel {
    /// One (weight row, activation row) pair per call.
    Pairs(VecDotFn),
    /// One weight row against a group of activation rows per call.
    Rows(RowKernel),
    /// A tile of weight rows (unpacked once per matmul into the level's
    /// layout) against a group of activation rows per call.
    Tiles(TileKernel),
}

/// Most activation rows a [`RowKernel`] of any level takes per call.
const MAX_ROW_KERNEL_TOKENS: usize = 16;

/// A multi-row kernel and the activation side data it reads.
#[derive(Clone, Copy)]
pub(crate) struct RowKernel {
    pub(crate) dot: MultiDotFn,
    /// Most activation rows per call.
    pub(crate) tokens: usize,
    /// Appends what the kernel would otherwise recompute from a group of
    /// activation rows for every weight row: `(weight type, activations, row
    /// bytes, rows, out)`.
    pub(crate) side_data: fn(GgmlType, &[u8], usize, usize, &mut Vec<f32>),
    /// Words `side_data` appends for a group of `rows` rows of `n` elements:
    /// `(weight type, n, rows)`.
    pub(crate) side_words: fn(GgmlType, usize, usize) -> usize,
}

/// One cache line of a tile's prepared weights (the alignment the tile
/// kernels' vector loads want).
#[derive(Clone, Copy)]
#[repr(C, align(64))]
pub(crate) struct Line(pub(crate) [u8; 64]);

/// `(prepared tile, cols, activations from the group's first row, activation
/// row bytes, side data from the group's first row, rows in the group, out)`:
/// `out[j * tile rows + lane]` = dot(weight row `lane` of the tile, activation
/// row j) for j below the group's rows. Implementations check every length
/// they read.
pub(crate) type TileFn = fn(&[Line], usize, &[u8], usize, &[f32], usize, &mut [f32]);

/// `(matrix, first row of the tile, then as [`TileFn`])`: the same products
/// as `prepare` and `compute`, bit for bit, with the tile unpacked block by
/// block into registers instead of into memory: for a single group of
/// activation rows (decode), where nothing would reuse the prepared tile.
pub(crate) type FusedTileFn = fn(&WeightMatrix, usize, &[u8], usize, &[f32], usize, &mut [f32]);

/// Tile kernels: weight rows go through them `rows` at a time, unpacked once
/// per matmul by `prepare`, and every group of up to `tokens` activation rows
/// is dotted with the unpacked tile. The lanes of a result are weight rows,
/// so each output is formed whole in one lane and depends on nothing else.
#[derive(Clone, Copy)]
pub(crate) struct TileKernel {
    /// Weight rows per tile.
    pub(crate) rows: usize,
    /// Most activation rows per `compute` call.
    pub(crate) tokens: usize,
    /// Cache lines of one prepared tile of rows of `cols` elements.
    pub(crate) prepared_lines: fn(usize) -> usize,
    /// Unpacks rows `first..first + rows` of the matrix into the tile layout
    /// (rows past the matrix's last repeat it): `(matrix, first, out)`.
    pub(crate) prepare: fn(&WeightMatrix, usize, &mut [Line]),
    /// Words of side data per activation row of `cols` elements.
    pub(crate) side_words: fn(usize) -> usize,
    /// Appends the side data of `rows` activation rows: `(activations, row
    /// bytes, rows, out)`.
    pub(crate) side_data: fn(&[u8], usize, usize, &mut Vec<f32>),
    pub(crate) compute: TileFn,
    pub(crate) fused: FusedTileFn,
}

/// Most outputs one tile call gives (tile rows × group rows).
const MAX_TILE_OUTPUTS: usize = 128;

thread_local! {
    /// Scratch for the activation side data of the current matmul or lone
    /// dot product (reused, so decoding allocates nothing per step).
    static ACT_SIDE: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
    /// Scratch for the prepared weight tile a task is working on.
    static PREPARED: std::cell::RefCell<Vec<Line>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// One weight row (`w`, exactly `n` elements) against one activation row
/// (`a`, exactly `n` elements) by `kernel`, as [`run`] would compute it.
pub(crate) fn dot(kernel: &MatmulKernel, ty: GgmlType, n: usize, w: &[u8], a: &[u8]) -> f32 {
    match kernel {
        MatmulKernel::Pairs(dot) => dot(n, w, a),
        MatmulKernel::Rows(rows) => ACT_SIDE.with_borrow_mut(|side| {
            side.clear();
            (rows.side_data)(ty, a, a.len(), 1, side);
            let mut out = [0.0f32];
            (rows.dot)(n, w, a, a.len(), side, &mut out);
            out[0]
        }),
        MatmulKernel::Tiles(tiles) => ACT_SIDE.with_borrow_mut(|side| {
            PREPARED.with_borrow_mut(|prepared| {
                let matrix = WeightMatrix {
                    data: w,
                    ty,
                    rows: 1,
                    cols: n,
                };
                prepared.resize((tiles.prepared_lines)(n), Line([0; 64]));
                (tiles.prepare)(&matrix, 0, prepared);
                side.clear();
                (tiles.side_data)(a, a.len(), 1, side);
                let mut out = [0.0f32; MAX_TILE_OUTPUTS];
                (tiles.compute)(prepared, n, a, a.len(), side, 1, &mut out[..tiles.rows]);
                out[0]
            })
        }),
    }
}

/// Raw output pointer shared by tasks that write disjoint elements.
struct OutPtr(*mut f32);
// SAFETY: every task writes a disjoint set of indices (its own rows), and
// `ThreadPool::run` returns only after all tasks finished.
unsafe impl Sync for OutPtr {}

/// `out[t * out_stride + r] = dot(weight row r, activation row t)` for `t` in
/// `0..n_tokens`, `r` in `0..rows`.
///
/// `act` holds `n_tokens` rows of `activation_row_bytes(w.ty, w.cols)` bytes
/// each (see [`crate::quantize_activation_row`]). Rows are split across the
/// pool; for `n_tokens > 1` each task tiles tokens so a weight row is read
/// once per tile rather than once per token. Every output equals
/// [`crate::vec_dot`] of its row pair exactly.
///
/// # Panics
/// If the shapes disagree: `w` was not built by [`WeightMatrix::new`] with a
/// consistent shape, `act` is shorter than `n_tokens` rows, `out_stride <
/// rows`, or `out` is shorter than `(n_tokens - 1) * out_stride + rows`.
pub(crate) fn run(
    kernel: &MatmulKernel,
    pool: &ThreadPool,
    w: &WeightMatrix,
    act: &[u8],
    n_tokens: usize,
    out: &mut [f32],
    out_stride: usize,
) {
    if n_tokens == 0 || w.rows == 0 {
        return;
    }
    let w_row_bytes = WeightMatrix::row_bytes_of(w.ty, w.cols)
        .unwrap_or_else(|e| panic!("matmul: bad weight shape: {e}"));
    let a_row_bytes = activation_row_bytes(w.ty, w.cols).unwrap_or_else(|e| panic!("matmul: {e}"));
    assert!(
        w.data.len() >= w.rows * w_row_bytes,
        "matmul: weight data has {} bytes, {} rows need {}",
        w.data.len(),
        w.rows,
        w.rows * w_row_bytes
    );
    assert!(
        act.len() >= n_tokens * a_row_bytes,
        "matmul: activations have {} bytes, {n_tokens} rows need {}",
        act.len(),
        n_tokens * a_row_bytes
    );
    assert!(
        out_stride >= w.rows,
        "matmul: out_stride {out_stride} < rows {}",
        w.rows
    );
    // Checked: the unsafe writes below rely on this bound being exact.
    let out_needed = (n_tokens - 1)
        .checked_mul(out_stride)
        .and_then(|v| v.checked_add(w.rows))
        .unwrap_or_else(|| {
            panic!("matmul: {n_tokens} tokens × stride {out_stride} overflows usize")
        });
    assert!(
        out.len() >= out_needed,
        "matmul: output has {} floats, needs {out_needed}",
        out.len()
    );

    let (task_bytes, max_rows) = if n_tokens == 1 {
        (DECODE_TASK_BYTES, DECODE_MAX_ROWS_PER_TASK)
    } else {
        (TASK_BYTES, MAX_ROWS_PER_TASK)
    };
    let rows_per_task = (task_bytes / w_row_bytes.max(1)).clamp(MIN_ROWS_PER_TASK, max_rows);
    // Enough tasks per thread to balance uneven progress, unless that would
    // make tasks trivially small.
    let balanced = w.rows.div_ceil(pool.n_threads() * 4).max(MIN_ROWS_PER_TASK);
    // Tile kernels take whole tiles of rows.
    let rows_per_task = match kernel {
        MatmulKernel::Tiles(tiles) => rows_per_task.min(balanced).next_multiple_of(tiles.rows),
        _ => rows_per_task.min(balanced),
    };
    let n_tasks = w.rows.div_ceil(rows_per_task);
    let out_ptr = OutPtr(out.as_mut_ptr());
    let out_ptr = &out_ptr;
    // SAFETY (every store below): (t, r) with t < n_tokens, r < w.rows gives
    // t * out_stride + r < out_needed <= out.len(), and row r belongs to one task.
    let store = |t: usize, r: usize, v: f32| unsafe { *out_ptr.0.add(t * out_stride + r) = v };
    let rows_of = |task: usize| task * rows_per_task..((task + 1) * rows_per_task).min(w.rows);

    // Where a type has a multi-row kernel it also serves decode (one token): it
    // reads the activation side data prepared once here instead of re-deriving
    // it for every weight row.
    let rows_kernel = match kernel {
        MatmulKernel::Rows(rows) => rows,
        MatmulKernel::Tiles(tiles) => {
            run_tiles(
                tiles,
                pool,
                w,
                act,
                n_tokens,
                a_row_bytes,
                n_tasks,
                &rows_of,
                &store,
            );
            return;
        }
        MatmulKernel::Pairs(dot) => {
            pool.run(n_tasks, &|task| {
                for r in rows_of(task) {
                    let w_row = &w.data[r * w_row_bytes..(r + 1) * w_row_bytes];
                    for t in 0..n_tokens {
                        store(
                            t,
                            r,
                            dot(w.cols, w_row, &act[t * a_row_bytes..(t + 1) * a_row_bytes]),
                        );
                    }
                }
            });
            return;
        }
    };
    // One call per group of `tokens` tokens: a weight row is unpacked once per
    // group and stays in L1 for all of its tokens.
    let RowKernel {
        dot: multi,
        tokens: group,
        side_data,
        side_words,
    } = *rows_kernel;
    assert!(
        (1..=MAX_ROW_KERNEL_TOKENS).contains(&group),
        "matmul: row kernel groups of {group} tokens"
    );
    let n_groups = n_tokens.div_ceil(group);
    ACT_SIDE.with_borrow_mut(|side| {
        side.clear();
        for g in 0..n_groups {
            let t = g * group;
            let rows = (n_tokens - t).min(group);
            let acts = &act[t * a_row_bytes..(t + rows) * a_row_bytes];
            side_data(w.ty, acts, a_row_bytes, rows, side);
        }
        let side: &[f32] = side;
        // Every group but the last has `group` rows, so group g starts at g full
        // groups (a lone last row may take fewer words).
        let group_words = side_words(w.ty, w.cols, group);
        pool.run(n_tasks, &|task| {
            let mut values = [0.0f32; MAX_ROW_KERNEL_TOKENS];
            for g in 0..n_groups {
                let t = g * group;
                let rows = (n_tokens - t).min(group);
                for r in rows_of(task) {
                    let w_row = &w.data[r * w_row_bytes..(r + 1) * w_row_bytes];
                    multi(
                        w.cols,
                        w_row,
                        &act[t * a_row_bytes..],
                        a_row_bytes,
                        &side[g * group_words..],
                        &mut values[..rows],
                    );
                    for (j, &v) in values[..rows].iter().enumerate() {
                        store(t + j, r, v);
                    }
                }
            }
        });
    });
}

/// The tile kernels' matmul: every task prepares its tiles of rows one at a
/// time and dots each with every group of activation rows.
#[allow(clippy::too_many_arguments)]
fn run_tiles(
    tiles: &TileKernel,
    pool: &ThreadPool,
    w: &WeightMatrix,
    act: &[u8],
    n_tokens: usize,
    a_row_bytes: usize,
    n_tasks: usize,
    rows_of: &(dyn Fn(usize) -> std::ops::Range<usize> + Sync),
    store: &(dyn Fn(usize, usize, f32) + Sync),
) {
    let TileKernel {
        rows: tile_rows,
        tokens: group,
        prepared_lines,
        prepare,
        side_words,
        side_data,
        compute,
        fused,
    } = *tiles;
    assert!(
        tile_rows * group <= MAX_TILE_OUTPUTS,
        "matmul: tiles of {tile_rows} × {group}"
    );
    let lines = prepared_lines(w.cols);
    let words = side_words(w.cols);
    ACT_SIDE.with_borrow_mut(|side| {
        side.clear();
        side_data(&act[..n_tokens * a_row_bytes], a_row_bytes, n_tokens, side);
        let side: &[f32] = side;
        let store_tile = |first: usize, valid: usize, t: usize, n_tok: usize, values: &[f32]| {
            for j in 0..n_tok {
                for lane in 0..valid {
                    store(t + j, first + lane, values[j * tile_rows + lane]);
                }
            }
        };
        if n_tokens <= group {
            pool.run(n_tasks, &|task| {
                let task_rows = rows_of(task);
                for first in task_rows.clone().step_by(tile_rows) {
                    let mut values = [0.0f32; MAX_TILE_OUTPUTS];
                    let values = &mut values[..n_tokens * tile_rows];
                    fused(w, first, act, a_row_bytes, side, n_tokens, values);
                    store_tile(
                        first,
                        (task_rows.end - first).min(tile_rows),
                        0,
                        n_tokens,
                        values,
                    );
                }
            });
            return;
        }
        pool.run(n_tasks, &|task| {
            PREPARED.with_borrow_mut(|prepared| {
                prepared.resize(lines, Line([0; 64]));
                let task_rows = rows_of(task);
                for first in task_rows.clone().step_by(tile_rows) {
                    prepare(w, first, prepared);
                    let valid = (task_rows.end - first).min(tile_rows);
                    for t in (0..n_tokens).step_by(group) {
                        let n_tok = (n_tokens - t).min(group);
                        let mut values = [0.0f32; MAX_TILE_OUTPUTS];
                        compute(
                            prepared,
                            w.cols,
                            &act[t * a_row_bytes..],
                            a_row_bytes,
                            &side[t * words..],
                            n_tok,
                            &mut values[..n_tok * tile_rows],
                        );
                        store_tile(first, valid, t, n_tok, &values);
                    }
                }
            })
        });
    });
}
