//! Byte-level BPE pre-tokenizers: split text into words before merges run.
//!
//! Each model's `tokenizer.ggml.pre` names a regex; llama.cpp evaluates the common
//! ones with hand-written matchers (`unicode_regex_split_custom_gpt2`/`_llama3`) and the
//! rest with `std::regex` over a category-collapsed copy of the text. Both are ported
//! here as hand-written scanners over code points so the word boundaries, and thus
//! the token ids, are the same as llama.cpp's.

use std::ops::Range;

use crate::unicode::{category, is_whitespace, Category};

/// The pre-tokenizers this crate implements, by llama.cpp's `tokenizer.ggml.pre` names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PreTokenizer {
    /// `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)`
    Gpt2,
    /// The Llama 3 regex with `\p{N}{1,3}`.
    Llama3,
    /// The Llama 3 regex with single digits `\p{N}` (Qwen2, DeepSeek-R1-Qwen).
    Qwen2,
    /// llama.cpp's fallback chain: punctuation runs, the GPT-2 regex, number runs,
    /// ASCII digit triples.
    Default,
}

/// `tokenizer.ggml.pre` values accepted, for error messages.
pub(crate) const SUPPORTED_PRE: &str =
    "default, gpt-2, gpt2, llama3, llama-v3, llama-bpe, qwen2, deepseek-r1-qwen";

impl PreTokenizer {
    pub(crate) fn from_name(name: &str) -> Option<Self> {
        match name {
            "default" => Some(Self::Default),
            "gpt-2" | "gpt2" => Some(Self::Gpt2),
            "llama3" | "llama-v3" | "llama-bpe" => Some(Self::Llama3),
            "qwen2" | "deepseek-r1-qwen" => Some(Self::Qwen2),
            _ => None,
        }
    }

    /// llama.cpp sets `ignore_merges` for Llama 3: a word that is already a token is
    /// emitted whole.
    pub(crate) fn ignores_merges(self) -> bool {
        self == Self::Llama3
    }

    /// Splits `text` into words, returned as byte ranges of `text` in order, covering
    /// it without gaps.
    pub(crate) fn split(self, text: &str) -> Vec<Range<usize>> {
        let cpts: Vec<char> = text.chars().collect();
        let mut lengths = vec![cpts.len()];
        match self {
            Self::Gpt2 => lengths = split_gpt2(&cpts, &lengths),
            Self::Llama3 => lengths = split_llama3(&cpts, &lengths, 3),
            Self::Qwen2 => lengths = split_llama3(&cpts, &lengths, 1),
            Self::Default => {
                lengths = split_matches(&cpts, &lengths, |s, p| run_len(s, p, is_default_punct));
                lengths = split_gpt2(&cpts, &lengths);
                lengths = split_matches(&cpts, &lengths, |s, p| run_len(s, p, is_collapsed_number));
                lengths = split_matches(&cpts, &lengths, ascii_digit_triple);
            }
        }
        lengths_to_byte_ranges(text, &lengths)
    }
}

/// Converts word lengths in code points into byte ranges of `text`.
fn lengths_to_byte_ranges(text: &str, lengths: &[usize]) -> Vec<Range<usize>> {
    let mut boundaries = text.char_indices().map(|(i, _)| i).chain([text.len()]);
    let mut ranges = Vec::with_capacity(lengths.len());
    let mut start = boundaries.next().unwrap_or(0);
    for &len in lengths {
        let end = boundaries.nth(len.saturating_sub(1)).unwrap_or(text.len());
        ranges.push(start..end);
        start = end;
    }
    ranges
}

/// A code point's flags as llama.cpp's matchers see them; `in_range` is false past
/// the end of the current piece (llama.cpp's all-zero flags).
#[derive(Clone, Copy, Default)]
struct Flags {
    in_range: bool,
    letter: bool,
    number: bool,
    whitespace: bool,
}

impl Flags {
    fn of(c: char) -> Self {
        let cat = category(c);
        Flags {
            in_range: true,
            letter: cat == Category::Letter,
            number: cat == Category::Number,
            whitespace: is_whitespace(c),
        }
    }

