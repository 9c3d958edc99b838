//! `program`: program-aided reasoning (PAL, Gao et al. 2023; Program of Thoughts,
//! Chen et al. 2023). The model is asked for a short Python program instead of a
//! prose chain of thought; terse runs it in a safe arithmetic subset
//! ([`crate::python_subset`]) and boxes the number it computes. Variable names carry
//! the reasoning and the interpreter does the arithmetic, so a code model writes far
//! fewer tokens than it does in prose and never slips on a sum.
//!
//! When the program cannot be run (a construct outside the subset, no `answer`, an
//! error) or, with `whole = true`, computes something other than a whole number ≥ 0,
//! the request is answered again by `fallback` (plain chain of thought by default) on
//! the original prompt. Both passes are counted: the program's decoded tokens and the
//! fallback's, and the fallback's prompt, which the engine prefills again, as
//! injected tokens.
//!
//! With `min_logprob` set, a program that runs is still sent to the fallback when the
//! model was unsure of what it computes: when the least likely token right of an `=`
//! (an operator, an operand, a number) had a log-probability below `min_logprob`. The
//! idea is DeepConf's (Fu et al. 2025: a trace's weakest stretch of token confidence
//! predicts a wrong answer better than its mean), narrowed to the tokens that decide
//! the arithmetic; names and layout are free choices and are left out. Each program's
//! `answer` or `fallback` event records its least sure token and its mean
//! log-probability, so the threshold can be tuned on recorded runs.
//!
//! The program pass ends at the code fence that closes the first block, the only code
//! that runs: the 0.5B writes on after it on 31 of 33 development problems, and stopping
//! there cut its program pass from 250 to 216 tokens with the same answers.
//!
//! The program prompt replaces the user's last message with `instruction` and the
//! problem, after `exemplars` worked examples (PAL's few-shot prompt: the problems of
//! `concise-exemplars`, each answered by a program in the instructed style); a trailing `cot_instruction` (the eval harness's "reason step by step"
//! line) is taken off it first, because asking for prose and for code at once gets
//! neither, and is put back (when missing) for the fallback.
//!
//! ```toml
//! strategy = "program"
//! [program]
//! whole = true
//! min_logprob = -2.0
//! fallback = "loop-guard"
//! ```

use crate::python_subset;
use crate::{
    Backend, BackendError, ChatMessage, Completion, CompletionRequest, PieceKind, Prompt, Sink,
    StrategyError, StrategyEvent, StrategySpec, TokenLogprob,
};
use serde::{Deserialize, Serialize};
use std::time::Instant;

pub const INSTRUCTION: &str = "Write a Python program that solves the following problem. \
Define a variable for each number given in the problem, compute the intermediate results \
step by step in well-named variables, and assign the final result to `answer`. Write no \
comments, do not print anything and do not explain.";

/// The program pass stops here: a code fence closing on its own line ends the code, and
/// what a small model writes after it (an explanation, the output it expects) costs
/// tokens and changes nothing. An opening fence names its language (```` ```python ````)
/// and does not match.
const CLOSING_FENCE: &str = "\n```\n";

pub const COT_INSTRUCTION: &str =
    "Please reason step by step, and put your final answer within \\boxed{}.";

/// The problems of `concise-exemplars` (GSM8K train, MIT licence), each answered with
/// the program the instruction asks for: a variable per given number, named steps,
/// no comments.
pub const EXEMPLARS: &[&str] = &[
    "total_pages = 120\npages_yesterday = 12\npages_today = pages_yesterday * 2\n\
pages_read = pages_yesterday + pages_today\npages_left = total_pages - pages_read\n\
answer = pages_left / 2",
    "snowflake_stamps = 11\ntruck_stamps = snowflake_stamps + 9\n\
rose_stamps = truck_stamps - 13\nanswer = snowflake_stamps + truck_stamps + rose_stamps",
    "ticket_price = 40\ntickets_bought = 12\nfull_price_tickets = 10\n\
discount_per_ticket = ticket_price * 5 / 100\n\
discounted_tickets = tickets_bought - full_price_tickets\n\
answer = full_price_tickets * ticket_price + discounted_tickets * (ticket_price - discount_per_ticket)",
    "file_size = 90\nfirst_part = 60\nfirst_rate = 5\nsecond_rate = 10\n\
first_time = first_part / first_rate\nsecond_time = (file_size - first_part) / second_rate\n\
answer = first_time + second_time",
];

