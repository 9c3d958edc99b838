//! The engine agrees with itself: a packed batch gives what each prompt gives alone,
//! and a forked sequence continues exactly as its parent would.

mod common;

use common::{golden, ids, last_logits, load, rerun_at_other_levels};
use terse_engine::sampler::argmax;
use terse_engine::{Engine, Outputs, SeqId, Span};

const STEPS: usize = 12;

/// Greedy decode of one prompt alone: tokens and the logits of every step.
fn run_alone(engine: &mut Engine, prompt: &[u32]) -> (Vec<u32>, Vec<Vec<f32>>) {
    let seq = engine.new_sequence();
    let (mut tokens, mut logits) = (Vec::new(), Vec::new());
    let mut input = prompt.to_vec();
    let mut pos = 0;
    for _ in 0..STEPS {
        let l = last_logits(engine, seq, &input, pos);
        pos += input.len();
        let t = argmax(&l);
        tokens.push(t);
        logits.push(l);
        input = vec![t];
    }
    engine.free(seq).expect("free");
    (tokens, logits)
}

fn max_rel_diff(a: &[f32], b: &[f32]) -> f32 {
    let range = a.iter().copied().fold(f32::NEG_INFINITY, f32::max)
        - a.iter().copied().fold(f32::INFINITY, f32::min);
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
        / range
}

#[test]
fn packed_batch_of_four_prompts_matches_each_prompt_alone() {
    let mut engine = load("qwen2.5-coder-0.5b");
    let g = golden("qwen2.5-coder-0.5b");
    let prompts: Vec<Vec<u32>> = g["greedy"]
        .as_array()
        .unwrap()
        .iter()
        .take(8)
        .step_by(2)
        .map(|c| ids(&c["prompt_ids"]))
        .collect();
    assert_eq!(prompts.len(), 4);
    let alone: Vec<_> = prompts.iter().map(|p| run_alone(&mut engine, p)).collect();

    let seqs: Vec<SeqId> = prompts.iter().map(|_| engine.new_sequence()).collect();
    let mut inputs: Vec<Vec<u32>> = prompts.clone();
    let mut positions = [0usize; 4];
    let mut worst = 0.0f32;
    for step in 0..STEPS {
        let spans: Vec<Span> = (0..4)
            .map(|i| Span {
                seq: seqs[i],
                tokens: &inputs[i],
                start_pos: positions[i],
                outputs: Outputs::Last,
                hidden: false,
            })
            .collect();
        let out = engine.forward(&spans).expect("packed forward");
        let mut next = Vec::new();
        for (i, (solo_tokens, solo_logits)) in alone.iter().enumerate() {
            let l = out.last_logits(i).expect("logits");
            let diff = max_rel_diff(&solo_logits[step], l);
            worst = worst.max(diff);
            assert!(
                diff < 1e-3,
                "prompt {i} step {step}: logits differ by {diff} of the logit range"
            );
            let t = argmax(l);
            assert_eq!(
                t, solo_tokens[step],
                "prompt {i} step {step}: token differs from the solo run"
            );
            next.push(t);
        }
        for ((pos, input), t) in positions.iter_mut().zip(inputs.iter_mut()).zip(next) {
            *pos += input.len();
            *input = vec![t];
        }
    }
    eprintln!("packed vs alone: worst logit difference {worst:.2e} of the range");
}

#[test]
fn forked_sequence_continues_exactly_as_the_parent() {
    let mut engine = load("qwen2.5-coder-0.5b");
    let g = golden("qwen2.5-coder-0.5b");
    let prompt = ids(&g["greedy"][2]["prompt_ids"]);
    let (tokens, logits) = run_alone(&mut engine, &prompt);

    // Parent: prompt plus the first 4 generated tokens.
    let parent = engine.new_sequence();
    let mut input = prompt.clone();
    input.extend_from_slice(&tokens[..4]);
    engine
        .forward(&[Span {
            seq: parent,
            tokens: &input,
            start_pos: 0,
            outputs: Outputs::None,
            hidden: false,
        }])
        .expect("parent prefill");
    // Fork in the middle of a cache block (prompt.len() + 2 positions), then replay.
    let fork_at = prompt.len() + 2;
    assert_ne!(
        fork_at % terse_engine::kv_cache::BLOCK_TOKENS,
        0,
        "fork point should split a block"
    );
    let child = engine.fork(parent, fork_at).expect("fork");
    let mut pos = fork_at;
    let mut feed = tokens[2..3].to_vec();
    for step in 3..STEPS {
        let l = last_logits(&mut engine, child, &feed, pos);
        pos += feed.len();
        assert!(
            max_rel_diff(&logits[step], &l) < 1e-4,
            "child step {step} differs from the solo run"
        );
        assert_eq!(argmax(&l), tokens[step]);
        feed = vec![tokens[step]];
    }
    // The parent's cache was not disturbed by the child's writes.
    let l = last_logits(&mut engine, parent, &tokens[4..5], prompt.len() + 4);
    assert!(max_rel_diff(&logits[5], &l) < 1e-4);
}

