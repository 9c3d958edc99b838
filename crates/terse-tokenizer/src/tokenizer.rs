//! [`Tokenizer`]: text ↔ token ids exactly as llama.cpp's `llama_vocab` does it.
//!
//! Building one ports the parts of `llama_vocab::impl::load` that change results:
//! token attributes from `token_type`, llama.cpp's by-text detection of end-of-turn
//! and FIM tokens (which also marks them as control tokens), the end-of-generation
//! set, the special-token list used to cut special text out before tokenizing
//! (`tokenizer_st_partition`), and the `token_to_piece` cache.

use std::collections::BTreeSet;
use std::ops::Range;

use terse_gguf::GgufFile;

use crate::bpe::Bpe;
use crate::pretokenize::{PreTokenizer, SUPPORTED_PRE};
use crate::spm::Spm;
use crate::unicode::char_to_byte;
use crate::vocab::{attr, Vocab};
use crate::{TokenizerConfig, TokenizerError};

enum Model {
    Bpe(Bpe),
    Spm(Spm),
}

/// A tokenizer built from GGUF metadata. Immutable after construction, so it is
/// `Send + Sync` and can be shared behind an `Arc`.
pub struct Tokenizer {
    model: Model,
    vocab: Vocab,
    /// `token_to_piece(id, special = true)` for every id, end to end in one
    /// buffer (`piece_ends[id]` is where the piece of `id` ends).
    pieces: Vec<u8>,
    piece_ends: Vec<usize>,
    /// Control, user-defined and unknown tokens, longest text first.
    special_tokens: Vec<u32>,
    eog: BTreeSet<u32>,
    bos: Option<u32>,
    eos: Option<u32>,
    unk: Option<u32>,
    add_bos: bool,
    add_eos: bool,
    /// Only read by SentencePiece encoding; BPE never prefixes a space.
    add_space_prefix: bool,
}

/// A piece of the input after special tokens are cut out.
enum Fragment {
    Text(Range<usize>),
    Token(u32),
}

/// Token texts llama.cpp takes as end-of-turn when `eot_token_id` is absent.
const EOT_TEXTS: &[&str] = &[
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "<|end_of_text|>",
    "<EOT>",
    "_<EOT>",
    "[EOT]",
    "<｜end▁of▁sentence｜>",
    "<end_of_utterance>",
];

/// Token texts llama.cpp adds to the end-of-generation set.
const EOG_TEXTS: &[&str] = &[
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<|return|>",
    "<|call|>",
    "<|flush|>",
    "<|calls|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "</s>",
    "<|eom_id|>",
    "<EOT>",
    "_<EOT>",
    "[EOT]",
    "[EOS]",
    "<|end_of_text|>",
    "<end_of_utterance>",
    "<eos>",
    "<turn|>",
    "<|tool_response>",
    "<｜end▁of▁sentence｜>",
    "[e~[",
];

/// FIM token texts llama.cpp detects (and marks as control); pad, repo and file
/// separator also end generation.
const FIM_PRE_TEXTS: &[&str] = &[
    "<|fim_prefix|>",
    "<fim-prefix>",
    "<fim_prefix>",
    "<｜fim▁begin｜>",
    "<PRE>",
    "▁<PRE>",
    "<|code_prefix|>",
    "<|prefix|>",
];
const FIM_SUF_TEXTS: &[&str] = &[
    "<|fim_suffix|>",
    "<fim-suffix>",
    "<fim_suffix>",
    "<｜fim▁hole｜>",
    "<SUF>",
    "▁<SUF>",
    "<|code_suffix|>",
    "<|suffix|>",
];
const FIM_MID_TEXTS: &[&str] = &[
    "<|fim_middle|>",
    "<fim-middle>",
    "<fim_middle>",
    "<｜fim▁end｜>",
    "<MID>",
    "▁<MID>",
    "<|code_middle|>",
    "<|middle|>",
];
const FIM_PAD_TEXTS: &[&str] = &["<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", "[PAD]"];
const FIM_REP_TEXTS: &[&str] = &[
    "<|fim_repo|>",
    "<|repo_name|>",
    "<fim-repo>",
    "<REPO>",
    "<reponame>",
];
const FIM_SEP_TEXTS: &[&str] = &["<|file_sep|>"];

/// gpt-oss tokens llama.cpp always renders (forced to user-defined).
const ALWAYS_RENDERED_TEXTS: &[&str] =
    &["<|channel|>", "<|message|>", "<|start|>", "<|constrain|>"];

