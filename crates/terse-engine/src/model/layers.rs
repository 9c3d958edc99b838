//! Building blocks shared by the architectures: quantized linear layers, RMS norm, RoPE,
//! activations, and causal attention over the paged KV cache.
//!
//! Each architecture file strings these together in its own forward pass; nothing here
//! knows which model it serves.

use super::{BatchLayout, Compute, ModelError};
use crate::kv_cache::{KvCache, BLOCK_TOKENS};
use half::f16;
use terse_gguf::{GgmlType, GgufFile};
use terse_kernels::{ThreadPool, WeightMatrix};

/// A weight matrix that stays quantized in the memory map, with an optional f32 bias.
#[derive(Debug, Clone)]
pub struct Linear {
    pub name: String,
    /// Byte range of the weights in the GGUF file.
    start: usize,
    end: usize,
    pub ty: GgmlType,
    /// Output features.
    pub rows: usize,
    /// Input features.
    pub cols: usize,
    pub bias: Option<Vec<f32>>,
}

impl Linear {
    /// Loads `name` as a [rows, cols] matrix (GGUF dims [cols, rows]); checks shape and type.
    pub fn load(gguf: &GgufFile, name: &str, cols: usize, rows: usize) -> Result<Self, ModelError> {
        let t = gguf
            .tensor(name)
            .ok_or_else(|| ModelError::MissingTensor(name.to_string()))?;
        let dims: Vec<usize> = t.dims.iter().map(|&d| d as usize).collect();
        let expected = [cols, rows];
        if dims.as_slice() != expected {
            return Err(ModelError::BadTensorShape {
                tensor: name.to_string(),
                expected: expected.to_vec(),
                found: dims,
            });
        }
        if !terse_kernels::is_supported(t.ggml_type) {
            return Err(ModelError::UnsupportedTensorType {
                tensor: name.to_string(),
                ty: t.ggml_type,
            });
        }
        let start = t.offset as usize;
        Ok(Linear {
            name: name.to_string(),
            start,
            end: start + t.size_bytes as usize,
            ty: t.ggml_type,
            rows,
            cols,
            bias: None,
        })
    }

    /// Like [`Linear::load`], with the bias `bias_name` if the file has it.
    pub fn load_with_bias(
        gguf: &GgufFile,
        name: &str,
        bias_name: &str,
        cols: usize,
        rows: usize,
    ) -> Result<Self, ModelError> {
        let mut lin = Linear::load(gguf, name, cols, rows)?;
        if gguf.tensor(bias_name).is_some() {
            lin.bias = Some(load_f32_vector(gguf, bias_name, rows)?);
        }
        Ok(lin)
    }

