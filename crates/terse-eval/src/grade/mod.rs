//! Grading: does an extracted answer equal the gold answer?
//!
//! Both sides are normalised (LaTeX wrappers, currency, units, thousands separators,
//! trailing punctuation) and parsed into an [`Answer`]: an exact rational number, a
//! list of answers (tuples and comma lists), or normalised text. Numbers compare
//! exactly as rationals, so `0.75`, `3/4`, `\frac{3}{4}` and `75%`-as-a-fraction meet
//! without floating-point tolerance.
//!
//! Grading must never panic on model output: parsing walks `char` vectors with checked
//! indexing, bounds the size of numbers (digits, exponents, powers) and the nesting of
//! brackets and `\frac`, and anything it cannot read as a number is compared as text.
//!
//! Ambiguities are resolved by explicit rules rather than guesses:
//! - a comma is a thousands separator only between a 1–3 digit group and exactly three
//!   digits with no space (`1,000`, `12,345,678`); otherwise it separates list items
//!   (`1,5` is the pair (1, 5), `1, 000` is (1, 0)); `1.000` is the decimal one;
//! - `5%` equals `5`, and equals `0.05` only with [`GradeOptions::percent_as_fraction`].

use crate::extract::{extract, ExtractOptions, Rule};
use num_bigint::BigInt;
use num_rational::BigRational;
use num_traits::{One, Signed, Zero};
use serde::{Deserialize, Serialize};

#[cfg(test)]
mod tests;

/// Longest numeral (digits) read as a number; longer ones compare as text.
const MAX_DIGITS: usize = 1000;
/// Largest decimal exponent accepted (`1e999999` compares as text, never allocates).
const MAX_EXPONENT: i64 = 1000;
/// Largest result of `a^b`, in bits.
const MAX_POWER_BITS: u64 = 4096;
/// Deepest nesting of brackets or `\frac` that is parsed.
const MAX_DEPTH: usize = 12;
/// Marker for thin spaces and friends, which group thousands in LaTeX and typography.
const THIN: char = '\u{2009}';

/// Knobs for comparisons whose answer depends on convention.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GradeOptions {
    /// `5%` also equals `0.05`. Off by default: GSM8K-style golds write percentages
    /// as plain numbers, so `5%` always equals `5`.
    #[serde(default)]
    pub percent_as_fraction: bool,
    /// Lists compare as multisets instead of in order.
    #[serde(default)]
    pub unordered_lists: bool,
}

/// A number read exactly, remembering whether it carried a percent sign.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Number {
    pub value: BigRational,
    pub percent: bool,
}

/// A parsed answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    Number(Number),
    List(Vec<Answer>),
    /// Normalised text: lowercase, no whitespace, no braces.
    Text(String),
}

/// Grading outcome of a full model output, printed by `terse grade` as one JSON line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GradeResult {
    pub extracted: Option<String>,
    pub rule: Rule,
    pub correct: bool,
}

/// True when `extracted` means the same answer as `gold`.
pub fn grade(extracted: &str, gold: &str, options: &GradeOptions) -> bool {
    let a = parse_answer(extracted);
    let b = parse_answer(gold);
    answers_equal(&a, &b, options)
}

/// Extracts the answer from `text` with `extract_options` and grades it against
/// `gold`; an output with no extractable answer is simply incorrect.
pub fn grade_text(
    text: &str,
    gold: &str,
    extract_options: &ExtractOptions,
    options: &GradeOptions,
) -> GradeResult {
    let extraction = extract(text, extract_options);
    let correct = extraction
        .answer
        .as_deref()
        .is_some_and(|answer| grade(answer, gold, options));
    GradeResult {
        extracted: extraction.answer,
        rule: extraction.rule,
        correct,
    }
}

/// Parses a single number (after normalisation), or `None` when the text is not
/// exactly one number. Dataset loaders use it to validate gold answers.
pub fn parse_number(text: &str) -> Option<Number> {
    match parse_answer(text) {
        Answer::Number(number) => Some(number),
        _ => None,
    }
}

/// Normalises and parses an answer string.
pub fn parse_answer(text: &str) -> Answer {
    let normalized = normalize(text);
    let chars: Vec<char> = normalized.chars().collect();
    parse_chars(&chars, 0)
}