/// The option names, as `--strategy-opt` takes them.
pub const OPTIONS: &[&str] = &[
    "instruction",
    "exemplars",
    "cot_instruction",
    "whole",
    "min_logprob",
    "fallback",
];

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProgramOptions {
    /// What the model is asked for, before the problem.
    pub instruction: String,
    /// How many worked examples (0 to 4) go before the problem.
    pub exemplars: usize,
    /// The chain-of-thought line taken off the problem (and put back for the fallback).
    pub cot_instruction: String,
    /// Only a whole number ≥ 0 counts as the program's answer (word problems that
    /// count things); anything else falls back.
    pub whole: bool,
    /// A program whose least sure expression token is less likely than this (a
    /// log-probability ≤ 0) falls back; `None` trusts every program that runs.
    pub min_logprob: Option<f32>,
    /// The strategy that answers when the program gives no answer.
    pub fallback: StrategySpec,
}

impl Default for ProgramOptions {
    fn default() -> Self {
        ProgramOptions {
            instruction: INSTRUCTION.into(),
            exemplars: 0,
            cot_instruction: COT_INSTRUCTION.into(),
            whole: false,
            min_logprob: None,
            fallback: StrategySpec::none(),
        }
    }
}

/// The conversation with its last user message asking for a program, after the
/// worked examples.
pub(crate) fn program_messages(messages: &mut Vec<ChatMessage>, options: &ProgramOptions) {
    let Some(at) = messages.iter().rposition(|m| m.role == "user") else {
        return;
    };
    let ask = |problem: &str| format!("{}\n\nProblem: {problem}", options.instruction);
    let problem = strip_cot(&messages[at].content, &options.cot_instruction);
    messages[at].content = ask(problem);
    let shots = crate::strategy::EXEMPLARS
        .iter()
        .zip(EXEMPLARS)
        .take(options.exemplars)
        .flat_map(|((question, _), program)| {
            [
                ChatMessage::new("user", ask(question)),
                ChatMessage::new("assistant", format!("```python\n{program}\n```")),
            ]
        });
    messages.splice(at..at, shots);
}

fn strip_cot<'a>(content: &'a str, cot: &str) -> &'a str {
    let trimmed = content.trim_end();
    match trimmed.strip_suffix(cot) {
        Some(rest) if !cot.is_empty() => rest.trim_end(),
        _ => trimmed,
    }
}

/// The original conversation, asking for step-by-step reasoning if it did not.
fn fallback_messages(messages: &[ChatMessage], options: &ProgramOptions) -> Vec<ChatMessage> {
    let mut messages = messages.to_vec();
    if let Some(last) = messages.iter_mut().rev().find(|m| m.role == "user") {
        let cot = &options.cot_instruction;
        if !cot.is_empty() && !last.content.trim_end().ends_with(cot.as_str()) {
            last.content = format!("{}\n{cot}", last.content.trim_end());
        }
    }
    messages
}

/// The code of a completion: its first fenced block (```python or ```), else the
/// whole text.
pub fn code_of(text: &str) -> &str {
    let Some(open) = text.find("```") else {
        return text;
    };
    let after = &text[open + 3..];
    let body = match after.find('\n') {
        Some(nl) => &after[nl + 1..],
        None => return text,
    };
    match body.find("```") {
        Some(close) => &body[..close],
        None => body,
    }
}

/// The number the program's text computes, or why there is none.
pub fn evaluate(text: &str, whole: bool) -> Result<f64, String> {
    let outcome = python_subset::run(code_of(text)).map_err(|e| e.to_string())?;
    let value = outcome
        .answer("answer")
        .ok_or_else(|| "no `answer` assigned, nothing printed, no assignment".to_string())?;
    if whole && (value < 0.0 || (value - value.round()).abs() > 1e-9) {
        return Err(format!(
            "{} is not a whole number ≥ 0",
            format_number(value)
        ));
    }
    Ok(value)
}

/// How sure the model was of a program, from its tokens' log-probabilities.
#[derive(Debug, Clone, PartialEq)]
pub struct Confidence {
    /// The least likely token right of an `=` in the code, with its log-probability.
    pub least_sure: Option<(String, f32)>,
    /// The mean log-probability of all the program's tokens.
    pub mean_logprob: f32,
}

