//! Gemma 3 (text).
//!
//! What is special:
//! - token embeddings are multiplied by sqrt(n_embd), and the output head is tied to the
//!   embedding table when the file has no `output.weight`;
//! - every sub-layer is sandwiched between two RMS norms (pre and post), and queries and
//!   keys are RMS-normalised per head (QK-norm) before RoPE;
//! - attention interleaves sliding-window layers (window from
//!   `gemma3.attention.sliding_window`, RoPE base 10 000) with a global layer every
//!   sixth layer (RoPE base from `gemma3.rope.freq_base`);
//! - the feed-forward uses GELU (tanh approximation) gating;
//! - heads are wider than n_embd / n_head (`attention.key_length`), and queries are
//!   scaled by 1/sqrt(head_dim).
//!
//! GGUF stores the norm weights with Gemma's "+1" already folded in, so they are plain
//! RMS norm scales here.

use super::layers::{
    add_in_place, attention, geglu, matrices_bytes, project, store_kv, AttentionShape, Embedding,
    Linear, RmsNorm, Rope, RopeStyle,
};
use super::{ForwardCtx, HyperParams, ModelError, OutputHead, OutputRequest};
use terse_gguf::GgufFile;

/// One global-attention layer after every five sliding-window layers.
const SLIDING_WINDOW_PATTERN: usize = 6;
/// RoPE base of the sliding-window layers (fixed by the architecture, not in GGUF).
const LOCAL_ROPE_BASE: f32 = 10_000.0;

pub struct Gemma3Layer {
    attn_norm: RmsNorm,
    wq: Linear,
    wk: Linear,
    wv: Linear,
    q_norm: RmsNorm,
    k_norm: RmsNorm,
    wo: Linear,
    post_attn_norm: RmsNorm,
    ffn_norm: RmsNorm,
    ffn_gate: Linear,
    ffn_up: Linear,
    ffn_down: Linear,
    post_ffn_norm: RmsNorm,
    /// Sliding-window (local) layer, or global.
    local: bool,
}

pub struct Gemma3 {
    pub hp: HyperParams,
    embedding: Embedding,
    layers: Vec<Gemma3Layer>,
    head: OutputHead,
    rope_global: Rope,
    rope_local: Rope,
    attn_global: AttentionShape,
    attn_local: AttentionShape,
}

