//! The [`Runner`]: one request's chain of controllers, its text and its accounting.
//!
//! The runner keeps two texts: what the model has seen after the prompt (its tokens
//! and every injected text, hidden hints included; the controllers' [`Trace`]) and
//! what the user sees (hidden hints left out, answers a strategy wrote in). It turns
//! the controllers' decisions into the engine's [`Action`]s, routes probe results back
//! to the controller that asked, records events, applies stop strings, splits a think
//! section from the answer, and streams the visible text as it grows, holding back
//! only what could still become a marker or a stop string.
//!
//! It is backend-neutral: the local engine calls it through its [`Steering`] impl;
//! the remote backend calls [`Runner::observe`] and [`Runner::probe_done`] with
//! streamed text.

use super::{
    Controller, Decision, Decisions, Format, FormatChoice, Phase, StrategySpec, TokenView, Trace,
    ANSWER_CUE, THINK_CLOSE, THINK_OPEN,
};
use crate::constraint::Constraint;
use crate::{PieceKind, StrategyEvent, TokenLogprob};
use std::collections::HashMap;
use std::sync::Arc;
use terse_engine::{
    Action, ProbeRequest, ProbeResult, Steering, SteeringReserve, StopCause, StopReason,
    TokenEvent, Tokenizer, TopLogprob,
};

/// Token ids the logit-adjusting strategies target, read from a vocabulary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenIds {
    /// End of generation, and with a think section also `</think>`'s first token.
    plain_end: Vec<u32>,
    think_end: Vec<u32>,
    /// The first token of the answer box (` \boxed`, `\boxed`).
    plain_targets: Vec<u32>,
}

impl TokenIds {
    pub fn from_tokenizer(tokenizer: &Tokenizer) -> Self {
        let first = |text: &str| tokenizer.encode(text, false, true).first().copied();
        let eog: Vec<u32> = tokenizer.eog_ids().collect();
        let mut think_end = eog.clone();
        think_end.extend(first(THINK_CLOSE));
        let mut plain_targets: Vec<u32> = [" \\boxed", "\\boxed"]
            .iter()
            .filter_map(|t| first(t))
            .collect();
        plain_targets.dedup();
        TokenIds {
            plain_end: eog,
            think_end,
            plain_targets,
        }
    }

    /// Tokens that end reasoning.
    pub fn reasoning_end(&self, format: Format) -> &[u32] {
        match format {
            Format::Think => &self.think_end,
            Format::Plain => &self.plain_end,
        }
    }

    /// Tokens `stop-boost` makes more likely.
    pub fn stop_targets(&self, format: Format) -> &[u32] {
        match format {
            Format::Think => &self.think_end,
            Format::Plain => &self.plain_targets,
        }
    }
}

/// What a finished runner hands back.
#[derive(Debug, Clone, PartialEq)]
pub struct RunnerOutput {
    /// The answer (after the think section when there is one).
    pub text: String,
    pub reasoning: Option<String>,
    pub stop_reason: String,
    pub events: Vec<StrategyEvent>,
    pub logprobs: Vec<TokenLogprob>,
    pub reasoning_tokens: u64,
    pub answer_tokens: u64,
}

/// Takes a piece of visible text and the kept log-probabilities of the tokens that end
/// in it; false when nobody listens any more.
pub type PieceSink = Box<dyn FnMut(PieceKind, &str, &[TokenLogprob]) -> bool + Send>;

/// One request's strategy in motion; see the module documentation.
pub struct Runner {
    controllers: Vec<Box<dyn Controller>>,
    trace: Trace,
    format_choice: FormatChoice,
    /// The prompt itself opened the think section.
    think_opened_in_prompt: bool,
    visible: String,
    streamed: usize,
    stop_strings: Vec<String>,
    sink: Option<PieceSink>,
    events: Vec<StrategyEvent>,
    stop_reason: Option<String>,
    /// Engine tag → (controller, the controller's own tag, tokens sampled when it
    /// was asked for).
    probe_owner: HashMap<u64, (usize, u64, usize)>,
    /// Events of a probe's result are dated where the probe was forked, and carry its
    /// token counts.
    event_at: Option<(usize, [u64; 2])>,
    next_tag: u64,
    top_logprobs: usize,
    keep_logprobs: bool,
    logprobs: Vec<TokenLogprob>,
    /// Where each kept token's text ends in `visible`.
    logprob_ends: Vec<usize>,
    /// Kept tokens already handed to the sink.
    logprobs_streamed: usize,
    tokenizer: Option<Arc<Tokenizer>>,
    answer_tokens: u64,
    /// Every text injected into the model's input, the opening prefix included.
    injected: String,
    decisions: Decisions,
    /// The grammar the answer must follow, and whether it is in force yet (with a
    /// think section, from its end).
    constraint: Option<Constraint>,
    constraint_live: bool,
}

