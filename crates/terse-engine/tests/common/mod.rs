//! Shared by the engine's end-to-end tests: real model files from the local cache and
//! the golden llama.cpp fixtures.

// Each test binary uses its own subset of these helpers.
#![allow(dead_code)]

use serde_json::Value;
use std::io::Write;
use std::path::PathBuf;
use std::process::Command;
use terse_engine::{Engine, EngineOptions, Outputs, SeqId, Span};

/// Path of a pulled default model. Fails loudly when missing: CI pulls the models first
/// (`terse models pull all`), and model tests must never be skipped silently.
pub fn model_path(alias: &str) -> PathBuf {
    let store = terse_store::ModelStore::from_env().expect("model cache location");
    match store.resolve(alias) {
        Ok(path) => path,
        Err(e) => panic!("model {alias} is not available ({e}); run `cargo run --release -p terse -- models pull {alias}`"),
    }
}

pub fn load(alias: &str) -> Engine {
    Engine::load(
        model_path(alias),
        &EngineOptions {
            threads: 2,
            ctx_size: 2048,
            kv_capacity_tokens: 0,
        },
    )
    .unwrap_or_else(|e| panic!("loading {alias}: {e}"))
}

pub fn golden(alias: &str) -> Value {
    let path = format!(
        "{}/../../tests/fixtures/golden/{alias}.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

pub fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .expect("array of ids")
        .iter()
        .map(|x| x.as_u64().expect("id") as u32)
        .collect()
}

/// Runs `tokens` on `seq` from `start_pos` and returns the logits of the last one.
pub fn last_logits(engine: &mut Engine, seq: SeqId, tokens: &[u32], start_pos: usize) -> Vec<f32> {
    let out = engine
        .forward(&[Span {
            seq,
            tokens,
            start_pos,
            outputs: Outputs::Last,
            hidden: false,
        }])
        .expect("forward");
    out.last_logits(0).expect("logits").to_vec()
}

/// Runs the named tests of this test binary again in a child process for every
/// other SIMD kernel level this CPU runs (a process runs at one level), and
/// fails if any fails there. Levels the CPU lacks are reported as not tested;
/// the scalar level as not run: its matmuls take one row pair at a time, so
/// batching cannot reach its results (the kernels' matmul test checks that),
/// and these tests would take minutes on it.
pub fn rerun_at_other_levels(tests: &[&str]) {
    let current = terse_kernels::level();
    let report = |line: String| {
        let _ = writeln!(std::io::stderr(), "{line}");
    };
    for level in terse_kernels::Level::ALL {
        if level == current {
            continue;
        }
        if !level.is_supported() {
            report(format!(
                "NOT TESTED: {tests:?} at level {level}: this CPU lacks it"
            ));
            continue;
        }
        if level == terse_kernels::Level::Scalar {
            report(format!("NOT RUN: {tests:?} at level scalar (one pair per call: batch-invariant by construction)"));
            continue;
        }
        let exe = std::env::current_exe().expect("the test binary");
        let out = Command::new(exe)
            .args(tests)
            .args(["--exact", "--test-threads", "1"])
            .env(terse_kernels::LEVEL_ENV, level.name())
            .output()
            .expect("rerun the test binary");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && stdout.contains(&format!("{} passed", tests.len())),
            "at level {level}:\n{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        report(format!("passed at level {level} too: {tests:?}"));
    }
}
