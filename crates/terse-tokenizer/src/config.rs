//! [`TokenizerConfig`]: everything a tokenizer is built from, read out of GGUF
//! metadata with llama.cpp's defaults for absent keys.

use terse_gguf::{GgufFile, MetaArray, MetaValue, StrArray};

use crate::TokenizerError;

/// The tokenizer's description as stored in a GGUF file (`tokenizer.ggml.*`), with
/// llama.cpp's per-model defaults already applied to absent keys.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TokenizerConfig {
    /// `tokenizer.ggml.model`: `"gpt2"` (byte-level BPE) or `"llama"` (SentencePiece).
    pub model: String,
    /// `tokenizer.ggml.pre`: the BPE pre-tokenizer; `None` means llama.cpp's `default`.
    pub pre: Option<String>,
    pub tokens: StrArray,
    pub scores: Option<Vec<f32>>,
    pub token_types: Option<Vec<i32>>,
    pub merges: Option<StrArray>,
    pub bos: Option<u32>,
    pub eos: Option<u32>,
    pub eot: Option<u32>,
    pub eom: Option<u32>,
    pub unk: Option<u32>,
    pub pad: Option<u32>,
    pub add_bos: bool,
    pub add_eos: bool,
    pub add_space_prefix: bool,
    /// `general.name`; llama.cpp keys a few per-model token attributes on it (Phi-3
    /// strips whitespace after special tokens).
    pub name: Option<String>,
}

const KEY_MODEL: &str = "tokenizer.ggml.model";
const KEY_PRE: &str = "tokenizer.ggml.pre";
const KEY_TOKENS: &str = "tokenizer.ggml.tokens";
const KEY_SCORES: &str = "tokenizer.ggml.scores";
const KEY_TOKEN_TYPE: &str = "tokenizer.ggml.token_type";
const KEY_MERGES: &str = "tokenizer.ggml.merges";

impl TokenizerConfig {
    /// Reads the tokenizer metadata. Defaults follow llama.cpp's
    /// `llama_vocab::impl::load`: SentencePiece models default to BOS=1, EOS=2, UNK=0,
    /// add BOS and a space prefix; GPT-2 BPE models to BOS=EOS=11, no BOS (except the
    /// Llama 3 pre-tokenizer, which adds BOS). Special-token ids outside the
    /// vocabulary are ignored (the default stays), as llama.cpp does.
    pub fn from_gguf(g: &GgufFile) -> Result<Self, TokenizerError> {
        let model = g.get_str(KEY_MODEL)?.to_owned();
        let pre = g.opt_str(KEY_PRE)?.map(str::to_owned);
        let tokens = g.get_str_array(KEY_TOKENS)?.clone();
        let scores = numeric_array(g, KEY_SCORES)?;
        let token_types = match g.get(KEY_TOKEN_TYPE) {
            Some(_) => Some(g.get_i32_array(KEY_TOKEN_TYPE)?.to_vec()),
            None => None,
        };
        let merges = match g.get(KEY_MERGES) {
            Some(_) => Some(g.get_str_array(KEY_MERGES)?.clone()),
            None => None,
        };

        let mut cfg = TokenizerConfig {
            model,
            pre,
            tokens,
            scores,
            token_types,
            merges,
            name: g.opt_str("general.name")?.map(str::to_owned),
            ..TokenizerConfig::default()
        };
        match cfg.model.as_str() {
            "llama" => {
                cfg.bos = Some(1);
                cfg.eos = Some(2);
                cfg.unk = Some(0);
                cfg.add_bos = true;
                cfg.add_space_prefix = true;
            }
            "gpt2" => {
                cfg.bos = Some(11);
                cfg.eos = Some(11);
                cfg.add_bos = matches!(
                    cfg.pre.as_deref(),
                    Some("llama3" | "llama-v3" | "llama-bpe")
                );
            }
            _ => {
                return Err(TokenizerError::UnknownModel {
                    model: cfg.model.clone(),
                })
            }
        }

        let n_tokens = cfg.tokens.len();
        let in_vocab = |id: Option<u32>| id.filter(|&id| (id as usize) < n_tokens);
        let read_id = |key: &str, default: Option<u32>| -> Result<Option<u32>, TokenizerError> {
            let default = in_vocab(default);
            Ok(match g.opt_u32(key)? {
                Some(id) if (id as usize) < n_tokens => Some(id),
                _ => default,
            })
        };
        cfg.bos = read_id("tokenizer.ggml.bos_token_id", cfg.bos)?;
        cfg.eos = read_id("tokenizer.ggml.eos_token_id", cfg.eos)?;
        cfg.eot = read_id("tokenizer.ggml.eot_token_id", cfg.eot)?;
        cfg.eom = read_id("tokenizer.ggml.eom_token_id", cfg.eom)?;
        cfg.unk = read_id("tokenizer.ggml.unknown_token_id", cfg.unk)?;
        cfg.pad = read_id("tokenizer.ggml.padding_token_id", cfg.pad)?;

        if let Some(v) = g.opt_bool("tokenizer.ggml.add_space_prefix")? {
            cfg.add_space_prefix = v;
        }
        if let Some(v) = g.opt_bool("tokenizer.ggml.add_bos_token")? {
            cfg.add_bos = v;
        }
        if let Some(v) = g.opt_bool("tokenizer.ggml.add_eos_token")? {
            cfg.add_eos = v;
        }
        Ok(cfg)
    }
}

