//! Table-driven grading cases: what must be equal and what must not.

use super::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// (extracted, gold, expected) with default options.
const CASES: &[(&str, &str, bool)] = &[
    // Plain integers and trailing punctuation.
    ("72", "72", true),
    ("72.", "72", true),
    ("72!", "72", true),
    (" 72 ", "72", true),
    ("72?", "72", true),
    ("72;", "72", true),
    ("73", "72", false),
    ("072", "72", true),
    ("+72", "72", true),
    ("7 2", "72", false),
    ("", "72", false),
    ("seventy-two", "72", false),
    // Thousands separators.
    ("1,000", "1000", true),
    ("1000", "1,000", true),
    ("12,345,678", "12345678", true),
    ("1,234.5", "1234.5", true),
    ("1.000", "1000", false),
    ("1.000", "1", true),
    ("1,00", "100", false),
    ("1234,567", "1234567", false),
    ("1, 000", "1000", false),
    ("1 000", "1000", true),
    ("1\\,000", "1000", true),
    ("1{,}000", "1000", true),
    ("1\u{202f}000\u{202f}000", "1000000", true),
    ("12,34,567", "1234567", false),
    ("1,000,00", "100000", false),
    // Currency.
    ("$18", "18", true),
    ("\\$18", "18", true),
    ("$18.00", "18", true),
    ("18 dollars", "18", true),
    ("$ 18", "18", true),
    ("€18", "18", true),
    ("£18.50", "18.5", true),
    ("USD 18", "18", true),
    ("-$5", "-5", true),
    ("$-5", "-5", true),
    ("$1,250.75", "1250.75", true),
    ("$18", "19", false),
    ("Rs. 500", "500", true),
    // Percent (default: 5% equals 5 and not 0.05).
    ("5%", "5", true),
    ("5\\%", "5", true),
    ("5 percent", "5", true),
    ("5%", "0.05", false),
    ("0.05", "5%", false),
    ("5%", "5%", true),
    ("12.5%", "12.5", true),
    ("50 per cent", "50", true),
    // Units and words after the number.
    ("5 cm", "5", true),
    ("5 km/h", "5", true),
    ("5 m^2", "5", true),
    ("5 \\text{ cm}^2", "5", true),
    ("5 apples", "5", true),
    ("90^\\circ", "90", true),
    ("90°", "90", true),
    ("90^{\\circ}", "90", true),
    ("5 (rounded)", "5", true),
    ("5 apples and 6 oranges", "5", false),
    ("5 or 6", "5", false),
    ("5 - 3", "2", false),
    ("5 - 3", "5", false),
    ("\\text{5 hours}", "5", true),
    // Equations: the part after the last equals sign.
    ("x = 5", "5", true),
    ("2+3=5", "5", true),
    ("x \\approx 5", "5", false),
    ("x ≈ 5", "5", true),
    ("n = 12 apples", "12", true),
    // Decimals and exact rationals.
    ("0.75", "3/4", true),
    ("3/4", "0.75", true),
    (".75", "3/4", true),
    ("0.750", "3/4", true),
    ("0.7500001", "3/4", false),
    ("0.33", "1/3", false),
    ("0.333333", "1/3", false),
    ("6/8", "3/4", true),
    ("3 / 4", "0.75", true),
    ("\\frac{3}{4}", "0.75", true),
    ("\\dfrac{3}{4}", "3/4", true),
    ("\\tfrac{3}{4}", "3/4", true),
    ("\\frac34", "3/4", true),
    ("\\frac{6}{8}", "\\frac{3}{4}", true),
    ("\\frac{1}{3}", "1/3", true),
    ("\\frac{1}{3}", "0.3333", false),
    ("\\frac{\\frac{1}{2}}{2}", "1/4", true),
    ("\\frac{1.5}{3}", "0.5", true),
    ("1.5/3", "1/2", true),
    ("4/2", "2", true),
    ("2.0", "2", true),
    ("2.5", "5/2", true),
    ("5.", "5", true),
    ("3/0", "0", false),
    ("\\frac{1}{0}", "0", false),
    // Mixed numbers.
    ("1 1/2", "3/2", true),
    ("1 1/2", "1.5", true),
    ("1\\frac{1}{2}", "1.5", true),
    ("1 \\frac{1}{2}", "3/2", true),
    ("-1 1/2", "-1.5", true),
    ("2 3/4 cups", "2.75", true),
    ("1 1/2", "1", false),
    ("1 1/2", "11/2", false),
    // Negatives.
    ("-5", "-5", true),
    ("−5", "-5", true),
    ("- 5", "-5", true),
    ("-5", "5", false),
    ("(-5)", "-5", true),
    ("-0", "0", true),
    ("-0.5", "-1/2", true),
    ("-\\frac{1}{2}", "-0.5", true),
    ("\\frac{-1}{2}", "-0.5", true),
    ("–5", "-5", true),
    // Scientific notation.
    ("1e3", "1000", true),
    ("1E3", "1000", true),
    ("1.5e3", "1500", true),
    ("1.5e-3", "0.0015", true),
    ("2.5 \\times 10^{3}", "2500", true),
    ("2.5 × 10^3", "2500", true),
    ("2.5 x 10^3", "2500", true),
    ("2.5*10^3", "2500", true),
    ("3 \\cdot 10^{-2}", "0.03", true),
    ("10^3", "1000", true),
    ("2^{10}", "1024", true),
    ("1e3", "1001", false),
    ("1e999999", "1", false),
    ("1e999999", "1e999999", true),
    ("5 eggs", "5", true),
    // LaTeX wrappers.
    ("$5$", "5", true),
    ("\\(5\\)", "5", true),
    ("\\[5\\]", "5", true),
    ("\\boxed{5}", "5", true),
    ("\\text{5}", "5", true),
    ("\\textbf{5}", "5", true),
    ("\\mathrm{5}", "5", true),
    ("\\left(5\\right)", "5", true),
    ("{5}", "5", true),
    ("\\boxed{\\frac{3}{4}}", "0.75", true),
    ("$\\$5.00$", "5", true),
    ("\\displaystyle 5", "5", true),
    ("**5**", "5", true),
    ("5\\!000", "5000", true),
    // Tuples and comma lists.
    ("(1, 2)", "(1,2)", true),
    ("(1, 2)", "1, 2", true),
    ("1,2", "(1, 2)", true),
    ("(2, 1)", "(1, 2)", false),
    ("(1, 2, 3)", "(1, 2)", false),
    ("[1, 2]", "(1, 2)", true),
    ("\\left(1, \\frac{1}{2}\\right)", "(1, 0.5)", true),
    ("(1,000, 2)", "(1000, 2)", true),
    ("1,5", "1.5", false),
    ("1,5", "(1, 5)", true),
    ("3, 4, 5", "3,4,5", true),
    ("(-1, 2)", "(-1, 2)", true),
    ("(3, 4)", "7", false),
    ("\\{1, 2\\}", "{1,2}", true),
    ("(1, )", "(1, 0)", false),
    ("1; 2", "1, 2", true),
    // Text answers.
    ("B", "B", true),
    ("(B)", "B", true),
    ("b", "B", true),
    ("\\text{B}", "B", true),
    ("C", "B", false),
    ("yes", "Yes.", true),
    ("no", "yes", false),
    ("x^2", "x^{2}", true),
    ("", "", false),
    ("[0, 1)", "[0,1)", true),
    ("[0, 1)", "(0, 1)", false),
    // Malformed and adversarial.
    ("\\frac{3}{", "3", false),
    ("\\frac{}{}", "0", false),
    ("{{{{5}}}}", "5", true),
    ("((5))", "5", true),
    ("5)", "5", false),
    ("1/2/3", "1/6", false),
    ("..5", "5", false),
    ("5..", "5", true),
    ("$", "5", false),
    ("%", "0", false),
    ("e5", "5", false),
];