#[test]
fn a_bad_batch_changes_nothing() {
    let mut engine = load("qwen2.5-coder-0.5b");
    let seq = engine.new_sequence();
    let err = engine
        .forward(&[Span {
            seq,
            tokens: &[1, 2, 3],
            start_pos: 5,
            outputs: Outputs::Last,
            hidden: false,
        }])
        .unwrap_err();
    assert!(err.to_string().contains("position 5"), "{err}");
    let err = engine
        .forward(&[Span {
            seq,
            tokens: &[u32::MAX],
            start_pos: 0,
            outputs: Outputs::Last,
            hidden: false,
        }])
        .unwrap_err();
    assert!(err.to_string().contains("outside the vocabulary"), "{err}");
    let long = vec![1u32; engine.ctx_size() + 1];
    let err = engine
        .forward(&[Span {
            seq,
            tokens: &long,
            start_pos: 0,
            outputs: Outputs::Last,
            hidden: false,
        }])
        .unwrap_err();
    assert!(err.to_string().contains("context size"), "{err}");
    assert_eq!(engine.seq_len(seq).unwrap(), 0);
}

#[test]
fn hidden_states_come_back_when_asked() {
    let mut engine = load("qwen2.5-coder-0.5b");
    let n_embd = engine.hparams().n_embd;
    let seq = engine.new_sequence();
    let out = engine
        .forward(&[Span {
            seq,
            tokens: &[9707, 1879, 374],
            start_pos: 0,
            outputs: Outputs::All,
            hidden: true,
        }])
        .expect("forward");
    assert_eq!(out.hidden(0).len(), 3 * n_embd);
    assert_eq!(out.logits(0).len(), 3 * out.n_vocab());
    assert!(out.hidden(0).iter().all(|v| v.is_finite()));
}

#[test]
fn a_long_prompt_prefilled_in_slices_matches_one_pass() {
    let mut engine = load("qwen2.5-coder-0.5b");
    let g = golden("qwen2.5-coder-0.5b");
    let cases = g["greedy"].as_array().unwrap();
    let prompt: Vec<u32> = cases
        .iter()
        .cycle()
        .flat_map(|c| ids(&c["prompt_ids"]))
        .take(terse_engine::PREFILL_CHUNK_TOKENS + 90)
        .collect();

    let seq = engine.new_sequence();
    let one_pass = last_logits(&mut engine, seq, &prompt, 0);
    engine.free(seq).expect("free");

    // `generate` slices a prompt longer than PREFILL_CHUNK_TOKENS; its first token
    // comes from the last slice's logits.
    let mut sampler =
        terse_engine::sampler::Sampler::new(terse_engine::sampler::SamplerConfig::greedy());
    let (generated, _, stats) = engine
        .generate(&prompt, &mut sampler, 1, |_| true)
        .expect("generate");
    assert_eq!(stats.prompt_tokens, prompt.len());
    assert_eq!(generated, vec![argmax(&one_pass)]);

    let seq = engine.new_sequence();
    let (head, tail) = prompt.split_at(terse_engine::PREFILL_CHUNK_TOKENS);
    engine
        .forward(&[Span {
            seq,
            tokens: head,
            start_pos: 0,
            outputs: Outputs::None,
            hidden: false,
        }])
        .expect("first slice");
    let sliced = last_logits(&mut engine, seq, tail, head.len());
    assert!(
        one_pass
            .iter()
            .zip(&sliced)
            .all(|(a, b)| a.to_bits() == b.to_bits()),
        "slicing the prefill changed the logits (max diff {})",
        max_rel_diff(&one_pass, &sliced)
    );
}

#[test]
fn batching_changes_nothing_at_every_other_kernel_level() {
    rerun_at_other_levels(&[
        "packed_batch_of_four_prompts_matches_each_prompt_alone",
        "a_long_prompt_prefilled_in_slices_matches_one_pass",
    ]);
}
