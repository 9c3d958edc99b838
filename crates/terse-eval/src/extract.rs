//! Answer extraction: find the final answer inside a model's free-form output.
//!
//! Rules are tried in a configurable order and the first that finds something wins;
//! the record keeps which rule fired, because a lenient rule (the last number in the
//! text) inflates accuracy and summaries report strict and lenient accuracy apart.
//! Each rule takes the *last* occurrence of its marker, since models often restate
//! intermediate results before the final one. Matching is ASCII case-insensitive on a
//! copy lowered with `to_ascii_lowercase`, which keeps byte offsets identical to the
//! original text, so slicing the original at those offsets is always on char
//! boundaries.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// One extraction rule; `None` is what a record says when no rule found anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Rule {
    /// `#### x` (GSM8K style), the rest of the line after the last `####`.
    Hashes,
    /// `\boxed{x}` with nested braces (also `\fbox{x}`).
    Boxed,
    /// "the answer is x", "answer: x".
    AnswerIs,
    /// "Final answer: x", "final answer is x".
    FinalAnswer,
    /// Lenient fallback: the last number anywhere in the text.
    LastNumber,
    /// No rule found an answer.
    None,
}

impl Rule {
    /// Rules that rely on an explicit answer marker; `LastNumber` is lenient.
    pub fn is_strict(self) -> bool {
        !matches!(self, Rule::LastNumber | Rule::None)
    }

    /// The snake_case name used in records, JSON output and `--extract` lists.
    pub fn name(self) -> &'static str {
        match self {
            Rule::Hashes => "hashes",
            Rule::Boxed => "boxed",
            Rule::AnswerIs => "answer_is",
            Rule::FinalAnswer => "final_answer",
            Rule::LastNumber => "last_number",
            Rule::None => "none",
        }
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A rule name that is not one of the known rules.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown extraction rule '{0}' (known: hashes, boxed, answer_is, final_answer, last_number)"
)]
pub struct UnknownRule(pub String);

impl FromStr for Rule {
    type Err = UnknownRule;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().replace('-', "_").as_str() {
            "hashes" | "####" => Ok(Rule::Hashes),
            "boxed" => Ok(Rule::Boxed),
            "answer_is" => Ok(Rule::AnswerIs),
            "final_answer" => Ok(Rule::FinalAnswer),
            "last_number" => Ok(Rule::LastNumber),
            _ => Err(UnknownRule(s.to_string())),
        }
    }
}

/// The ordered list of rules to try.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExtractOptions {
    pub rules: Vec<Rule>,
}

impl Default for ExtractOptions {
    fn default() -> Self {
        ExtractOptions {
            rules: vec![
                Rule::Hashes,
                Rule::Boxed,
                Rule::FinalAnswer,
                Rule::AnswerIs,
                Rule::LastNumber,
            ],
        }
    }
}

impl ExtractOptions {
    /// The default order without the lenient last-number fallback.
    pub fn strict() -> Self {
        let mut options = Self::default();
        options.rules.retain(|rule| rule.is_strict());
        options
    }

    /// Parses a comma-separated rule list such as `boxed,hashes,last_number`.
    pub fn parse_list(list: &str) -> Result<Self, UnknownRule> {
        let rules = list
            .split(',')
            .filter(|part| !part.trim().is_empty())
            .map(Rule::from_str)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(ExtractOptions { rules })
    }
}

/// What extraction found and which rule found it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Extraction {
    pub answer: Option<String>,
    pub rule: Rule,
}

impl Extraction {
    /// True when an answer was found by a rule with an explicit marker.
    pub fn is_strict(&self) -> bool {
        self.answer.is_some() && self.rule.is_strict()
    }
}

/// Tries the rules of `options` in order on `text`.
pub fn extract(text: &str, options: &ExtractOptions) -> Extraction {
    for &rule in &options.rules {
        if let Some(answer) = extract_with(text, rule) {
            return Extraction {
                answer: Some(answer),
                rule,
            };
        }
    }
    Extraction {
        answer: None,
        rule: Rule::None,
    }
}

/// Applies a single rule.
pub fn extract_with(text: &str, rule: Rule) -> Option<String> {
    let lower = text.to_ascii_lowercase();
    match rule {
        Rule::Hashes => hashes(text, &lower),
        Rule::Boxed => boxed(text, &lower),
        Rule::AnswerIs => after_last_marker(
            text,
            &lower,
            &["the answer is", "answer is", "answer:", "answer :"],
        ),
        Rule::FinalAnswer => after_last_marker(
            text,
            &lower,
            &[
                "final answer is",
                "final answer:",
                "final answer :",
                "final answer",
            ],
        ),
        Rule::LastNumber => last_number(text),
        Rule::None => None,
    }
}

