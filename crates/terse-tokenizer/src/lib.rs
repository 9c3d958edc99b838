//! terse-tokenizer: llama.cpp-exact tokenization from GGUF metadata, and chat
//! templates.
//!
//! Token ids must equal llama.cpp's for the engine's outputs to match llama.cpp's, so
//! every step here is a port of `llama-vocab.cpp`/`unicode.cpp`: byte-level BPE
//! (`gpt2`) with its pre-tokenizer regexes, SentencePiece BPE (`llama`), special-token
//! partitioning, and the end-of-generation set. [`chat_template`] renders a model's
//! Jinja chat template the way Hugging Face's transformers configures Jinja2.

mod bpe;
pub mod chat_template;
mod config;
mod error;
mod pretokenize;
mod spm;
mod stream;
mod tokenizer;
mod unicode;
mod vocab;

pub use chat_template::{ChatMessage, ChatTemplate, TemplateError};
pub use config::TokenizerConfig;
pub use error::TokenizerError;
pub use stream::StreamDecoder;
pub use tokenizer::Tokenizer;
