//! Errors from building a tokenizer out of GGUF metadata or a [`crate::TokenizerConfig`].

use terse_gguf::GgufError;

#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    #[error("unknown tokenizer model '{model}' in tokenizer.ggml.model (supported: gpt2, llama)")]
    UnknownModel { model: String },

    #[error("unknown pre-tokenizer '{pre}' in tokenizer.ggml.pre (supported: {supported})")]
    UnknownPreTokenizer {
        pre: String,
        supported: &'static str,
    },

    #[error("missing metadata key {key}, required for tokenizer model '{model}'")]
    MissingKey { key: &'static str, model: String },

    #[error("metadata key {key} has type {found}, expected an array of f32 or i32")]
    WrongArrayType {
        key: &'static str,
        found: &'static str,
    },

    #[error(transparent)]
    Gguf(#[from] GgufError),

    #[error(
        "merge {index} ('{text}') in tokenizer.ggml.merges has no space separating its two parts"
    )]
    BadMerge { index: usize, text: String },

    #[error("token '{text}' appears twice in tokenizer.ggml.tokens, as ids {first} and {second}")]
    DuplicateToken {
        text: String,
        first: u32,
        second: u32,
    },

    #[error("{key} has {len} entries but the vocabulary has {n_tokens} tokens")]
    ArrayTooShort {
        key: &'static str,
        len: usize,
        n_tokens: usize,
    },

    #[error("vocabulary of {n_tokens} tokens does not fit 32-bit token ids")]
    VocabTooLarge { n_tokens: usize },

    #[error("{name} token id {id} is out of range for a vocabulary of {n_tokens} tokens")]
    SpecialTokenOutOfRange {
        name: &'static str,
        id: u32,
        n_tokens: usize,
    },

    #[error("{flag} is set but the model has no {name} token")]
    MissingSpecialToken {
        flag: &'static str,
        name: &'static str,
    },
}