impl Tokenizer {
    pub fn new(cfg: TokenizerConfig) -> Result<Self, TokenizerError> {
        let TokenizerConfig {
            model,
            pre,
            tokens,
            scores,
            token_types,
            merges,
            bos,
            eos,
            eot,
            eom,
            unk,
            pad,
            add_bos,
            add_eos,
            add_space_prefix,
            name,
        } = cfg;

        let mut vocab = Vocab::new(&tokens, scores.as_deref(), token_types.as_deref())?;
        drop(tokens);
        let n_tokens = vocab.len();
        let check = |name: &'static str, id: Option<u32>| match id {
            Some(id) if id as usize >= n_tokens => {
                Err(TokenizerError::SpecialTokenOutOfRange { name, id, n_tokens })
            }
            _ => Ok(id),
        };
        let bos = check("bos", bos)?;
        let eos = check("eos", eos)?;
        let mut eot = check("eot", eot)?;
        let mut eom = check("eom", eom)?;
        let unk = check("unk", unk)?;
        check("pad", pad)?;
        if add_bos && bos.is_none() {
            return Err(TokenizerError::MissingSpecialToken {
                flag: "add_bos",
                name: "bos",
            });
        }
        if add_eos && eos.is_none() {
            return Err(TokenizerError::MissingSpecialToken {
                flag: "add_eos",
                name: "eos",
            });
        }

        let model = match model.as_str() {
            "gpt2" => {
                let pre_name = pre.as_deref().unwrap_or("default");
                let pre = PreTokenizer::from_name(pre_name).ok_or_else(|| {
                    TokenizerError::UnknownPreTokenizer {
                        pre: pre_name.to_owned(),
                        supported: SUPPORTED_PRE,
                    }
                })?;
                let merges = merges.ok_or(TokenizerError::MissingKey {
                    key: "tokenizer.ggml.merges",
                    model: model.clone(),
                })?;
                Model::Bpe(Bpe::new(pre, &merges)?)
            }
            "llama" => Model::Spm(Spm::new(&vocab)),
            _ => return Err(TokenizerError::UnknownModel { model }),
        };

        // By-text detection of end-of-turn/FIM tokens; detected tokens become control.
        let find_and_mark = |vocab: &mut Vocab, texts: &[&str]| {
            let id = (0..n_tokens as u32).find(|&id| texts.contains(&vocab.text(id)));
            if let Some(id) = id {
                vocab.set_attr(id, attr::CONTROL);
            }
            id
        };
        if eot.is_none() {
            eot = find_and_mark(&mut vocab, EOT_TEXTS);
        }
        if eom.is_none() {
            eom = find_and_mark(&mut vocab, &["<|eom_id|>"]);
        }
        for texts in [FIM_PRE_TEXTS, FIM_SUF_TEXTS, FIM_MID_TEXTS] {
            find_and_mark(&mut vocab, texts);
        }
        let mut eog = BTreeSet::new();
        for texts in [FIM_PAD_TEXTS, FIM_REP_TEXTS, FIM_SEP_TEXTS] {
            eog.extend(find_and_mark(&mut vocab, texts));
        }
        for id in 0..n_tokens as u32 {
            let text = vocab.text(id);
            let is_eog = EOG_TEXTS.contains(&text);
            let always_rendered = ALWAYS_RENDERED_TEXTS.contains(&text);
            if is_eog {
                eog.insert(id);
                vocab.set_attr(id, attr::CONTROL);
            }
            if always_rendered {
                vocab.replace_attr(id, attr::USER_DEFINED);
            }
        }
        eog.extend([eos, eot, eom].into_iter().flatten());
        let eog_with = |eog: &BTreeSet<u32>, vocab: &Vocab, text: &str| {
            eog.iter().copied().find(|&id| vocab.text(id) == text)
        };
        // o200k_harmony / solar-open: "<|end|>" is not end of generation there.
        let has_call = eog_with(&eog, &vocab, "<|call|>").is_some()
            || eog_with(&eog, &vocab, "<|calls|>").is_some();
        let has_return = eog_with(&eog, &vocab, "<|return|>").is_some();
        let has_flush = eog_with(&eog, &vocab, "<|flush|>").is_some();
        if let Some(end) = eog_with(&eog, &vocab, "<|end|>") {
            if has_call && (has_return || has_flush) {
                eog.remove(&end);
                vocab.replace_attr(end, attr::USER_DEFINED);
            }
        }
        // Gemma 4 / PaddleOCR: "</s>" is not end of generation when "<|tool_response>" is.
        if eog_with(&eog, &vocab, "<|tool_response>").is_some() {
            if let Some(s) = eog_with(&eog, &vocab, "</s>") {
                eog.remove(&s);
                vocab.replace_attr(s, attr::NORMAL);
            }
        }

