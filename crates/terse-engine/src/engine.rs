//! The engine: a loaded model with its tokenizer, chat template, KV cache and worker
//! pool, and the one step every feature builds on — a forward pass over a packed batch
//! of spans from several sequences.

use crate::kv_cache::{KvCache, KvCacheError, KvCacheShape, SeqId};
use crate::model::{
    BatchLayout, ForwardCtx, HyperParams, Model, ModelError, OutputRequest, Scratch,
};
use crate::profile::{Profile, Profiler};
use crate::sampler::{SampledToken, Sampler};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use terse_gguf::{GgufError, GgufFile};
use terse_kernels::ThreadPool;
use terse_tokenizer::chat_template::{ChatMessage, ChatTemplate, TemplateError};
use terse_tokenizer::{Tokenizer, TokenizerError};

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    // The causes are fields, not error sources: the message already includes them,
    // and a source chain would print them twice.
    /// The GGUF error names the file itself.
    #[error("{error}")]
    Gguf { path: PathBuf, error: GgufError },
    #[error("{path}: {error}")]
    Model { path: PathBuf, error: ModelError },
    #[error("{path}: tokenizer: {error}")]
    Tokenizer {
        path: PathBuf,
        error: TokenizerError,
    },
    #[error("chat template: {0}")]
    Template(#[from] TemplateError),
    #[error(transparent)]
    KvCache(#[from] KvCacheError),
    #[error("span {span} of {seq} starts at position {start_pos}, but the sequence holds {len} positions (truncate it first)")]
    SpanNotAtEnd {
        span: usize,
        seq: SeqId,
        start_pos: usize,
        len: usize,
    },
    #[error("{seq} appears in more than one span of the batch")]
    DuplicateSequence { seq: SeqId },
    #[error("token id {token} is outside the vocabulary of {n_vocab} tokens")]
    TokenOutOfRange { token: u32, n_vocab: usize },
    #[error("{seq} would reach {needed} positions, beyond the context size of {ctx_size} (raise --ctx-size; the model was trained on {n_ctx_train})")]
    ContextExceeded {
        seq: SeqId,
        needed: usize,
        ctx_size: usize,
        n_ctx_train: usize,
    },
    #[error("the prompt has {tokens} tokens, which leaves no room to generate in a context of {ctx_size} (raise --ctx-size)")]
    PromptTooLong { tokens: usize, ctx_size: usize },
    #[error("empty span in the batch (span {span})")]
    EmptySpan { span: usize },
}

/// How to build an engine.
#[derive(Debug, Clone, Default)]
pub struct EngineOptions {
    /// Worker threads (0 = all available cores).
    pub threads: usize,
    /// Longest sequence (0 = min(4096, trained context)).
    pub ctx_size: usize,
    /// KV cache capacity in positions shared by all sequences; never below
    /// `ctx_size` (0 = `ctx_size`). Batched generation wants room for every
    /// sequence in flight.
    pub kv_capacity_tokens: usize,
}

/// Most prompt tokens [`Engine::generate`] puts in one forward pass (llama.cpp's
/// default micro-batch): the pass's scratch grows with its token count.
pub const PREFILL_CHUNK_TOKENS: usize = 512;

/// Which outputs a span wants back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outputs {
    None,
    /// Logits (and hidden state) of the span's last token.
    Last,
    /// Logits (and hidden states) of every token of the span.
    All,
}

/// Tokens of one sequence to run, starting at `start_pos` (= the sequence's length).
#[derive(Debug, Clone, Copy)]
pub struct Span<'a> {
    pub seq: SeqId,
    pub tokens: &'a [u32],
    pub start_pos: usize,
    pub outputs: Outputs,
    /// Also return the final hidden states (after the last norm) of the output rows.
    pub hidden: bool,
}

/// Results of one forward pass, reused between steps.
#[derive(Debug, Default)]
pub struct StepOutput {
    n_vocab: usize,
    n_embd: usize,
    logits: Vec<f32>,
    hidden: Vec<f32>,
    /// For each span: (first output row, number of rows).
    span_rows: Vec<(usize, usize)>,
    rows: Vec<usize>,
}

impl StepOutput {
    /// Logits rows of span `span` ([rows, n_vocab] flattened).
    pub fn logits(&self, span: usize) -> &[f32] {
        let (first, n) = self.span_rows.get(span).copied().unwrap_or((0, 0));
        &self.logits[first * self.n_vocab..(first + n) * self.n_vocab]
    }

