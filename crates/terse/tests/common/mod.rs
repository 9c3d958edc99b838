//! Shared by the tests that run llama.cpp b11434 as the real peer: where its binaries
//! are, and a llama-server on a free loopback port that stops however a test ends; and
//! the check of a `program` record that both the local and the remote runs make.

// Each test binary uses its own subset of these helpers.
#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::{Duration, Instant};

/// The llama.cpp bin directory, built (or found) by the same script CI runs.
pub fn llama_cpp_bin_dir() -> PathBuf {
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../scripts/build-llama-cpp.sh"
    );
    let out = std::process::Command::new("bash")
        .arg(script)
        .output()
        .expect("run build-llama-cpp.sh");
    assert!(
        out.status.success(),
        "scripts/build-llama-cpp.sh failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let bin = String::from_utf8_lossy(&out.stdout)
        .lines()
        .last()
        .unwrap_or_default()
        .trim()
        .to_string();
    PathBuf::from(bin)
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// A running llama-server; stopped however the test ends.
pub struct Server(pub Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Waits for the server's /health; if it exits first, fails with the end of its log
/// (when it writes one).
pub fn wait_until_healthy(server: &mut Server, port: u16, log: Option<&Path>) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while Instant::now() < deadline {
        if let Some(status) = server.0.try_wait().expect("poll llama-server") {
            let text = log
                .and_then(|l| std::fs::read_to_string(l).ok())
                .unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            let tail = lines[lines.len().saturating_sub(20)..].join("\n");
            panic!("llama-server exited with {status} before becoming healthy:\n{tail}");
        }
        if let Ok(resp) = ureq::get(&format!("http://127.0.0.1:{port}/health")).call() {
            if resp.status() == 200 {
                return;
            }
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    panic!("llama-server on port {port} did not become healthy within 120 s");
}

/// Checks an eval record whose program answered: the answer is what its code computes,
/// boxed after the code, and the program's confidence is recorded. Returns the answer.
pub fn checked_program_answer(record: &serde_json::Value) -> String {
    let first = &record["events"][0];
    assert_eq!(first["strategy"], "program", "{record}");
    let detail = first["detail"].as_str().unwrap();
    let answer = detail
        .strip_prefix("answer = ")
        .and_then(|rest| rest.split(';').next())
        .expect("the program's answer");
    assert!(
        detail.contains("mean logprob") && first["logprob"].is_number(),
        "the program's confidence is recorded: {record}"
    );
    let output = record["output"].as_str().unwrap();
    let code = output
        .strip_suffix(&format!("\n\n\\boxed{{{answer}}}"))
        .unwrap_or_else(|| panic!("the answer is not boxed at the end: {output}"));
    let value = terse_reason::program::evaluate(code, false).expect("the code runs");
    assert_eq!(
        terse_reason::program::format_number(value),
        answer,
        "{record}"
    );
    answer.to_string()
}