        let mut special_tokens: Vec<u32> = (0..n_tokens as u32)
            .filter(|&id| {
                vocab.attr(id) & (attr::CONTROL | attr::USER_DEFINED | attr::UNKNOWN) != 0
            })
            .collect();
        special_tokens.sort_by_key(|&id| std::cmp::Reverse(vocab.text(id).len()));

        let mut pieces = Vec::new();
        let mut piece_ends = Vec::with_capacity(n_tokens);
        for id in 0..n_tokens as u32 {
            pieces.extend_from_slice(&token_to_piece(&vocab, &model, id));
            piece_ends.push(pieces.len());
        }

        // Phi-3: whitespace after special tokens is dropped (llama.cpp sets RSTRIP).
        let name = name.unwrap_or_default().to_lowercase();
        if name.contains("phi-3") || name.contains("phi3") {
            for &id in &special_tokens {
                vocab.set_attr(id, attr::RSTRIP);
            }
            if let Some(id) = vocab.id("</s>") {
                vocab.set_attr(id, attr::RSTRIP);
            }
            for text in ["<unk>", "<s>", "<|endoftext|>"] {
                if let Some(id) = vocab.id(text) {
                    vocab.clear_attr(id, attr::RSTRIP);
                }
            }
        }

        Ok(Tokenizer {
            model,
            vocab,
            pieces,
            piece_ends,
            special_tokens,
            eog,
            bos,
            eos,
            unk,
            add_bos,
            add_eos,
            add_space_prefix,
        })
    }

    /// Reads the tokenizer from a GGUF file's metadata.
    pub fn from_gguf(g: &GgufFile) -> Result<Self, TokenizerError> {
        Self::new(TokenizerConfig::from_gguf(g)?)
    }

    /// Tokenizes `text`. `add_special` adds BOS/EOS per the model's flags;
    /// `parse_special` turns text like `<|im_start|>` into its control token
    /// (user-defined tokens are always matched, as in llama.cpp).
    pub fn encode(&self, text: &str, add_special: bool, parse_special: bool) -> Vec<u32> {
        let fragments = if text.is_empty() {
            Vec::new()
        } else {
            self.partition(text, parse_special)
        };
        let mut out = Vec::new();
        if add_special && self.add_bos {
            out.extend(self.bos);
        }
        match &self.model {
            Model::Spm(spm) => {
                let mut prev_special = true;
                for fragment in &fragments {
                    match fragment {
                        Fragment::Text(range) => {
                            let mut piece = String::new();
                            if self.add_space_prefix && prev_special {
                                piece.push(' ');
                            }
                            piece.push_str(text.get(range.clone()).unwrap_or_default());
                            let escaped = piece.replace(' ', "\u{2581}");
                            spm.tokenize(&self.vocab, &escaped, self.unk, &mut out);
                            prev_special = false;
                        }
                        Fragment::Token(id) => {
                            out.push(*id);
                            prev_special = true;
                        }
                    }
                }
            }
            Model::Bpe(bpe) => {
                for fragment in &fragments {
                    match fragment {
                        Fragment::Text(range) => {
                            let piece = text.get(range.clone()).unwrap_or_default();
                            bpe.tokenize(&self.vocab, piece, &mut out);
                        }
                        Fragment::Token(id) => out.push(*id),
                    }
                }
            }
        }
        if add_special && self.add_eos {
            out.extend(self.eos);
        }
        out
    }

    /// llama.cpp's `tokenizer_st_partition`: for each special token, longest first,
    /// cut every occurrence out of the remaining text fragments.
    fn partition(&self, text: &str, parse_special: bool) -> Vec<Fragment> {
        let mut fragments = vec![Fragment::Text(0..text.len())];
        for &id in &self.special_tokens {
            let Some(token) = self.vocab.get(id) else {
                continue;
            };
            if !parse_special && token.attr & (attr::CONTROL | attr::UNKNOWN) != 0 {
                continue;
            }
            let needle = self.vocab.text(id);
            let rstrip = token.attr & attr::RSTRIP != 0;
            if !fragments.iter().any(|f| match f {
                Fragment::Text(r) => text.get(r.clone()).is_some_and(|s| s.contains(needle)),
                Fragment::Token(_) => false,
            }) {
                continue;
            }
            let mut next = Vec::with_capacity(fragments.len() + 2);
            for fragment in fragments {
                let Fragment::Text(range) = fragment else {
                    next.push(fragment);
                    continue;
                };
                let mut start = range.start;
                let end = range.end;
                while start < end {
                    let Some(found) = text.get(start..end).and_then(|s| s.find(needle)) else {
                        next.push(Fragment::Text(start..end));
                        break;
                    };
                    let at = start + found;
                    if at > start {
                        next.push(Fragment::Text(start..at));
                    }
                    next.push(Fragment::Token(id));
                    start = at + needle.len();
                    if rstrip {
                        while start < end
                            && text.as_bytes().get(start).is_some_and(|&b| is_c_space(b))
                        {
                            start += 1;
                        }
                    }
                }
            }
            fragments = next;
        }
        fragments
    }

    pub fn vocab_size(&self) -> usize {
        self.vocab.len()
    }

    /// The bytes `id` decodes to (llama.cpp's `token_to_piece` with special tokens
    /// rendered); empty for ids outside the vocabulary.
    pub fn token_bytes(&self, id: u32) -> &[u8] {
        let id = id as usize;
        let Some(&end) = self.piece_ends.get(id) else {
            return &[];
        };
        let start = if id == 0 { 0 } else { self.piece_ends[id - 1] };
        &self.pieces[start..end]
    }

    /// Concatenates the tokens' bytes, decoded as UTF-8 (invalid sequences become U+FFFD).
    pub fn decode(&self, ids: &[u32]) -> String {
        let bytes: Vec<u8> = ids
            .iter()
            .flat_map(|&id| self.token_bytes(id))
            .copied()
            .collect();
        String::from_utf8_lossy(&bytes).into_owned()
    }

    /// The token's vocabulary string as stored in the model.
    pub fn token_text(&self, id: u32) -> Option<&str> {
        self.vocab.get(id).map(|_| self.vocab.text(id))
    }

    /// Exact vocabulary lookup.
    pub fn token_id(&self, text: &str) -> Option<u32> {
        self.vocab.id(text)
    }

    pub fn bos(&self) -> Option<u32> {
        self.bos
    }

    pub fn eos(&self) -> Option<u32> {
        self.eos
    }

    /// Whether generating `id` ends generation (EOS, end-of-turn and the other tokens
    /// llama.cpp puts in its EOG set).
    pub fn is_eog(&self, id: u32) -> bool {
        self.eog.contains(&id)
    }

    /// All end-of-generation ids, ascending.
    pub fn eog_ids(&self) -> impl Iterator<Item = u32> + '_ {
        self.eog.iter().copied()
    }

    pub fn is_control(&self, id: u32) -> bool {
        self.vocab.attr(id) & attr::CONTROL != 0
    }

    pub fn add_bos(&self) -> bool {
        self.add_bos
    }

    pub fn add_eos(&self) -> bool {
        self.add_eos
    }
}