impl Confidence {
    /// `None` when the backend returned no log-probabilities.
    pub fn of(tokens: &[TokenLogprob]) -> Option<Confidence> {
        if tokens.is_empty() {
            return None;
        }
        let mean_logprob = tokens.iter().map(|t| t.logprob).sum::<f32>() / tokens.len() as f32;
        let least_sure = least_sure_expression_token(tokens).map(|(t, lp)| (t.to_string(), lp));
        Some(Confidence {
            least_sure,
            mean_logprob,
        })
    }

    /// Whether the program is too unsure to be trusted at `min_logprob`.
    fn below(&self, min_logprob: f32) -> bool {
        self.least_sure
            .as_ref()
            .is_some_and(|(_, lp)| *lp < min_logprob)
    }
}

impl std::fmt::Display for Confidence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some((token, lp)) = &self.least_sure {
            write!(f, "least sure `{}` (logprob {lp:.3}); ", token.trim())?;
        }
        write!(f, "mean logprob {:.3}", self.mean_logprob)
    }
}

/// The least likely token that starts right of an `=` on a line of code (inside the
/// fenced block when there is one), skipping tokens that are only layout.
fn least_sure_expression_token(tokens: &[TokenLogprob]) -> Option<(&str, f32)> {
    let fenced = tokens.iter().any(|t| t.text.contains('`'));
    let mut in_code = !fenced;
    let mut line = String::new();
    let mut least: Option<(&str, f32)> = None;
    for token in tokens {
        let starts_on_this_line = token.text.split('\n').next().unwrap_or("");
        let right_of_assignment =
            in_code && line.contains('=') && !line.trim_start().starts_with("```");
        if right_of_assignment
            && !starts_on_this_line.trim().is_empty()
            && least.is_none_or(|(_, lp)| token.logprob < lp)
        {
            least = Some((starts_on_this_line, token.logprob));
        }
        for c in token.text.chars() {
            if c == '\n' {
                if line.trim_start().starts_with("```") {
                    in_code = !in_code;
                }
                line.clear();
            } else {
                line.push(c);
            }
        }
    }
    least
}

/// A number as an answer is written: whole numbers without a decimal point, others
/// with at most six decimals (so float noise like 0.30000000000000004 reads 0.3).
pub fn format_number(x: f64) -> String {
    if (x - x.round()).abs() < 1e-9 {
        return format!("{}", x.round());
    }
    let fixed = format!("{x:.6}");
    fixed
        .trim_end_matches('0')
        .trim_end_matches('.')
        .to_string()
}

