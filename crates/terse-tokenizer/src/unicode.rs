//! Unicode facts the pre-tokenizers need, defined the way llama.cpp defines them.
//!
//! llama.cpp classifies every code point into one category (letter, number,
//! punctuation, symbol, mark, separator, control — unassigned code points count as
//! control) and keeps a separate whitespace set (Unicode `White_Space`, which does not
//! include U+001C..U+001F). Token ids only match llama.cpp's if these definitions
//! match, so they live here in one place. Byte-level BPE's GPT-2 byte↔char mapping
//! is here too.

use unicode_general_category::{get_general_category, GeneralCategory};

/// The category of a code point, coarse-grained as llama.cpp's `unicode_cpt_flags`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Category {
    Letter,
    Number,
    Punctuation,
    Symbol,
    Mark,
    Separator,
    Control,
}

/// Category of `c`; unassigned, private-use and format code points are `Control`
/// because llama.cpp's tables were generated with `\p{C}`.
pub(crate) fn category(c: char) -> Category {
    use GeneralCategory as G;
    match get_general_category(c) {
        G::UppercaseLetter
        | G::LowercaseLetter
        | G::TitlecaseLetter
        | G::ModifierLetter
        | G::OtherLetter => Category::Letter,
        G::DecimalNumber | G::LetterNumber | G::OtherNumber => Category::Number,
        G::ConnectorPunctuation
        | G::DashPunctuation
        | G::OpenPunctuation
        | G::ClosePunctuation
        | G::InitialPunctuation
        | G::FinalPunctuation
        | G::OtherPunctuation => Category::Punctuation,
        G::MathSymbol | G::CurrencySymbol | G::ModifierSymbol | G::OtherSymbol => Category::Symbol,
        G::NonspacingMark | G::SpacingMark | G::EnclosingMark => Category::Mark,
        G::SpaceSeparator | G::LineSeparator | G::ParagraphSeparator => Category::Separator,
        _ => Category::Control,
    }
}

/// Unicode `White_Space`, llama.cpp's `unicode_set_whitespace`.
pub(crate) fn is_whitespace(c: char) -> bool {
    matches!(
        c,
        '\u{09}'..='\u{0D}'
            | ' '
            | '\u{85}'
            | '\u{A0}'
            | '\u{1680}'
            | '\u{2000}'..='\u{200A}'
            | '\u{2028}'
            | '\u{2029}'
            | '\u{202F}'
            | '\u{205F}'
            | '\u{3000}'
    )
}

/// GPT-2's `bytes_to_unicode`: printable Latin-1 bytes map to themselves, the other
/// 68 bytes to U+0100.. in byte order.
pub(crate) fn byte_to_char_table() -> [char; 256] {
    let mut table = ['\0'; 256];
    let mut next_unprintable = 256u32;
    for (byte, slot) in table.iter_mut().enumerate() {
        let printable = matches!(byte, 0x21..=0x7E | 0xA1..=0xAC | 0xAE..=0xFF);
        let code = if printable {
            byte as u32
        } else {
            let code = next_unprintable;
            next_unprintable += 1;
            code
        };
        // Every code here is below 0x144, a valid scalar value.
        *slot = char::from_u32(code).unwrap_or('\u{FFFD}');
    }
    table
}

/// The inverse of [`byte_to_char_table`] for decoding byte-level BPE tokens.
pub(crate) fn char_to_byte(c: char) -> Option<u8> {
    let code = c as u32;
    match code {
        0x21..=0x7E | 0xA1..=0xAC | 0xAE..=0xFF => Some(code as u8),
        // The unprintable bytes in order: 0x00..=0x20, 0x7F..=0xA0, 0xAD.
        0x100..=0x120 => Some((code - 0x100) as u8),
        0x121..=0x142 => Some((code - 0x121 + 0x7F) as u8),
        0x143 => Some(0xAD),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_table_matches_gpt2_mapping() {
        let table = byte_to_char_table();
        assert_eq!(table[b' ' as usize], 'Ġ');
        assert_eq!(table[b'\n' as usize], 'Ċ');
        assert_eq!(table[b'a' as usize], 'a');
        assert_eq!(table[0], '\u{100}');
        assert_eq!(table[0xAD], '\u{143}');
    }

    #[test]
    fn char_to_byte_inverts_the_table() {
        let table = byte_to_char_table();
        for (byte, &c) in table.iter().enumerate() {
            assert_eq!(char_to_byte(c), Some(byte as u8), "byte {byte}");
        }
        assert_eq!(char_to_byte('€'), None);
    }

    #[test]
    fn whitespace_follows_llama_cpp_not_python_isspace() {
        assert!(is_whitespace('\u{3000}'));
        assert!(is_whitespace('\u{85}'));
        assert!(!is_whitespace('\u{1C}'));
        assert!(!is_whitespace('\u{200B}'));
    }

    #[test]
    fn categories_cover_letters_numbers_and_unassigned() {
        assert_eq!(category('é'), Category::Letter);
        assert_eq!(category('٣'), Category::Number);
        assert_eq!(category('，'), Category::Punctuation);
        assert_eq!(category('👍'), Category::Symbol);
        assert_eq!(category('\u{0301}'), Category::Mark);
        assert_eq!(category('\u{E000}'), Category::Control);
        assert_eq!(category('\u{0378}'), Category::Control);
    }
}