/// Formats an exact rational as the shortest plain decimal when it terminates, else
/// as `p/q`. Used by the synthetic generator for gold answers.
pub fn format_rational(value: &BigRational) -> String {
    let numer = value.numer().clone();
    let denom = value.denom().clone();
    let two = BigInt::from(2u32);
    let five = BigInt::from(5u32);
    let mut rest = denom.clone();
    let mut twos = 0u32;
    let mut fives = 0u32;
    while (&rest % &two).is_zero() {
        rest /= &two;
        twos += 1;
    }
    while (&rest % &five).is_zero() {
        rest /= &five;
        fives += 1;
    }
    if !rest.is_one() {
        return format!("{numer}/{denom}");
    }
    let places = twos.max(fives);
    if places == 0 {
        return numer.to_string();
    }
    let scale = BigInt::from(10u32).pow(places);
    let scaled = numer.abs() * &scale / &denom;
    let digits = format!(
        "{:0>width$}",
        scaled.to_string(),
        width = places as usize + 1
    );
    let split = digits.len() - places as usize;
    let sign = if numer.is_negative() { "-" } else { "" };
    format!("{sign}{}.{}", &digits[..split], &digits[split..])
}

fn answers_equal(a: &Answer, b: &Answer, options: &GradeOptions) -> bool {
    match (a, b) {
        (Answer::Number(x), Answer::Number(y)) => numbers_equal(x, y, options),
        (Answer::List(xs), Answer::List(ys)) => {
            if xs.len() != ys.len() {
                return false;
            }
            if !options.unordered_lists {
                return xs.iter().zip(ys).all(|(x, y)| answers_equal(x, y, options));
            }
            let mut used = vec![false; ys.len()];
            xs.iter().all(|x| {
                let found = ys
                    .iter()
                    .zip(used.iter())
                    .position(|(y, taken)| !taken && answers_equal(x, y, options));
                match found.and_then(|i| used.get_mut(i)) {
                    Some(slot) => {
                        *slot = true;
                        true
                    }
                    None => false,
                }
            })
        }
        (Answer::Text(x), Answer::Text(y)) => !x.is_empty() && x == y,
        _ => false,
    }
}

fn numbers_equal(x: &Number, y: &Number, options: &GradeOptions) -> bool {
    if x.value == y.value {
        return true;
    }
    if !options.percent_as_fraction || x.percent == y.percent {
        return false;
    }
    let hundred = BigRational::from_integer(BigInt::from(100u32));
    let (pct, plain) = if x.percent { (x, y) } else { (y, x) };
    pct.value.clone() / hundred == plain.value
}

/// Strips LaTeX and typographic noise so that the parser sees plain characters.
fn normalize(text: &str) -> String {
    let mut s = unwrap_macros(text.trim());
    for (from, to) in [
        ("\\dfrac", "\\frac"),
        ("\\tfrac", "\\frac"),
        ("\\displaystyle", ""),
        ("\\left", ""),
        ("\\right", ""),
        ("^{\\circ}", ""),
        ("^\\circ", ""),
        ("\\circ", ""),
        ("\\%", "%"),
        ("\\$", ""),
        ("\\{", "{"),
        ("\\}", "}"),
        ("\\(", ""),
        ("\\)", ""),
        ("\\[", ""),
        ("\\]", ""),
        ("\\!", ""),
        ("\\,", "\u{2009}"),
        ("\\;", " "),
        ("\\:", " "),
        ("\\ ", " "),
        ("{,}", ","),
        ("\\times", "×"),
        ("\\cdot", "×"),
        ("**", ""),
    ] {
        if s.contains(from) {
            s = s.replace(from, to);
        }
    }
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '$' | '°' => {}
            '\u{2212}' | '\u{2013}' => out.push('-'),
            '\u{a0}' | '\u{202f}' | '\u{2009}' | '\u{2007}' => out.push(THIN),
            '~' => out.push(' '),
            '·' => out.push('×'),
            _ => out.push(c),
        }
    }
    // `x = 5`, `2+3=5`: the answer is what follows the last equals sign.
    let after_equals = match out.rfind(['=', '≈']) {
        Some(pos) => {
            let sign_len = out
                .get(pos..)
                .and_then(|t| t.chars().next())
                .map_or(1, char::len_utf8);
            out.get(pos + sign_len..).unwrap_or("")
        }
        None => out.as_str(),
    };
    after_equals
        .trim_matches(|c: char| c.is_whitespace() || c == THIN)
        .trim_end_matches(|c: char| {
            matches!(c, '.' | ',' | ';' | ':' | '!' | '?') || c.is_whitespace()
        })
        .trim()
        .to_string()
}