    /// `[^\s\p{L}\p{N}]` for a code point inside the piece.
    fn is_other(self) -> bool {
        self.in_range && !(self.whitespace || self.letter || self.number)
    }
}

/// One piece of the text being split, with llama.cpp's `_get_cpt`/`_get_flags`/
/// `_add_token` helpers.
struct Piece<'a> {
    cpts: &'a [char],
    end: usize,
    prev_end: usize,
    out: &'a mut Vec<usize>,
}

impl Piece<'_> {
    fn cpt(&self, pos: usize) -> Option<char> {
        if pos < self.end {
            self.cpts.get(pos).copied()
        } else {
            None
        }
    }

    fn flags(&self, pos: usize) -> Flags {
        self.cpt(pos).map(Flags::of).unwrap_or_default()
    }

    /// Ends the current word at `end`; returns its length.
    fn add(&mut self, end: usize) -> usize {
        let len = end - self.prev_end;
        if len > 0 {
            self.out.push(len);
        }
        self.prev_end = end;
        len
    }

    /// `'s|'t|'m|'d|'re|'ve|'ll` at `pos`, optionally case-insensitive; the length
    /// matched.
    fn contraction(&self, pos: usize, fold_case: bool) -> Option<usize> {
        if self.cpt(pos) != Some('\'') || pos + 1 >= self.end {
            return None;
        }
        let fold = |c: Option<char>| c.map(|c| if fold_case { c.to_ascii_lowercase() } else { c });
        let next = fold(self.cpt(pos + 1));
        if matches!(next, Some('s' | 't' | 'm' | 'd')) {
            return Some(2);
        }
        if pos + 2 < self.end {
            let next_next = fold(self.cpt(pos + 2));
            if matches!(
                (next, next_next),
                (Some('r'), Some('e')) | (Some('v'), Some('e')) | (Some('l'), Some('l'))
            ) {
                return Some(3);
            }
        }
        None
    }
}