impl Runner {
    /// A runner for `spec` on a prompt whose rendered text is `prompt`. `ids` and
    /// `tokenizer` come from a local vocabulary (`None` on a text-only backend).
    pub fn new(
        spec: &StrategySpec,
        prompt: &str,
        ids: Option<TokenIds>,
        tokenizer: Option<Arc<Tokenizer>>,
    ) -> Self {
        let think_opened_in_prompt = prompt.trim_end().ends_with(THINK_OPEN);
        let format = match spec.format {
            FormatChoice::Think => Format::Think,
            FormatChoice::Plain => Format::Plain,
            FormatChoice::Auto if think_opened_in_prompt => Format::Think,
            FormatChoice::Auto => Format::Plain,
        };
        let controllers = spec.controllers();
        let prefix: String = controllers
            .iter()
            .filter_map(|c| c.assistant_prefix())
            .collect();
        Runner {
            controllers,
            trace: Trace {
                format,
                phase: Phase::Reasoning,
                text: prefix.clone(),
                sampled: 0,
                reasoning_tokens: 0,
                ids,
            },
            format_choice: spec.format,
            think_opened_in_prompt,
            visible: String::new(),
            streamed: 0,
            stop_strings: Vec::new(),
            sink: None,
            events: Vec::new(),
            stop_reason: None,
            probe_owner: HashMap::new(),
            event_at: None,
            next_tag: 0,
            top_logprobs: 0,
            keep_logprobs: false,
            logprobs: Vec::new(),
            logprob_ends: Vec::new(),
            logprobs_streamed: 0,
            tokenizer,
            answer_tokens: 0,
            injected: prefix,
            decisions: Decisions::default(),
            constraint: None,
            constraint_live: false,
        }
    }

    /// Constrains the answer (after the think section, when there is one) to a
    /// grammar. Needs the local vocabulary the runner was built with.
    pub fn with_constraint(mut self, constraint: Constraint) -> Self {
        self.constraint_live = self.trace.format == Format::Plain;
        self.constraint = Some(constraint);
        self
    }

    /// Ends the answer before the first of `stop` (the string is not returned).
    pub fn with_stop_strings(mut self, stop: &[String]) -> Self {
        self.stop_strings = stop.iter().filter(|s| !s.is_empty()).cloned().collect();
        self
    }

    /// Streams the visible text to `sink` as it grows.
    pub fn with_sink(mut self, sink: PieceSink) -> Self {
        self.sink = Some(sink);
        self
    }

    /// Keeps each output token's log-probability and its `top` alternatives.
    pub fn with_logprobs(mut self, top: usize) -> Self {
        self.keep_logprobs = true;
        self.top_logprobs = top;
        self
    }

    /// Hidden text the answer starts with (it goes after the rendered prompt).
    pub fn assistant_prefix(&self) -> &str {
        &self.trace.text
    }

    /// The model's text so far (prefix, tokens, injected text).
    pub fn model_text(&self) -> &str {
        &self.trace.text
    }

    /// Every text injected so far (the opening prefix included).
    pub fn injected_text(&self) -> &str {
        &self.injected
    }

    pub fn stopped(&self) -> bool {
        self.stop_reason.is_some()
    }