/// Runs `request` as a program, falling back as the module documentation says.
pub fn complete<B: Backend + ?Sized>(
    backend: &B,
    request: &CompletionRequest,
    options: &ProgramOptions,
    sink: Sink<'_>,
) -> Result<Completion, BackendError> {
    let start = Instant::now();
    let Prompt::Chat(messages) = &request.prompt else {
        return Err(StrategyError::Config(
            "program needs a chat conversation (it rewrites the user's message), not raw text"
                .into(),
        )
        .into());
    };
    let mut program_prompt = messages.clone();
    program_messages(&mut program_prompt, options);
    if options.min_logprob.is_some() && !backend.capabilities().logprobs {
        return Err(StrategyError::Config(
            "program's min_logprob needs token log-probabilities, which this backend does not return"
                .into(),
        )
        .into());
    }
    let mut stop = request.stop.clone();
    stop.push(CLOSING_FENCE.into());
    let program_request = CompletionRequest {
        prompt: Prompt::Chat(program_prompt),
        strategy: StrategySpec {
            format: request.strategy.format,
            stages: Vec::new(),
        },
        logprobs: true,
        stop,
        ..request.clone()
    };
    let mut program = backend.complete_streaming(&program_request, &mut |_, _, _| {})?;
    if program.text.matches("```").count() % 2 == 1 {
        program.text = format!("{}\n```", program.text.trim_end());
    }
    let confidence = Confidence::of(&program.logprobs);
    if !request.logprobs {
        program.logprobs.clear();
    }
    let outcome = if program.finish == crate::Finish::Length {
        Err("the program ran to the token limit".to_string())
    } else {
        evaluate(&program.text, options.whole).and_then(|value| {
            match (&confidence, options.min_logprob) {
                (None, Some(_)) => Err(
                    "the backend returned no token log-probabilities, which min_logprob needs"
                        .to_string(),
                ),
                (Some(c), Some(min)) if c.below(min) => Err(format!(
                    "answer = {} is unsure (a token below min_logprob {min})",
                    format_number(value)
                )),
                _ => Ok(value),
            }
        })
    };
    let event = |kind: &str, detail: String| StrategyEvent {
        strategy: "program".into(),
        kind: kind.into(),
        at_token: program.usage.output_tokens,
        detail: Some(match &confidence {
            Some(c) => format!("{detail}; {c}"),
            None => detail,
        }),
        logprob: confidence
            .as_ref()
            .and_then(|c| c.least_sure.as_ref().map(|(_, lp)| *lp)),
        probe_tokens: None,
    };
    match outcome {
        Ok(value) => {
            let answer = format_number(value);
            let answered = event("answer", format!("answer = {answer}"));
            program.text = format!("{}\n\n\\boxed{{{answer}}}", program.text.trim_end());
            program.events.insert(0, answered);
            program.stop_reason = "program".into();
            program.latency_s = start.elapsed().as_secs_f64();
            sink(PieceKind::Content, &program.text, &program.logprobs);
            Ok(program)
        }
        Err(why) => {
            let fell_back = event("fallback", why);
            let fallback_request = CompletionRequest {
                prompt: Prompt::Chat(fallback_messages(messages, options)),
                strategy: options.fallback.clone(),
                ..request.clone()
            };
            let mut answer = backend.complete_with(&fallback_request, sink)?;
            let reprefilled = answer
                .usage
                .prompt_tokens
                .saturating_sub(answer.usage.prompt_cached_tokens);
            answer.usage.add_work(&program.usage);
            answer.usage.injected_tokens += reprefilled;
            answer.usage.prompt_tokens = program.usage.prompt_tokens;
            answer.usage.prompt_cached_tokens = program.usage.prompt_cached_tokens;
            answer.engine_time = crate::EngineTime::sum(program.engine_time, answer.engine_time);
            answer.events.splice(0..0, [fell_back]);
            answer.latency_s = start.elapsed().as_secs_f64();
            Ok(answer)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_program_prompt_replaces_the_cot_line_and_the_fallback_restores_it() {
        let options = ProgramOptions::default();
        let question = "Ivy baked 20 cupcakes. How many?";
        let with_cot = format!("{question}\n{COT_INSTRUCTION}");
        let mut m = vec![
            ChatMessage::new("system", "S"),
            ChatMessage::new("user", &with_cot),
        ];
        let original = m.clone();
        program_messages(&mut m, &options);
        assert_eq!(m[0].content, "S");
        assert_eq!(
            m[1].content,
            format!("{INSTRUCTION}\n\nProblem: {question}")
        );
        assert_eq!(fallback_messages(&original, &options), original);
        let bare = vec![ChatMessage::new("user", question)];
        assert_eq!(fallback_messages(&bare, &options)[0].content, with_cot);
    }

    #[test]
    fn each_worked_example_computes_its_reference_answer_and_precedes_the_problem() {
        for (program, want) in EXEMPLARS.iter().zip([42.0, 38.0, 476.0, 15.0]) {
            assert_eq!(evaluate(program, true), Ok(want), "{program}");
        }
        let options = ProgramOptions {
            exemplars: 2,
            ..ProgramOptions::default()
        };
        let mut m = vec![
            ChatMessage::new("system", "S"),
            ChatMessage::new("user", format!("Q?\n{COT_INSTRUCTION}")),
        ];
        program_messages(&mut m, &options);
        let roles: Vec<&str> = m.iter().map(|m| m.role.as_str()).collect();
        assert_eq!(
            roles,
            ["system", "user", "assistant", "user", "assistant", "user"]
        );
        assert!(m[1].content.starts_with(INSTRUCTION) && m[1].content.contains("Julie"));
        assert!(m[2].content.starts_with("```python\ntotal_pages = 120"));
        assert!(m[2].content.ends_with("answer = pages_left / 2\n```"));
        assert_eq!(m[5].content, format!("{INSTRUCTION}\n\nProblem: Q?"));
    }

    #[test]
    fn the_code_is_the_first_fenced_block_or_the_whole_text() {
        assert_eq!(
            code_of("Here:\n```python\nanswer = 1\n```\nDone"),
            "answer = 1\n"
        );
        assert_eq!(code_of("```\nanswer = 2\n```"), "answer = 2\n");
        assert_eq!(code_of("answer = 3"), "answer = 3");
        assert_eq!(code_of("```python\nanswer = 4"), "answer = 4");
    }

    #[test]
    fn evaluation_boxes_numbers_and_refuses_what_whole_forbids() {
        let text = "```python\nmorning = 20\nanswer = morning + 35\n```";
        assert_eq!(evaluate(text, true), Ok(55.0));
        assert_eq!(
            evaluate("answer = 0.1 + 0.2", false).map(format_number),
            Ok("0.3".into())
        );
        let err = evaluate("answer = 7 / 2", true).unwrap_err();
        assert!(err.contains("3.5 is not a whole number"), "{err}");
        assert!(evaluate("answer = -3", true).is_err());
        assert_eq!(evaluate("x = 1", false), Ok(1.0));
        let err = evaluate("import math", false).unwrap_err();
        assert!(err.contains("no `answer`"), "{err}");
        let err = evaluate("def f():\n    pass", false).unwrap_err();
        assert!(err.starts_with("line 1:"), "{err}");
    }

    fn tokens(pieces: &[(&str, f32)]) -> Vec<TokenLogprob> {
        pieces
            .iter()
            .map(|(text, logprob)| TokenLogprob {
                text: text.to_string(),
                logprob: *logprob,
                top: Vec::new(),
            })
            .collect()
    }

    #[test]
    fn confidence_looks_only_right_of_an_assignment_inside_the_code() {
        let program = tokens(&[
            ("Sure", -3.0),
            (":\n", -0.1),
            ("```", 0.0),
            ("python", -0.2),
            ("\n", 0.0),
            ("eggs_laid", -2.5),
            (" =", 0.0),
            (" ", -0.9),
            ("16", -0.05),
            ("\n", -1.5),
            ("answer", 0.0),
            (" =", -0.01),
            (" eggs_laid", -0.3),
            (" *", -0.7),
            (" 2", -0.4),
            ("\n```", 0.0),
            ("\nDone = yes", -4.0),
        ]);
        let c = Confidence::of(&program).unwrap();
        assert_eq!(c.least_sure, Some((" *".to_string(), -0.7)));
        let mean = program.iter().map(|t| t.logprob).sum::<f32>() / program.len() as f32;
        assert!((c.mean_logprob - mean).abs() < 1e-6);
        assert!(c.below(-0.5) && !c.below(-0.8));
        assert!(Confidence::of(&[]).is_none());
    }

    #[test]
    fn unfenced_code_is_all_code() {
        let program = tokens(&[("x", -5.0), (" =", -1.0), (" 3", -0.2), ("\n", -2.0)]);
        let c = Confidence::of(&program).unwrap();
        assert_eq!(c.least_sure, Some((" 3".to_string(), -0.2)));
        assert_eq!(
            c.to_string(),
            "least sure `3` (logprob -0.200); mean logprob -2.050"
        );
    }

    #[test]
    fn the_program_pass_stops_at_the_closing_fence_and_keeps_it() {
        // Answers as a server does: the text before the first stop string.
        let backend = crate::scripted::ScriptedBackend::new(|request| {
            let full = "```python\nanswer = 6 * 7\n```\n\nThis program multiplies.";
            let end = request
                .stop
                .iter()
                .filter_map(|s| full.find(s.as_str()))
                .min()
                .unwrap_or(full.len());
            crate::scripted::completion(&full[..end], crate::Usage::default())
        });
        let mut request = CompletionRequest::chat(
            vec![ChatMessage::new("user", "Six times seven?")],
            crate::SamplerConfig::default(),
            64,
        );
        request.stop = vec!["<END>".into()];
        let options = ProgramOptions::default();
        let answer = complete(&backend, &request, &options, &mut |_, _, _| {}).unwrap();
        assert_eq!(backend.requests()[0].stop, ["<END>", CLOSING_FENCE]);
        assert_eq!(answer.text, "```python\nanswer = 6 * 7\n```\n\n\\boxed{42}");
        assert_eq!(answer.stop_reason, "program");
    }

    #[test]
    fn numbers_are_written_as_answers_are() {
        assert_eq!(format_number(55.0), "55");
        assert_eq!(format_number(-4.0), "-4");
        assert_eq!(format_number(12.5), "12.5");
        assert_eq!(format_number(2.0 / 3.0), "0.666667");
        assert_eq!(format_number(14.000000000001), "14");
    }
}
