//! The steering seam on a real model: steering that does nothing changes nothing,
//! probes never change their parent, injected text is exactly as if it had been in
//! the prompt, steered requests give the same tokens batched as alone, every probe
//! token is counted as the engine computed it, and the prefix cache changes no token.

mod common;

use common::load;
use std::sync::{Arc, Mutex};
use terse_engine::kv_cache::BLOCK_TOKENS;
use terse_engine::sampler::argmax;
use terse_engine::{
    Action, ChatMessage, Engine, Generation, GenerationRequest, Outputs, ProbeEnd, ProbeRequest,
    ProbeResult, Sampler, SamplerConfig, Span, Steering, SteeringReserve, StopCause, StopReason,
    TokenEvent,
};

/// Chat prompts whose answers run longer than the tests generate.
fn prompts(engine: &Engine) -> Vec<Vec<u32>> {
    [
        "Explain step by step how to compute 17 * 23.",
        "Write a short story about a lighthouse keeper.",
        "List ten uses of a paperclip, one per line.",
        "A train travels 60 km in 45 minutes. What is its speed in km/h? Think step by step.",
    ]
    .iter()
    .map(|q| {
        let text = engine
            .render_chat(&[ChatMessage::new("user", *q)], true)
            .expect("template");
        engine.tokenizer().encode(&text, false, true)
    })
    .collect()
}

fn greedy() -> Sampler {
    Sampler::new(SamplerConfig::greedy())
}

fn run(engine: &mut Engine, requests: Vec<GenerationRequest>, batch: usize) -> Vec<Generation> {
    engine
        .generate_batch(requests, batch)
        .expect("batch")
        .into_iter()
        .map(|r| r.expect("generation"))
        .collect()
}

/// Does nothing, through every hook.
struct Idle;
impl Steering for Idle {}

/// What a steering object saw, shared with the test.
#[derive(Default)]
struct Seen {
    tokens: Vec<u32>,
    pieces: String,
    probes: Vec<ProbeResult>,
    /// Logits at each sampling step.
    logits: Vec<Vec<f32>>,
    injected: Vec<Vec<u32>>,
}

/// Probes every `every` sampled tokens; optionally injects text after a given token
/// and stops after another.
struct Scripted {
    seen: Arc<Mutex<Seen>>,
    probe_every: usize,
    inject_after: Option<(usize, String)>,
    stop_after: Option<usize>,
}

impl Scripted {
    fn new(probe_every: usize) -> (Self, Arc<Mutex<Seen>>) {
        let seen = Arc::new(Mutex::new(Seen::default()));
        (
            Scripted {
                seen: seen.clone(),
                probe_every,
                inject_after: None,
                stop_after: None,
            },
            seen,
        )
    }
}

const PROBE_TEXT: &str = "\nSo the answer is";
const PROBE_TOKENS: usize = 5;

impl Steering for Scripted {
    fn reserve(&self) -> SteeringReserve {
        SteeringReserve {
            injected_tokens: 64,
            live_probes: 8,
            probe_tokens: 16,
        }
    }

    fn adjust_logits(&mut self, logits: &mut [f32]) {
        self.seen.lock().unwrap().logits.push(logits.to_vec());
    }

    fn on_token(&mut self, event: &TokenEvent<'_>, actions: &mut Vec<Action>) {
        let mut seen = self.seen.lock().unwrap();
        seen.tokens.push(event.token);
        seen.pieces.push_str(event.piece);
        if self.probe_every > 0 && event.sampled.is_multiple_of(self.probe_every) {
            actions.push(Action::Probe(ProbeRequest {
                tag: event.sampled as u64,
                text: PROBE_TEXT.into(),
                max_tokens: PROBE_TOKENS,
                stop: vec![".".into()],
            }));
        }
        if let Some((after, text)) = &self.inject_after {
            if event.sampled == *after {
                actions.push(Action::Inject {
                    text: text.clone(),
                    replace_token: false,
                });
            }
        }
        if self.stop_after == Some(event.sampled) {
            actions.push(Action::Stop(StopCause("test".into())));
        }
    }