    /// The stage that needs logits, if any does (a text backend cannot give them).
    pub fn needs_logits(&self) -> Option<&'static str> {
        self.controllers
            .iter()
            .find(|c| c.needs().logits)
            .map(|c| c.name())
    }

    /// A sampled token: updates the texts, asks every controller, and returns what
    /// the engine should do.
    pub fn observe(
        &mut self,
        piece: &str,
        logprob: Option<f32>,
        entropy: Option<f32>,
        top: &[TopLogprob],
        is_end_of_generation: bool,
    ) -> Vec<Action> {
        if self.stop_reason.is_some() {
            return vec![Action::Stop(StopCause("finished".into()))];
        }
        self.trace.sampled += 1;
        if self.trace.phase == Phase::Reasoning {
            self.trace.reasoning_tokens += 1;
        } else {
            self.answer_tokens += 1;
        }
        let piece = if is_end_of_generation { "" } else { piece };
        self.trace.text.push_str(piece);
        self.update_format_and_phase();

        let view = TokenView {
            piece,
            logprob,
            entropy,
            top_logprobs: top,
            is_end_of_generation,
        };
        let mut decisions = std::mem::take(&mut self.decisions);
        let mut owned = Vec::new();
        for (i, c) in self.controllers.iter_mut().enumerate() {
            c.on_token(&self.trace, &view, &mut decisions);
            owned.extend(decisions.drain().map(|d| (i, d)));
        }
        self.decisions = decisions;

        let replaced = owned.iter().any(|(_, d)| {
            matches!(
                d,
                Decision::Inject {
                    replace_token: true,
                    ..
                }
            )
        });
        if replaced {
            let len = self.trace.text.len() - piece.len();
            self.trace.text.truncate(len);
        } else if !is_end_of_generation {
            self.visible.push_str(piece);
            if self.keep_logprobs {
                self.logprob_ends.push(self.visible.len());
                self.logprobs.push(TokenLogprob {
                    text: piece.to_string(),
                    logprob: logprob.unwrap_or(f32::NAN),
                    top: self.top_texts(top),
                });
            }
        }
        let mut actions = self.apply(owned);
        self.after_change(&mut actions);
        actions
    }

    /// A probe finished: its result goes to the controller that asked for it.
    pub fn probe_done(&mut self, result: &ProbeResult) -> Vec<Action> {
        let Some(&(owner, tag, asked_at)) = self.probe_owner.get(&result.tag) else {
            return Vec::new();
        };
        self.probe_owner.remove(&result.tag);
        if self.stop_reason.is_some() {
            return Vec::new();
        }
        let result = ProbeResult {
            tag,
            ..result.clone()
        };
        let mut decisions = std::mem::take(&mut self.decisions);
        self.controllers[owner].on_probe(&self.trace, &result, &mut decisions);
        let owned: Vec<(usize, Decision)> = decisions.drain().map(|d| (owner, d)).collect();
        self.decisions = decisions;
        self.event_at = Some((
            asked_at,
            [result.prefill_tokens as u64, result.tokens.len() as u64],
        ));
        let mut actions = self.apply(owned);
        self.event_at = None;
        self.after_change(&mut actions);
        actions
    }

    /// Turns decisions into engine actions; the first stop ends the list.
    fn apply(&mut self, decisions: Vec<(usize, Decision)>) -> Vec<Action> {
        let mut actions = Vec::new();
        for (owner, decision) in decisions {
            let strategy = self.controllers[owner].name();
            match decision {
                Decision::Inject {
                    text,
                    visible,
                    replace_token,
                } => {
                    self.trace.text.push_str(&text);
                    self.injected.push_str(&text);
                    if visible {
                        self.visible.push_str(&text);
                    }
                    actions.push(Action::Inject {
                        text,
                        replace_token,
                    });
                }
                Decision::Probe {
                    tag,
                    text,
                    max_tokens,
                    stop,
                } => {
                    self.next_tag += 1;
                    self.probe_owner
                        .insert(self.next_tag, (owner, tag, self.trace.sampled));
                    actions.push(Action::Probe(ProbeRequest {
                        tag: self.next_tag,
                        text,
                        max_tokens,
                        stop,
                    }));
                }
                Decision::Stop { reason } => {
                    actions.push(Action::Stop(StopCause(reason.clone())));
                    self.stop_reason = Some(reason);
                    break;
                }
                Decision::Finish { text, reason } => {
                    self.visible.push_str(&text);
                    self.trace.text.push_str(&text);
                    actions.push(Action::Stop(StopCause(reason.clone())));
                    self.stop_reason = Some(reason);
                    break;
                }
                Decision::Event {
                    kind,
                    detail,
                    logprob,
                } => self.events.push(StrategyEvent {
                    strategy: strategy.into(),
                    at_token: self.event_at.map_or(self.trace.sampled, |(at, _)| at) as u64,
                    probe_tokens: self.event_at.filter(|_| kind == "probe").map(|(_, t)| t),
                    kind,
                    detail,
                    logprob,
                }),
            }
        }
        actions
    }

    /// Phase, stop strings and streaming after the texts changed.
    fn after_change(&mut self, actions: &mut Vec<Action>) {
        self.update_format_and_phase();
        if self.stop_reason.is_none() {
            let content = self.sections().content.start;
            let hit = self
                .stop_strings
                .iter()
                .filter_map(|s| self.visible[content..].find(s.as_str()))
                .min();
            if let Some(at) = hit {
                self.visible.truncate(content + at);
                self.stop_reason = Some("stop".into());
                actions.retain(|a| !matches!(a, Action::Inject { .. } | Action::Probe(_)));
                actions.push(Action::Stop(StopCause("stop".into())));
            }
        }
        let hold = if self.stop_reason.is_some() {
            0
        } else {
            self.hold_back()
        };
        if !self.stream(self.visible.len() - hold) && self.stop_reason.is_none() {
            // The caller went away: end the request and free its sequence.
            self.stop_reason = Some("cancelled".into());
            actions.retain(|a| !matches!(a, Action::Inject { .. } | Action::Probe(_)));
            actions.push(Action::Stop(StopCause("cancelled".into())));
        }
    }

    fn update_format_and_phase(&mut self) {
        if self.format_choice == FormatChoice::Auto
            && self.trace.format == Format::Plain
            && self.trace.sampled <= 8
        {
            // A model that opens its own think section (as a prompt may ask it to).
            if self.visible.trim_start().starts_with(THINK_OPEN) {
                self.trace.format = Format::Think;
            }
        }
        if self.trace.phase == Phase::Reasoning {
            let ended = match self.trace.format {
                Format::Think => self.trace.text.contains(THINK_CLOSE),
                Format::Plain => {
                    self.trace.text.contains("\\boxed{") || self.trace.text.contains(ANSWER_CUE)
                }
            };
            if ended {
                self.trace.phase = Phase::Answer;
            }
        }
    }

    /// Where the think section and the answer are in the visible text.
    fn sections(&self) -> Sections {
        sections_of(
            &self.visible,
            &self.trace.format,
            self.think_opened_in_prompt,
        )
    }

    /// Bytes at the end of the visible text that could still become a think marker or
    /// a stop string, so are not streamed yet.
    fn hold_back(&self) -> usize {
        let text = self.visible.as_str();
        let undecided = self.format_choice == FormatChoice::Auto
            && self.trace.sampled <= 8
            && THINK_OPEN.starts_with(text.trim_start());
        if undecided {
            return text.len();
        }
        let markers = [THINK_OPEN, THINK_CLOSE];
        markers
            .iter()
            .copied()
            .chain(self.stop_strings.iter().map(String::as_str))
            .map(|m| {
                (1..m.len())
                    .rev()
                    .find(|&k| m.is_char_boundary(k) && text.ends_with(&m[..k]))
                    .unwrap_or(0)
            })
            .max()
            .unwrap_or(0)
    }

    /// Sends the visible text up to `end` that was not sent yet, by section; false
    /// when the sink no longer listens.
    fn stream(&mut self, end: usize) -> bool {
        if end <= self.streamed {
            return true;
        }
        let sections = self.sections();
        let mut parts: Vec<(PieceKind, std::ops::Range<usize>)> = Vec::new();
        if let Some(r) = sections.reasoning {
            parts.push((PieceKind::Reasoning, r));
        }
        parts.push((PieceKind::Content, sections.content));
        let from_all = self.streamed;
        self.streamed = end;
        let Some(sink) = self.sink.as_mut() else {
            return true;
        };
        let mut listening = true;
        for (kind, range) in parts {
            let from = range.start.max(from_all);
            let to = range.end.min(end);
            if from < to && self.visible.is_char_boundary(from) && self.visible.is_char_boundary(to)
            {
                let first = self.logprobs_streamed;
                let ended = self.logprob_ends[first..]
                    .iter()
                    .take_while(|&&e| e <= to)
                    .count();
                self.logprobs_streamed += ended;
                let tokens = &self.logprobs[first..first + ended];
                listening &= sink(kind, &self.visible[from..to], tokens);
            }
        }
        listening
    }

    fn top_texts(&self, top: &[TopLogprob]) -> Vec<(String, f32)> {
        let Some(tokenizer) = &self.tokenizer else {
            return Vec::new();
        };
        top.iter()
            .map(|t| {
                (
                    String::from_utf8_lossy(tokenizer.token_bytes(t.token)).into_owned(),
                    t.logprob,
                )
            })
            .collect()
    }

    /// Ends the run: flushes the stream and splits the text. `engine_reason` is why
    /// the engine stopped when no strategy or stop string did.
    pub fn finish(mut self, engine_reason: StopReason) -> RunnerOutput {
        let stop_reason = self.stop_reason.clone().unwrap_or_else(|| {
            match engine_reason {
                StopReason::EndOfGeneration | StopReason::Caller | StopReason::Steered => "eos",
                StopReason::MaxTokens => "length",
            }
            .to_string()
        });
        self.stream(self.visible.len());
        let sections = self.sections();
        let text = self.visible[sections.content].trim_start().to_string();
        let reasoning = sections
            .reasoning
            .map(|r| self.visible[r].trim().to_string());
        RunnerOutput {
            text,
            reasoning,
            stop_reason,
            events: self.events,
            logprobs: self.logprobs,
            reasoning_tokens: self.trace.reasoning_tokens as u64,
            answer_tokens: self.answer_tokens,
        }
    }
}

