//! Llama family (Llama 2/3, Mistral; Qwen2 loads through here too, see `qwen2.rs`).
//!
//! What is special: pre-norm decoder blocks with RMS norm, grouped-query attention,
//! SwiGLU feed-forward, no biases by default (optional biases on every projection are
//! read when present, as llama.cpp does), RoPE on adjacent dimension pairs, Llama 3's
//! optional per-frequency divisors (`rope_freqs.weight`), and an optional attention
//! scale in place of 1/√head_dim.

use super::layers::{
    add_in_place, attention, matrices_bytes, project, store_kv, swiglu, AttentionShape, Embedding,
    Linear, RmsNorm, Rope, RopeStyle,
};
use super::{ForwardCtx, HyperParams, ModelError, OutputHead, OutputRequest};
use terse_gguf::GgufFile;

pub struct LlamaLayer {
    attn_norm: RmsNorm,
    wq: Linear,
    wk: Linear,
    wv: Linear,
    wo: Linear,
    ffn_norm: RmsNorm,
    ffn_gate: Linear,
    ffn_up: Linear,
    ffn_down: Linear,
}

pub struct Llama {
    pub hp: HyperParams,
    embedding: Embedding,
    layers: Vec<LlamaLayer>,
    head: OutputHead,
    rope: Rope,
    attn: AttentionShape,
}

impl Llama {
    pub fn load(gguf: &GgufFile) -> Result<Self, ModelError> {
        Self::load_with_rope(gguf, RopeStyle::Interleaved)
    }

    /// Loads a Llama-shaped model whose RoPE pairs dimensions in `style`.
    pub(crate) fn load_with_rope(gguf: &GgufFile, style: RopeStyle) -> Result<Self, ModelError> {
        let hp = HyperParams::from_gguf(gguf)?;
        let (e, hk, hv) = (hp.n_embd, hp.head_dim_k, hp.head_dim_v);
        let q_dim = hp.n_head * hk;
        let k_dim = hp.n_head_kv * hk;
        let v_dim = hp.n_head_kv * hv;
        let embedding = Embedding::load(gguf, "token_embd.weight", e, hp.n_vocab)?;
        let layers = (0..hp.n_layers)
            .map(|i| {
                let name = |t: &str| format!("blk.{i}.{t}");
                Ok(LlamaLayer {
                    attn_norm: RmsNorm::load(gguf, &name("attn_norm.weight"), e, hp.rms_eps)?,
                    wq: Linear::load_with_bias(
                        gguf,
                        &name("attn_q.weight"),
                        &name("attn_q.bias"),
                        e,
                        q_dim,
                    )?,
                    wk: Linear::load_with_bias(
                        gguf,
                        &name("attn_k.weight"),
                        &name("attn_k.bias"),
                        e,
                        k_dim,
                    )?,
                    wv: Linear::load_with_bias(
                        gguf,
                        &name("attn_v.weight"),
                        &name("attn_v.bias"),
                        e,
                        v_dim,
                    )?,
                    wo: Linear::load_with_bias(
                        gguf,
                        &name("attn_output.weight"),
                        &name("attn_output.bias"),
                        hp.n_head * hv,
                        e,
                    )?,
                    ffn_norm: RmsNorm::load(gguf, &name("ffn_norm.weight"), e, hp.rms_eps)?,
                    ffn_gate: Linear::load_with_bias(
                        gguf,
                        &name("ffn_gate.weight"),
                        &name("ffn_gate.bias"),
                        e,
                        hp.n_ff,
                    )?,
                    ffn_up: Linear::load_with_bias(
                        gguf,
                        &name("ffn_up.weight"),
                        &name("ffn_up.bias"),
                        e,
                        hp.n_ff,
                    )?,
                    ffn_down: Linear::load_with_bias(
                        gguf,
                        &name("ffn_down.weight"),
                        &name("ffn_down.bias"),
                        hp.n_ff,
                        e,
                    )?,
                })
            })
            .collect::<Result<Vec<_>, ModelError>>()?;
        let head = OutputHead::load(gguf, &hp, &embedding)?;
        let freq_factors = match gguf.tensor("rope_freqs.weight") {
            Some(_) => Some(super::layers::load_f32_vector(
                gguf,
                "rope_freqs.weight",
                hp.rope_dims / 2,
            )?),
            None => None,
        };
        let rope = Rope {
            style,
            dims: hp.rope_dims,
            freq_base: hp.rope_freq_base,
            freq_factors,
        };
        let attn = AttentionShape {
            n_head: hp.n_head,
            n_head_kv: hp.n_head_kv,
            head_dim_k: hk,
            head_dim_v: hv,
            scale: gguf
                .opt_f32(&format!("{}.attention.scale", hp.architecture))?
                .unwrap_or(1.0 / (hk as f32).sqrt()),
            window: None,
        };
        Ok(Llama {
            hp,
            embedding,
            layers,
            head,
            rope,
            attn,
        })
    }