    pub fn matrix<'a>(&self, weights: &'a [u8]) -> WeightMatrix<'a> {
        WeightMatrix {
            data: &weights[self.start..self.end],
            ty: self.ty,
            rows: self.rows,
            cols: self.cols,
        }
    }

    /// Bytes read from the weights per forward pass.
    pub fn bytes(&self) -> usize {
        self.end - self.start
    }

    /// out[t] = W · x[t] (+ bias) for each of the n_tokens rows of x.
    /// x: [n_tokens, cols] → out: [n_tokens, rows]. `act` is scratch for the quantized x.
    pub fn forward(
        &self,
        cx: Compute,
        x: &[f32],
        n_tokens: usize,
        act: &mut Vec<u8>,
        out: &mut [f32],
    ) {
        self.forward_as(MATMUL, cx, x, n_tokens, act, out);
    }

    /// [`Linear::forward`], profiled as the operation `op` rather than as a plain matmul.
    pub fn forward_as(
        &self,
        op: &'static str,
        cx: Compute,
        x: &[f32],
        n_tokens: usize,
        act: &mut Vec<u8>,
        out: &mut [f32],
    ) {
        cx.profiler.time(QUANTIZE_ACTIVATIONS, || {
            self.quantize_input(cx.pool, x, n_tokens, act)
        });
        self.forward_quantized(op, cx, act, n_tokens, out);
    }

    /// Quantizes x: [n_tokens, cols] into the activation format of this matrix.
    fn quantize_input(&self, pool: &ThreadPool, x: &[f32], n_tokens: usize, act: &mut Vec<u8>) {
        let row_bytes = terse_kernels::activation_row_bytes(self.ty, self.cols).unwrap_or(0);
        act.resize(row_bytes * n_tokens, 0);
        let rows_per_chunk = (PARALLEL_MIN_ELEMENTS / self.cols.max(1)).max(1);
        par_chunks_mut(
            pool,
            act,
            rows_per_chunk * row_bytes.max(1),
            |offset, chunk| {
                let first_row = offset / row_bytes.max(1);
                for (i, dst) in chunk.chunks_exact_mut(row_bytes).enumerate() {
                    let src = &x[(first_row + i) * self.cols..(first_row + i + 1) * self.cols];
                    // Lengths were checked at load: cols is a whole number of blocks.
                    let _ = terse_kernels::quantize_activation_row(self.ty, src, dst);
                }
            },
        );
    }

    /// The product on an input already quantized by `quantize_input`, profiled as `op`.
    fn forward_quantized(
        &self,
        op: &'static str,
        cx: Compute,
        act: &[u8],
        n_tokens: usize,
        out: &mut [f32],
    ) {
        cx.profiler.time_matmul(op, self.ty, self.bytes(), || {
            let matrix = self.matrix(cx.weights);
            terse_kernels::matmul(cx.pool, &matrix, act, n_tokens, out, self.rows);
            if let Some(bias) = &self.bias {
                for row in out.chunks_exact_mut(self.rows).take(n_tokens) {
                    for (o, b) in row.iter_mut().zip(bias) {
                        *o += b;
                    }
                }
            }
        });
    }
}

/// Profile kinds of the matrix products and of quantizing their inputs.
const MATMUL: &str = "matmul";
const QUANTIZE_ACTIVATIONS: &str = "quantize activations";

/// Several projections of the same input (q/k/v, gate/up): the input is quantized once
/// per activation format, not once per matrix.
pub fn project(
    cx: Compute,
    x: &[f32],
    n_tokens: usize,
    act: &mut Vec<u8>,
    projections: &mut [(&Linear, &mut [f32])],
) {
    let mut quantized_as = None;
    for (lin, out) in projections.iter_mut() {
        let format = terse_kernels::vec_dot_type(lin.ty);
        if quantized_as != Some(format) {
            cx.profiler.time(QUANTIZE_ACTIVATIONS, || {
                lin.quantize_input(cx.pool, x, n_tokens, act)
            });
            quantized_as = Some(format);
        }
        lin.forward_quantized(MATMUL, cx, act, n_tokens, out);
    }
}

/// Bytes read by one pass over each of `matrices`.
pub fn matrices_bytes(matrices: &[&Linear]) -> usize {
    matrices.iter().map(|m| m.bytes()).sum()
}

/// Reads a 1-D F32 tensor of `len` values.
pub fn load_f32_vector(gguf: &GgufFile, name: &str, len: usize) -> Result<Vec<f32>, ModelError> {
    let t = gguf
        .tensor(name)
        .ok_or_else(|| ModelError::MissingTensor(name.to_string()))?;
    if t.n_elements() != len as u64 || t.dims.len() != 1 {
        return Err(ModelError::BadTensorShape {
            tensor: name.to_string(),
            expected: vec![len],
            found: t.dims.iter().map(|&d| d as usize).collect(),
        });
    }
    let mut out = vec![0.0; len];
    terse_kernels::dequantize_row(t.ggml_type, gguf.tensor_data(t), &mut out).map_err(|_| {
        ModelError::UnsupportedTensorType {
            tensor: name.to_string(),
            ty: t.ggml_type,
        }
    })?;
    Ok(out)
}

/// Token embedding table, kept quantized; rows are dequantized on lookup.
#[derive(Debug, Clone)]
pub struct Embedding {
    pub table: Linear,
}