struct Sections {
    reasoning: Option<std::ops::Range<usize>>,
    content: std::ops::Range<usize>,
}

fn sections_of(visible: &str, format: &Format, think_opened_in_prompt: bool) -> Sections {
    let len = visible.len();
    if *format == Format::Plain {
        return Sections {
            reasoning: None,
            content: 0..len,
        };
    }
    let start = if think_opened_in_prompt {
        0
    } else {
        let lead = visible.len() - visible.trim_start().len();
        if visible[lead..].starts_with(THINK_OPEN) {
            lead + THINK_OPEN.len()
        } else {
            0
        }
    };
    match visible[start..].find(THINK_CLOSE) {
        Some(close) => Sections {
            reasoning: Some(start..start + close),
            content: start + close + THINK_CLOSE.len()..len,
        },
        None => Sections {
            reasoning: Some(start..len),
            content: len..len,
        },
    }
}

impl Steering for Runner {
    fn reserve(&self) -> SteeringReserve {
        self.controllers
            .iter()
            .map(|c| c.reserve())
            .fold(SteeringReserve::default(), |a, b| SteeringReserve {
                injected_tokens: a.injected_tokens + b.injected_tokens,
                live_probes: a.live_probes + b.live_probes,
                probe_tokens: a.probe_tokens.max(b.probe_tokens),
            })
    }