/// Replaces `\text{x}`, `\boxed{x}` and similar wrappers by their content, at any
/// nesting depth, in one pass with a stack (no recursion to overflow).
fn unwrap_macros(text: &str) -> String {
    const WRAPPERS: [&str; 10] = [
        "boxed",
        "fbox",
        "text",
        "textbf",
        "textrm",
        "mathrm",
        "mathbf",
        "mbox",
        "operatorname",
        "mathit",
    ];
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    // One entry per open brace: true when the brace belongs to a dropped wrapper.
    let mut stack: Vec<bool> = Vec::new();
    let mut i = 0;
    while let Some(&c) = chars.get(i) {
        if c == '\\' {
            let name: String = chars
                .get(i + 1..)
                .unwrap_or(&[])
                .iter()
                .take_while(|c| c.is_ascii_alphabetic())
                .collect();
            let after = i + 1 + name.len();
            let mut brace = after;
            while chars.get(brace).is_some_and(|c| *c == ' ') {
                brace += 1;
            }
            if WRAPPERS.contains(&name.as_str()) && chars.get(brace) == Some(&'{') {
                stack.push(true);
                i = brace + 1;
                continue;
            }
        }
        match c {
            '{' => {
                stack.push(false);
                out.push(c);
            }
            '}' => {
                if stack.pop() != Some(true) {
                    out.push(c);
                }
            }
            _ => out.push(c),
        }
        i += 1;
    }
    out
}

fn closing_of(open: char) -> Option<char> {
    match open {
        '(' => Some(')'),
        '[' => Some(']'),
        '{' => Some('}'),
        _ => None,
    }
}

fn parse_chars(chars: &[char], depth: usize) -> Answer {
    let chars = trim_chars(chars);
    if chars.is_empty() || depth > MAX_DEPTH {
        return Answer::Text(text_key(chars));
    }
    // A bracketed whole: a tuple, or a single parenthesised answer.
    if let (Some(&first), Some(&last)) = (chars.first(), chars.last()) {
        if closing_of(first) == Some(last) && matching_close(chars, 0) == Some(chars.len() - 1) {
            let inner = chars.get(1..chars.len() - 1).unwrap_or(&[]);
            let parts = split_list(inner);
            if parts.len() > 1 {
                return list_of(&parts, depth);
            }
            return parse_chars(inner, depth + 1);
        }
    }
    let parts = split_list(chars);
    if parts.len() > 1 {
        return list_of(&parts, depth);
    }
    match parse_scalar(chars, depth) {
        Some(number) => Answer::Number(number),
        None => Answer::Text(text_key(chars)),
    }
}

fn list_of(parts: &[&[char]], depth: usize) -> Answer {
    let items: Vec<Answer> = parts.iter().map(|p| parse_chars(p, depth + 1)).collect();
    if items
        .iter()
        .any(|item| matches!(item, Answer::Text(t) if t.is_empty()))
    {
        let joined: Vec<char> = parts.join(&',');
        return Answer::Text(text_key(&joined));
    }
    Answer::List(items)
}

fn trim_chars(chars: &[char]) -> &[char] {
    let is_space = |c: &char| c.is_whitespace() || *c == THIN;
    let start = chars
        .iter()
        .position(|c| !is_space(c))
        .unwrap_or(chars.len());
    let end = chars
        .iter()
        .rposition(|c| !is_space(c))
        .map_or(start, |e| e + 1);
    chars.get(start..end).unwrap_or(&[])
}

fn text_key(chars: &[char]) -> String {
    let text: String = chars.iter().collect();
    let mut key: String = text
        .to_lowercase()
        .chars()
        .filter(|c| !c.is_whitespace() && *c != THIN && *c != '{' && *c != '}')
        .collect();
    while key.len() >= 2 && key.starts_with('(') && key.ends_with(')') {
        key = key
            .get(1..key.len() - 1)
            .map(str::to_string)
            .unwrap_or_default();
    }
    key
}

/// Index of the bracket closing the one at `open`, if the brackets balance.
fn matching_close(chars: &[char], open: usize) -> Option<usize> {
    let mut stack: Vec<char> = Vec::new();
    for (i, c) in chars.iter().enumerate().skip(open) {
        if let Some(close) = closing_of(*c) {
            stack.push(close);
        } else if matches!(c, ')' | ']' | '}') {
            if stack.pop() != Some(*c) {
                return None;
            }
            if stack.is_empty() {
                return Some(i);
            }
        }
    }
    None
}

