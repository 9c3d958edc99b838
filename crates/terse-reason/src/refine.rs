//! `refine`: Parallel-Distill-Refine (Madaan et al. 2025, "Rethinking Thinking Tokens:
//! LLMs as Improvement Operators"). Instead of one long chain of thought, draw
//! `drafts` short attempts in parallel, distil them into a bounded text workspace, and
//! answer once more with the workspace in the prompt. The workspace does not grow
//! with the rounds: each round's drafts are distilled afresh, so the context stays
//! bounded whatever the compute. `drafts = 1` is the paper's Sequential Refinement.
//!
//! Round r draws the drafts as siblings ([`Backend::complete_siblings`]: on the local
//! engine they fork the prompt's KV cache and decode in one batch) at `temperature`,
//! draft j of round r (from 0) seeded `seed + r·drafts + j`; from the prompt in the first round, from the prompt with
//! the last workspace after it. The distillation is extractive (the paper's top-k
//! variant, with no model call of its own): each draft's closing lines, cut to an
//! equal share of `workspace_chars`, and the answer it reached. The final answer is
//! decoded with the request's own sampling from the prompt, the last workspace and
//! `instruction`.
//!
//! Every pass is counted: the drafts' tokens and the final answer's as output, and
//! each prompt with a workspace, which the engine prefills beyond what its prefix
//! cache held (the problem itself is a shared prefix), as injected tokens.
//!
//! ```toml
//! strategy = "refine"
//! [refine]
//! drafts = 3
//! rounds = 1
//! ```

use crate::consistency::trace_answer;
use crate::{
    Backend, BackendError, ChatMessage, Completion, CompletionRequest, PieceKind, Prompt, Sink,
    StrategyError, StrategyEvent, StrategySpec, Usage,
};
use serde::{Deserialize, Serialize};
use std::time::Instant;

pub const INSTRUCTION: &str = "Above are earlier attempts at this problem, in short; they \
may be wrong. Check them, then solve the problem step by step and put your final answer \
within \\boxed{}.";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RefineOptions {
    /// Attempts drawn in parallel per round (1: sequential refinement).
    pub drafts: usize,
    /// Distill-and-draft rounds before the final answer.
    pub rounds: usize,
    /// Sampling temperature of the drafts (the request's other settings are kept).
    pub temperature: f32,
    /// Most characters of the workspace, all drafts' excerpts together.
    pub workspace_chars: usize,
    /// What the final pass (and a later round's drafts) is told after the workspace.
    pub instruction: String,
}

impl Default for RefineOptions {
    fn default() -> Self {
        RefineOptions {
            drafts: 3,
            rounds: 1,
            temperature: 0.7,
            workspace_chars: 1200,
            instruction: INSTRUCTION.into(),
        }
    }
}

/// The bounded workspace of one round: each draft's closing lines and its answer.
pub fn distill(drafts: &[Completion], workspace_chars: usize) -> String {
    let share = workspace_chars / drafts.len().max(1);
    drafts
        .iter()
        .enumerate()
        .map(|(i, d)| {
            let answer = trace_answer(&d.text).unwrap_or_else(|| "none".into());
            format!(
                "Attempt {}: …{}\nIts answer: {answer}",
                i + 1,
                closing_lines(&d.text, share)
            )
        })
        .collect::<Vec<_>>()
        .join("\n\n")
}

/// The end of `text`, at most `chars` characters, starting at a line when one starts
/// in that span.
fn closing_lines(text: &str, chars: usize) -> &str {
    let text = text.trim_end();
    let count = text.chars().count();
    if count <= chars {
        return text;
    }
    let cut = text
        .char_indices()
        .nth(count - chars)
        .map_or(text.len(), |(at, _)| at);
    let tail = &text[cut..];
    match tail.find('\n') {
        Some(nl) if nl + 1 < tail.len() => &tail[nl + 1..],
        _ => tail,
    }
}

/// The conversation with the workspace and the instruction after the user's problem
/// (so the problem stays a prefix the cache shares with the first round).
fn with_workspace(
    messages: &[ChatMessage],
    workspace: &str,
    instruction: &str,
) -> Vec<ChatMessage> {
    let mut messages = messages.to_vec();
    if let Some(last) = messages.iter_mut().rev().find(|m| m.role == "user") {
        last.content = format!(
            "{}\n\nEarlier attempts:\n\n{workspace}\n\n{instruction}",
            last.content.trim_end()
        );
    }
    messages
}

