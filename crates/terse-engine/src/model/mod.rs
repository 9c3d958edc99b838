//! Model architectures and what they share: hyper-parameters read from GGUF metadata,
//! the packed-batch layout, scratch buffers, and the output head.
//!
//! One file per architecture (`qwen2`, `llama`, `gemma3`); each has a forward pass that
//! reads top to bottom over a packed batch of spans from several sequences.

pub mod gemma3;
pub mod layers;
pub mod llama;
pub mod qwen2;

use crate::kv_cache::{KvCache, BLOCK_TOKENS};
use crate::profile::Profiler;
use layers::{Embedding, Linear, RmsNorm};
use terse_gguf::{GgmlType, GgufError, GgufFile};
use terse_kernels::ThreadPool;

/// Architectures this engine runs, as named by `general.architecture`.
pub const SUPPORTED_ARCHITECTURES: &[&str] = &["qwen2", "llama", "gemma3"];

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("unsupported architecture '{found}' (supported: {})", SUPPORTED_ARCHITECTURES.join(", "))]
    UnknownArchitecture { found: String },
    #[error("tensor '{0}' is missing from the model file")]
    MissingTensor(String),
    #[error("tensor '{tensor}' has shape {found:?}, expected {expected:?}")]
    BadTensorShape {
        tensor: String,
        expected: Vec<usize>,
        found: Vec<usize>,
    },
    #[error("tensor '{tensor}' has type {ty}, which this engine cannot compute with")]
    UnsupportedTensorType { tensor: String, ty: GgmlType },
    #[error("{key}: {feature} is not supported by this engine")]
    UnsupportedFeature { key: String, feature: String },
    #[error("bad hyper-parameter {key}: {detail}")]
    BadHyperParameter { key: String, detail: String },
    #[error(transparent)]
    Gguf(#[from] GgufError),
}

/// Hyper-parameters common to the decoder-only transformers we run.
#[derive(Debug, Clone)]
pub struct HyperParams {
    pub architecture: String,
    pub n_layers: usize,
    pub n_embd: usize,
    pub n_ff: usize,
    pub n_head: usize,
    pub n_head_kv: usize,
    pub head_dim_k: usize,
    pub head_dim_v: usize,
    pub n_vocab: usize,
    pub n_ctx_train: usize,
    pub rms_eps: f32,
    pub rope_freq_base: f32,
    pub rope_dims: usize,
}

impl HyperParams {
    pub fn from_gguf(gguf: &GgufFile) -> Result<Self, ModelError> {
        let arch = gguf.architecture()?.to_string();
        let key = |k: &str| format!("{arch}.{k}");
        // Refuse what the forward passes do not implement rather than run it wrongly.
        if let Some(experts) = gguf.opt_u32(&key("expert_count"))?.filter(|&n| n > 0) {
            return Err(ModelError::UnsupportedFeature {
                key: key("expert_count"),
                feature: format!("a mixture of {experts} experts"),
            });
        }
        if let Some(scaling) = gguf
            .opt_str(&key("rope.scaling.type"))?
            .filter(|&t| t != "none")
        {
            return Err(ModelError::UnsupportedFeature {
                key: key("rope.scaling.type"),
                feature: format!("RoPE scaling '{scaling}'"),
            });
        }
        let n_embd = gguf.get_u32(&key("embedding_length"))? as usize;
        let n_head = gguf.get_u32(&key("attention.head_count"))? as usize;
        let n_head_kv = gguf
            .opt_u32(&key("attention.head_count_kv"))?
            .map_or(n_head, |v| v as usize);
        if n_head == 0 || n_head_kv == 0 || !n_head.is_multiple_of(n_head_kv) {
            return Err(ModelError::BadHyperParameter {
                key: key("attention.head_count_kv"),
                detail: format!(
                    "{n_head} query heads cannot be grouped over {n_head_kv} key/value heads"
                ),
            });
        }
        let head_dim_k = gguf
            .opt_u32(&key("attention.key_length"))?
            .map_or(n_embd / n_head, |v| v as usize);
        let head_dim_v = gguf
            .opt_u32(&key("attention.value_length"))?
            .map_or(n_embd / n_head, |v| v as usize);
        let n_vocab = match gguf.opt_u32(&key("vocab_size"))? {
            Some(v) => v as usize,
            None => gguf.get_str_array("tokenizer.ggml.tokens")?.len(),
        };
        let rope_dims = gguf
            .opt_u32(&key("rope.dimension_count"))?
            .map_or(head_dim_k, |v| v as usize);
        if rope_dims > head_dim_k || rope_dims % 2 != 0 {
            return Err(ModelError::BadHyperParameter {
                key: key("rope.dimension_count"),
                detail: format!("{rope_dims} rotated dimensions for heads of {head_dim_k}"),
            });
        }
        Ok(HyperParams {
            n_layers: gguf.get_u32(&key("block_count"))? as usize,
            n_embd,
            n_ff: gguf.get_u32(&key("feed_forward_length"))? as usize,
            n_head,
            n_head_kv,
            head_dim_k,
            head_dim_v,
            n_vocab,
            n_ctx_train: gguf.opt_u32(&key("context_length"))?.unwrap_or(2048) as usize,
            rms_eps: gguf.get_f32(&key("attention.layer_norm_rms_epsilon"))?,
            rope_freq_base: gguf.opt_f32(&key("rope.freq_base"))?.unwrap_or(10_000.0),
            rope_dims,
            architecture: arch,
        })
    }
}