impl Gemma3 {
    pub fn load(gguf: &GgufFile) -> Result<Self, ModelError> {
        let hp = HyperParams::from_gguf(gguf)?;
        let (e, hk, hv) = (hp.n_embd, hp.head_dim_k, hp.head_dim_v);
        let window = gguf
            .opt_u32("gemma3.attention.sliding_window")?
            .map(|w| w as usize);
        let embedding = Embedding::load(gguf, "token_embd.weight", e, hp.n_vocab)?;
        let layers = (0..hp.n_layers)
            .map(|i| {
                let name = |t: &str| format!("blk.{i}.{t}");
                let norm = |t: &str, len: usize| RmsNorm::load(gguf, &name(t), len, hp.rms_eps);
                Ok(Gemma3Layer {
                    attn_norm: norm("attn_norm.weight", e)?,
                    wq: Linear::load(gguf, &name("attn_q.weight"), e, hp.n_head * hk)?,
                    wk: Linear::load(gguf, &name("attn_k.weight"), e, hp.n_head_kv * hk)?,
                    wv: Linear::load(gguf, &name("attn_v.weight"), e, hp.n_head_kv * hv)?,
                    q_norm: norm("attn_q_norm.weight", hk)?,
                    k_norm: norm("attn_k_norm.weight", hk)?,
                    wo: Linear::load(gguf, &name("attn_output.weight"), hp.n_head * hv, e)?,
                    post_attn_norm: norm("post_attention_norm.weight", e)?,
                    ffn_norm: norm("ffn_norm.weight", e)?,
                    ffn_gate: Linear::load(gguf, &name("ffn_gate.weight"), e, hp.n_ff)?,
                    ffn_up: Linear::load(gguf, &name("ffn_up.weight"), e, hp.n_ff)?,
                    ffn_down: Linear::load(gguf, &name("ffn_down.weight"), hp.n_ff, e)?,
                    post_ffn_norm: norm("post_ffw_norm.weight", e)?,
                    local: window.is_some()
                        && i % SLIDING_WINDOW_PATTERN < SLIDING_WINDOW_PATTERN - 1,
                })
            })
            .collect::<Result<Vec<_>, ModelError>>()?;
        let head = OutputHead::load(gguf, &hp, &embedding)?;
        let rope = |freq_base| Rope {
            style: RopeStyle::Neox,
            dims: hp.rope_dims,
            freq_base,
            freq_factors: None,
        };
        let attn_global = AttentionShape {
            n_head: hp.n_head,
            n_head_kv: hp.n_head_kv,
            head_dim_k: hk,
            head_dim_v: hv,
            scale: 1.0 / (hk as f32).sqrt(),
            window: None,
        };
        Ok(Gemma3 {
            rope_global: rope(hp.rope_freq_base),
            rope_local: rope(LOCAL_ROPE_BASE),
            attn_local: AttentionShape {
                window,
                ..attn_global
            },
            attn_global,
            hp,
            embedding,
            layers,
            head,
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
            prof.time("embedding", || {
                self.embedding.lookup(cx.weights, tokens, &mut s.x); // [n, n_embd]
                let embd_scale = (hp.n_embd as f32).sqrt();
                s.x.iter_mut().for_each(|v| *v *= embd_scale);
            });
            prof.time("rope", || {
                self.rope_global
                    .tables(layout.positions(), &mut s.rope_cos, &mut s.rope_sin);
                self.rope_local.tables(
                    layout.positions(),
                    &mut s.rope_cos_alt,
                    &mut s.rope_sin_alt,
                );
            });

            for (il, l) in self.layers.iter().enumerate() {
                let (rope, cos, sin, shape) = if l.local {
                    (
                        &self.rope_local,
                        &s.rope_cos_alt,
                        &s.rope_sin_alt,
                        &self.attn_local,
                    )
                } else {
                    (
                        &self.rope_global,
                        &s.rope_cos,
                        &s.rope_sin,
                        &self.attn_global,
                    )
                };

                // Attention block, normalised before and after.
                prof.time("rms norm", || l.attn_norm.forward(&s.x, &mut s.xn));
                // q: [n, n_head * head_dim], k and v: [n, n_head_kv * head_dim]
                project(
                    cx,
                    &s.xn,
                    n,
                    &mut s.act,
                    &mut [(&l.wq, &mut s.q), (&l.wk, &mut s.k), (&l.wv, &mut s.v)],
                );
                prof.time("rms norm", || {
                    l.q_norm.forward_in_place(&mut s.q); // per head
                    l.k_norm.forward_in_place(&mut s.k);
                });
                prof.time("rope", || {
                    rope.apply(&mut s.q, hp.head_dim_k, cos, sin);
                    rope.apply(&mut s.k, hp.head_dim_k, cos, sin);
                });
                prof.time("kv store", || store_kv(kv, il, layout, &s.k, &s.v));
                // attn: [n, n_head * head_dim]
                prof.time("attention", || {
                    attention(cx.pool, kv, il, layout, shape, &s.q, &mut s.attn)
                });
                l.wo.forward(cx, &s.attn, n, &mut s.act, &mut s.proj); // [n, n_embd]
                prof.time("rms norm", || {
                    l.post_attn_norm.forward_in_place(&mut s.proj)
                });
                prof.time("residual add", || add_in_place(&mut s.x, &s.proj));

                // Feed-forward block, normalised before and after.
                prof.time("rms norm", || l.ffn_norm.forward(&s.x, &mut s.xn));
                // gate and up: [n, n_ff]
                project(
                    cx,
                    &s.xn,
                    n,
                    &mut s.act,
                    &mut [(&l.ffn_gate, &mut s.gate), (&l.ffn_up, &mut s.up)],
                );
                prof.time("ffn activation", || geglu(cx.pool, &mut s.gate, &s.up));
                l.ffn_down.forward(cx, &s.gate, n, &mut s.act, &mut s.proj); // [n, n_embd]
                prof.time("rms norm", || l.post_ffn_norm.forward_in_place(&mut s.proj));
                prof.time("residual add", || add_in_place(&mut s.x, &s.proj));
            }
        }
        self.head.forward(ctx, hp, req);
    }
}