/// Runs `request` as Parallel-Distill-Refine; see the module documentation.
pub fn complete<B: Backend + ?Sized>(
    backend: &B,
    request: &CompletionRequest,
    options: &RefineOptions,
    sink: Sink<'_>,
) -> Result<Completion, BackendError> {
    let start = Instant::now();
    let Prompt::Chat(messages) = &request.prompt else {
        return Err(StrategyError::Config(
            "refine needs a chat conversation (it adds the workspace to the user's message), \
             not raw text"
                .into(),
        )
        .into());
    };
    let plain = StrategySpec {
        format: request.strategy.format,
        stages: Vec::new(),
    };
    let mut usage = Usage::default();
    let mut engine_time = None;
    let mut events = Vec::new();
    // A pass on the original prompt counts its prompt once (the siblings' cached part
    // per pass, as `consistency` does); a pass on a prompt with a workspace counts what
    // it prefilled beyond the cache as injected.
    let mut count = |pass: &Completion, refined: bool, usage: &mut Usage| {
        usage.add_work(&pass.usage);
        if refined {
            usage.injected_tokens += pass
                .usage
                .prompt_tokens
                .saturating_sub(pass.usage.prompt_cached_tokens);
        } else {
            usage.prompt_tokens = pass.usage.prompt_tokens;
            usage.prompt_cached_tokens += pass.usage.prompt_cached_tokens;
        }
        engine_time = crate::EngineTime::sum(engine_time, pass.engine_time);
    };
    let prompt_with = |workspace: &Option<String>| match workspace {
        Some(w) => with_workspace(messages, w, &options.instruction),
        None => messages.clone(),
    };
    let mut workspace: Option<String> = None;
    for round in 0..options.rounds {
        let prompt = prompt_with(&workspace);
        let requests: Vec<CompletionRequest> = (0..options.drafts)
            .map(|j| CompletionRequest {
                prompt: Prompt::Chat(prompt.clone()),
                strategy: plain.clone(),
                sampling: crate::SamplerConfig {
                    temperature: options.temperature,
                    seed: request
                        .sampling
                        .seed
                        .wrapping_add((round * options.drafts + j) as u64),
                    ..request.sampling.clone()
                },
                logprobs: false,
                top_logprobs: 0,
                ..request.clone()
            })
            .collect();
        let drafts = backend.complete_siblings(&requests)?;
        for draft in &drafts {
            count(draft, workspace.is_some(), &mut usage);
            events.push(StrategyEvent {
                strategy: "refine".into(),
                kind: "draft".into(),
                at_token: draft.usage.output_tokens,
                detail: Some(format!(
                    "round {}: {}",
                    round + 1,
                    trace_answer(&draft.text).unwrap_or_else(|| "(no answer)".into())
                )),
                logprob: None,
                probe_tokens: None,
            });
        }
        let distilled = distill(&drafts, options.workspace_chars);
        events.push(StrategyEvent {
            strategy: "refine".into(),
            kind: "workspace".into(),
            at_token: usage.output_tokens,
            detail: Some(format!(
                "round {}: {} chars",
                round + 1,
                distilled.chars().count()
            )),
            logprob: None,
            probe_tokens: None,
        });
        workspace = Some(distilled);
    }
    let final_prompt = prompt_with(&workspace);
    let final_request = CompletionRequest {
        prompt: Prompt::Chat(final_prompt),
        strategy: plain,
        ..request.clone()
    };
    let mut answer = backend.complete_streaming(&final_request, &mut |_, _, _| {})?;
    count(&answer, workspace.is_some(), &mut usage);
    events.push(StrategyEvent {
        strategy: "refine".into(),
        kind: "answer".into(),
        at_token: answer.usage.output_tokens,
        detail: trace_answer(&answer.text),
        logprob: None,
        probe_tokens: None,
    });
    events.append(&mut answer.events);
    answer.usage = usage;
    answer.events = events;
    answer.engine_time = engine_time;
    answer.latency_s = start.elapsed().as_secs_f64();
    answer.stop_reason = "refine".into();
    if let Some(reasoning) = &answer.reasoning {
        sink(PieceKind::Reasoning, reasoning, &[]);
    }
    sink(PieceKind::Content, &answer.text, &answer.logprobs);
    Ok(answer)
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::scripted::{completion, ScriptedBackend};

    fn draft(text: &str) -> Completion {
        completion(text, Usage::default())
    }

    #[test]
    fn rounds_draft_with_fresh_seeds_from_the_last_workspace_and_every_pass_is_counted() {
        // Each answer boxes its sampling seed: 10 output tokens, a 30-token prompt of
        // which 20 came from the cache.
        let backend = ScriptedBackend::new(|request| {
            let usage = Usage {
                prompt_tokens: 30,
                prompt_cached_tokens: 20,
                output_tokens: 10,
                ..Usage::default()
            };
            completion(&format!("so \\boxed{{{}}}", request.sampling.seed), usage)
        });
        let mut request = CompletionRequest::chat(
            vec![ChatMessage::new("user", "Q?")],
            crate::SamplerConfig::default(),
            64,
        );
        request.sampling.seed = 100;
        let options = RefineOptions {
            drafts: 2,
            rounds: 2,
            ..RefineOptions::default()
        };
        let answer = complete(&backend, &request, &options, &mut |_, _, _| {}).unwrap();
        let seen = backend.requests();
        assert_eq!(seen.len(), 5);
        let seeds: Vec<u64> = seen.iter().map(|r| r.sampling.seed).collect();
        assert_eq!(seeds, [100, 101, 102, 103, 100]);
        let user = |r: &CompletionRequest| match &r.prompt {
            Prompt::Chat(m) => m[0].content.clone(),
            Prompt::Text(t) => t.clone(),
        };
        assert_eq!(user(&seen[0]), "Q?");
        assert!(user(&seen[2]).contains("Attempt 1: …so \\boxed{100}\nIts answer: 100"));
        // The final pass sees round 2's drafts, not round 1's, with the request's sampling.
        let last = user(&seen[4]);
        assert!(
            last.contains("Its answer: 102") && !last.contains("Its answer: 100"),
            "{last}"
        );
        assert_eq!(seen[4].sampling.temperature, request.sampling.temperature);
        assert_eq!(answer.usage.output_tokens, 50);
        assert_eq!(answer.usage.prompt_tokens, 30);
        assert_eq!(answer.usage.prompt_cached_tokens, 40);
        assert_eq!(answer.usage.injected_tokens, 3 * 10);
        assert_eq!(answer.stop_reason, "refine");
        let kinds: Vec<&str> = answer.events.iter().map(|e| e.kind.as_str()).collect();
        assert_eq!(
            kinds,
            [
                "draft",
                "draft",
                "workspace",
                "draft",
                "draft",
                "workspace",
                "answer"
            ]
        );
    }

    #[test]
    fn the_workspace_keeps_each_drafts_closing_lines_and_answer_within_its_bound() {
        let long = format!("{}\nSo 3 + 4 = 7.\n\\boxed{{7}}", "step one. ".repeat(100));
        let drafts = [
            draft(&long),
            draft("Too short to cut: 12"),
            draft("no number"),
        ];
        let workspace = distill(&drafts, 90);
        assert!(workspace.chars().count() <= 90 + 3 * "Attempt 1: …\nIts answer: none".len() + 4);
        assert!(
            workspace.starts_with("Attempt 1: …So 3 + 4 = 7.\n\\boxed{7}\nIts answer: 7"),
            "{workspace}"
        );
        assert!(
            workspace.contains("Attempt 2: …Too short to cut: 12\nIts answer: 12"),
            "{workspace}"
        );
        assert!(
            workspace.ends_with("Attempt 3: …no number\nIts answer: none"),
            "{workspace}"
        );
    }

    #[test]
    fn closing_lines_start_at_a_line_and_respect_characters_not_bytes() {
        assert_eq!(closing_lines("ab\ncd\nef", 4), "ef");
        assert_eq!(closing_lines("ab\ncd", 10), "ab\ncd");
        assert_eq!(closing_lines("ééééé", 2), "éé");
    }

    #[test]
    fn the_workspace_follows_the_problem_so_the_problem_stays_a_shared_prefix() {
        let m = vec![
            ChatMessage::new("system", "S"),
            ChatMessage::new("user", "Q?\n"),
        ];
        let w = with_workspace(&m, "Attempt 1: …x", "Check.");
        assert_eq!(w[0].content, "S");
        assert_eq!(
            w[1].content,
            "Q?\n\nEarlier attempts:\n\nAttempt 1: …x\n\nCheck."
        );
        assert!(w[1]
            .content
            .starts_with(&m[1].content.trim_end().to_string()));
    }
}