impl Embedding {
    pub fn load(
        gguf: &GgufFile,
        name: &str,
        n_embd: usize,
        n_vocab: usize,
    ) -> Result<Self, ModelError> {
        Ok(Embedding {
            table: Linear::load(gguf, name, n_embd, n_vocab)?,
        })
    }

    /// out: [tokens.len(), n_embd]
    pub fn lookup(&self, weights: &[u8], tokens: &[u32], out: &mut [f32]) {
        let m = self.table.matrix(weights);
        let row_bytes = m.data.len() / m.rows;
        for (&tok, dst) in tokens.iter().zip(out.chunks_exact_mut(m.cols)) {
            let row = tok as usize * row_bytes;
            let _ = terse_kernels::dequantize_row(m.ty, &m.data[row..row + row_bytes], dst);
        }
    }
}

/// RMS normalisation with a learned per-feature scale.
#[derive(Debug, Clone)]
pub struct RmsNorm {
    pub weight: Vec<f32>,
    pub eps: f32,
}

impl RmsNorm {
    pub fn load(gguf: &GgufFile, name: &str, len: usize, eps: f32) -> Result<Self, ModelError> {
        Ok(RmsNorm {
            weight: load_f32_vector(gguf, name, len)?,
            eps,
        })
    }

    /// Normalises each row of `x` (rows of weight.len()) into `out`.
    pub fn forward(&self, x: &[f32], out: &mut [f32]) {
        let n = self.weight.len();
        for (src, dst) in x.chunks_exact(n).zip(out.chunks_exact_mut(n)) {
            let scale = rms_scale(src, self.eps);
            for ((d, &s), &w) in dst.iter_mut().zip(src).zip(&self.weight) {
                *d = s * scale * w;
            }
        }
    }

    /// Normalises each row of `x` in place.
    pub fn forward_in_place(&self, x: &mut [f32]) {
        let n = self.weight.len();
        for row in x.chunks_exact_mut(n) {
            let scale = rms_scale(row, self.eps);
            for (d, &w) in row.iter_mut().zip(&self.weight) {
                *d *= scale * w;
            }
        }
    }
}

/// 1 / sqrt(mean(x²) + eps), summed in f64 as ggml does. Four running sums
/// (one per lane of a vector) instead of one chain of dependent adds, which
/// left Gemma's many norms at 3.5% of its prefill.
fn rms_scale(x: &[f32], eps: f32) -> f32 {
    let mut lanes = [0.0f64; 4];
    let quads = x.chunks_exact(4);
    let rest: f64 = quads
        .remainder()
        .iter()
        .map(|&v| (v as f64) * (v as f64))
        .sum();
    for quad in quads {
        for (lane, &v) in lanes.iter_mut().zip(quad) {
            *lane += (v as f64) * (v as f64);
        }
    }
    let sum = (lanes[0] + lanes[1]) + (lanes[2] + lanes[3]) + rest;
    let mean = (sum / x.len() as f64) as f32;
    1.0 / (mean + eps).sqrt()
}

/// How RoPE pairs the dimensions of a head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RopeStyle {
    /// Adjacent pairs (x[2i], x[2i+1]): Llama.
    Interleaved,
    /// Halves (x[i], x[i + d/2]): Qwen2, Gemma (GPT-NeoX layout).
    Neox,
}

/// Rotary position embedding parameters of one attention layer.
#[derive(Debug, Clone)]
pub struct Rope {
    pub style: RopeStyle,
    /// Rotated dimensions per head (≤ head_dim).
    pub dims: usize,
    pub freq_base: f32,
    /// Per-pair divisors of the frequency (Llama 3 `rope_freqs.weight`), if any.
    pub freq_factors: Option<Vec<f32>>,
}