/// Where each token of a packed batch goes: its sequence's block table and its position.
#[derive(Debug, Default)]
pub struct BatchLayout {
    positions: Vec<usize>,
    token_span: Vec<usize>,
    /// Block tables of all spans, concatenated; span i's is block_tables[table_ranges[i].0..table_ranges[i].1].
    block_tables: Vec<u32>,
    table_ranges: Vec<(usize, usize)>,
}

impl BatchLayout {
    pub fn clear(&mut self) {
        self.positions.clear();
        self.token_span.clear();
        self.block_tables.clear();
        self.table_ranges.clear();
    }

    /// Adds a span of `n` tokens at positions start_pos.. of a sequence whose cache
    /// blocks are `blocks` (already grown to hold them).
    pub fn push_span(&mut self, blocks: &[u32], start_pos: usize, n: usize) {
        let span = self.table_ranges.len();
        let begin = self.block_tables.len();
        self.block_tables.extend_from_slice(blocks);
        self.table_ranges.push((begin, self.block_tables.len()));
        self.positions.extend(start_pos..start_pos + n);
        self.token_span.extend(std::iter::repeat_n(span, n));
    }

    pub fn n_tokens(&self) -> usize {
        self.positions.len()
    }

    pub fn positions(&self) -> &[usize] {
        &self.positions
    }

    #[inline]
    pub fn pos(&self, t: usize) -> usize {
        self.positions[t]
    }

    /// Block table of the sequence token `t` belongs to.
    #[inline]
    pub fn blocks(&self, t: usize) -> &[u32] {
        let (a, b) = self.table_ranges[self.token_span[t]];
        &self.block_tables[a..b]
    }

    /// (block, slot) of the cache cell token `t` writes.
    #[inline]
    pub fn slot(&self, t: usize) -> (u32, usize) {
        let pos = self.positions[t];
        (self.blocks(t)[pos / BLOCK_TOKENS], pos % BLOCK_TOKENS)
    }
}

/// Activation buffers reused across forward passes; they grow to the largest batch seen
/// and are never shrunk, so steady-state decoding allocates nothing.
#[derive(Debug, Default)]
pub struct Scratch {
    /// Residual stream [n_tokens, n_embd].
    pub x: Vec<f32>,
    /// Normalised input of the current sub-layer [n_tokens, n_embd].
    pub xn: Vec<f32>,
    pub q: Vec<f32>,
    pub k: Vec<f32>,
    pub v: Vec<f32>,
    pub attn: Vec<f32>,
    pub proj: Vec<f32>,
    pub gate: Vec<f32>,
    pub up: Vec<f32>,
    /// Quantized activations for the current matmul.
    pub act: Vec<u8>,
    pub rope_cos: Vec<f32>,
    pub rope_sin: Vec<f32>,
    pub rope_cos_alt: Vec<f32>,
    pub rope_sin_alt: Vec<f32>,
    /// Rows of the residual stream whose outputs were asked for [n_out, n_embd].
    pub out_rows: Vec<f32>,
}

impl Scratch {
    /// Sizes the per-token buffers for `n_tokens` tokens.
    pub fn prepare(&mut self, hp: &HyperParams, n_tokens: usize) {
        let q_len = hp.n_head * hp.head_dim_k;
        let k_len = hp.n_head_kv * hp.head_dim_k;
        let v_len = hp.n_head_kv * hp.head_dim_v;
        let attn_len = hp.n_head * hp.head_dim_v;
        self.x.resize(n_tokens * hp.n_embd, 0.0);
        self.xn.resize(n_tokens * hp.n_embd, 0.0);
        self.q.resize(n_tokens * q_len, 0.0);
        self.k.resize(n_tokens * k_len, 0.0);
        self.v.resize(n_tokens * v_len, 0.0);
        self.attn.resize(n_tokens * attn_len, 0.0);
        self.proj.resize(n_tokens * hp.n_embd, 0.0);
        self.gate.resize(n_tokens * hp.n_ff, 0.0);
        self.up.resize(n_tokens * hp.n_ff, 0.0);
    }
}

/// What the caller wants back from a forward pass.
pub struct OutputRequest<'a> {
    /// Batch token indices whose outputs are wanted, in order.
    pub rows: &'a [usize],
    pub logits: &'a mut Vec<f32>,
    /// Final hidden states (after the last norm), if wanted.
    pub hidden: Option<&'a mut Vec<f32>>,
}

