//! Prompt stages: strategies that change the conversation, not the decoding.
//!
//! - `be-brief`: a system instruction to answer with little reasoning (the "be brief"
//!   baseline of CAPO and of "Systematic Optimization of Open Source LLMs for
//!   Mathematical Reasoning").
//! - `chain-of-draft`: Chain of Draft's system prompt (a draft of at most five words
//!   per step).
//! - `concise-exemplars`: worked examples written concisely before the question
//!   (C3oT's compressed rationales): four GSM8K training problems whose reference
//!   rationales are rewritten as bare equations. They sit at the start of every
//!   prompt, so the engine's prefix cache prefills them once for all requests.

use serde::{Deserialize, Serialize};
use terse_engine::ChatMessage;

pub const BE_BRIEF: &str =
    "Be brief: give the answer with as little reasoning as possible, and put the final answer within \\boxed{}.";

/// Chain of Draft (Xu et al., 2025), as published.
pub const CHAIN_OF_DRAFT: &str =
    "Think step by step, but only keep a minimum draft for each thinking step, \
with 5 words at most. Return the answer at the end of the response after a separator ####.";

/// (question, concise solution) pairs from GSM8K's training split (lines 4, 21, 41
/// and 48 of `train.jsonl`, MIT licence), each solution the reference rationale cut
/// to its equations.
pub const EXEMPLARS: &[(&str, &str)] = &[
    (
        "Julie is reading a 120-page book. Yesterday, she was able to read 12 pages and today, she read twice as many pages as yesterday. If she wants to read half of the remaining pages tomorrow, how many pages should she read?",
        "Today: 12 * 2 = 24 pages. Read so far: 12 + 24 = 36. Left: 120 - 36 = 84. Tomorrow: 84 / 2 = 42.\nFinal answer: \\boxed{42}",
    ),
    (
        "Bella bought stamps at the post office. Some of the stamps had a snowflake design, some had a truck design, and some had a rose design. Bella bought 11 snowflake stamps. She bought 9 more truck stamps than snowflake stamps, and 13 fewer rose stamps than truck stamps. How many stamps did Bella buy in all?",
        "Truck: 11 + 9 = 20. Rose: 20 - 13 = 7. Total: 11 + 20 + 7 = 38.\nFinal answer: \\boxed{38}",
    ),
    (
        "A concert ticket costs $40. Mr. Benson bought 12 tickets and received a 5% discount for every ticket bought that exceeds 10. How much did Mr. Benson pay in all?",
        "Discounted: 12 - 10 = 2 tickets at 40 - 40 * 5/100 = $38, so 2 * 38 = $76. Others: 10 * 40 = $400. Total: 400 + 76 = $476.\nFinal answer: \\boxed{476}",
    ),
    (
        "The file, 90 megabytes in size, downloads at the rate of 5 megabytes per second for its first 60 megabytes, and then 10 megabytes per second thereafter. How long, in seconds, does it take to download entirely?",
        "First 60 MB: 60 / 5 = 12 s. Rest: 90 - 60 = 30 MB at 10 MB/s: 30 / 10 = 3 s. Total: 12 + 3 = 15 s.\nFinal answer: \\boxed{15}",
    ),
];

/// Adds `instruction` as the system message (after an existing one).
pub(crate) fn add_system(messages: &mut Vec<ChatMessage>, instruction: &str) {
    match messages.first_mut() {
        Some(first) if first.role == "system" => {
            first.content = format!("{}\n\n{instruction}", first.content);
        }
        _ => messages.insert(0, ChatMessage::new("system", instruction)),
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ExemplarOptions {
    /// How many of the worked examples to show (1 to 4).
    pub count: usize,
    /// Also give Chain of Draft's instruction.
    pub draft: bool,
}

impl Default for ExemplarOptions {
    fn default() -> Self {
        ExemplarOptions {
            count: 4,
            draft: false,
        }
    }
}

/// Puts the worked examples before the conversation's last user message.
pub(crate) fn add_exemplars(messages: &mut Vec<ChatMessage>, options: &ExemplarOptions) {
    if options.draft {
        add_system(messages, CHAIN_OF_DRAFT);
    }
    let at = messages
        .iter()
        .rposition(|m| m.role == "user")
        .unwrap_or(messages.len());
    let shots = EXEMPLARS.iter().take(options.count).flat_map(|(q, a)| {
        [
            ChatMessage::new("user", *q),
            ChatMessage::new("assistant", *a),
        ]
    });
    messages.splice(at..at, shots);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exemplars_go_before_the_last_question_and_after_the_system_message() {
        let mut m = vec![
            ChatMessage::new("system", "S"),
            ChatMessage::new("user", "Q"),
        ];
        add_exemplars(
            &mut m,
            &ExemplarOptions {
                count: 2,
                draft: true,
            },
        );
        let roles: Vec<&str> = m.iter().map(|m| m.role.as_str()).collect();
        assert_eq!(
            roles,
            ["system", "user", "assistant", "user", "assistant", "user"]
        );
        assert!(m[0].content.starts_with("S\n\nThink step by step"));
        assert_eq!(m[5].content, "Q");
        assert!(m[2].content.ends_with("\\boxed{42}"));
    }

    #[test]
    fn a_system_instruction_is_added_when_there_is_none() {
        let mut m = vec![ChatMessage::new("user", "Q")];
        add_system(&mut m, BE_BRIEF);
        assert_eq!(m[0].role, "system");
        assert_eq!(m.len(), 2);
    }
}
