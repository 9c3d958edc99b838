//! `terse bench` end to end on the small Gemma model with tiny sizes: the JSON carries
//! every test with sane numbers, `--profile` names the operations, and the comparison
//! with llama.cpp runs against the real llama-bench built by `scripts/build-llama-cpp.sh`.

mod common;

use common::llama_cpp_bin_dir;
use serde_json::Value;
use std::process::{Command, Output};

const MODEL: &str = "gemma3-270m";

fn terse_bench(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_terse"))
        .args(["bench", "-m", MODEL, "-t", "2", "-r", "1"])
        .args(args)
        .output()
        .expect("run terse")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Parses stdout as the JSON array `--json` promises (nothing else on stdout).
fn json_tests(o: &Output) -> Vec<Value> {
    assert!(o.status.success(), "terse bench failed: {}", stderr(o));
    match serde_json::from_str(&stdout(o)) {
        Ok(Value::Array(tests)) => tests,
        other => panic!("stdout is not a JSON array ({other:?}): {}", stdout(o)),
    }
}

fn number(test: &Value, field: &str) -> f64 {
    test[field]
        .as_f64()
        .unwrap_or_else(|| panic!("{field} missing or not a number in {test}"))
}

fn test_named<'a>(tests: &'a [Value], name: &str) -> &'a Value {
    tests
        .iter()
        .find(|t| t["test"] == name)
        .unwrap_or_else(|| panic!("no test {name} in {tests:?}"))
}

#[test]
fn json_has_every_test_with_positive_speeds() {
    let o = terse_bench(&[
        "-p",
        "16",
        "-n",
        "4",
        "--mixed",
        "2",
        "--mixed-gen",
        "2",
        "--warmup",
        "0",
        "--json",
    ]);
    let tests = json_tests(&o);
    let names: Vec<&str> = tests.iter().filter_map(|t| t["test"].as_str()).collect();
    assert_eq!(
        names,
        ["pp16", "tg4", "mixed2 sequential", "mixed2 batched"]
    );
    for t in &tests {
        let (median, min, max) = (
            number(t, "tokens_per_s_median"),
            number(t, "tokens_per_s_min"),
            number(t, "tokens_per_s_max"),
        );
        assert!(min > 0.0 && min <= median && median <= max, "{t}");
        assert_eq!(t["n_threads"], 2, "{t}");
        assert_eq!(t["repetitions"], 1, "{t}");
        let level = t["kernels"].as_str().unwrap_or_default();
        assert!(["scalar", "avx2", "avx512"].contains(&level), "{t}");
        for field in [
            "bytes_per_token",
            "memory_bandwidth_bytes_per_s",
            "bandwidth_limit_tokens_per_s",
            "model_size_bytes",
            "kv_cache_bytes",
        ] {
            assert!(number(t, field) > 0.0, "{field} in {t}");
        }
        if cfg!(target_os = "linux") {
            assert!(number(t, "peak_rss_bytes") > 0.0, "{t}");
        }
        assert!(t.get("llama_cpp_tokens_per_s_median").is_none(), "{t}");
        assert!(t.get("profile").is_none(), "{t}");
    }
    let pp = test_named(&tests, "pp16");
    assert_eq!(pp["n_tokens"], 16);
    assert!(pp.get("percent_of_bandwidth_limit").is_none());
    let tg = test_named(&tests, "tg4");
    assert_eq!(tg["n_tokens"], 4);
    assert!(number(tg, "percent_of_bandwidth_limit") > 0.0);
    // Prompts of 32 and 256 tokens, two generated tokens each.
    let batched = test_named(&tests, "mixed2 batched");
    assert_eq!(batched["n_tokens"], 32 + 256 + 2 * 2);
    assert!(number(batched, "speedup_over_sequential") > 0.0);
    assert!(
        stderr(&o).contains("pp16 run 1/1"),
        "progress goes to stderr"
    );
}

#[test]
fn profile_shows_where_the_time_goes() {
    let o = terse_bench(&["-p", "16", "-n", "2", "--profile"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    assert!(text.contains("| model | size | params | threads | test | t/s |"));
    assert!(text.contains("memory read bandwidth"), "{text}");
    for section in ["profile of pp16", "profile of tg2"] {
        assert!(text.contains(section), "no {section:?} in {text}");
    }
    for kind in [
        "| matmul ",
        "| quantize activations |",
        "| attention |",
        "| rms norm |",
        "| rope |",
        "| kv store |",
        "| ffn activation |",
        "| embedding |",
        "| output head ",
        "| argmax |",
        "| outside timed ops |",
    ] {
        assert!(text.contains(kind), "no {kind:?} in {text}");
    }
}

#[test]
fn missing_llama_bench_is_a_one_line_error_naming_it() {
    let o = terse_bench(&[
        "-p",
        "16",
        "-n",
        "0",
        "--compare-llama-cpp",
        "/nonexistent/llama-bench",
    ]);
    assert_eq!(o.status.code(), Some(1), "stdout: {}", stdout(&o));
    let err = stderr(&o);
    assert!(!err.contains("panicked"), "{err}");
    let errors: Vec<&str> = err.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(errors.len(), 1, "{err}");
    assert!(errors[0].contains("/nonexistent/llama-bench"), "{err}");
    assert!(
        !err.contains("warm-up"),
        "checked before any test runs: {err}"
    );
}

#[test]
fn kernels_flag_forces_the_level_and_rejects_unknown_ones() {
    let o = terse_bench(&[
        "-p",
        "16",
        "-n",
        "0",
        "--warmup",
        "0",
        "--kernels",
        "scalar",
        "--json",
    ]);
    let tests = json_tests(&o);
    assert_eq!(tests[0]["kernels"], "scalar", "{}", stderr(&o));

    let o = terse_bench(&["-p", "16", "-n", "0", "--kernels", "avx3"]);
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(
        err.contains("avx3") && err.contains("scalar, avx2, avx512") && !err.contains("panicked"),
        "{err}"
    );
}

#[test]
fn nothing_to_run_is_an_error() {
    let o = terse_bench(&["-p", "0", "-n", "0"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("error: nothing to run"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn compares_with_the_real_llama_bench() {
    let llama_bench = llama_cpp_bin_dir().join("llama-bench");
    let o = terse_bench(&[
        "-p",
        "16",
        "-n",
        "4",
        "--json",
        "--compare-llama-cpp",
        &llama_bench.to_string_lossy(),
    ]);
    let tests = json_tests(&o);
    assert_eq!(tests.len(), 2);
    for t in &tests {
        let llama = number(t, "llama_cpp_tokens_per_s_median");
        let ratio = number(t, "ratio");
        assert!(llama > 0.0 && ratio > 0.0, "{t}");
        let expected = number(t, "tokens_per_s_median") / llama;
        assert!((ratio - expected).abs() < 1e-9 * expected, "{t}");
    }
}