    /// Logits of the last output row of span `span`.
    pub fn last_logits(&self, span: usize) -> Option<&[f32]> {
        let (first, n) = *self.span_rows.get(span)?;
        (n > 0).then(|| &self.logits[(first + n - 1) * self.n_vocab..(first + n) * self.n_vocab])
    }

    /// Final hidden states of span `span` ([rows, n_embd] flattened); empty unless asked.
    pub fn hidden(&self, span: usize) -> &[f32] {
        let (first, n) = self.span_rows.get(span).copied().unwrap_or((0, 0));
        self.hidden
            .get(first * self.n_embd..(first + n) * self.n_embd)
            .unwrap_or(&[])
    }

    pub fn n_vocab(&self) -> usize {
        self.n_vocab
    }
}

/// Counters of one generation.
#[derive(Debug, Clone, Default)]
pub struct GenerationStats {
    pub prompt_tokens: usize,
    pub generated_tokens: usize,
    pub prefill_time: Duration,
    pub decode_time: Duration,
    /// This generation's share of the batched forward passes it ran in, its probes'
    /// included: each pass's time split by the rows each sequence fed it. A pass costs
    /// less than linearly in rows, so shares of small additions (probes) are upper
    /// bounds.
    pub forward_time: Duration,
    /// The part of `forward_time` that fed this generation's probes.
    pub probe_forward_time: Duration,
}

impl GenerationStats {
    pub fn prefill_tokens_per_s(&self) -> f64 {
        self.prompt_tokens as f64 / self.prefill_time.as_secs_f64().max(1e-9)
    }

    /// Decode speed over the tokens after the first (which came out of the prefill).
    pub fn decode_tokens_per_s(&self) -> f64 {
        self.generated_tokens.saturating_sub(1) as f64 / self.decode_time.as_secs_f64().max(1e-9)
    }
}

/// Why a generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    EndOfGeneration,
    MaxTokens,
    Caller,
    /// The request's steering object stopped it.
    Steered,
}

pub struct Engine {
    path: PathBuf,
    gguf: Arc<GgufFile>,
    model: Model,
    tokenizer: Arc<Tokenizer>,
    template: Option<ChatTemplate>,
    kv: KvCache,
    pool: ThreadPool,
    ctx_size: usize,
    layout: BatchLayout,
    scratch: Scratch,
    batch_tokens: Vec<u32>,
    output: StepOutput,
    profiler: Profiler,
    tokens_processed: u64,
}