    fn on_injected(&mut self, tokens: &[u32]) {
        self.seen.lock().unwrap().injected.push(tokens.to_vec());
    }

    fn on_probe(&mut self, result: &ProbeResult, _actions: &mut Vec<Action>) {
        self.seen.lock().unwrap().probes.push(result.clone());
    }
}

fn request(
    prompt: &[u32],
    max_tokens: usize,
    steering: Option<Box<dyn Steering>>,
) -> GenerationRequest {
    GenerationRequest {
        steering,
        ..GenerationRequest::new(prompt.to_vec(), greedy(), max_tokens)
    }
}

#[test]
fn a_steering_object_that_does_nothing_gives_the_same_tokens_as_no_steering() {
    let mut engine = load("qwen2.5-coder-0.5b");
    let prompts = prompts(&engine);
    for temperature in [0.0, 0.9] {
        let make = |steering: bool| -> Vec<GenerationRequest> {
            prompts
                .iter()
                .enumerate()
                .map(|(i, p)| GenerationRequest {
                    steering: steering.then(|| Box::new(Idle) as Box<dyn Steering>),
                    ..GenerationRequest::new(
                        p.clone(),
                        Sampler::new(SamplerConfig {
                            temperature,
                            seed: 3 + i as u64,
                            ..SamplerConfig::default()
                        }),
                        20,
                    )
                })
                .collect()
        };
        let plain = run(&mut engine, make(false), 4);
        let steered = run(&mut engine, make(true), 4);
        for (a, b) in plain.iter().zip(&steered) {
            assert_eq!(a.tokens, b.tokens, "temperature {temperature}");
            assert_eq!(a.reason, b.reason);
            assert_eq!(a.usage, b.usage);
        }
    }
}

#[test]
fn a_probe_leaves_the_parent_continuation_unchanged() {
    let mut engine = load("qwen2.5-coder-0.5b");
    let prompt = &prompts(&engine)[0];
    let plain = run(&mut engine, vec![request(prompt, 40, None)], 1);
    let (probing, seen) = Scripted::new(4);
    let probed = run(
        &mut engine,
        vec![request(prompt, 40, Some(Box::new(probing)))],
        1,
    );
    assert_eq!(plain[0].tokens, probed[0].tokens);

    let seen = seen.lock().unwrap();
    assert!(
        seen.probes.len() >= 8,
        "{} probes finished",
        seen.probes.len()
    );
    // A probe forked after token k continues the parent's first k tokens with the probe
    // text: the same as a fresh prompt holding all of that.
    let tokenizer = engine.tokenizer().clone();
    let probe_tokens = tokenizer.encode(PROBE_TEXT, false, true);
    for probe in seen.probes.iter().take(3) {
        let k = probe.tag as usize;
        assert_eq!(probe.fork_position, prompt.len() + k);
        assert_eq!(probe.prefill_tokens, probe_tokens.len());
        let mut fresh: Vec<u32> = prompt.clone();
        fresh.extend_from_slice(&plain[0].tokens[..k]);
        fresh.extend_from_slice(&probe_tokens);
        let expected = greedy_continuation(&mut engine, &fresh, probe.tokens.len());
        assert_eq!(probe.tokens, expected, "probe after token {k}");
        assert!(matches!(
            probe.end,
            ProbeEnd::StopString | ProbeEnd::MaxTokens | ProbeEnd::EndOfGeneration
        ));
    }
}

/// Greedy tokens after `prompt`, computed by plain forward passes.
fn greedy_continuation(engine: &mut Engine, prompt: &[u32], n: usize) -> Vec<u32> {
    let seq = engine.new_sequence();
    let mut input = prompt.to_vec();
    let mut pos = 0;
    let mut out = Vec::new();
    for _ in 0..n {
        let step = engine
            .forward(&[Span {
                seq,
                tokens: &input,
                start_pos: pos,
                outputs: Outputs::Last,
                hidden: false,
            }])
            .expect("forward");
        let t = argmax(step.last_logits(0).expect("logits"));
        pos += input.len();
        out.push(t);
        input = vec![t];
    }
    engine.free(seq).expect("free");
    out
}

