//! Synthetic math word problems: multi-step arithmetic stories with exact answers.
//!
//! A problem follows one quantity (a person's marbles, stickers…) through a chain of
//! operations — buying, giving away, multiplying, sharing, percentages, fractions —
//! and ends with a question that may convert the count into money, time at a rate or
//! a weight. Every operand is chosen so that each step stays an exact integer and the
//! final conversion is an exact terminating decimal, so the gold answer is correct by
//! construction. Distractor sentences add irrelevant numbers.
//!
//! Problem `i` of seed `s` at difficulty `d` depends only on (d, s, i): generating 10
//! or 1000 problems yields the same first ten, and ids read `syn-d<d>-s<s>-<iiii>`.
//!
//! | difficulty | steps | start value | operands | distractors | operations            |
//! |------------|-------|-------------|----------|-------------|-----------------------|
//! | 1          | 1–2   | 2–20        | ≤ 10     | 0           | add, subtract         |
//! | 2          | 2–3   | 5–60        | ≤ 20     | 0–1         | + multiply, divide    |
//! | 3          | 3–4   | 10–200      | ≤ 50     | 1           | + percent, fraction   |
//! | 4          | 4–6   | 20–1000     | ≤ 200    | 1–2         | all, money/rates      |
//! | 5          | 5–8   | 50–5000     | ≤ 1000   | 2–3         | all, money/rates      |

use crate::dataset::Problem;
use crate::grade::format_rational;
use num_bigint::BigInt;
use num_rational::BigRational;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use std::ops::RangeInclusive;

/// Highest difficulty level.
pub const MAX_DIFFICULTY: u8 = 5;

/// What to generate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SyntheticSpec {
    /// 1..=[`MAX_DIFFICULTY`]; out-of-range values are clamped.
    pub difficulty: u8,
    pub count: usize,
    pub seed: u64,
}

