//! Continuous batching gives every request exactly what it gets alone: the same
//! tokens, greedy or seeded sampling, while requests join and leave the batch.

mod common;

use common::{golden, ids, load, rerun_at_other_levels};
use terse_engine::kv_cache::BLOCK_TOKENS;
use terse_engine::{EngineError, GenerationRequest, Sampler, SamplerConfig, StopReason};

fn prompts() -> Vec<Vec<u32>> {
    let g = golden("qwen2.5-coder-0.5b");
    g["greedy"]
        .as_array()
        .expect("greedy cases")
        .iter()
        .take(5)
        .map(|c| ids(&c["prompt_ids"]))
        .collect()
}

fn sampler(temperature: f32, seed: u64) -> Sampler {
    Sampler::new(SamplerConfig {
        temperature,
        seed,
        ..SamplerConfig::default()
    })
}

#[test]
fn batched_requests_generate_the_same_tokens_as_alone() {
    let mut engine = load("qwen2.5-coder-0.5b");
    let prompts = prompts();
    // Different lengths, so requests leave the batch at different steps and waiting
    // ones join a batch that is already decoding.
    let max_tokens = [24, 9, 17, 30, 12];
    for temperature in [0.0, 0.9] {
        let requests: Vec<GenerationRequest> = prompts
            .iter()
            .zip(max_tokens)
            .enumerate()
            .map(|(i, (p, n))| {
                GenerationRequest::new(p.clone(), sampler(temperature, 7 + i as u64), n)
            })
            .collect();
        let alone: Vec<Vec<u32>> = requests
            .iter()
            .map(|r| {
                let mut s = r.sampler.clone();
                engine
                    .generate(&r.prompt, &mut s, r.max_tokens, |_| true)
                    .expect("generate")
                    .0
            })
            .collect();
        let batched = engine.generate_batch(requests, 3).expect("batch");
        for (i, (result, alone)) in batched.iter().zip(&alone).enumerate() {
            let generation = result.as_ref().expect("generation");
            assert_eq!(
                &generation.tokens, alone,
                "request {i} at temperature {temperature}"
            );
            assert_eq!(generation.stats.generated_tokens, alone.len());
        }
        assert_eq!(
            engine.kv_cache().free_block_count() * BLOCK_TOKENS,
            engine.kv_cache().shape().capacity_tokens
        );
    }
}

#[test]
fn a_prompt_longer_than_the_context_fails_alone() {
    let mut engine = load("qwen2.5-coder-0.5b");
    let prompts = prompts();
    let too_long = vec![100u32; engine.ctx_size()];
    let requests = vec![
        GenerationRequest::new(prompts[0].clone(), sampler(0.0, 0), 5),
        GenerationRequest::new(too_long, sampler(0.0, 0), 5),
        GenerationRequest::new(prompts[1].clone(), sampler(0.0, 0), 0),
    ];
    let results = engine.generate_batch(requests, 4).expect("batch");
    let first = results[0].as_ref().expect("first request runs");
    assert_eq!(first.tokens.len(), 5);
    assert_eq!(first.reason, StopReason::MaxTokens);
    match &results[1] {
        Err(err @ EngineError::PromptTooLong { .. }) => {
            assert!(err.to_string().contains("2048"), "{err}")
        }
        other => panic!("expected PromptTooLong, got {other:?}"),
    }
    assert!(results[2]
        .as_ref()
        .expect("empty request")
        .tokens
        .is_empty());
}

#[test]
fn batched_requests_match_alone_at_every_other_kernel_level() {
    rerun_at_other_levels(&["batched_requests_generate_the_same_tokens_as_alone"]);
}

#[test]
fn siblings_give_the_same_tokens_as_each_seed_alone_and_prefill_the_prompt_once() {
    let mut engine = load("qwen2.5-coder-0.5b");
    let prompt = prompts()[0].clone();
    let seeds = [11u64, 12, 13, 14, 15];
    let alone: Vec<Vec<u32>> = seeds
        .iter()
        .map(|&seed| {
            let mut s = sampler(0.9, seed);
            engine
                .generate(&prompt, &mut s, 16, |_| true)
                .expect("generate")
                .0
        })
        .collect();
    // Five siblings in a batch of three: the group is split.
    let cached_prefix = prompt.len() / BLOCK_TOKENS * BLOCK_TOKENS;
    for batch in [8, 3] {
        let mut scheduler = terse_engine::BatchScheduler::new(batch);
        let requests = seeds
            .iter()
            .map(|&seed| GenerationRequest::new(prompt.clone(), sampler(0.9, seed), 16))
            .collect();
        let ids = scheduler.submit_siblings(requests);
        let before = engine.tokens_processed();
        let mut results = std::collections::HashMap::new();
        while !scheduler.is_idle() {
            for (id, result) in scheduler.step(&mut engine).expect("step") {
                results.insert(id, result.expect("generation"));
            }
        }
        let processed = (engine.tokens_processed() - before) as usize;
        let mut computed_prompt = 0;
        for (i, id) in ids.iter().enumerate() {
            let g = &results[id];
            assert_eq!(g.tokens, alone[i], "sibling {i} in a batch of {batch}");
            computed_prompt += g.usage.prompt - g.usage.prompt_cached;
        }
        let sampled: usize = results.values().map(|g| g.usage.sampled).sum();
        // Each sampled token but the last of each sequence is fed back.
        assert_eq!(processed, computed_prompt + sampled - seeds.len());
        let usage: Vec<_> = ids.iter().map(|id| results[id].usage).collect();
        if batch >= seeds.len() {
            // The prompt once, then its last token once per sibling.
            assert_eq!(computed_prompt, prompt.len() + seeds.len() - 1, "{usage:?}");
        } else {
            // Split: later ones fork the first's prefix (from the cache at worst).
            assert_eq!(usage[0].prompt_cached, 0);
            assert!(
                usage[1..].iter().all(|u| u.prompt_cached >= cached_prefix),
                "{usage:?}"
            );
        }
        scheduler.clear_prefix_cache(&mut engine).expect("clear");
        assert_eq!(
            engine.kv_cache().free_block_count() * BLOCK_TOKENS,
            engine.kv_cache().shape().capacity_tokens
        );
    }
}