impl Rope {
    /// cos/sin of every rotated pair for each token position: [n_tokens, dims/2] each.
    pub fn tables(&self, positions: &[usize], cos: &mut Vec<f32>, sin: &mut Vec<f32>) {
        let half = self.dims / 2;
        cos.resize(positions.len() * half, 0.0);
        sin.resize(positions.len() * half, 0.0);
        let theta_scale = self.freq_base.powf(-2.0 / self.dims as f32);
        for (t, &pos) in positions.iter().enumerate() {
            // Successive products, as ggml computes theta.
            let mut theta = pos as f32;
            for i in 0..half {
                let factor = self.freq_factors.as_ref().map_or(1.0, |f| f[i]);
                let angle = theta / factor;
                cos[t * half + i] = angle.cos();
                sin[t * half + i] = angle.sin();
                theta *= theta_scale;
            }
        }
    }

    /// Rotates every head of every token in x: [n_tokens, n_heads * head_dim].
    pub fn apply(&self, x: &mut [f32], head_dim: usize, cos: &[f32], sin: &[f32]) {
        let half = self.dims / 2;
        let n_tokens = cos.len() / half.max(1);
        let per_token = x.len() / n_tokens.max(1);
        for (t, row) in x.chunks_exact_mut(per_token).enumerate() {
            let (c, s) = (
                &cos[t * half..(t + 1) * half],
                &sin[t * half..(t + 1) * half],
            );
            for head in row.chunks_exact_mut(head_dim) {
                for i in 0..half {
                    let (a, b) = match self.style {
                        RopeStyle::Interleaved => (2 * i, 2 * i + 1),
                        RopeStyle::Neox => (i, i + half),
                    };
                    let (x0, x1) = (head[a], head[b]);
                    head[a] = x0 * c[i] - x1 * s[i];
                    head[b] = x0 * s[i] + x1 * c[i];
                }
            }
        }
    }
}

/// x += y, element-wise (residual connections).
pub fn add_in_place(x: &mut [f32], y: &[f32]) {
    for (a, &b) in x.iter_mut().zip(y) {
        *a += b;
    }
}

/// Below this many elements an element-wise operation runs on the calling thread:
/// handing it to the pool would cost more than it saves.
const PARALLEL_MIN_ELEMENTS: usize = 16 * 1024;

/// Runs `f(offset, chunk)` over consecutive chunks of `data` of `chunk_len` elements
/// (the last may be shorter), spread across the pool; inline when there is one chunk.
fn par_chunks_mut<T: Send>(
    pool: &ThreadPool,
    data: &mut [T],
    chunk_len: usize,
    f: impl Fn(usize, &mut [T]) + Sync,
) {
    let chunk_len = chunk_len.max(1);
    let n_chunks = data.len().div_ceil(chunk_len);
    if n_chunks <= 1 {
        f(0, data);
        return;
    }
    let (ptr, len) = (SharedMut(data.as_mut_ptr()), data.len());
    pool.run(n_chunks, &|i| {
        let start = i * chunk_len;
        let end = (start + chunk_len).min(len);
        // SAFETY: chunk i is data[start..end]; chunks are disjoint and `pool.run`
        // returns only after every task finished, while `data` is still borrowed.
        let chunk = unsafe { std::slice::from_raw_parts_mut(ptr.ptr().add(start), end - start) };
        f(start, chunk);
    });
}

/// A pointer to a buffer whose disjoint parts the pool's tasks write.
struct SharedMut<T>(*mut T);
// SAFETY: see `par_chunks_mut`: every task touches only its own chunk.
unsafe impl<T: Send> Sync for SharedMut<T> {}

impl<T> SharedMut<T> {
    /// Through a method, so closures capture the whole (Sync) wrapper, not the raw field.
    fn ptr(&self) -> *mut T {
        self.0
    }
}

/// SiLU(gate) * up, in place in `gate`.
pub fn swiglu(pool: &ThreadPool, gate: &mut [f32], up: &[f32]) {
    par_chunks_mut(pool, gate, PARALLEL_MIN_ELEMENTS, |offset, gate| {
        terse_kernels::swiglu(gate, &up[offset..offset + gate.len()])
    });
}