fn hashes(text: &str, lower: &str) -> Option<String> {
    for (pos, marker) in lower.rmatch_indices("####") {
        let rest = text.get(pos + marker.len()..)?;
        let line = rest.lines().next().unwrap_or("");
        let answer = clean_capture(line);
        if !answer.is_empty() {
            return Some(answer);
        }
    }
    None
}

fn boxed(text: &str, lower: &str) -> Option<String> {
    let mut hits: Vec<(usize, usize)> = Vec::new();
    for macro_name in ["\\boxed", "\\fbox"] {
        hits.extend(
            lower
                .match_indices(macro_name)
                .map(|(pos, m)| (pos, pos + m.len())),
        );
    }
    hits.sort_unstable();
    for &(_, after) in hits.iter().rev() {
        let rest = text.get(after..)?;
        let trimmed = rest.trim_start();
        let content = if let Some(inner) = trimmed.strip_prefix('{') {
            balanced_prefix(inner).map(str::to_string)
        } else {
            // `\boxed 5`: LaTeX takes the next token as the argument.
            let token: String = trimmed
                .chars()
                .take_while(|c| !c.is_whitespace() && *c != '$')
                .collect();
            Some(token)
        };
        if let Some(content) = content {
            let content = content.trim();
            if !content.is_empty() {
                return Some(content.to_string());
            }
        }
    }
    None
}

/// The text up to the `}` that closes an already-opened brace, or `None` when the
/// text ends first (a generation cut off inside `\boxed{`).
fn balanced_prefix(inner: &str) -> Option<&str> {
    let mut depth = 0usize;
    let mut escaped = false;
    for (pos, c) in inner.char_indices() {
        if escaped {
            escaped = false;
            continue;
        }
        match c {
            '\\' => escaped = true,
            '{' => depth += 1,
            '}' if depth == 0 => return inner.get(..pos),
            '}' => depth -= 1,
            _ => {}
        }
    }
    None
}

fn after_last_marker(text: &str, lower: &str, markers: &[&str]) -> Option<String> {
    let mut best: Option<(usize, usize)> = None;
    for marker in markers {
        for (pos, m) in lower.rmatch_indices(marker) {
            let end = pos + m.len();
            let candidate = text.get(end..).map(capture_phrase).unwrap_or_default();
            if candidate.is_empty() {
                continue;
            }
            // The latest marker wins; among markers at the same place the longest.
            if best.is_none_or(|(best_pos, best_end)| {
                pos > best_pos || (pos == best_pos && end > best_end)
            }) {
                best = Some((pos, end));
            }
            break;
        }
    }
    let (_, end) = best?;
    let answer = capture_phrase(text.get(end..)?);
    (!answer.is_empty()).then_some(answer)
}

/// The answer phrase after a marker: up to the end of the line or of the sentence.
fn capture_phrase(rest: &str) -> String {
    let rest = rest.trim_start_matches(|c: char| c.is_whitespace() || c == ':' || c == '*');
    let line = rest.lines().next().unwrap_or("");
    let mut end = line.len();
    let mut chars = line.char_indices().peekable();
    while let Some((pos, c)) = chars.next() {
        // A period ends the sentence when followed by whitespace (not in `3.5`).
        if c == '.' && chars.peek().is_some_and(|(_, next)| next.is_whitespace()) {
            end = pos;
            break;
        }
    }
    clean_capture(line.get(..end).unwrap_or(line))
}

/// Strips markdown emphasis, whitespace and sentence punctuation around a capture.
fn clean_capture(raw: &str) -> String {
    raw.trim_matches(|c: char| matches!(c, '*' | '_' | '.' | ',' | ';') || c.is_whitespace())
        .to_string()
}