#[test]
fn injected_text_gives_the_same_next_token_logits_as_the_same_text_in_the_prompt() {
    let mut engine = load("qwen2.5-coder-0.5b");
    let prompt = &prompts(&engine)[1];
    let hint = " Let me keep it short.";
    let (mut scripted, seen) = Scripted::new(0);
    scripted.inject_after = Some((3, hint.into()));
    let steered = run(
        &mut engine,
        vec![request(prompt, 6, Some(Box::new(scripted)))],
        1,
    );
    let seen = seen.lock().unwrap();
    let hint_tokens = engine.tokenizer().encode(hint, false, true);
    assert_eq!(seen.injected, vec![hint_tokens.clone()]);
    assert_eq!(steered[0].usage.injected, hint_tokens.len());
    // The sequence holds 3 sampled tokens, the hint, then what followed.
    assert_eq!(
        &steered[0].tokens[3..3 + hint_tokens.len()],
        hint_tokens.as_slice()
    );

    let mut fresh = prompt.clone();
    fresh.extend_from_slice(&steered[0].tokens[..3 + hint_tokens.len()]);
    let seq = engine.new_sequence();
    let out = engine
        .forward(&[Span {
            seq,
            tokens: &fresh,
            start_pos: 0,
            outputs: Outputs::Last,
            hidden: false,
        }])
        .expect("forward");
    let expected = out.last_logits(0).expect("logits").to_vec();
    engine.free(seq).expect("free");
    // The 4th sampling step is the first after the hint.
    let after_hint = &seen.logits[3];
    let range = expected.iter().copied().fold(f32::MIN, f32::max)
        - expected.iter().copied().fold(f32::MAX, f32::min);
    let worst = expected
        .iter()
        .zip(after_hint)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert!(
        worst / range < 1e-3,
        "logits differ by {} of the range",
        worst / range
    );
    assert_eq!(argmax(after_hint), argmax(&expected));
}

#[test]
fn steered_requests_batched_together_give_the_same_tokens_as_alone() {
    let mut engine = load("qwen2.5-coder-0.5b");
    let prompts = prompts(&engine);
    let make = || -> (Vec<GenerationRequest>, Vec<Arc<Mutex<Seen>>>) {
        prompts
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let (mut s, seen) = Scripted::new(3 + i);
                s.inject_after = Some((5 + i, " OK.".into()));
                s.stop_after = Some(18 + 2 * i);
                (request(p, 30, Some(Box::new(s) as Box<dyn Steering>)), seen)
            })
            .unzip()
    };
    let (requests, seen_alone) = make();
    let alone: Vec<Generation> = requests
        .into_iter()
        .flat_map(|r| run(&mut engine, vec![r], 1))
        .collect();
    let (requests, seen_batched) = make();
    let batched = run(&mut engine, requests, 4);
    for i in 0..prompts.len() {
        assert_eq!(alone[i].tokens, batched[i].tokens, "request {i}");
        assert_eq!(alone[i].reason, StopReason::Steered);
        assert_eq!(alone[i].usage, batched[i].usage, "request {i}");
        let (a, b) = (
            seen_alone[i].lock().unwrap(),
            seen_batched[i].lock().unwrap(),
        );
        assert_eq!(a.probes, b.probes, "probes of request {i}");
        assert_eq!(a.pieces, b.pieces);
    }
    assert_eq!(
        engine.kv_cache().free_block_count() * BLOCK_TOKENS,
        engine.kv_cache().shape().capacity_tokens,
        "every sequence and probe was freed"
    );
}