/// GELU(gate) * up (tanh approximation), in place in `gate`.
///
/// ggml evaluates GELU through an f16 lookup table: the input is rounded to f16 and the
/// result is an f16 value. We round the same way so Gemma matches llama.cpp closely.
pub fn geglu(pool: &ThreadPool, gate: &mut [f32], up: &[f32]) {
    let table = gelu_table();
    par_chunks_mut(pool, gate, PARALLEL_MIN_ELEMENTS, |offset, gate| {
        terse_kernels::geglu_f16_table(gate, &up[offset..offset + gate.len()], table)
    });
}

/// GELU (tanh approximation) of every f16 value, rounded to f16 and widened back: what
/// ggml's table holds. A lookup replaces a `tanh` per element (16% of Gemma's prefill).
fn gelu_table() -> &'static [f32] {
    static TABLE: std::sync::OnceLock<Vec<f32>> = std::sync::OnceLock::new();
    TABLE.get_or_init(|| {
        const SQRT_2_OVER_PI: f32 = 0.797_884_6;
        const COEF_A: f32 = 0.044_715;
        (0..=u16::MAX)
            .map(|bits| {
                let x = f16::from_bits(bits).to_f32();
                let y = 0.5 * x * (1.0 + (SQRT_2_OVER_PI * x * (1.0 + COEF_A * x * x)).tanh());
                f16::from_f32(y).to_f32()
            })
            .collect()
    })
}

/// Shape of one attention layer.
#[derive(Debug, Clone, Copy)]
pub struct AttentionShape {
    pub n_head: usize,
    pub n_head_kv: usize,
    pub head_dim_k: usize,
    pub head_dim_v: usize,
    /// Multiplies q·k before the softmax.
    pub scale: f32,
    /// Sliding window: a query at position p sees keys at positions > p - window.
    pub window: Option<usize>,
}

/// Writes this batch's keys and values ([n_tokens, n_head_kv * head_dim]) into the cache
/// at each token's sequence slot, as f16.
pub fn store_kv(kv: &mut KvCache, layer: usize, batch: &BatchLayout, k: &[f32], v: &[f32]) {
    let shape = kv.shape();
    for t in 0..batch.n_tokens() {
        let (block, slot) = batch.slot(t);
        let (ko, vo) = (kv.k_offset(block, slot), kv.v_offset(block, slot));
        let (keys, values) = kv.layer_mut(layer);
        terse_kernels::f32_to_f16_row(
            &k[t * shape.k_dim..(t + 1) * shape.k_dim],
            &mut keys[ko..ko + shape.k_dim],
        );
        terse_kernels::f32_to_f16_row(
            &v[t * shape.v_dim..(t + 1) * shape.v_dim],
            &mut values[vo..vo + shape.v_dim],
        );
    }
}

thread_local! {
    /// The value rows of one attention chunk side by side (see [`attention`]).
    static CHUNK_VALUES: std::cell::Cell<Vec<f16>> = const { std::cell::Cell::new(Vec::new()) };
}

/// Scores processed per chunk of the online softmax.
const SCORE_CHUNK: usize = 64;
/// Most query heads one attention task serves (they share each key and value row).
const MAX_TASK_HEADS: usize = 8;

