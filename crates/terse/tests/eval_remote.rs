//! `terse eval --backend openai` against a real llama.cpp server on loopback (built by
//! `scripts/build-llama-cpp.sh`, which CI runs before the tests), serving the same
//! default model: the remote path is tested end to end, not against a mock.

mod common;

use common::{free_port, llama_cpp_bin_dir, wait_until_healthy, Server};
use std::process::{Command, Stdio};

/// A llama.cpp server on loopback serving the 0.5B, and its `/v1` URL.
fn llama_server() -> (Server, String) {
    let model = terse_store::ModelStore::from_env()
        .unwrap()
        .resolve("qwen2.5-coder-0.5b")
        .expect("default model pulled");
    let port = free_port();
    let mut server = Server(
        Command::new(llama_cpp_bin_dir().join("llama-server"))
            .args([
                "-m",
                model.to_str().unwrap(),
                "--host",
                "127.0.0.1",
                "--port",
                &port.to_string(),
            ])
            .args(["-t", "2", "-c", "2048", "--jinja", "--parallel", "2"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start llama-server"),
    );
    wait_until_healthy(&mut server, port, None);
    (server, format!("http://127.0.0.1:{port}/v1"))
}

#[test]
fn eval_runs_against_a_llama_cpp_server() {
    let (_server, base_url) = llama_server();
    let out = std::env::temp_dir().join(format!("terse-eval-remote-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let o = Command::new(env!("CARGO_BIN_EXE_terse"))
        .args([
            "eval",
            "--backend",
            "openai",
            "--base-url",
            &base_url,
            "--dataset",
            "synthetic:d1:n2:s3",
            // Both problems in flight at once, one per server slot.
            "--concurrency",
            "2",
        ])
        .args([
            "--temperature",
            "0",
            "-n",
            "16",
            "--no-cache",
            "--out",
            out.to_str().unwrap(),
        ])
        .output()
        .expect("run terse eval");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["n"], 2);
    // Token counts come from the server's usage block.
    let mean = summary["output_tokens_mean"].as_f64().unwrap();
    assert!(mean > 0.0 && mean <= 16.0, "mean output tokens {mean}");
    let records = std::fs::read_to_string(out.join("records.jsonl")).unwrap();
    assert!(records
        .lines()
        .all(|l| l.contains("\"output\":\"") && !l.contains("\"output\":\"\"")));
}

/// `program` needs nothing a remote server lacks: its program pass and its fallback are
/// plain requests, and the interpreter runs here.
#[test]
fn a_program_runs_through_a_llama_cpp_server() {
    let (_server, base_url) = llama_server();
    let out = std::env::temp_dir().join(format!("terse-program-remote-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let o = Command::new(env!("CARGO_BIN_EXE_terse"))
        .args(["eval", "--backend", "openai", "--base-url", &base_url])
        .args(["--dataset", "synthetic:d1:n3:s9", "--concurrency", "2"])
        .args([
            "--temperature",
            "0",
            "-n",
            "96",
            "--no-cache",
            "--strategy",
            "program",
        ])
        .args(["--out", out.to_str().unwrap()])
        .output()
        .expect("run terse eval");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let records = std::fs::read_to_string(out.join("records.jsonl")).unwrap();
    let mut ran = 0;
    for line in records.lines() {
        let r: serde_json::Value = serde_json::from_str(line).unwrap();
        let first = &r["events"][0];
        assert_eq!(first["strategy"], "program", "{r}");
        if r["stop_reason"] == "program" {
            ran += 1;
            // The confidence check there also shows the server's log-probabilities arrive.
            common::checked_program_answer(&r);
        } else {
            assert_eq!(first["kind"], "fallback", "{r}");
            assert!(r["usage"]["output_tokens"].as_u64().unwrap() > 0, "{r}");
        }
    }
    assert!(ran > 0, "no program ran through the server: {records}");
}