/// A scores array stored as f32 or (as llama.cpp also accepts) i32.
fn numeric_array(g: &GgufFile, key: &'static str) -> Result<Option<Vec<f32>>, TokenizerError> {
    match g.get(key) {
        None => Ok(None),
        Some(MetaValue::Array(MetaArray::F32(v))) => Ok(Some(v.clone())),
        Some(MetaValue::Array(MetaArray::I32(v))) => {
            Ok(Some(v.iter().map(|&x| x as f32).collect()))
        }
        Some(other) => Err(TokenizerError::WrongArrayType {
            key,
            found: other.type_name(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use terse_gguf::GgufWriter;

    fn gguf(build: impl FnOnce(&mut GgufWriter)) -> GgufFile {
        let mut w = GgufWriter::new();
        build(&mut w);
        GgufFile::from_bytes(w.to_bytes()).unwrap()
    }

    fn tokens(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("t{i}")).collect()
    }

    #[test]
    fn spm_defaults_apply_when_keys_are_absent() {
        let g = gguf(|w| {
            w.add(KEY_MODEL, "llama");
            w.add(KEY_TOKENS, tokens(5));
        });
        let cfg = TokenizerConfig::from_gguf(&g).unwrap();
        assert_eq!((cfg.bos, cfg.eos, cfg.unk), (Some(1), Some(2), Some(0)));
        assert!(cfg.add_bos && cfg.add_space_prefix && !cfg.add_eos);
    }

    #[test]
    fn out_of_range_special_id_keeps_the_default() {
        let g = gguf(|w| {
            w.add(KEY_MODEL, "llama");
            w.add(KEY_TOKENS, tokens(5));
            w.add("tokenizer.ggml.bos_token_id", 99u32);
            w.add("tokenizer.ggml.eos_token_id", 4u32);
        });
        let cfg = TokenizerConfig::from_gguf(&g).unwrap();
        assert_eq!((cfg.bos, cfg.eos), (Some(1), Some(4)));
    }

    #[test]
    fn llama3_pre_adds_bos_unless_overridden() {
        let g = gguf(|w| {
            w.add(KEY_MODEL, "gpt2");
            w.add(KEY_PRE, "llama-bpe");
            w.add(KEY_TOKENS, tokens(20));
        });
        assert!(TokenizerConfig::from_gguf(&g).unwrap().add_bos);
        let g = gguf(|w| {
            w.add(KEY_MODEL, "gpt2");
            w.add(KEY_PRE, "llama-bpe");
            w.add(KEY_TOKENS, tokens(20));
            w.add("tokenizer.ggml.add_bos_token", false);
        });
        assert!(!TokenizerConfig::from_gguf(&g).unwrap().add_bos);
    }

    #[test]
    fn integer_scores_are_accepted() {
        let g = gguf(|w| {
            w.add(KEY_MODEL, "llama");
            w.add(KEY_TOKENS, tokens(2));
            w.add(KEY_SCORES, vec![3i32, -1]);
        });
        assert_eq!(
            TokenizerConfig::from_gguf(&g).unwrap().scores,
            Some(vec![3.0, -1.0])
        );
    }

    #[test]
    fn unknown_model_is_rejected_by_name() {
        let g = gguf(|w| {
            w.add(KEY_MODEL, "t5");
            w.add(KEY_TOKENS, tokens(2));
        });
        let err = TokenizerConfig::from_gguf(&g).err().unwrap();
        assert!(err.to_string().contains("'t5'"), "{err}");
    }
}