/// Causal attention of every query in q: [n_tokens, n_head * head_dim_k] over the cache
/// positions of its own sequence, into out: [n_tokens, n_head * head_dim_v].
///
/// Positions are processed in chunks with an online (running-max) softmax, so memory
/// stays constant whatever the context length. A task serves one token and a group of
/// query heads that share a key/value head, so each cached row is widened from f16
/// once for the whole group; groups are split when that leaves threads idle.
pub fn attention(
    pool: &ThreadPool,
    kv: &KvCache,
    layer: usize,
    batch: &BatchLayout,
    shape: &AttentionShape,
    q: &[f32],
    out: &mut [f32],
) {
    let n_tokens = batch.n_tokens();
    let group = shape.n_head / shape.n_head_kv;
    // Enough tasks for every thread (decode has one token), each at most MAX_TASK_HEADS.
    let parts_for_threads = (2 * pool.n_threads()).div_ceil(n_tokens * shape.n_head_kv);
    let parts = parts_for_threads
        .max(group.div_ceil(MAX_TASK_HEADS))
        .min(group);
    let heads_per_task = group.div_ceil(parts);
    let parts = group.div_ceil(heads_per_task);
    let (keys, values) = kv.layer(layer);
    let k_dim = kv.shape().k_dim;
    let v_dim = kv.shape().v_dim;
    let (hk, hv) = (shape.head_dim_k, shape.head_dim_v);
    let out_ptr = SharedMut(out.as_mut_ptr());
    let out_len = out.len();
    let task = |i: usize| {
        let (t, kv_head, part) = (
            i / (shape.n_head_kv * parts),
            i / parts % shape.n_head_kv,
            i % parts,
        );
        let h0 = kv_head * group + part * heads_per_task;
        let nh = heads_per_task.min((kv_head + 1) * group - h0);
        let pos = batch.pos(t);
        let first = shape.window.map_or(0, |w| (pos + 1).saturating_sub(w));
        let blocks = batch.blocks(t);
        let slot = |p: usize| blocks[p / BLOCK_TOKENS] as usize * BLOCK_TOKENS + p % BLOCK_TOKENS;
        // [nh, hk] and [nh, hv]: the heads are adjacent in q and out.
        let queries = &q[(t * shape.n_head + h0) * hk..(t * shape.n_head + h0 + nh) * hk];
        let o_start = (t * shape.n_head + h0) * hv;
        debug_assert!(o_start + nh * hv <= out_len);
        // SAFETY: task i owns out[o_start..o_start + nh * hv]; tasks do not overlap.
        let acc = unsafe { std::slice::from_raw_parts_mut(out_ptr.ptr().add(o_start), nh * hv) };
        acc.fill(0.0);
        let mut max = [f32::NEG_INFINITY; MAX_TASK_HEADS];
        let mut sum = [0.0f32; MAX_TASK_HEADS];
        // [SCORE_CHUNK, nh]: position-major, so one position's weights are adjacent.
        let mut scores = [0.0f32; SCORE_CHUNK * MAX_TASK_HEADS];
        let mut shifts = [0.0f32; SCORE_CHUNK * MAX_TASK_HEADS];
        // Reused across tasks on this thread: no allocation per task.
        let mut chunk_values = CHUNK_VALUES.take();
        let mut p0 = first;
        while p0 <= pos {
            let p1 = (p0 + SCORE_CHUNK).min(pos + 1);
            let chunk = &mut scores[..(p1 - p0) * nh];
            for (row, p) in chunk.chunks_exact_mut(nh).zip(p0..p1) {
                let ko = slot(p) * k_dim + kv_head * hk;
                terse_kernels::dot_f16_rows(&keys[ko..ko + hk], queries, row);
            }
            for g in 0..nh {
                let chunk_max = chunk
                    .iter()
                    .skip(g)
                    .step_by(nh)
                    .fold(f32::NEG_INFINITY, |m, &s| m.max(s * shape.scale));
                if chunk_max > max[g] {
                    let rescale = (max[g] - chunk_max).exp();
                    sum[g] *= rescale;
                    for a in &mut acc[g * hv..(g + 1) * hv] {
                        *a *= rescale;
                    }
                    max[g] = chunk_max;
                }
            }
            // Each score's own head maximum, so the exponentials run as one pass.
            let shift = &mut shifts[..chunk.len()];
            for row in shift.chunks_exact_mut(nh) {
                row.copy_from_slice(&max[..nh]);
            }
            terse_kernels::exp_scaled_shifted(chunk, shape.scale, shift);
            for row in chunk.chunks_exact(nh) {
                for g in 0..nh {
                    sum[g] += row[g];
                }
            }
            // The chunk's value rows side by side, so one call weighs them all.
            chunk_values.clear();
            for p in p0..p1 {
                let vo = slot(p) * v_dim + kv_head * hv;
                chunk_values.extend_from_slice(&values[vo..vo + hv]);
            }
            terse_kernels::accumulate_weighted_f16_rows(acc, chunk, &chunk_values, hv);
            p0 = p1;
        }
        CHUNK_VALUES.set(chunk_values);
        for g in 0..nh {
            let inv = if sum[g] > 0.0 { 1.0 / sum[g] } else { 0.0 };
            for a in &mut acc[g * hv..(g + 1) * hv] {
                *a *= inv;
            }
        }
    };
    pool.run(n_tokens * shape.n_head_kv * parts, &task);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kv_cache::KvCacheShape;
    use rand::{Rng, SeedableRng};

    /// Softmax attention in f64 over f16-rounded keys and values, one query at a time.
    fn naive_attention(
        k: &[f32],
        v: &[f32],
        q: &[f32],
        shape: &AttentionShape,
        n_pos: usize,
    ) -> Vec<f32> {
        let (hk, hv, group) = (
            shape.head_dim_k,
            shape.head_dim_v,
            shape.n_head / shape.n_head_kv,
        );
        let round = |x: f32| f64::from(f16::from_f32(x).to_f32());
        let mut out = vec![0.0f32; n_pos * shape.n_head * hv];
        for t in 0..n_pos {
            let first = shape.window.map_or(0, |w| (t + 1).saturating_sub(w));
            for h in 0..shape.n_head {
                let kvh = h / group;
                let qh = &q[(t * shape.n_head + h) * hk..][..hk];
                let scores: Vec<f64> = (first..=t)
                    .map(|p| {
                        let kp = &k[(p * shape.n_head_kv + kvh) * hk..][..hk];
                        kp.iter()
                            .zip(qh)
                            .map(|(&a, &b)| round(a) * f64::from(b))
                            .sum::<f64>()
                            * f64::from(shape.scale)
                    })
                    .collect();
                let max = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                let weights: Vec<f64> = scores.iter().map(|s| (s - max).exp()).collect();
                let total: f64 = weights.iter().sum();
                for (j, p) in (first..=t).enumerate() {
                    let vp = &v[(p * shape.n_head_kv + kvh) * hv..][..hv];
                    for (o, &x) in out[(t * shape.n_head + h) * hv..][..hv].iter_mut().zip(vp) {
                        *o += (weights[j] / total * round(x)) as f32;
                    }
                }
            }
        }
        out
    }

    #[test]
    fn grouped_attention_matches_a_naive_softmax() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(5);
        let pool = ThreadPool::new(2);
        // Qwen 0.5B's grouping (7 query heads per key/value head), Gemma's window.
        for (n_head, n_head_kv, head_dim, window) in [(14, 2, 64, None), (4, 1, 256, Some(50))] {
            let n_pos = 150; // more than two score chunks
            let shape = AttentionShape {
                n_head,
                n_head_kv,
                head_dim_k: head_dim,
                head_dim_v: head_dim,
                scale: 1.0 / (head_dim as f32).sqrt(),
                window,
            };
            let kv_width = n_head_kv * head_dim;
            let mut kv = KvCache::new(KvCacheShape {
                n_layers: 1,
                k_dim: kv_width,
                v_dim: kv_width,
                capacity_tokens: 256,
            });
            let seq = kv.new_sequence();
            kv.append(seq, n_pos).unwrap();
            let mut batch = BatchLayout::default();
            batch.push_span(kv.blocks(seq).unwrap(), 0, n_pos);
            let mut random =
                |n: usize| -> Vec<f32> { (0..n).map(|_| rng.gen_range(-2.0..2.0)).collect() };
            let (k, v, q) = (
                random(n_pos * kv_width),
                random(n_pos * kv_width),
                random(n_pos * n_head * head_dim),
            );
            store_kv(&mut kv, 0, &batch, &k, &v);
            let mut out = vec![0.0f32; n_pos * n_head * head_dim];
            attention(&pool, &kv, 0, &batch, &shape, &q, &mut out);
            let expected = naive_attention(&k, &v, &q, &shape, n_pos);
            let worst = out
                .iter()
                .zip(&expected)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0f32, f32::max);
            assert!(worst < 1e-4, "{n_head}/{n_head_kv} heads: max |Δ| {worst}");
        }
    }
}
