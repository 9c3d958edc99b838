//! Reading answers out of probe text and traces: the content of `\boxed{…}`, a
//! canonical form to compare answers, hedging words, and where a trace has just
//! written a result.

/// The text before the first unmatched `}`: what a probe that continues
/// `\boxed{` wrote inside the box. `None` when the box is never closed.
pub fn boxed_content(text: &str) -> Option<&str> {
    let mut depth = 0usize;
    for (i, c) in text.char_indices() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => return Some(&text[..i]),
            '}' => depth -= 1,
            _ => {}
        }
    }
    None
}

/// The content of the last `\boxed{…}` in `text`, if one is closed.
pub fn last_boxed(text: &str) -> Option<&str> {
    let start = text.rfind("\\boxed{")? + "\\boxed{".len();
    boxed_content(&text[start..])
}

/// A canonical form of an answer, so that `1,200`, `$1200` and `1200.00` compare
/// equal. Numbers become their shortest decimal form; anything else is compared with
/// whitespace, dollar signs and trailing periods removed.
pub fn normalize(answer: &str) -> String {
    let mut s: String = answer
        .replace("\\$", "")
        .replace("\\%", "")
        .replace("\\!", "")
        .chars()
        .filter(|c| !c.is_whitespace() && !matches!(c, '$' | '%'))
        .collect();
    if let Some(inner) = s.strip_prefix("\\text{").and_then(|r| r.strip_suffix('}')) {
        s = inner.to_string();
    }
    while s.ends_with('.') {
        s.pop();
    }
    let digits: String = s.chars().filter(|&c| c != ',').collect();
    match digits.parse::<f64>() {
        Ok(x) if x.is_finite() && digits.chars().any(|c| c.is_ascii_digit()) => {
            if x.fract() == 0.0 && x.abs() < 1e15 {
                format!("{}", x as i64)
            } else {
                format!("{x}")
            }
        }
        _ => s,
    }
}

/// Words that mean the writer is not done: a probe answer containing one is not
/// trusted. Matched as whole words ("no" does not match "know" or "not"), unlike a
/// substring test.
pub const HEDGE_WORDS: &[&str] = &[
    "wait", "hold", "but", "hmm", "however", "no", "maybe", "perhaps", "actually", "recheck",
    "mistake", "unsure", "not sure",
];

/// Whether `text` contains one of `words` as a whole word (case-insensitive; a
/// several-word entry matches as a phrase).
pub fn contains_word(text: &str, words: &[&str]) -> bool {
    let lower = text.to_lowercase();
    words.iter().any(|w| {
        lower.match_indices(w).any(|(i, m)| {
            let before = lower[..i].chars().next_back();
            let after = lower[i + m.len()..].chars().next();
            !before.is_some_and(char::is_alphanumeric) && !after.is_some_and(char::is_alphanumeric)
        })
    })
}

/// The number a trace has just finished writing as the result of an equation: `text`
/// ends with `= 72` (optionally `$`-prefixed, with commas or decimals), and `next`
/// (the piece that follows) does not continue the number.
pub fn just_computed<'a>(text: &'a str, next: &str) -> Option<&'a str> {
    let mut next_chars = next.chars();
    let continues = match next_chars.next() {
        Some(c) if c.is_ascii_digit() => true,
        // A decimal point or thousands comma continues the number; a period does not.
        Some('.' | ',') => next_chars.next().is_some_and(|c| c.is_ascii_digit()),
        _ => false,
    };
    if continues {
        return None;
    }
    let trimmed = text.trim_end_matches(['.', ',']);
    let number_start = trimmed
        .char_indices()
        .rev()
        .take_while(|&(_, c)| c.is_ascii_digit() || c == ',' || c == '.')
        .last()
        .map(|(i, _)| i)?;
    let number = trimmed[number_start..].trim_start_matches([',', '.']);
    if !number.starts_with(|c: char| c.is_ascii_digit()) {
        return None;
    }
    let before = trimmed[..number_start]
        .trim_end_matches([' ', '$'])
        .trim_end_matches("\\$");
    before.trim_end().ends_with('=').then_some(number)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boxed_content_stops_at_the_first_unmatched_brace() {
        assert_eq!(boxed_content("72}."), Some("72"));
        assert_eq!(boxed_content("\\frac{1}{2}} rest"), Some("\\frac{1}{2}"));
        assert_eq!(boxed_content("72"), None);
        assert_eq!(last_boxed("so \\boxed{3} then \\boxed{72}."), Some("72"));
    }

    #[test]
    fn normalize_makes_equal_numbers_equal() {
        assert_eq!(normalize(" 1,200 "), "1200");
        assert_eq!(normalize("$1200.00"), "1200");
        assert_eq!(normalize("\\$18"), "18");
        assert_eq!(normalize("0.50"), "0.5");
        assert_eq!(normalize("72."), "72");
        assert_eq!(normalize("\\text{blue}"), "blue");
        assert_ne!(normalize("12"), normalize("21"));
    }

    #[test]
    fn hedge_words_match_whole_words_only() {
        assert!(contains_word("Wait, that is wrong", HEDGE_WORDS));
        assert!(contains_word("72, but let me check", HEDGE_WORDS));
        assert!(!contains_word("I know the answer", HEDGE_WORDS));
        assert!(!contains_word("72 is not butter", &["but"]));
        assert!(!contains_word("note: 72", HEDGE_WORDS));
        assert!(contains_word("I am not sure", HEDGE_WORDS));
    }

    #[test]
    fn a_result_is_recognised_where_an_equation_has_just_ended() {
        assert_eq!(just_computed("48 + 24 = 72", "\n"), Some("72"));
        assert_eq!(just_computed("cost = $1,200", " dollars"), Some("1,200"));
        assert_eq!(just_computed("48 / 2 = 24.", "\n"), Some("24"));
        assert_eq!(
            just_computed("48 + 24 = 7", "2"),
            None,
            "the number goes on"
        );
        assert_eq!(
            just_computed("48 + 24 = 72", ".5"),
            None,
            "a decimal follows"
        );
        assert_eq!(just_computed("48 + 24 = 72", ". So"), Some("72"));
        assert_eq!(just_computed("there are 72", "\n"), None, "no equation");
        assert_eq!(just_computed("x = y", "\n"), None);
    }
}