    fn top_logprobs(&self) -> usize {
        self.top_logprobs
    }

    fn adjust_logits(&mut self, logits: &mut [f32]) {
        for c in &mut self.controllers {
            c.adjust_logits(&self.trace, logits);
        }
        if self.constraint_live {
            if let Some(constraint) = &mut self.constraint {
                constraint.mask(logits);
            }
        }
    }

    fn on_token(&mut self, event: &TokenEvent<'_>, actions: &mut Vec<Action>) {
        let was_live = self.constraint_live;
        if let (true, Some(constraint), Some(tokenizer)) =
            (was_live, &mut self.constraint, &self.tokenizer)
        {
            if !event.is_end_of_generation {
                constraint.advance(tokenizer.token_bytes(event.token));
            }
        }
        actions.extend(self.observe(
            event.piece,
            Some(event.logprob),
            Some(event.entropy),
            event.top_logprobs,
            event.is_end_of_generation,
        ));
        if !was_live {
            if let (Some(constraint), Some(end)) =
                (&mut self.constraint, self.trace.text.rfind(THINK_CLOSE))
            {
                // What the token wrote after `</think>` (a line break) starts the answer.
                let rest = &self.trace.text[end + THINK_CLOSE.len()..];
                constraint.advance(rest.trim_start().as_bytes());
                self.constraint_live = true;
            }
        }
    }