/// Everything a forward pass works with besides the weights.
pub struct ForwardCtx<'a> {
    pub pool: &'a ThreadPool,
    pub weights: &'a [u8],
    pub profiler: &'a Profiler,
    pub kv: &'a mut KvCache,
    pub layout: &'a BatchLayout,
    pub scratch: &'a mut Scratch,
}

impl<'a> ForwardCtx<'a> {
    /// The shared, read-only part, to hand to the layers while the scratch buffers and
    /// the cache are borrowed mutably.
    pub fn compute(&self) -> Compute<'a> {
        Compute {
            pool: self.pool,
            weights: self.weights,
            profiler: self.profiler,
        }
    }
}

/// What a layer needs besides its input and output buffers: the worker pool, the
/// memory-mapped weights, and the profiler that times each operation.
#[derive(Clone, Copy)]
pub struct Compute<'a> {
    pub pool: &'a ThreadPool,
    pub weights: &'a [u8],
    pub profiler: &'a Profiler,
}

/// Final norm and output head, applied only to the rows the caller asked for.
#[derive(Debug, Clone)]
pub struct OutputHead {
    pub norm: RmsNorm,
    pub output: Linear,
}

impl OutputHead {
    /// Loads `output_norm` and `output` (or the token embedding when the head is tied).
    pub fn load(
        gguf: &GgufFile,
        hp: &HyperParams,
        embedding: &Embedding,
    ) -> Result<Self, ModelError> {
        let output = if gguf.tensor("output.weight").is_some() {
            Linear::load(gguf, "output.weight", hp.n_embd, hp.n_vocab)?
        } else {
            embedding.table.clone()
        };
        Ok(OutputHead {
            norm: RmsNorm::load(gguf, "output_norm.weight", hp.n_embd, hp.rms_eps)?,
            output,
        })
    }

    /// Reads the requested rows of the residual stream `ctx.scratch.x`, normalises them,
    /// and writes hidden states and logits [n_out, n_vocab].
    pub fn forward(&self, ctx: &mut ForwardCtx, hp: &HyperParams, req: OutputRequest) {
        let cx = ctx.compute();
        let s = &mut *ctx.scratch;
        let n_out = req.rows.len();
        s.out_rows.resize(n_out * hp.n_embd, 0.0);
        for (dst, &t) in s.out_rows.chunks_exact_mut(hp.n_embd).zip(req.rows) {
            dst.copy_from_slice(&s.x[t * hp.n_embd..(t + 1) * hp.n_embd]);
        }
        cx.profiler
            .time("rms norm", || self.norm.forward_in_place(&mut s.out_rows));
        if let Some(hidden) = req.hidden {
            hidden.clear();
            hidden.extend_from_slice(&s.out_rows);
        }
        req.logits.resize(n_out * hp.n_vocab, 0.0);
        if n_out > 0 {
            // Timed apart from the layers' matmuls: with a large vocabulary the head is
            // a big share of the bytes read per token.
            self.output.forward_as(
                "output head",
                cx,
                &s.out_rows,
                n_out,
                &mut s.act,
                req.logits,
            );
        }
    }
}

/// A loaded model of one of the supported architectures.
pub enum Model {
    Qwen2(llama::Llama),
    Llama(llama::Llama),
    Gemma3(gemma3::Gemma3),
}

impl Model {
    pub fn load(gguf: &GgufFile) -> Result<Self, ModelError> {
        let arch = gguf.architecture()?;
        match arch {
            "qwen2" => Ok(Model::Qwen2(qwen2::load(gguf)?)),
            "llama" => Ok(Model::Llama(llama::Llama::load(gguf)?)),
            "gemma3" => Ok(Model::Gemma3(gemma3::Gemma3::load(gguf)?)),
            other => Err(ModelError::UnknownArchitecture {
                found: other.to_string(),
            }),
        }
    }

    pub fn hparams(&self) -> &HyperParams {
        match self {
            Model::Qwen2(m) => &m.hp,
            Model::Llama(m) => &m.hp,
            Model::Gemma3(m) => &m.hp,
        }
    }

    /// Runs the batch `tokens` (laid out by `ctx.layout`) through the model, writing its
    /// keys and values into the cache and the requested outputs into `req`.
    pub fn forward(&self, ctx: &mut ForwardCtx, tokens: &[u32], req: OutputRequest) {
        match self {
            Model::Qwen2(m) => m.forward(ctx, tokens, req),
            Model::Llama(m) => m.forward(ctx, tokens, req),
            Model::Gemma3(m) => m.forward(ctx, tokens, req),
        }
    }

    /// Bytes of weights read to produce one token (every matrix once, the embedding row
    /// aside).
    pub fn weight_bytes_per_token(&self) -> usize {
        match self {
            Model::Qwen2(m) => m.weight_bytes_per_token(),
            Model::Llama(m) => m.weight_bytes_per_token(),
            Model::Gemma3(m) => m.weight_bytes_per_token(),
        }
    }
}