impl Engine {
    pub fn load(path: impl AsRef<Path>, options: &EngineOptions) -> Result<Self, EngineError> {
        let path = path.as_ref().to_path_buf();
        let gguf = GgufFile::open(&path).map_err(|error| EngineError::Gguf {
            path: path.clone(),
            error,
        })?;
        let model = Model::load(&gguf).map_err(|error| EngineError::Model {
            path: path.clone(),
            error,
        })?;
        let tokenizer = Tokenizer::from_gguf(&gguf).map_err(|error| EngineError::Tokenizer {
            path: path.clone(),
            error,
        })?;
        let template = ChatTemplate::from_gguf(&gguf, &tokenizer)?;
        let hp = model.hparams().clone();
        let ctx_size = if options.ctx_size == 0 {
            hp.n_ctx_train.min(4096)
        } else {
            options.ctx_size
        };
        let kv = KvCache::new(KvCacheShape {
            n_layers: hp.n_layers,
            k_dim: hp.n_head_kv * hp.head_dim_k,
            v_dim: hp.n_head_kv * hp.head_dim_v,
            capacity_tokens: options.kv_capacity_tokens.max(ctx_size),
        });
        let threads = if options.threads == 0 {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        } else {
            options.threads
        };
        Ok(Engine {
            path,
            gguf: Arc::new(gguf),
            model,
            tokenizer: Arc::new(tokenizer),
            template,
            kv,
            pool: ThreadPool::new(threads),
            ctx_size,
            layout: BatchLayout::default(),
            scratch: Scratch::default(),
            batch_tokens: Vec::new(),
            output: StepOutput::default(),
            profiler: Profiler::default(),
            tokens_processed: 0,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn gguf(&self) -> &GgufFile {
        &self.gguf
    }

    pub fn hparams(&self) -> &HyperParams {
        self.model.hparams()
    }

    pub fn tokenizer(&self) -> &Arc<Tokenizer> {
        &self.tokenizer
    }

    /// The model's chat template, if it has one.
    pub fn chat_template(&self) -> Option<&ChatTemplate> {
        self.template.as_ref()
    }

    pub fn ctx_size(&self) -> usize {
        self.ctx_size
    }

    pub fn threads(&self) -> usize {
        self.pool.n_threads()
    }

    /// Tokens run through [`Engine::forward`] since the engine was loaded (one per row
    /// of every pass): what the engine actually computed.
    pub fn tokens_processed(&self) -> u64 {
        self.tokens_processed
    }

    /// The results of the last [`Engine::forward`].
    pub fn last_output(&self) -> &StepOutput {
        &self.output
    }

    pub fn kv_cache(&self) -> &KvCache {
        &self.kv
    }

    pub fn weight_bytes_per_token(&self) -> usize {
        self.model.weight_bytes_per_token()
    }

    /// Starts or stops timing the operations of every forward pass (off by default;
    /// off, it costs one check per operation).
    pub fn set_profiling(&mut self, on: bool) {
        self.profiler.set_enabled(on);
    }

    /// Time per kind of operation since profiling started or the last take.
    pub fn take_profile(&mut self) -> Profile {
        self.profiler.take()
    }

    /// Renders `messages` with the model's template (ChatML when it has none).
    pub fn render_chat(
        &self,
        messages: &[ChatMessage],
        add_generation_prompt: bool,
    ) -> Result<String, EngineError> {
        let chatml;
        let template = match &self.template {
            Some(t) => t,
            None => {
                chatml = ChatTemplate::chatml();
                &chatml
            }
        };
        Ok(template.render(messages, add_generation_prompt)?)
    }

    pub fn new_sequence(&mut self) -> SeqId {
        self.kv.new_sequence()
    }

    /// A new sequence that continues `parent` from position `pos`, sharing its cache.
    pub fn fork(&mut self, parent: SeqId, pos: usize) -> Result<SeqId, EngineError> {
        Ok(self.kv.fork(parent, pos)?)
    }

    pub fn truncate(&mut self, seq: SeqId, pos: usize) -> Result<(), EngineError> {
        Ok(self.kv.truncate(seq, pos)?)
    }

    pub fn free(&mut self, seq: SeqId) -> Result<(), EngineError> {
        Ok(self.kv.free(seq)?)
    }

    pub fn seq_len(&self, seq: SeqId) -> Result<usize, EngineError> {
        Ok(self.kv.len(seq)?)
    }

    /// One forward pass over a packed batch. Spans of different sequences share the
    /// pass; attention is causal within a sequence and never crosses sequences.
    /// Validates the whole batch before touching the cache, so a bad batch changes nothing.
    pub fn forward(&mut self, spans: &[Span]) -> Result<&StepOutput, EngineError> {
        let hp = self.model.hparams();
        let n_vocab = hp.n_vocab;
        let mut blocks_needed = 0;
        for (i, span) in spans.iter().enumerate() {
            if span.tokens.is_empty() {
                return Err(EngineError::EmptySpan { span: i });
            }
            if spans[..i].iter().any(|s| s.seq == span.seq) {
                return Err(EngineError::DuplicateSequence { seq: span.seq });
            }
            let len = self.kv.len(span.seq)?;
            if span.start_pos != len {
                return Err(EngineError::SpanNotAtEnd {
                    span: i,
                    seq: span.seq,
                    start_pos: span.start_pos,
                    len,
                });
            }
            let needed = len + span.tokens.len();
            if needed > self.ctx_size {
                return Err(EngineError::ContextExceeded {
                    seq: span.seq,
                    needed,
                    ctx_size: self.ctx_size,
                    n_ctx_train: hp.n_ctx_train,
                });
            }
            if let Some(&token) = span.tokens.iter().find(|&&t| t as usize >= n_vocab) {
                return Err(EngineError::TokenOutOfRange { token, n_vocab });
            }
            blocks_needed += self.kv.blocks_needed(span.seq, span.tokens.len())?;
        }
        if blocks_needed > self.kv.free_block_count() {
            return Err(KvCacheError::Full {
                needed: blocks_needed,
                free: self.kv.free_block_count(),
                capacity_tokens: self.kv.shape().capacity_tokens,
            }
            .into());
        }

        self.layout.clear();
        self.batch_tokens.clear();
        let out = &mut self.output;
        out.rows.clear();
        out.span_rows.clear();
        let mut want_hidden = false;
        for span in spans {
            self.kv.append(span.seq, span.tokens.len())?;
            let first_token = self.batch_tokens.len();
            self.layout
                .push_span(self.kv.blocks(span.seq)?, span.start_pos, span.tokens.len());
            self.batch_tokens.extend_from_slice(span.tokens);
            let first_row = out.rows.len();
            match span.outputs {
                Outputs::None => {}
                Outputs::Last => out.rows.push(first_token + span.tokens.len() - 1),
                Outputs::All => out
                    .rows
                    .extend(first_token..first_token + span.tokens.len()),
            }
            out.span_rows.push((first_row, out.rows.len() - first_row));
            want_hidden |= span.hidden;
        }
        out.n_vocab = n_vocab;
        out.n_embd = hp.n_embd;

        let mut ctx = ForwardCtx {
            pool: &self.pool,
            weights: self.gguf.bytes(),
            profiler: &self.profiler,
            kv: &mut self.kv,
            layout: &self.layout,
            scratch: &mut self.scratch,
        };
        let req = OutputRequest {
            rows: &out.rows,
            logits: &mut out.logits,
            hidden: if want_hidden {
                Some(&mut out.hidden)
            } else {
                None
            },
        };
        self.model.forward(&mut ctx, &self.batch_tokens, req);
        self.tokens_processed += self.batch_tokens.len() as u64;
        if !want_hidden {
            out.hidden.clear();
        }
        Ok(&self.output)
    }

    /// Prefills `prompt` into a fresh sequence and generates up to `max_tokens` tokens,
    /// calling `on_token` for each; it returns false to stop. The sequence is freed at
    /// the end. Returns the generated tokens, why it stopped, and timings.
    pub fn generate(
        &mut self,
        prompt: &[u32],
        sampler: &mut Sampler,
        max_tokens: usize,
        mut on_token: impl FnMut(&SampledToken) -> bool,
    ) -> Result<(Vec<u32>, StopReason, GenerationStats), EngineError> {
        let seq = self.new_sequence();
        let result = self.generate_on(seq, prompt, sampler, max_tokens, &mut on_token);
        self.kv.free(seq)?;
        result
    }

    /// Like [`Engine::generate`], on an existing sequence: `prompt` is appended after
    /// what the sequence already holds (a chat turn reuses the cached conversation).
    /// The generated tokens stay in the sequence, except a final end-of-generation token.
    pub fn generate_on(
        &mut self,
        seq: SeqId,
        prompt: &[u32],
        sampler: &mut Sampler,
        max_tokens: usize,
        on_token: &mut impl FnMut(&SampledToken) -> bool,
    ) -> Result<(Vec<u32>, StopReason, GenerationStats), EngineError> {
        let mut stats = GenerationStats {
            prompt_tokens: prompt.len(),
            ..GenerationStats::default()
        };
        let mut generated = Vec::with_capacity(max_tokens);
        let start = Instant::now();
        let mut pos = self.kv.len(seq)?;
        // A long prompt goes in slices, so the pass's scratch (activations of every
        // token in it) stays bounded; each token's result is the same either way.
        // With nothing to generate, the whole prompt is prefilled (the sequence
        // holds it either way) and no logits are computed.
        let split = if max_tokens == 0 {
            prompt.len()
        } else {
            prompt.len().saturating_sub(1) / PREFILL_CHUNK_TOKENS * PREFILL_CHUNK_TOKENS
        };
        for chunk in prompt[..split].chunks(PREFILL_CHUNK_TOKENS) {
            self.forward(&[Span {
                seq,
                tokens: chunk,
                start_pos: pos,
                outputs: Outputs::None,
                hidden: false,
            }])?;
            pos += chunk.len();
        }
        if max_tokens == 0 {
            stats.prefill_time = start.elapsed();
            return Ok((generated, StopReason::MaxTokens, stats));
        }
        let mut next_input: Vec<u32> = prompt[split..].to_vec();
        let mut reason = StopReason::MaxTokens;
        while generated.len() < max_tokens {
            let out = self.forward(&[Span {
                seq,
                tokens: &next_input,
                start_pos: pos,
                outputs: Outputs::Last,
                hidden: false,
            }])?;
            pos += next_input.len();
            let logits = out.last_logits(0).unwrap_or(&[]);
            let token = sampler.sample(logits, &generated);
            if generated.is_empty() {
                stats.prefill_time = start.elapsed();
            }
            generated.push(token.id);
            if self.tokenizer.is_eog(token.id) {
                reason = StopReason::EndOfGeneration;
                break;
            }
            if !on_token(&token) {
                reason = StopReason::Caller;
                break;
            }
            next_input.clear();
            next_input.push(token.id);
        }
        stats.generated_tokens = generated.len();
        stats.decode_time = start.elapsed().saturating_sub(stats.prefill_time);
        Ok((generated, reason, stats))
    }
}