/// Splits at top-level commas and semicolons that are not thousands separators.
fn split_list(chars: &[char]) -> Vec<&[char]> {
    let mut parts = Vec::new();
    let mut depth = 0usize;
    let mut start = 0;
    for (i, c) in chars.iter().enumerate() {
        match c {
            '(' | '[' | '{' => depth += 1,
            ')' | ']' | '}' => depth = depth.saturating_sub(1),
            ',' | ';' if depth == 0 && !(*c == ',' && is_thousands_comma(chars, i)) => {
                parts.push(chars.get(start..i).unwrap_or(&[]));
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(chars.get(start..).unwrap_or(&[]));
    parts
}

/// A comma between a 1–3 digit group (or a previous thousands group) and exactly
/// three digits.
fn is_thousands_comma(chars: &[char], comma: usize) -> bool {
    let digit_at = |i: usize| chars.get(i).is_some_and(|c| c.is_ascii_digit());
    if !(digit_at(comma + 1) && digit_at(comma + 2) && digit_at(comma + 3)) || digit_at(comma + 4) {
        return false;
    }
    let mut group = 0;
    let mut i = comma;
    while i > 0 && digit_at(i - 1) {
        i -= 1;
        group += 1;
    }
    if group == 0 || group > 3 {
        return false;
    }
    // Before the group: start, a non-digit, or another thousands comma.
    match i.checked_sub(1).and_then(|p| chars.get(p)) {
        Some(',') => group == 3 && is_thousands_comma(chars, i - 1),
        Some('.') => false,
        _ => true,
    }
}

/// A cursor over normalised characters.
struct Cursor<'a> {
    chars: &'a [char],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }
    fn peek_at(&self, offset: usize) -> Option<char> {
        self.chars.get(self.pos + offset).copied()
    }
    fn skip_spaces(&mut self) {
        while self.peek().is_some_and(|c| c == ' ' || c == THIN) {
            self.pos += 1;
        }
    }
    fn eat(&mut self, c: char) -> bool {
        if self.peek() == Some(c) {
            self.pos += 1;
            true
        } else {
            false
        }
    }
    fn starts_with(&self, text: &str) -> bool {
        let rest = self.rest();
        let len = text.chars().count();
        rest.len() >= len
            && rest
                .iter()
                .zip(text.chars())
                .all(|(have, want)| *have == want)
    }
    /// ASCII case-insensitive `word` not followed by another letter.
    fn starts_with_word_ci(&self, word: &str) -> bool {
        let rest = self.rest();
        let len = word.chars().count();
        let matches = rest.len() >= len
            && rest
                .iter()
                .zip(word.chars())
                .all(|(have, want)| have.to_ascii_lowercase() == want);
        matches && !rest.get(len).is_some_and(|c| c.is_alphabetic())
    }
    fn rest(&self) -> &'a [char] {
        self.chars.get(self.pos..).unwrap_or(&[])
    }
}

fn parse_scalar(chars: &[char], depth: usize) -> Option<Number> {
    let mut cur = Cursor { chars, pos: 0 };
    cur.skip_spaces();
    let mut negative = parse_sign(&mut cur);
    if skip_currency(&mut cur) {
        cur.skip_spaces();
        if !negative {
            negative = parse_sign(&mut cur);
        }
    }
    let mut value = parse_magnitude(&mut cur, depth)?;
    if negative {
        value = -value;
    }
    cur.skip_spaces();
    let mut percent = false;
    if cur.eat('%') {
        percent = true;
    } else {
        for word in ["percent", "per cent", "pct"] {
            if cur.starts_with_word_ci(word) {
                cur.pos += word.chars().count();
                percent = true;
                break;
            }
        }
    }
    cur.skip_spaces();
    is_unit_suffix(cur.rest()).then_some(Number { value, percent })
}

fn parse_sign(cur: &mut Cursor) -> bool {
    if cur.eat('-') {
        cur.skip_spaces();
        true
    } else {
        if cur.eat('+') {
            cur.skip_spaces();
        }
        false
    }
}

fn skip_currency(cur: &mut Cursor) -> bool {
    if let Some(c) = cur.peek() {
        if matches!(c, '€' | '£' | '¥' | '₹' | '₩' | '₽' | '¢') {
            cur.pos += 1;
            return true;
        }
    }
    for word in ["usd", "us", "eur", "gbp", "rs.", "rs", "inr", "cad", "aud"] {
        if cur.starts_with_word_ci(word) || (word.ends_with('.') && cur.starts_with(word)) {
            cur.pos += word.chars().count();
            // `US$5` has lost its `$` in normalisation already.
            return true;
        }
    }
    false
}

/// What may follow a number: nothing, or a unit such as `cm`, `km/h`, `m^2`,
/// `apples`, `(rounded)`. Digits are allowed only inside unit tokens (after a letter,
/// `^`, `{` or `_`), so `5 or 6` and `5 - 3` are not read as the number 5.
fn is_unit_suffix(rest: &[char]) -> bool {
    let Some(&first) = rest.first() else {
        return true;
    };
    if !(first.is_alphabetic() || matches!(first, '(' | '/' | 'µ' | '\'' | '"' | '′' | '″')) {
        return false;
    }
    rest.iter().enumerate().all(|(i, c)| {
        !c.is_ascii_digit()
            || i.checked_sub(1)
                .and_then(|p| rest.get(p))
                .is_some_and(|prev| {
                    prev.is_alphabetic() || matches!(prev, '^' | '{' | '_') || prev.is_ascii_digit()
                })
    })
}

fn parse_magnitude(cur: &mut Cursor, depth: usize) -> Option<BigRational> {
    if cur.starts_with("\\frac") {
        return parse_frac(cur, depth);
    }
    let (value, plain_integer, has_exponent) = parse_decimal(cur)?;
    let save = cur.pos;
    cur.skip_spaces();
    let spaced = cur.pos > save;
    if plain_integer && cur.starts_with("\\frac") {
        // Mixed number `1\frac{1}{2}`.
        let fraction = parse_frac(cur, depth)?;
        return Some(value + fraction);
    }
    if plain_integer && spaced {
        let before_mixed = cur.pos;
        if let Some((numerator, true, false)) = parse_decimal(cur) {
            if cur.eat('/') {
                if let Some((denominator, true, false)) = parse_decimal(cur) {
                    if !denominator.is_zero() && numerator < denominator {
                        return Some(value + numerator / denominator);
                    }
                }
            }
        }
        cur.pos = before_mixed;
    }
    if !has_exponent && cur.eat('/') {
        cur.skip_spaces();
        let (denominator, _, _) = parse_decimal(cur)?;
        if denominator.is_zero() {
            return None;
        }
        return Some(value / denominator);
    }
    if matches!(cur.peek(), Some('×' | '*' | 'x')) {
        let before_times = cur.pos;
        cur.pos += 1;
        cur.skip_spaces();
        if cur.starts_with("10^") {
            cur.pos += 3;
            let exponent = parse_exponent_argument(cur)?;
            return Some(value * pow10(exponent)?);
        }
        cur.pos = before_times;
    }
    if plain_integer && cur.peek() == Some('^') && !spaced {
        cur.pos += 1;
        let exponent = parse_exponent_argument(cur)?;
        return power(&value, exponent);
    }
    // Give back the skipped spaces: the caller reads the suffix from here.
    cur.pos = save;
    Some(value)
}

/// `\frac{a}{b}` (arguments parsed as full answers) or `\frac34` (single digits).
fn parse_frac(cur: &mut Cursor, depth: usize) -> Option<BigRational> {
    if depth > MAX_DEPTH {
        return None;
    }
    cur.pos += "\\frac".len();
    let numerator = parse_frac_argument(cur, depth)?;
    let denominator = parse_frac_argument(cur, depth)?;
    if denominator.is_zero() {
        return None;
    }
    Some(numerator / denominator)
}

fn parse_frac_argument(cur: &mut Cursor, depth: usize) -> Option<BigRational> {
    cur.skip_spaces();
    match cur.peek()? {
        '{' => {
            let close = matching_close(cur.chars, cur.pos)?;
            let inner = cur.chars.get(cur.pos + 1..close)?;
            cur.pos = close + 1;
            match parse_chars(inner, depth + 1) {
                Answer::Number(Number {
                    value,
                    percent: false,
                }) => Some(value),
                _ => None,
            }
        }
        c if c.is_ascii_digit() => {
            cur.pos += 1;
            Some(BigRational::from_integer(BigInt::from(c.to_digit(10)?)))
        }
        _ => None,
    }
}

/// Exponent after `^`: `3`, `-3`, `{-3}`.
fn parse_exponent_argument(cur: &mut Cursor) -> Option<i64> {
    let braced = cur.eat('{');
    let negative = if cur.eat('-') {
        true
    } else {
        cur.eat('+');
        false
    };
    let digits = read_digits(cur);
    if digits.is_empty() || digits.len() > 6 {
        return None;
    }
    if braced && !cur.eat('}') {
        return None;
    }
    let magnitude: i64 = digits.parse().ok()?;
    Some(if negative { -magnitude } else { magnitude })
}

fn read_digits(cur: &mut Cursor) -> String {
    let mut digits = String::new();
    while let Some(c) = cur.peek().filter(char::is_ascii_digit) {
        digits.push(c);
        cur.pos += 1;
    }
    digits
}

fn pow10(exponent: i64) -> Option<BigRational> {
    if exponent.abs() > MAX_EXPONENT {
        return None;
    }
    let power = BigInt::from(10u32).pow(u32::try_from(exponent.unsigned_abs()).ok()?);
    Some(if exponent >= 0 {
        BigRational::from_integer(power)
    } else {
        BigRational::new(BigInt::one(), power)
    })
}

fn power(base: &BigRational, exponent: i64) -> Option<BigRational> {
    let bits = base.numer().bits().max(base.denom().bits()).max(1);
    if exponent.unsigned_abs().saturating_mul(bits) > MAX_POWER_BITS {
        return None;
    }
    if base.is_zero() && exponent < 0 {
        return None;
    }
    let magnitude = u32::try_from(exponent.unsigned_abs()).ok()?;
    let raised = BigRational::new(base.numer().pow(magnitude), base.denom().pow(magnitude));
    Some(if exponent < 0 { raised.recip() } else { raised })
}

/// Reads digits with thousands groups, a fractional part and an `e` exponent.
/// Returns (value, is a plain integer, had an exponent).
fn parse_decimal(cur: &mut Cursor) -> Option<(BigRational, bool, bool)> {
    let start = cur.pos;
    let mut digits = read_digits(cur);
    if !digits.is_empty() {
        loop {
            let sep = cur.peek();
            let group_follows = (1..=3).all(|k| cur.peek_at(k).is_some_and(|c| c.is_ascii_digit()))
                && !cur
                    .peek_at(4)
                    .is_some_and(|c| c.is_ascii_digit() || c == '/');
            match sep {
                Some(',') if group_follows && grouped_so_far(&digits, cur, start) => {}
                Some(' ' | THIN) if group_follows && grouped_so_far(&digits, cur, start) => {}
                _ => break,
            }
            cur.pos += 1;
            digits.push_str(&read_digits(cur));
        }
    }
    let mut fraction = String::new();
    if cur.peek() == Some('.') && cur.peek_at(1).is_some_and(|c| c.is_ascii_digit()) {
        cur.pos += 1;
        fraction = read_digits(cur);
    }
    if digits.is_empty() && fraction.is_empty() {
        cur.pos = start;
        return None;
    }
    let mut exponent: i64 = 0;
    let mut has_exponent = false;
    if matches!(cur.peek(), Some('e' | 'E')) {
        let save = cur.pos;
        cur.pos += 1;
        let negative = if cur.eat('-') {
            true
        } else {
            cur.eat('+');
            false
        };
        let exp_digits = read_digits(cur);
        if exp_digits.is_empty() {
            cur.pos = save;
        } else {
            if exp_digits.len() > 6 {
                return None;
            }
            let magnitude: i64 = exp_digits.parse().ok()?;
            exponent = if negative { -magnitude } else { magnitude };
            has_exponent = true;
        }
    }
    if digits.len() + fraction.len() > MAX_DIGITS {
        return None;
    }
    let all_digits = format!("{digits}{fraction}");
    let mantissa: BigInt = all_digits.parse().ok()?;
    let scale = exponent.checked_sub(i64::try_from(fraction.len()).ok()?)?;
    let value = BigRational::from_integer(mantissa) * pow10(scale)?;
    Some((value, fraction.is_empty() && !has_exponent, has_exponent))
}

/// Whether the digits read so far form valid leading groups for another separator:
/// the first group has 1–3 digits and every later group exactly three.
fn grouped_so_far(digits: &str, cur: &Cursor, start: usize) -> bool {
    let consumed = cur.chars.get(start..cur.pos).unwrap_or(&[]);
    let mut groups = consumed.split(|c| !c.is_ascii_digit());
    let first_ok = groups.next().is_some_and(|g| (1..=3).contains(&g.len()));
    first_ok && groups.all(|g| g.len() == 3) && !digits.is_empty()
}