#[test]
fn probe_and_injected_token_counts_equal_what_the_engine_computed() {
    let mut engine = load("qwen2.5-coder-0.5b");
    let prompt = &prompts(&engine)[2];
    let (mut s, seen) = Scripted::new(5);
    s.inject_after = Some((7, " Fine.".into()));
    let before = engine.tokens_processed();
    let g = run(&mut engine, vec![request(prompt, 32, Some(Box::new(s)))], 1).remove(0);
    let processed = (engine.tokens_processed() - before) as usize;
    let seen = seen.lock().unwrap();
    let u = g.usage;
    assert_eq!(u.prompt, prompt.len());
    assert_eq!(u.prompt_cached, 0);
    assert_eq!(u.sampled, 32);
    assert!(u.probes >= 5);
    assert_eq!(
        u.probe_prefill,
        u.probes * engine.tokenizer().encode(PROBE_TEXT, false, true).len()
    );
    // Probes still running when the parent ended were freed with it; their decoded
    // tokens are counted all the same.
    let finished_decoded: usize = seen.probes.iter().map(|p| p.tokens.len()).sum();
    assert!(u.probe_decoded >= finished_decoded);
    // Every pass row is an input token: the prompt, each sampled token but the last
    // (never fed), the injected text, each probe's text and each probe token fed back.
    let fed_probe_tokens = u.probe_decoded - u.probes;
    assert_eq!(
        processed,
        u.prompt + (u.sampled - 1) + u.injected + u.probe_prefill + fed_probe_tokens,
        "usage {u:?}"
    );
    // Each pass's time is split by the rows each sequence fed it, so the probes get
    // some of it and never all of it (the parent fed every pass they ran in). Their
    // share of the whole is not bounded by their share of the rows: passes differ in
    // time per row (a prefill pass against a one-row decode), and on a loaded machine
    // in time at all, so a bound on it would test the machine, not the split.
    let st = &g.stats;
    assert!(st.probe_forward_time > std::time::Duration::ZERO, "{st:?}");
    assert!(st.probe_forward_time < st.forward_time, "{st:?}");
}

#[test]
fn a_prefix_from_the_cache_gives_the_same_tokens_and_is_not_computed_again() {
    let mut engine = load("qwen2.5-coder-0.5b");
    let prompts = prompts(&engine);
    // Two prompts sharing a long prefix (the first prompt, twice over).
    let mut shared = prompts[0].clone();
    shared.extend_from_slice(&prompts[0]);
    let mut a = shared.clone();
    a.extend_from_slice(&prompts[1]);
    let mut b = shared.clone();
    b.extend_from_slice(&prompts[2]);
    let cold: Vec<Generation> = [&a, &b]
        .iter()
        .flat_map(|p| run(&mut engine, vec![request(p, 12, None)], 1))
        .collect();

    // One scheduler, one request at a time: the second finds the first's prefix.
    let before = engine.tokens_processed();
    let warm = run(
        &mut engine,
        vec![request(&a, 12, None), request(&b, 12, None)],
        1,
    );
    let processed = (engine.tokens_processed() - before) as usize;
    assert_eq!(warm[0].tokens, cold[0].tokens);
    assert_eq!(warm[1].tokens, cold[1].tokens);
    assert_eq!(warm[0].usage.prompt_cached, 0);
    let cached = warm[1].usage.prompt_cached;
    assert!(
        cached >= shared.len() / BLOCK_TOKENS * BLOCK_TOKENS,
        "{cached} cached"
    );
    assert_eq!(processed, a.len() + b.len() - cached + 2 * 11);
}

#[test]
fn the_prompt_hidden_state_reaches_the_steering_object() {
    struct Hidden(Arc<Mutex<Vec<f32>>>);
    impl Steering for Hidden {
        fn wants_prompt_hidden(&self) -> bool {
            true
        }
        fn on_prompt_hidden(&mut self, hidden: &[f32]) {
            *self.0.lock().unwrap() = hidden.to_vec();
        }
    }
    let mut engine = load("qwen2.5-coder-0.5b");
    let prompt = &prompts(&engine)[0];
    let got = Arc::new(Mutex::new(Vec::new()));
    run(
        &mut engine,
        vec![request(prompt, 2, Some(Box::new(Hidden(got.clone()))))],
        1,
    );
    let seq = engine.new_sequence();
    let out = engine
        .forward(&[Span {
            seq,
            tokens: prompt,
            start_pos: 0,
            outputs: Outputs::Last,
            hidden: true,
        }])
        .expect("forward");
    let expected = out.hidden(0).to_vec();
    engine.free(seq).expect("free");
    let got = got.lock().unwrap();
    assert_eq!(got.len(), engine.hparams().n_embd);
    assert_eq!(*got, expected);
}