/// Runs `scan` over every existing piece; `scan` gets the piece and its first index.
fn for_each_piece(
    cpts: &[char],
    lengths: &[usize],
    mut scan: impl FnMut(&mut Piece<'_>, usize),
) -> Vec<usize> {
    let mut out = Vec::with_capacity(lengths.len());
    let mut start = 0;
    for &len in lengths {
        let mut piece = Piece {
            cpts,
            end: start + len,
            prev_end: start,
            out: &mut out,
        };
        scan(&mut piece, start);
        start += len;
    }
    out
}

/// Port of `unicode_regex_split_custom_gpt2`.
fn split_gpt2(cpts: &[char], lengths: &[usize]) -> Vec<usize> {
    for_each_piece(cpts, lengths, |p, start| {
        let mut pos = start;
        while pos < p.end {
            let cpt = p.cpt(pos);
            let flags = p.flags(pos);

            if let Some(len) = p.contraction(pos, false) {
                pos += p.add(pos + len);
                continue;
            }

            let space = cpt == Some(' ');
            let mut flags2 = if space { p.flags(pos + 1) } else { flags };
            // <space>?\p{L}+
            if flags2.letter {
                pos += usize::from(space);
                while flags2.letter {
                    pos += 1;
                    flags2 = p.flags(pos);
                }
                p.add(pos);
                continue;
            }
            // <space>?\p{N}+
            if flags2.number {
                pos += usize::from(space);
                while flags2.number {
                    pos += 1;
                    flags2 = p.flags(pos);
                }
                p.add(pos);
                continue;
            }
            // <space>?[^\s\p{L}\p{N}]+
            if flags2.is_other() {
                pos += usize::from(space);
                while flags2.is_other() {
                    pos += 1;
                    flags2 = p.flags(pos);
                }
                p.add(pos);
                continue;
            }

            let mut num_whitespaces = 0;
            while p.flags(pos + num_whitespaces).whitespace {
                num_whitespaces += 1;
            }
            // \s+(?!\S)
            if num_whitespaces > 1 && p.cpt(pos + num_whitespaces).is_some() {
                pos += num_whitespaces - 1;
                p.add(pos);
                continue;
            }
            // \s+
            if num_whitespaces > 0 {
                pos += num_whitespaces;
                p.add(pos);
                continue;
            }
            pos += 1;
            p.add(pos);
        }
    })
}

/// Port of `unicode_regex_split_custom_llama3`, with the longest digit group as a
/// parameter: 3 for Llama 3, 1 for Qwen2 (whose regex llama.cpp runs through
/// `std::regex`, which splits identically).
fn split_llama3(cpts: &[char], lengths: &[usize], max_digits: usize) -> Vec<usize> {
    for_each_piece(cpts, lengths, |p, start| {
        let mut pos = start;
        while pos < p.end {
            let cpt = p.cpt(pos);
            let flags = p.flags(pos);
            let is_cr_or_lf = |c: Option<char>| matches!(c, Some('\r' | '\n'));

            // (?i:'s|'t|'re|'ve|'m|'ll|'d)
            if let Some(len) = p.contraction(pos, true) {
                pos += p.add(pos + len);
                continue;
            }

            // [^\r\n\p{L}\p{N}]?\p{L}+
            if !(is_cr_or_lf(cpt) || flags.number) && (flags.letter || p.flags(pos + 1).letter) {
                pos += 1;
                while p.flags(pos).letter {
                    pos += 1;
                }
                p.add(pos);
                continue;
            }

            // \p{N}{1,max_digits}
            if flags.number {
                let mut group_start = pos;
                while p.flags(pos).number {
                    pos += 1;
                    if pos - group_start >= max_digits {
                        p.add(pos);
                        group_start = pos;
                    }
                }
                p.add(pos);
                continue;
            }

            // <space>?[^\s\p{L}\p{N}]+[\r\n]*
            let space = cpt == Some(' ');
            let mut flags2 = if space { p.flags(pos + 1) } else { flags };
            if !(flags2.whitespace || flags2.letter || flags2.number) && flags.in_range {
                pos += usize::from(space);
                while flags2.is_other() {
                    pos += 1;
                    flags2 = p.flags(pos);
                }
                while is_cr_or_lf(p.cpt(pos)) {
                    pos += 1;
                }
                p.add(pos);
                continue;
            }

            let mut num_whitespaces = 0;
            let mut last_end_r_or_n = None;
            while p.flags(pos + num_whitespaces).whitespace {
                if is_cr_or_lf(p.cpt(pos + num_whitespaces)) {
                    last_end_r_or_n = Some(pos + num_whitespaces + 1);
                }
                num_whitespaces += 1;
            }
            // \s*[\r\n]+
            if let Some(end) = last_end_r_or_n {
                pos = end;
                p.add(pos);
                continue;
            }
            // \s+(?!\S)
            if num_whitespaces > 1 && p.cpt(pos + num_whitespaces).is_some() {
                pos += num_whitespaces - 1;
                p.add(pos);
                continue;
            }
            // \s+
            if num_whitespaces > 0 {
                pos += num_whitespaces;
                p.add(pos);
                continue;
            }
            pos += 1;
            p.add(pos);
        }
    })
}

/// Splits every piece into regex matches and the gaps between them, as llama.cpp's
/// `unicode_regex_split_stl` does; `match_len` gives the length of a match starting
/// at a position (within the piece's slice), if any.
fn split_matches(
    cpts: &[char],
    lengths: &[usize],
    match_len: impl Fn(&[char], usize) -> Option<usize>,
) -> Vec<usize> {
    for_each_piece(cpts, lengths, |p, start| {
        let slice = p.cpts.get(start..p.end).unwrap_or_default();
        let mut pos = 0;
        while pos < slice.len() {
            match match_len(slice, pos) {
                Some(len) if len > 0 => {
                    p.add(start + pos);
                    pos += len;
                    p.add(start + pos);
                }
                _ => pos += 1,
            }
        }
        p.add(p.end);
    })
}

/// Length of the run of `pred` code points starting at `pos` (`[…]+`).
fn run_len(slice: &[char], pos: usize, pred: fn(char) -> bool) -> Option<usize> {
    let len = slice
        .get(pos..)
        .unwrap_or_default()
        .iter()
        .take_while(|&&c| pred(c))
        .count();
    (len > 0).then_some(len)
}

/// `[0-9][0-9][0-9]`.
fn ascii_digit_triple(slice: &[char], pos: usize) -> Option<usize> {
    let window = slice.get(pos..pos + 3)?;
    window.iter().all(char::is_ascii_digit).then_some(3)
}

/// `[\p{P}\$\+<=>\^~\|]` as llama.cpp evaluates it on collapsed text: ASCII by its
/// fixed punctuation list, other code points by category (whitespace excluded).
fn is_default_punct(c: char) -> bool {
    if c.is_ascii() {
        matches!(
            c,
            '\x21'..='\x23'
                | '\x25'..='\x2A'
                | '\x2C'..='\x2F'
                | '\x3A'..='\x3B'
                | '\x3F'..='\x40'
                | '\x5B'..='\x5D'
                | '\x5F'
                | '\x7B'
                | '\x7D'
                | '$'
                | '+'
                | '<'
                | '='
                | '>'
                | '^'
                | '~'
                | '|'
        )
    } else {
        !is_whitespace(c) && category(c) == Category::Punctuation
    }
}

/// `\p{N}` as llama.cpp evaluates it on collapsed text.
fn is_collapsed_number(c: char) -> bool {
    if c.is_ascii() {
        c.is_ascii_digit()
    } else {
        !is_whitespace(c) && category(c) == Category::Number
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(pre: PreTokenizer, text: &str) -> Vec<&str> {
        pre.split(text).into_iter().map(|r| &text[r]).collect()
    }

    #[test]
    fn qwen2_splits_digits_one_by_one() {
        assert_eq!(
            words(PreTokenizer::Qwen2, "abc 12345"),
            ["abc", " ", "1", "2", "3", "4", "5"]
        );
    }

    #[test]
    fn llama3_groups_digits_by_three() {
        assert_eq!(words(PreTokenizer::Llama3, "12345"), ["123", "45"]);
    }

    #[test]
    fn llama3_keeps_last_space_with_next_word() {
        assert_eq!(
            words(PreTokenizer::Llama3, "a   b\n\n c"),
            ["a", "  ", " b", "\n\n", " c"]
        );
    }

    #[test]
    fn llama3_contractions_are_case_insensitive() {
        assert_eq!(words(PreTokenizer::Llama3, "I'LL"), ["I", "'LL"]);
        assert_eq!(words(PreTokenizer::Gpt2, "I'LL"), ["I", "'", "LL"]);
    }

    #[test]
    fn punctuation_takes_trailing_newlines_in_llama3() {
        assert_eq!(words(PreTokenizer::Qwen2, "x.\n\ny"), ["x", ".\n\n", "y"]);
    }

    #[test]
    fn gpt2_attaches_one_space_to_words() {
        assert_eq!(
            words(PreTokenizer::Gpt2, "Hello  world!!"),
            ["Hello", " ", " world", "!!"]
        );
    }

    #[test]
    fn default_chain_splits_punctuation_and_digit_triples() {
        assert_eq!(
            words(PreTokenizer::Default, "ab,cd 12345"),
            ["ab", ",", "cd", " ", "123", "45"]
        );
    }

    #[test]
    fn split_ranges_cover_multibyte_text() {
        let text = "你好，世界 👍🏽";
        let ranges = PreTokenizer::Qwen2.split(text);
        assert_eq!(ranges.first().map(|r| r.start), Some(0));
        assert_eq!(ranges.last().map(|r| r.end), Some(text.len()));
        for pair in ranges.windows(2) {
            assert_eq!(pair[0].end, pair[1].start);
        }
    }

    #[test]
    fn unknown_pre_name_is_not_guessed() {
        assert_eq!(PreTokenizer::from_name("qwen3"), None);
    }
}
