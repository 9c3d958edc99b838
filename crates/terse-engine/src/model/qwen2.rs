//! Qwen2 / Qwen2.5 (and DeepSeek-R1-Distill-Qwen, which ships as `qwen2`).
//!
//! What is special: it is a Llama-shaped decoder with two differences, so it runs on
//! the Llama forward pass in `llama.rs`:
//! - the q, k and v projections carry biases (read as optional biases there);
//! - RoPE rotates the two halves of each head (GPT-NeoX layout), not adjacent pairs.
//!
//! Small Qwen2.5 models have an untied output head; when `output.weight` is absent the
//! token embedding is used (tied), as llama.cpp does.

use super::layers::RopeStyle;
use super::llama::Llama;
use super::ModelError;
use terse_gguf::GgufFile;

pub fn load(gguf: &GgufFile) -> Result<Llama, ModelError> {
    Llama::load_with_rope(gguf, RopeStyle::Neox)
}
