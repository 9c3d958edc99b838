//! SentencePiece BPE (`tokenizer.ggml.model = "llama"`), a port of llama.cpp's
//! `llm_tokenizer_spm_session`: start from single characters, repeatedly merge the
//! adjacent pair whose concatenation is the highest-scoring vocabulary token
//! (leftmost first on ties), and spell anything left that is not a token as
//! `<0xXX>` byte tokens.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use crate::vocab::Vocab;

pub(crate) struct Spm {
    /// Token for each byte: `<0xXX>`, else the one-byte text, else none.
    byte_tokens: Box<[Option<u32>; 256]>,
}

#[derive(Clone, Copy)]
struct Symbol {
    start: usize,
    len: usize,
    prev: usize,
    next: usize,
}

const NONE: usize = usize::MAX;

struct Bigram {
    score: f32,
    left: usize,
    right: usize,
    size: usize,
}

impl PartialEq for Bigram {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Bigram {}
impl PartialOrd for Bigram {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Bigram {
    /// Higher score first; on equal scores the leftmost pair first.
    fn cmp(&self, other: &Self) -> Ordering {
        self.score
            .total_cmp(&other.score)
            .then_with(|| other.left.cmp(&self.left))
    }
}

impl Spm {
    pub fn new(vocab: &Vocab) -> Self {
        let mut byte_tokens = Box::new([None; 256]);
        for (byte, slot) in byte_tokens.iter_mut().enumerate() {
            *slot = vocab.id(&format!("<0x{byte:02X}>")).or_else(|| {
                let single = [byte as u8];
                std::str::from_utf8(&single).ok().and_then(|s| vocab.id(s))
            });
        }
        Spm { byte_tokens }
    }

    /// The token for a raw byte, if the vocabulary has one.
    pub fn byte_token(&self, byte: u8) -> Option<u32> {
        self.byte_tokens[byte as usize]
    }

    /// Tokenizes text whose spaces are already escaped as "▁". Bytes with no token
    /// at all (llama.cpp aborts there) become `unk` when the model has one.
    pub fn tokenize(&self, vocab: &Vocab, text: &str, unk: Option<u32>, out: &mut Vec<u32>) {
        let mut symbols: Vec<Symbol> = Vec::with_capacity(text.len());
        for (start, c) in text.char_indices() {
            let index = symbols.len();
            symbols.push(Symbol {
                start,
                len: c.len_utf8(),
                prev: index.wrapping_sub(1),
                next: index + 1,
            });
        }
        let Some(last) = symbols.last_mut() else {
            return;
        };
        last.next = NONE;

        let mut queue = BinaryHeap::new();
        for right in 1..symbols.len() {
            try_add_bigram(vocab, text, &symbols, right - 1, right, &mut queue);
        }

        while let Some(bigram) = queue.pop() {
            let (left, right) = (symbols[bigram.left], symbols[bigram.right]);
            if left.len == 0 || right.len == 0 || left.len + right.len != bigram.size {
                continue;
            }
            symbols[bigram.left].len += right.len;
            symbols[bigram.right].len = 0;
            symbols[bigram.left].next = right.next;
            if right.next != NONE {
                symbols[right.next].prev = bigram.left;
            }
            let merged = symbols[bigram.left];
            if merged.prev != NONE {
                try_add_bigram(vocab, text, &symbols, merged.prev, bigram.left, &mut queue);
            }
            if merged.next != NONE {
                try_add_bigram(vocab, text, &symbols, bigram.left, merged.next, &mut queue);
            }
        }

        let mut index = 0;
        while index != NONE {
            let sym = symbols[index];
            index = sym.next;
            let Some(piece) = text.get(sym.start..sym.start + sym.len) else {
                continue;
            };
            match vocab.id(piece) {
                Some(id) => out.push(id),
                None => {
                    for b in piece.bytes() {
                        if let Some(id) = self.byte_token(b).or(unk) {
                            out.push(id);
                        }
                    }
                }
            }
        }
    }
}

fn try_add_bigram(
    vocab: &Vocab,
    text: &str,
    symbols: &[Symbol],
    left: usize,
    right: usize,
    queue: &mut BinaryHeap<Bigram>,
) {
    let (l, r) = (symbols[left], symbols[right]);
    let Some(joined) = text.get(l.start..l.start + l.len + r.len) else {
        return;
    };
    let Some(token) = vocab.id(joined).and_then(|id| vocab.get(id)) else {
        return;
    };
    queue.push(Bigram {
        score: token.score,
        left,
        right,
        size: joined.len(),
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vocab(tokens: &[(&str, f32)]) -> Vocab {
        let texts: terse_gguf::StrArray = tokens.iter().map(|(t, _)| t).collect();
        let scores: Vec<f32> = tokens.iter().map(|(_, s)| *s).collect();
        Vocab::new(&texts, Some(&scores), None).unwrap()
    }

    #[test]
    fn highest_score_pair_merges_first() {
        let v = vocab(&[
            ("a", 0.0),
            ("b", 0.0),
            ("c", 0.0),
            ("ab", -5.0),
            ("bc", -1.0),
        ]);
        let spm = Spm::new(&v);
        let mut out = Vec::new();
        spm.tokenize(&v, "abc", None, &mut out);
        assert_eq!(out, [0, 4]);
    }

    #[test]
    fn unknown_characters_fall_back_to_byte_tokens() {
        let v = vocab(&[("<0xC3>", 0.0), ("<0xA9>", 0.0), ("x", 0.0)]);
        let spm = Spm::new(&v);
        let mut out = Vec::new();
        spm.tokenize(&v, "xé", None, &mut out);
        assert_eq!(out, [2, 0, 1]);
    }

    #[test]
    fn bytes_without_any_token_become_unk() {
        let v = vocab(&[("<unk>", 0.0), ("x", 0.0)]);
        let spm = Spm::new(&v);
        let mut out = Vec::new();
        spm.tokenize(&v, "x€", Some(0), &mut out);
        assert_eq!(out, [1, 0, 0, 0]);
    }
}