impl Default for SyntheticSpec {
    fn default() -> Self {
        SyntheticSpec {
            difficulty: 2,
            count: 100,
            seed: 0,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Add,
    Subtract,
    Multiply,
    Divide,
    Percent,
    Fraction,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ending {
    Count,
    Money,
    Rate,
    Weight,
}

struct Level {
    steps: RangeInclusive<usize>,
    start: RangeInclusive<i64>,
    max_operand: i64,
    distractors: RangeInclusive<usize>,
    /// Running counts stay at or below this, so numbers stay readable.
    max_count: i64,
    ops: &'static [Op],
    endings: &'static [Ending],
}

fn level(difficulty: u8) -> Level {
    use Ending::*;
    use Op::*;
    match difficulty {
        0 | 1 => Level {
            steps: 1..=2,
            start: 2..=20,
            max_operand: 10,
            distractors: 0..=0,
            max_count: 100,
            ops: &[Add, Subtract],
            endings: &[Count],
        },
        2 => Level {
            steps: 2..=3,
            start: 5..=60,
            max_operand: 20,
            distractors: 0..=1,
            max_count: 1_000,
            ops: &[Add, Subtract, Multiply, Divide],
            endings: &[Count, Count, Money],
        },
        3 => Level {
            steps: 3..=4,
            start: 10..=200,
            max_operand: 50,
            distractors: 1..=1,
            max_count: 5_000,
            ops: &[Add, Subtract, Multiply, Divide, Percent, Fraction],
            endings: &[Count, Money, Weight],
        },
        4 => Level {
            steps: 4..=6,
            start: 20..=1000,
            max_operand: 200,
            distractors: 1..=2,
            max_count: 20_000,
            ops: &[Add, Subtract, Multiply, Divide, Percent, Fraction],
            endings: &[Count, Money, Rate, Weight],
        },
        _ => Level {
            steps: 5..=8,
            start: 50..=5000,
            max_operand: 1000,
            distractors: 2..=3,
            max_count: 100_000,
            ops: &[Add, Subtract, Multiply, Divide, Percent, Fraction],
            endings: &[Count, Money, Rate, Weight],
        },
    }
}

struct Person {
    name: &'static str,
    subject: &'static str,
    object: &'static str,
    possessive: &'static str,
}

const PEOPLE: &[Person] = &[
    Person {
        name: "Maya",
        subject: "she",
        object: "her",
        possessive: "her",
    },
    Person {
        name: "Liam",
        subject: "he",
        object: "him",
        possessive: "his",
    },
    Person {
        name: "Sofia",
        subject: "she",
        object: "her",
        possessive: "her",
    },
    Person {
        name: "Noah",
        subject: "he",
        object: "him",
        possessive: "his",
    },
    Person {
        name: "Aisha",
        subject: "she",
        object: "her",
        possessive: "her",
    },
    Person {
        name: "Mateo",
        subject: "he",
        object: "him",
        possessive: "his",
    },
    Person {
        name: "Priya",
        subject: "she",
        object: "her",
        possessive: "her",
    },
    Person {
        name: "Kenji",
        subject: "he",
        object: "him",
        possessive: "his",
    },
    Person {
        name: "Elena",
        subject: "she",
        object: "her",
        possessive: "her",
    },
    Person {
        name: "Omar",
        subject: "he",
        object: "him",
        possessive: "his",
    },
    Person {
        name: "Grace",
        subject: "she",
        object: "her",
        possessive: "her",
    },
    Person {
        name: "Tomás",
        subject: "he",
        object: "him",
        possessive: "his",
    },
];

const FRIENDS: &[&str] = &[
    "Ben", "Chloe", "Daniel", "Fatima", "Hugo", "Ines", "Jonah", "Lucia", "Marcus", "Nadia",
];

/// (singular, plural, verb for the rate ending).
const OBJECTS: &[(&str, &str, &str)] = &[
    ("marble", "marbles", "sort"),
    ("sticker", "stickers", "sort"),
    ("apple", "apples", "pack"),
    ("cookie", "cookies", "pack"),
    ("pencil", "pencils", "label"),
    ("seashell", "seashells", "clean"),
    ("trading card", "trading cards", "sort"),
    ("cupcake", "cupcakes", "decorate"),
    ("stamp", "stamps", "sort"),
    ("book", "books", "wrap"),
    ("candle", "candles", "wrap"),
    ("toy car", "toy cars", "paint"),
];

/// Fractions with names that read naturally: (numerator, denominator, words).
const FRACTIONS: &[(i64, i64, &str)] = &[
    (1, 2, "half"),
    (1, 3, "a third"),
    (1, 4, "a quarter"),
    (2, 3, "two thirds"),
    (3, 4, "three quarters"),
    (1, 5, "a fifth"),
    (2, 5, "two fifths"),
];

const PERCENTS: &[i64] = &[10, 20, 25, 30, 40, 50, 60, 75, 80];

/// Generates `spec.count` problems.
pub fn generate(spec: &SyntheticSpec) -> Vec<Problem> {
    (0..spec.count)
        .map(|index| generate_one(spec.difficulty, spec.seed, index))
        .collect()
}

/// Generates problem `index` of a seed and difficulty, independently of the others.
pub fn generate_one(difficulty: u8, seed: u64, index: usize) -> Problem {
    let difficulty = difficulty.clamp(1, MAX_DIFFICULTY);
    let stream = splitmix64(seed ^ splitmix64(((difficulty as u64) << 48) ^ index as u64));
    let mut rng = StdRng::seed_from_u64(stream);
    let level = level(difficulty);
    let person = PEOPLE.choose(&mut rng).unwrap_or(&PEOPLE[0]);
    let friends: Vec<&str> = FRIENDS.choose_multiple(&mut rng, 3).copied().collect();
    let friend = |i: usize| friends.get(i).copied().unwrap_or("Sam");
    let &(single, plural, rate_verb) = OBJECTS.choose(&mut rng).unwrap_or(&OBJECTS[0]);
    let steps = rng.gen_range(level.steps.clone());
    let ending = *level.endings.choose(&mut rng).unwrap_or(&Ending::Count);
    // The ending counts as a step when it converts the count.
    let op_steps = if ending == Ending::Count {
        steps
    } else {
        steps.saturating_sub(1).max(1)
    };

    let mut count = rng.gen_range(level.start.clone());
    let mut sentences = vec![start_sentence(&mut rng, person, count, plural)];
    let mut trace = Vec::new();
    for _ in 0..op_steps {
        let (sentence, next, equation) =
            apply_step(&mut rng, &level, person, friend(0), count, single, plural);
        sentences.push(sentence);
        trace.push(equation);
        count = next;
    }

    let distractors = rng.gen_range(level.distractors.clone());
    let mut kinds = [0usize, 1, 2, 3];
    kinds.shuffle(&mut rng);
    // Which sentences talk about someone else (a friend distractor).
    let mut about_friend = vec![false; sentences.len()];
    for (k, &kind) in kinds.iter().take(distractors).enumerate() {
        let sentence = distractor(&mut rng, kind, person, friend(1 + k % 2), plural, &level);
        // Never before the opening sentence, which introduces the quantity.
        let at = rng.gen_range(1..=sentences.len());
        sentences.insert(at, sentence);
        about_friend.insert(at, distractor_names_a_friend(kind));
    }
    // After a sentence about a friend, "he" or "she" would read as the friend: the next
    // sentence names the person instead.
    for i in 1..sentences.len() {
        if about_friend[i - 1] {
            sentences[i] = name_the_subject(&sentences[i], person);
        }
    }

    let (question, answer, equation) = ending_question(
        &mut rng, ending, difficulty, person, count, single, plural, rate_verb,
    );
    if let Some(equation) = equation {
        trace.push(equation);
    }
    sentences.push(question);

    Problem {
        id: format!("syn-d{difficulty}-s{seed}-{index:04}"),
        question: sentences.join(" "),
        gold: format_rational(&answer),
        meta: serde_json::json!({
            "difficulty": difficulty,
            "steps": trace.len(),
            "distractors": distractors,
            "seed": seed,
            "index": index,
            "trace": trace,
        }),
    }
}

fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn capitalize(word: &str) -> String {
    let mut chars = word.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

fn pick<'a>(rng: &mut StdRng, options: &[&'a str]) -> &'a str {
    options.choose(rng).copied().unwrap_or("")
}

fn start_sentence(rng: &mut StdRng, person: &Person, count: i64, plural: &str) -> String {
    let name = person.name;
    match rng.gen_range(0..3) {
        0 => format!("{name} has {count} {plural}."),
        1 => format!("{name} starts the week with {count} {plural}."),
        _ => format!("At the start of the month, {name} owns {count} {plural}."),
    }
}

/// One operation on the running count: (sentence, new count, equation).
fn apply_step(
    rng: &mut StdRng,
    level: &Level,
    person: &Person,
    friend: &str,
    count: i64,
    single: &str,
    plural: &str,
) -> (String, i64, String) {
    let he = capitalize(person.subject);
    let his = person.possessive;
    for _ in 0..16 {
        let op = *level.ops.choose(rng).unwrap_or(&Op::Add);
        match op {
            Op::Add => {
                let b = rng.gen_range(1..=level.max_operand);
                if count + b > level.max_count {
                    continue;
                }
                let things = if b == 1 { single } else { plural };
                let sentence = match rng.gen_range(0..3) {
                    0 => format!("{he} buys {b} more {things}."),
                    1 => format!("{friend} gives {} {b} {things}.", person.object),
                    _ => format!("Later, {} finds {b} more {things}.", person.subject),
                };
                return (
                    sentence,
                    count + b,
                    format!("{count} + {b} = {}", count + b),
                );
            }
            Op::Subtract => {
                if count < 2 {
                    continue;
                }
                let b = rng.gen_range(1..=level.max_operand.min(count - 1));
                let things = if b == 1 { single } else { plural };
                let sentence = match rng.gen_range(0..3) {
                    0 => format!("{he} gives {b} {things} to {friend}."),
                    1 => format!("{he} loses {b} {things} on the way home."),
                    _ => format!("{he} sells {b} {plural} at the school fair."),
                };
                return (
                    sentence,
                    count - b,
                    format!("{count} - {b} = {}", count - b),
                );
            }
            Op::Multiply => {
                let k = rng.gen_range(2..=4i64);
                if count * k > level.max_count {
                    continue;
                }
                let times = match k {
                    2 => "twice".to_string(),
                    3 => "three times".to_string(),
                    _ => format!("{k} times"),
                };
                let when = pick(
                    rng,
                    &[
                        "By the end of the month",
                        "A week later",
                        "After a busy weekend",
                        "Soon after",
                    ],
                );
                let sentence = match rng.gen_range(0..2) {
                    0 => format!(
                        "{when}, {} has {times} as many {plural} as before.",
                        person.subject
                    ),
                    _ => format!(
                        "{he} trades all of {his} {plural} with {friend}, getting {k} {plural} for each one."
                    ),
                };
                return (
                    sentence,
                    count * k,
                    format!("{count} × {k} = {}", count * k),
                );
            }
            Op::Divide => {
                let divisors: Vec<i64> = (2..=6)
                    .filter(|k| count % k == 0 && count / k > 0)
                    .collect();
                let Some(&k) = divisors.choose(rng) else {
                    continue;
                };
                let sentence = match rng.gen_range(0..2) {
                    0 => format!(
                        "{he} splits {his} {plural} equally into {k} boxes and keeps only one box."
                    ),
                    _ => format!(
                        "{he} shares {his} {plural} equally among {k} people, {}self included, and keeps {his} share.",
                        person.object
                    ),
                };
                return (
                    sentence,
                    count / k,
                    format!("{count} ÷ {k} = {}", count / k),
                );
            }
            Op::Percent => {
                let usable: Vec<i64> = PERCENTS
                    .iter()
                    .copied()
                    .filter(|p| (count * p) % 100 == 0)
                    .collect();
                let Some(&p) = usable.choose(rng) else {
                    continue;
                };
                let part = count * p / 100;
                if rng.gen_bool(0.5) && count + part <= level.max_count {
                    let sentence = format!("{he} then increases {his} collection by {p}%.");
                    return (
                        sentence,
                        count + part,
                        format!("{count} + {p}% × {count} = {}", count + part),
                    );
                }
                let sentence = format!("{he} donates {p}% of {his} {plural} to the library.");
                return (
                    sentence,
                    count - part,
                    format!("{count} - {p}% × {count} = {}", count - part),
                );
            }
            Op::Fraction => {
                let usable: Vec<&(i64, i64, &str)> = FRACTIONS
                    .iter()
                    .filter(|(_, d, _)| count % d == 0)
                    .collect();
                let Some(&&(n, d, words)) = usable.choose(rng) else {
                    continue;
                };
                let part = count / d * n;
                if part == count {
                    continue;
                }
                let sentence = match rng.gen_range(0..2) {
                    0 => format!("{he} uses {words} of {his} {plural} for a school project."),
                    _ => format!("{he} gives {words} of {his} {plural} to {friend}."),
                };
                return (
                    sentence,
                    count - part,
                    format!("{count} - {n}/{d} × {count} = {}", count - part),
                );
            }
        }
    }
    // Every retry hit a bound: adding one always works and stays exact.
    let sentence = format!("{he} buys 1 more {single}.");
    (sentence, count + 1, format!("{count} + 1 = {}", count + 1))
}

/// A sentence with an irrelevant number; `kind` picks the template so that one
/// problem never repeats a distractor.
/// Whether distractor `kind` (see [`distractor`]) is about a friend rather than the person.
fn distractor_names_a_friend(kind: usize) -> bool {
    matches!(kind, 0 | 3)
}

/// `sentence` with its first subject pronoun of `person` replaced by the name.
fn name_the_subject(sentence: &str, person: &Person) -> String {
    let capital = format!("{} ", capitalize(person.subject));
    if let Some(rest) = sentence.strip_prefix(&capital) {
        return format!("{} {rest}", person.name);
    }
    sentence.replacen(
        &format!(" {} ", person.subject),
        &format!(" {} ", person.name),
        1,
    )
}

fn distractor(
    rng: &mut StdRng,
    kind: usize,
    person: &Person,
    friend: &str,
    plural: &str,
    level: &Level,
) -> String {
    let x = rng.gen_range(2..=level.max_operand.max(12));
    match kind {
        0 => format!("{friend} owns {x} {plural} as well."),
        1 => format!("{} is {} years old.", person.name, rng.gen_range(8..=60)),
        2 => format!(
            "The shop {} likes is {} minutes away by bus.",
            person.subject,
            rng.gen_range(5..=45)
        ),
        _ => format!("Last year, {friend} collected {x} {plural}, but that does not matter today."),
    }
}

/// The closing question: (sentence, exact answer, equation when it computes).
#[allow(clippy::too_many_arguments)]
fn ending_question(
    rng: &mut StdRng,
    ending: Ending,
    difficulty: u8,
    person: &Person,
    count: i64,
    single: &str,
    plural: &str,
    rate_verb: &str,
) -> (String, BigRational, Option<String>) {
    let name = person.name;
    let exact = |numer: i64, denom: i64| BigRational::new(BigInt::from(numer), BigInt::from(denom));
    match ending {
        Ending::Count => (
            format!("How many {plural} does {name} have now?"),
            exact(count, 1),
            None,
        ),
        Ending::Money => {
            // Prices in cents; quarters only above difficulty 2.
            let dollars = rng.gen_range(1..=if difficulty >= 4 { 12 } else { 5 });
            let cents = if difficulty >= 3 {
                *[0, 25, 50, 75].choose(rng).unwrap_or(&0)
            } else {
                0
            };
            let price_cents = dollars * 100 + cents;
            let price = format_rational(&exact(price_cents, 100));
            let price = if cents == 0 {
                price
            } else {
                format!("{dollars}.{cents:02}")
            };
            let total = exact(count * price_cents, 100);
            let sentence = format!(
                "{name} sells all of the {plural} for ${price} each. How many dollars does {} make?",
                person.subject
            );
            let equation = format!("{count} × {price} = {}", format_rational(&total));
            (sentence, total, Some(equation))
        }
        Ending::Rate => {
            // Hours must be a whole or half number: rate divides 2 × count.
            let rates: Vec<i64> = (2..=30).filter(|r| (2 * count) % r == 0).collect();
            let rate = *rates.choose(rng).unwrap_or(&1);
            let hours = exact(count, rate);
            let sentence = format!(
                "If {name} can {rate_verb} {rate} {plural} per hour, how many hours does it take {} to {rate_verb} all of {} {plural}?",
                person.object, person.possessive
            );
            let equation = format!("{count} ÷ {rate} = {}", format_rational(&hours));
            (sentence, hours, Some(equation))
        }
        Ending::Weight => {
            let grams = rng.gen_range(5..=250i64);
            let kilograms = exact(count * grams, 1000);
            let sentence = format!(
                "Each {single} weighs {grams} grams. How many kilograms do all of {name}'s {plural} weigh together?"
            );
            let equation = format!("{count} × {grams} g = {} kg", format_rational(&kilograms));
            (sentence, kilograms, Some(equation))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::grade::{grade, parse_number, GradeOptions};
    use num_traits::Signed;

    #[test]
    fn a_sentence_after_a_friend_names_the_person_not_a_pronoun() {
        let mut checked = 0;
        for difficulty in 1..=MAX_DIFFICULTY {
            for index in 0..300 {
                let p = generate_one(difficulty, 7, index);
                let sentences: Vec<&str> = p.question.split_inclusive(". ").collect();
                for pair in sentences.windows(2) {
                    let friend_first = FRIENDS
                        .iter()
                        .any(|f| pair[0].starts_with(&format!("{f} owns")))
                        || pair[0].starts_with("Last year, ");
                    if friend_first {
                        checked += 1;
                        for pronoun in ["He ", "She ", " he ", " she "] {
                            assert!(
                                !pair[1].contains(pronoun),
                                "{}: '{}' follows '{}'",
                                p.id,
                                pair[1],
                                pair[0]
                            );
                        }
                    }
                }
            }
        }
        assert!(
            checked > 100,
            "only {checked} friend distractors were checked"
        );
    }

    fn spec(difficulty: u8, count: usize, seed: u64) -> SyntheticSpec {
        SyntheticSpec {
            difficulty,
            count,
            seed,
        }
    }

    #[test]
    fn same_seed_gives_identical_problems() {
        assert_eq!(generate(&spec(3, 50, 42)), generate(&spec(3, 50, 42)));
        assert_ne!(generate(&spec(3, 50, 42)), generate(&spec(3, 50, 43)));
    }

    #[test]
    fn problem_depends_only_on_its_index() {
        let short = generate(&spec(2, 5, 7));
        let long = generate(&spec(2, 50, 7));
        assert_eq!(short[..], long[..5]);
        assert_eq!(generate_one(2, 7, 3), long[3]);
    }

    #[test]
    fn ids_name_difficulty_seed_and_index() {
        let problems = generate(&spec(2, 12, 42));
        assert_eq!(problems[7].id, "syn-d2-s42-0007");
        assert_eq!(problems[11].id, "syn-d2-s42-0011");
    }

    /// Re-derives each answer from the trace's equations, checking every step.
    #[test]
    fn answers_are_exact_and_follow_the_trace() {
        for difficulty in 1..=MAX_DIFFICULTY {
            for problem in generate(&spec(difficulty, 200, 1)) {
                let number = parse_number(&problem.gold)
                    .unwrap_or_else(|| panic!("gold {} of {}", problem.gold, problem.id));
                assert!(number.value.is_positive(), "{}", problem.id);
                let trace = problem.meta["trace"].as_array().unwrap();
                let last = trace.last().unwrap().as_str().unwrap();
                let result = last.rsplit("= ").next().unwrap().trim_end_matches(" kg");
                assert!(
                    grade(result, &problem.gold, &GradeOptions::default()),
                    "{}: trace ends in {result}, gold {}",
                    problem.id,
                    problem.gold
                );
                // Terminating decimals only: the gold never prints as p/q.
                assert!(!problem.gold.contains('/'), "{}", problem.gold);
            }
        }
    }

    #[test]
    fn difficulty_controls_steps_and_distractors() {
        let mean = |d: u8, key: &str| {
            let problems = generate(&spec(d, 200, 5));
            problems
                .iter()
                .map(|p| p.meta[key].as_u64().unwrap() as f64)
                .sum::<f64>()
                / problems.len() as f64
        };
        assert!(mean(1, "steps") < mean(3, "steps"));
        assert!(mean(3, "steps") < mean(5, "steps"));
        assert_eq!(mean(1, "distractors"), 0.0);
        assert!(mean(5, "distractors") >= 2.0);
        for p in generate(&spec(5, 100, 5)) {
            let steps = p.meta["steps"].as_u64().unwrap();
            assert!((5..=8).contains(&steps), "{} has {steps} steps", p.id);
        }
    }

    #[test]
    fn questions_read_as_sentences() {
        for problem in generate(&spec(4, 30, 9)) {
            let q = &problem.question;
            assert!(q.ends_with('?'), "{q}");
            assert!(q.chars().next().unwrap().is_uppercase(), "{q}");
            assert!(!q.contains("  "), "{q}");
            assert!(!q.contains("{"), "{q}");
        }
    }
}