/// The last number-like token: digits with `,`/`.` inside, an optional leading minus
/// and an optional `/denominator`.
fn last_number(text: &str) -> Option<String> {
    let chars: Vec<char> = text.chars().collect();
    let mut last: Option<String> = None;
    let mut i = 0;
    while i < chars.len() {
        if !chars[i].is_ascii_digit() {
            i += 1;
            continue;
        }
        let prev = i.checked_sub(1).and_then(|p| chars.get(p));
        let negative = prev == Some(&'-')
            && i.checked_sub(2)
                .and_then(|p| chars.get(p))
                .is_none_or(|c| !c.is_alphanumeric());
        let start = i;
        while i < chars.len()
            && (chars[i].is_ascii_digit()
                || (matches!(chars[i], ',' | '.' | '/')
                    && chars.get(i + 1).is_some_and(|c| c.is_ascii_digit())))
        {
            i += 1;
        }
        let mut token: String = chars[start..i].iter().collect();
        if negative {
            token.insert(0, '-');
        }
        last = Some(token);
    }
    last
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(text: &str) -> (Option<String>, Rule) {
        let e = extract(text, &ExtractOptions::default());
        (e.answer, e.rule)
    }

    #[test]
    fn hashes_takes_rest_of_last_marker_line() {
        assert_eq!(
            run("48/2 = 24\n#### 72\n"),
            (Some("72".into()), Rule::Hashes)
        );
        assert_eq!(
            run("#### 1\nmore\n#### 1,000."),
            (Some("1,000".into()), Rule::Hashes)
        );
    }

    #[test]
    fn boxed_handles_nested_braces() {
        assert_eq!(
            run("so $\\boxed{\\frac{3}{4}}$ done"),
            (Some("\\frac{3}{4}".into()), Rule::Boxed)
        );
        assert_eq!(
            run("\\boxed{1} then \\boxed{\\text{(2, 3)}}"),
            (Some("\\text{(2, 3)}".into()), Rule::Boxed)
        );
    }

    #[test]
    fn truncated_boxed_falls_back_to_earlier_box() {
        assert_eq!(
            run("\\boxed{7} wait \\boxed{8"),
            (Some("7".into()), Rule::Boxed)
        );
    }

    #[test]
    fn boxed_without_braces_takes_next_token() {
        assert_eq!(extract_with("$\\boxed 5$", Rule::Boxed), Some("5".into()));
    }

    #[test]
    fn answer_is_stops_at_sentence_end_but_not_at_decimal_point() {
        assert_eq!(
            run("So the answer is 3.5 dollars. I hope it is right"),
            (Some("3.5 dollars".into()), Rule::AnswerIs)
        );
        assert_eq!(
            run("The answer is: **18**."),
            (Some("18".into()), Rule::AnswerIs)
        );
    }

    #[test]
    fn final_answer_wins_over_answer_is_and_is_case_insensitive() {
        assert_eq!(
            run("FINAL ANSWER: 42 apples.\nother 7"),
            (Some("42 apples".into()), Rule::FinalAnswer)
        );
        assert_eq!(
            run("**Final Answer:** The final answer is $5$. I hope it is correct."),
            (Some("$5$".into()), Rule::FinalAnswer)
        );
    }

    #[test]
    fn last_number_is_lenient_fallback() {
        let (answer, rule) = run("I think 3 plus 4 makes -7, or 1,234.5 total");
        assert_eq!(answer.as_deref(), Some("1,234.5"));
        assert_eq!(rule, Rule::LastNumber);
        assert!(!rule.is_strict());
        assert_eq!(run("x-3 then 3/4."), (Some("3/4".into()), Rule::LastNumber));
        assert_eq!(run("temp is -5."), (Some("-5".into()), Rule::LastNumber));
    }

    #[test]
    fn nothing_found_reports_rule_none() {
        assert_eq!(run("no digits here"), (None, Rule::None));
        assert_eq!(run(""), (None, Rule::None));
        let strict = extract("it is 5", &ExtractOptions::strict());
        assert_eq!(strict.answer, None);
        assert!(!strict.is_strict());
    }

    #[test]
    fn rule_order_is_configurable() {
        let text = "#### 1\n\\boxed{2}";
        let boxed_first = ExtractOptions::parse_list("boxed,hashes").unwrap();
        assert_eq!(extract(text, &boxed_first).answer.as_deref(), Some("2"));
        let hashes_first = ExtractOptions::parse_list("hashes, boxed").unwrap();
        assert_eq!(extract(text, &hashes_first).answer.as_deref(), Some("1"));
        assert!(ExtractOptions::parse_list("boxed,nonsense").is_err());
    }

    #[test]
    fn rule_names_round_trip() {
        for rule in [
            Rule::Hashes,
            Rule::Boxed,
            Rule::AnswerIs,
            Rule::FinalAnswer,
            Rule::LastNumber,
        ] {
            assert_eq!(rule.name().parse::<Rule>().unwrap(), rule);
            assert_eq!(
                serde_json::to_string(&rule).unwrap(),
                format!("\"{}\"", rule.name())
            );
        }
    }

    #[test]
    fn unicode_text_never_breaks_slicing() {
        for text in [
            "İİİ the answer is ß 5",
            "Ⅻ final answer: 😀",
            "\\boxed{é",
            "####",
            "ǅ####ǅ",
        ] {
            let _ = extract(text, &ExtractOptions::default());
        }
        assert_eq!(
            extract_with("İstanbul: the answer is 9", Rule::AnswerIs).as_deref(),
            Some("9")
        );
    }
}