    pub fn weight_bytes_per_token(&self) -> usize {
        let per_layer: usize = self
            .layers
            .iter()
            .map(|l| {
                matrices_bytes(&[
                    &l.wq,
                    &l.wk,
                    &l.wv,
                    &l.wo,
                    &l.ffn_gate,
                    &l.ffn_up,
                    &l.ffn_down,
                ])
            })
            .sum();
        per_layer + self.head.output.bytes()
    }

    pub fn forward(&self, ctx: &mut ForwardCtx, tokens: &[u32], req: OutputRequest) {
        let hp = &self.hp;
        let n = tokens.len();
        let (cx, layout) = (ctx.compute(), ctx.layout);
        let prof = cx.profiler;
        {
            let s = &mut *ctx.scratch;
            let kv = &mut *ctx.kv;
            s.prepare(hp, n);
            // x: [n, n_embd]
            prof.time("embedding", || {
                self.embedding.lookup(cx.weights, tokens, &mut s.x)
            });
            prof.time("rope", || {
                self.rope
                    .tables(layout.positions(), &mut s.rope_cos, &mut s.rope_sin)
            });

            for (il, l) in self.layers.iter().enumerate() {
                // Attention block.
                prof.time("rms norm", || l.attn_norm.forward(&s.x, &mut s.xn));
                // q: [n, n_head * head_dim], k and v: [n, n_head_kv * head_dim]
                project(
                    cx,
                    &s.xn,
                    n,
                    &mut s.act,
                    &mut [(&l.wq, &mut s.q), (&l.wk, &mut s.k), (&l.wv, &mut s.v)],
                );
                prof.time("rope", || {
                    self.rope
                        .apply(&mut s.q, hp.head_dim_k, &s.rope_cos, &s.rope_sin);
                    self.rope
                        .apply(&mut s.k, hp.head_dim_k, &s.rope_cos, &s.rope_sin);
                });
                prof.time("kv store", || store_kv(kv, il, layout, &s.k, &s.v));
                // attn: [n, n_head * head_dim]
                prof.time("attention", || {
                    attention(cx.pool, kv, il, layout, &self.attn, &s.q, &mut s.attn)
                });
                l.wo.forward(cx, &s.attn, n, &mut s.act, &mut s.proj); // [n, n_embd]
                prof.time("residual add", || add_in_place(&mut s.x, &s.proj));

                // Feed-forward block.
                prof.time("rms norm", || l.ffn_norm.forward(&s.x, &mut s.xn));
                // gate and up: [n, n_ff]
                project(
                    cx,
                    &s.xn,
                    n,
                    &mut s.act,
                    &mut [(&l.ffn_gate, &mut s.gate), (&l.ffn_up, &mut s.up)],
                );
                prof.time("ffn activation", || swiglu(cx.pool, &mut s.gate, &s.up));
                l.ffn_down.forward(cx, &s.gate, n, &mut s.act, &mut s.proj); // [n, n_embd]
                prof.time("residual add", || add_in_place(&mut s.x, &s.proj));
            }
        }
        self.head.forward(ctx, hp, req);
    }
}