#[test]
fn table_has_at_least_150_cases() {
    assert!(CASES.len() >= 150, "only {} cases", CASES.len());
}

#[test]
fn table_cases_grade_as_expected() {
    let options = GradeOptions::default();
    let failures: Vec<String> = CASES
        .iter()
        .filter(|(extracted, gold, expected)| grade(extracted, gold, &options) != *expected)
        .map(|(extracted, gold, expected)| {
            format!(
                "grade({extracted:?}, {gold:?}) should be {expected}: parsed {:?} vs {:?}",
                parse_answer(extracted),
                parse_answer(gold)
            )
        })
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn grading_is_symmetric_on_the_table() {
    let options = GradeOptions::default();
    for (a, b, _) in CASES {
        assert_eq!(
            grade(a, b, &options),
            grade(b, a, &options),
            "asymmetric on {a:?} / {b:?}"
        );
    }
}

#[test]
fn percent_as_fraction_flag_accepts_hundredths() {
    let options = GradeOptions {
        percent_as_fraction: true,
        ..GradeOptions::default()
    };
    assert!(grade("5%", "0.05", &options));
    assert!(grade("0.05", "5%", &options));
    assert!(grade("5%", "5", &options));
    assert!(grade("12.5%", "1/8", &options));
    assert!(!grade("5%", "0.5", &options));
    assert!(!grade("5%", "5%%", &options));
}

#[test]
fn unordered_lists_flag_compares_as_multisets() {
    let options = GradeOptions {
        unordered_lists: true,
        ..GradeOptions::default()
    };
    assert!(grade("(2, 1)", "(1, 2)", &options));
    assert!(grade("3, 1, 2", "1,2,3", &options));
    assert!(!grade("(1, 1)", "(1, 2)", &options));
    assert!(!grade("(1, 2, 2)", "(1, 2, 1)", &options));
}

#[test]
fn parse_number_reads_exact_rationals() {
    let three_quarters = BigRational::new(BigInt::from(3), BigInt::from(4));
    assert_eq!(
        parse_number("0.75").map(|n| n.value),
        Some(three_quarters.clone())
    );
    assert_eq!(
        parse_number("\\frac{3}{4}").map(|n| n.value),
        Some(three_quarters)
    );
    let pct = parse_number("5%").unwrap();
    assert!(pct.percent);
    assert_eq!(pct.value, BigRational::from_integer(BigInt::from(5)));
    assert_eq!(parse_number("(1, 2)"), None);
    assert_eq!(parse_number("abc"), None);
}

#[test]
fn format_rational_prints_terminating_decimals_and_fractions() {
    let r = |n: i64, d: i64| BigRational::new(BigInt::from(n), BigInt::from(d));
    assert_eq!(format_rational(&r(72, 1)), "72");
    assert_eq!(format_rational(&r(3, 4)), "0.75");
    assert_eq!(format_rational(&r(-5, 2)), "-2.5");
    assert_eq!(format_rational(&r(1, 3)), "1/3");
    assert_eq!(format_rational(&r(1, 80)), "0.0125");
    assert_eq!(format_rational(&r(-1, 20)), "-0.05");
    for (n, d) in [(72, 1), (3, 4), (-5, 2), (1, 3), (1, 80), (123456, 1000)] {
        assert!(grade(
            &format_rational(&r(n, d)),
            &format!("{n}/{d}"),
            &GradeOptions::default()
        ));
    }
}

#[test]
fn grade_text_reports_extraction_and_correctness_as_json() {
    let result = grade_text(
        "48/2 = 24 clips.\n#### 72",
        "72",
        &ExtractOptions::default(),
        &GradeOptions::default(),
    );
    assert_eq!(
        serde_json::to_string(&result).unwrap(),
        r#"{"extracted":"72","rule":"hashes","correct":true}"#
    );
    let missing = grade_text(
        "no idea",
        "72",
        &ExtractOptions::default(),
        &GradeOptions::default(),
    );
    assert_eq!(
        serde_json::to_string(&missing).unwrap(),
        r#"{"extracted":null,"rule":"none","correct":false}"#
    );
}

/// Pieces that stress the parser: LaTeX macros, separators, huge exponents, unicode.
const FRAGMENTS: &[&str] = &[
    "\\frac",
    "{",
    "}",
    "(",
    ")",
    "[",
    "]",
    "\\boxed{",
    "\\text{",
    "1e999999",
    "1E-999999",
    "^",
    "^{",
    "10^",
    "×",
    "\\times",
    ",",
    ".",
    "/",
    "%",
    "-",
    "−",
    "$",
    "\\$",
    " ",
    "\u{2009}",
    "0",
    "1",
    "9",
    "000",
    "12,345",
    "e",
    "x",
    "=",
    "≈",
    "\\left",
    "\\right",
    "😀",
    "İ",
    "ǅ",
    "\u{0}",
    "\\",
    "\\,",
    "{,}",
    "°",
    "\\circ",
    "\\dfrac",
    "2^{99999}",
    "1/0",
    "\\frac{1}{0}",
    "€",
    "Rs.",
    "percent",
    "\n",
    "\t",
    "####",
    "a",
    "Ω",
];

#[test]
fn grading_never_panics_on_random_garbage() {
    let mut rng = StdRng::seed_from_u64(0x7e55e);
    let options = GradeOptions {
        percent_as_fraction: true,
        unordered_lists: true,
    };
    for _ in 0..20_000 {
        let pieces = rng.gen_range(0..12);
        let mut text = String::new();
        for _ in 0..pieces {
            if rng.gen_bool(0.2) {
                text.push(char::from_u32(rng.gen_range(0..0x11_0000)).unwrap_or('?'));
            } else {
                text.push_str(FRAGMENTS[rng.gen_range(0..FRAGMENTS.len())]);
            }
        }
        let gold = FRAGMENTS[rng.gen_range(0..FRAGMENTS.len())];
        let _ = grade(&text, gold, &options);
        let _ = grade(gold, &text, &options);
        let _ = grade_text(&text, gold, &ExtractOptions::default(), &options);
    }
}

#[test]
fn grading_survives_deep_nesting_and_huge_numbers() {
    let options = GradeOptions::default();
    let deep_braces = format!("{}5{}", "{".repeat(100_000), "}".repeat(100_000));
    assert!(!grade(&deep_braces, "6", &options));
    let deep_parens = format!("{}5{}", "(".repeat(50_000), ")".repeat(50_000));
    assert!(!grade(&deep_parens, "6", &options));
    let deep_frac = format!("{}1{}", "\\frac{".repeat(5_000), "}{2}".repeat(5_000));
    assert!(!grade(&deep_frac, "0", &options));
    let deep_boxed = format!("{}7{}", "\\boxed{".repeat(10_000), "}".repeat(10_000));
    assert!(grade(&deep_boxed, "7", &options));
    let long_number = "9".repeat(100_000);
    assert!(grade(&long_number, &long_number, &options));
    assert!(!grade(&long_number, "9", &options));
    assert!(!grade("2^{999999}", "0", &options));
    assert!(!grade("1e-999999", "0", &options));
}