    fn on_probe(&mut self, result: &ProbeResult, actions: &mut Vec<Action>) {
        actions.extend(self.probe_done(result));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// What a test sink received.
    type Received = Arc<Mutex<Vec<(PieceKind, String)>>>;

    fn runner(chain: &str, options: &[&str], prompt: &str) -> (Runner, Received) {
        let options: Vec<String> = options.iter().map(|s| s.to_string()).collect();
        let spec = StrategySpec::parse(chain, &options).unwrap();
        let got = Arc::new(Mutex::new(Vec::new()));
        let sink = got.clone();
        let r = Runner::new(&spec, prompt, None, None).with_sink(Box::new(move |k, t, _| {
            sink.lock().unwrap().push((k, t.to_string()));
            true
        }));
        (r, got)
    }

    fn feed(r: &mut Runner, pieces: &[&str]) -> Vec<Action> {
        pieces
            .iter()
            .flat_map(|p| r.observe(p, None, None, &[], false))
            .collect()
    }

    fn joined(got: &Mutex<Vec<(PieceKind, String)>>, kind: PieceKind) -> String {
        got.lock()
            .unwrap()
            .iter()
            .filter(|(k, _)| *k == kind)
            .map(|(_, t)| t.as_str())
            .collect()
    }

    #[test]
    fn plain_text_streams_as_it_is_decoded() {
        let (mut r, got) = runner("none", &[], "prompt");
        feed(&mut r, &["The", " answer", " is", " \\boxed{", "7", "}"]);
        let out = r.finish(StopReason::EndOfGeneration);
        assert_eq!(out.text, "The answer is \\boxed{7}");
        assert_eq!(joined(&got, PieceKind::Content), out.text);
        assert_eq!(out.reasoning, None);
        assert_eq!(out.stop_reason, "eos");
        assert_eq!((out.reasoning_tokens, out.answer_tokens), (4, 2));
    }

    #[test]
    fn a_think_section_is_split_from_the_answer_while_streaming() {
        let (mut r, got) = runner("none", &[], "prompt");
        feed(
            &mut r,
            &[
                "<", "think", ">", "I", " add", ".", "</", "think", ">", "\n\n", "7",
            ],
        );
        let out = r.finish(StopReason::EndOfGeneration);
        assert_eq!(out.reasoning.as_deref(), Some("I add."));
        assert_eq!(out.text, "7");
        assert_eq!(joined(&got, PieceKind::Reasoning), "I add.");
        assert_eq!(joined(&got, PieceKind::Content).trim(), "7");
    }

    #[test]
    fn a_stop_string_ends_the_answer_before_it_and_is_never_streamed() {
        let (r, got) = runner("none", &[], "p");
        let mut r = r.with_stop_strings(&["END".into()]);
        let mut actions = feed(&mut r, &["one", " E"]);
        assert!(actions.is_empty());
        assert_eq!(joined(&got, PieceKind::Content), "one ", "'E' is held back");
        actions = feed(&mut r, &["ND", " more"]);
        assert!(matches!(actions.last(), Some(Action::Stop(_))));
        let out = r.finish(StopReason::Steered);
        assert_eq!(out.text, "one ");
        assert_eq!(out.stop_reason, "stop");
        assert_eq!(joined(&got, PieceKind::Content), "one ");
    }

    #[test]
    fn each_token_log_probability_streams_with_the_piece_its_text_ends_in() {
        type Pieces = Arc<Mutex<Vec<(String, Vec<f32>)>>>;
        let spec = StrategySpec::parse("none", &[]).unwrap();
        let got: Pieces = Arc::new(Mutex::new(Vec::new()));
        let sink = got.clone();
        let mut r = Runner::new(&spec, "p", None, None)
            .with_logprobs(0)
            .with_stop_strings(&["END".into()])
            .with_sink(Box::new(move |_, text, tokens| {
                let logprobs = tokens.iter().map(|t| t.logprob).collect();
                sink.lock().unwrap().push((text.to_string(), logprobs));
                true
            }));
        for (piece, logprob) in [("one", -0.1), (" E", -0.2), ("x", -0.3)] {
            r.observe(piece, Some(logprob), None, &[], false);
        }
        let out = r.finish(StopReason::EndOfGeneration);
        // "E" may start the stop string: held back, and its token with it.
        let want = [("one", vec![-0.1]), (" ", vec![]), ("Ex", vec![-0.2, -0.3])];
        let want: Vec<(String, Vec<f32>)> =
            want.into_iter().map(|(t, l)| (t.to_string(), l)).collect();
        assert_eq!(*got.lock().unwrap(), want);
        assert_eq!(out.logprobs.len(), 3);
    }

    #[test]
    fn a_hidden_hint_reaches_the_model_but_not_the_answer() {
        let (mut r, got) = runner(
            "concise-hint",
            &["first_interval=2", "hint=\" (short) \""],
            "p",
        );
        assert!(r.assistant_prefix().contains("(short)"), "at_start hint");
        let actions = feed(&mut r, &["a", " b", ".", " c"]);
        assert!(actions
            .iter()
            .any(|a| matches!(a, Action::Inject { text, .. } if text == " (short) ")));
        assert_eq!(r.model_text().matches("(short)").count(), 2);
        let out = r.finish(StopReason::EndOfGeneration);
        assert_eq!(out.text, "a b. c");
        assert_eq!(joined(&got, PieceKind::Content), "a b. c");
        assert_eq!(out.events.len(), 1);
        assert_eq!(out.events[0].strategy, "concise-hint");
    }

    #[test]
    fn budget_forces_the_answer_and_stops_when_the_box_closes() {
        let (mut r, _) = runner("budget", &["reasoning_tokens=3"], "p");
        let actions = feed(&mut r, &["a", " b"]);
        assert!(actions.is_empty());
        let actions = feed(&mut r, &[" c"]);
        assert!(
            matches!(&actions[..], [Action::Inject { text, replace_token: false }] if text.ends_with("\\boxed{"))
        );
        let actions = feed(&mut r, &["4", "2", "}"]);
        assert!(matches!(actions.last(), Some(Action::Stop(StopCause(s))) if s == "budget"));
        let out = r.finish(StopReason::Steered);
        assert_eq!(out.text, "a b c\n\nFinal answer: \\boxed{42}");
        assert_eq!(out.stop_reason, "budget");
        assert_eq!(out.reasoning_tokens, 3);
    }

    #[test]
    fn probes_are_routed_back_and_early_exit_writes_the_agreed_answer() {
        let (mut r, got) = runner("early-exit", &["every=2"], "p");
        let mut probes = Vec::new();
        for p in ["x", " =", " 7", "\n", " so"] {
            for a in r.observe(p, None, None, &[], false) {
                if let Action::Probe(req) = a {
                    assert!(req.text.ends_with("\\boxed{"));
                    probes.push(req.tag);
                }
            }
        }
        assert_eq!(probes.len(), 2);
        let result = |tag| ProbeResult {
            tag,
            fork_position: 0,
            text: "7}".into(),
            tokens: vec![1, 2],
            logprobs: vec![-0.1, -0.1],
            prefill_tokens: 6,
            end: terse_engine::ProbeEnd::StopString,
        };
        assert!(r.probe_done(&result(probes[0])).is_empty());
        let actions = r.probe_done(&result(probes[1]));
        assert!(matches!(actions.last(), Some(Action::Stop(_))));
        assert!(
            r.probe_done(&result(99)).is_empty(),
            "unknown tags are ignored"
        );
        let out = r.finish(StopReason::Steered);
        assert_eq!(out.stop_reason, "early-exit");
        assert!(
            out.text.ends_with("Final answer: \\boxed{7}"),
            "{}",
            out.text
        );
        assert_eq!(joined(&got, PieceKind::Content), out.text);
        let kinds: Vec<&str> = out.events.iter().map(|e| e.kind.as_str()).collect();
        assert_eq!(kinds, ["probe", "probe", "exit"]);
    }

    #[test]
    fn early_exit_closes_a_think_section_before_answering() {
        let (mut r, _) = runner("early-exit", &["every=1", "window=1"], "p <think>\n");
        let probe = r
            .observe("I", None, None, &[], false)
            .into_iter()
            .find_map(|a| match a {
                Action::Probe(p) => Some(p),
                _ => None,
            })
            .expect("probe");
        assert!(probe.text.contains(THINK_CLOSE));
        r.probe_done(&ProbeResult {
            tag: probe.tag,
            fork_position: 0,
            text: "3}".into(),
            tokens: vec![],
            logprobs: vec![],
            prefill_tokens: 0,
            end: terse_engine::ProbeEnd::StopString,
        });
        let out = r.finish(StopReason::Steered);
        assert_eq!(out.reasoning.as_deref(), Some("I"));
        assert_eq!(out.text, "Final answer: \\boxed{3}");
    }
}