/// C `isspace` in the "C" locale, which llama.cpp uses when stripping around
/// special tokens.
fn is_c_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0B | 0x0C | b'\r')
}

/// llama.cpp's `token_to_piece(id, special = true)` without the cache.
fn token_to_piece(vocab: &Vocab, model: &Model, id: u32) -> Box<[u8]> {
    let Some(token) = vocab.get(id) else {
        return Box::default();
    };
    let text = vocab.text(id);
    let a = token.attr;
    if a & (attr::UNKNOWN | attr::CONTROL | attr::USER_DEFINED) != 0 {
        return text.as_bytes().into();
    }
    if a & attr::NORMAL != 0 {
        return match model {
            Model::Spm(_) => text.replace('\u{2581}', " ").into_bytes().into(),
            Model::Bpe(_) => decode_byte_level(text),
        };
    }
    if a & attr::BYTE != 0 {
        // "<0xXX>"; llama.cpp reads the two hex digits at offset 3.
        return text
            .get(3..5)
            .and_then(|hex| u8::from_str_radix(hex, 16).ok())
            .map_or_else(Box::default, |b| Box::new([b]));
    }
    Box::default()
}

/// Maps GPT-2 byte chars back to bytes; a char outside the mapping is written as
/// llama.cpp writes it: `[UNK_BYTE_0x<hex of its UTF-8>` + the whole token text + `]`.
fn decode_byte_level(text: &str) -> Box<[u8]> {
    let mut out = Vec::with_capacity(text.len());
    for c in text.chars() {
        match char_to_byte(c) {
            Some(b) => out.push(b),
            None => {
                out.extend_from_slice(b"[UNK_BYTE_0x");
                let mut buf = [0u8; 4];
                for b in c.encode_utf8(&mut buf).bytes() {
                    out.extend_from_slice(format!("{b:02x}").as_bytes());
                }
                out.extend_from_slice(text.as_bytes());
                out.push(b']');
            }
        }
    }
    out.into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use terse_gguf::StrArray;

    fn spm_config(tokens: &[(&str, f32, i32)]) -> TokenizerConfig {
        TokenizerConfig {
            model: "llama".into(),
            tokens: tokens.iter().map(|t| t.0).collect(),
            scores: Some(tokens.iter().map(|t| t.1).collect()),
            token_types: Some(tokens.iter().map(|t| t.2).collect()),
            bos: Some(1),
            eos: Some(2),
            unk: Some(0),
            add_bos: true,
            add_space_prefix: true,
            ..TokenizerConfig::default()
        }
    }

    fn small_spm() -> Tokenizer {
        Tokenizer::new(spm_config(&[
            ("<unk>", 0.0, 2),
            ("<s>", 0.0, 3),
            ("</s>", 0.0, 3),
            ("▁", -1.0, 1),
            ("h", -2.0, 1),
            ("i", -2.0, 1),
            ("▁h", -1.5, 1),
            ("▁hi", -0.5, 1),
            ("<0x21>", 0.0, 6),
            ("<sep>", 0.0, 4),
        ]))
        .unwrap()
    }

    #[test]
    fn spm_adds_bos_and_space_prefix() {
        let tok = small_spm();
        assert_eq!(tok.encode("hi", true, false), [1, 7]);
        assert_eq!(tok.encode("hi!", false, false), [7, 8]);
        assert_eq!(tok.decode(&[7, 8]), " hi!");
    }

    #[test]
    fn control_tokens_are_parsed_only_with_parse_special() {
        let tok = small_spm();
        assert_eq!(tok.encode("</s>hi", false, true), [2, 7]);
        assert_ne!(tok.encode("</s>hi", false, false).first(), Some(&2));
    }

    #[test]
    fn user_defined_tokens_are_matched_even_without_parse_special() {
        let tok = small_spm();
        assert_eq!(tok.encode("hi<sep>hi", false, false), [7, 9, 7]);
    }

    #[test]
    fn eog_contains_eos_and_detected_end_tokens() {
        let tok = small_spm();
        assert!(tok.is_eog(2));
        assert!(tok.is_control(2));
        assert!(!tok.is_eog(7));
    }

    #[test]
    fn unknown_pre_tokenizer_is_rejected_naming_it() {
        let cfg = TokenizerConfig {
            model: "gpt2".into(),
            pre: Some("smollm".into()),
            tokens: StrArray::from_iter(["a"]),
            merges: Some(StrArray::default()),
            ..TokenizerConfig::default()
        };
        let err = Tokenizer::new(cfg).err().unwrap();
        let msg = err.to_string();
        assert!(msg.contains("'smollm'") && msg.contains("qwen2"), "{msg}");
    }

    #[test]
    fn add_bos_without_bos_token_is_rejected() {
        let mut cfg = spm_config(&[("a", 0.0, 1)]);
        cfg.bos = None;
        cfg.eos = None;
        cfg.unk = None;
        let err = Tokenizer::new(cfg).err().unwrap();
        assert!(
            matches!(err, TokenizerError::MissingSpecialToken { name: "bos", .. }),
            "{err}"
        );
    }

    #[test]
    fn byte_level_decoding_maps_unknown_chars_like_llama_cpp() {
        assert_eq!(&*decode_byte_level("ĠhiĊ"), b" hi\n");
        assert_eq!(
            &*decode_byte_level("a€"),
            "a[UNK_BYTE_0xe282aca€]".as_bytes()
        );
    }

    #[test]
    fn tokenizer_is_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Tokenizer>();
    }
}
