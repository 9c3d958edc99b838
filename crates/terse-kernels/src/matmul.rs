//! Weight-matrix × activation products, split by rows across the pool.
//!
//! Decode (one token) reads each weight byte once: per row, one kernel call
//! with lengths checked once per matmul. Prefill (many tokens) reuses weights:
//! a task owns a chunk of rows and walks the tokens in groups of
//! [`MULTI_TOKENS`], so each weight row is unpacked once per group while it is
//! dotted with every activation row of the group, and the chunk stays in L2
//! across groups.

use crate::blocks;
use crate::pool::ThreadPool;
use crate::{
    activation_row_bytes, group_side_data, group_side_words, is_supported, multi_dot_fn,
    vec_dot_fn, GgmlType, KernelError, ACT_SIDE, MULTI_TOKENS,
};

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
pub fn matmul(
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
    let dot =
        vec_dot_fn(w.ty).unwrap_or_else(|| panic!("matmul: unsupported weight type {}", w.ty));
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
    let rows_per_task = rows_per_task.min(balanced);
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
    let multi = match multi_dot_fn(w.ty) {
        Some(multi) => multi,
        None => {
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
    // One call per group of MULTI_TOKENS tokens: a weight row is unpacked once
    // per group and stays in L1 for all of its tokens.
    let n_groups = n_tokens.div_ceil(MULTI_TOKENS);
    ACT_SIDE.with_borrow_mut(|side| {
        side.clear();
        for g in 0..n_groups {
            let t = g * MULTI_TOKENS;
            let rows = (n_tokens - t).min(MULTI_TOKENS);
            let acts = &act[t * a_row_bytes..(t + rows) * a_row_bytes];
            group_side_data(w.ty, acts, a_row_bytes, rows, side);
        }
        let side: &[f32] = side;
        // Every group but the last has MULTI_TOKENS rows, so group g starts at
        // g full groups (a lone last row may take fewer words).
        let group_words = group_side_words(w.ty, w.cols, MULTI_TOKENS);
        pool.run(n_tasks, &|task| {
            for g in 0..n_groups {
                let t = g * MULTI_TOKENS;
                let rows = (n_tokens - t).min(MULTI_TOKENS);
                for r in rows_of(task) {
                    let w_row = &w.data[r * w_row_bytes..(r + 1) * w_row_bytes];
                    let mut values = [0.0f32; MULTI_TOKENS];
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
