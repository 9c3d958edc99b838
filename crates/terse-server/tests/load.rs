//! A bounded load test on loopback against the local engine: concurrent streaming
//! clients all get complete, well-formed streams; with the queue limit set below the
//! load, the excess gets 429s and nothing else fails. Small on purpose (CI has two
//! cores): 16 clients × 2 requests of 8 tokens, then 8 clients against a batch of 1
//! and a queue of 1. Prints requests/s, output tokens/s and time to first token. Also
//! runs the serving benchmark, `scripts/bench-serve.py`, at a tiny scale.

mod common;

use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// One streaming request: its status, time to the first content and output tokens.
async fn stream_once(base: &str, i: usize) -> (u16, Option<Duration>, u64) {
    let start = Instant::now();
    let body = json!({
        "model": "qwen2.5-coder-0.5b",
        "messages": [{"role": "user", "content": format!("Give me fact number {i} about cats.")}],
        "max_tokens": 8,
        "temperature": 0.7,
        "seed": i,
        "stream": true,
        "stream_options": {"include_usage": true},
    });
    let mut resp = reqwest::Client::new()
        .post(format!("{base}/v1/chat/completions"))
        .json(&body)
        .send()
        .await
        .expect("the server answers");
    let status = resp.status().as_u16();
    if status != 200 {
        return (status, None, 0);
    }
    let mut text = String::new();
    let mut first = None;
    while let Some(chunk) = resp.chunk().await.expect("the stream continues") {
        text.push_str(&String::from_utf8_lossy(&chunk));
        if first.is_none() && text.contains("\"content\":\"") && text.matches("data:").count() > 1 {
            first = Some(start.elapsed());
        }
    }
    let data: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .collect();
    assert_eq!(
        data.last(),
        Some(&"[DONE]"),
        "a stream ends with [DONE]: {text}"
    );
    let chunks: Vec<Value> = data[..data.len() - 1]
        .iter()
        .map(|d| serde_json::from_str(d).expect("JSON chunks"))
        .collect();
    let finishes = chunks
        .iter()
        .filter(|c| !c["choices"][0]["finish_reason"].is_null())
        .count();
    assert_eq!(finishes, 1, "{text}");
    let tokens = chunks
        .last()
        .and_then(|c| c["usage"]["completion_tokens"].as_u64())
        .expect("a usage chunk");
    (status, first, tokens)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_streams_all_complete_and_only_the_excess_over_the_queue_gets_429s() {
    let base = common::start(common::Options::default());
    let started = Instant::now();
    let clients: Vec<_> = (0..16)
        .map(|c| {
            let base = base.clone();
            tokio::spawn(async move {
                let mut results = Vec::new();
                for r in 0..2 {
                    results.push(stream_once(&base, c * 2 + r).await);
                }
                results
            })
        })
        .collect();
    let mut ttft = Vec::new();
    let mut tokens = 0;
    let mut requests = 0;
    for client in clients {
        for (status, first, n) in client.await.expect("a client task") {
            assert_eq!(status, 200, "no request fails under the queue limit");
            ttft.extend(first);
            tokens += n;
            requests += 1;
        }
    }
    let wall = started.elapsed().as_secs_f64();
    ttft.sort();
    assert_eq!(requests, 32);
    println!(
        "load: {requests} streams in {wall:.1} s: {:.2} req/s, {:.1} output tok/s, TTFT p50 {:?} p99 {:?}",
        requests as f64 / wall,
        tokens as f64 / wall,
        percentile(&ttft, 0.5),
        percentile(&ttft, 0.99),
    );

    let small = common::start(common::Options {
        api_key: None,
        max_sequences: 1,
        max_queue: 1,
    });
    let burst: Vec<_> = (0..8)
        .map(|i| {
            let small = small.clone();
            tokio::spawn(async move { stream_once(&small, i).await.0 })
        })
        .collect();
    let mut statuses = Vec::new();
    for b in burst {
        statuses.push(b.await.expect("a burst task"));
    }
    let ok = statuses.iter().filter(|s| **s == 200).count();
    let limited = statuses.iter().filter(|s| **s == 429).count();
    assert_eq!(ok + limited, 8, "only 200s and 429s: {statuses:?}");
    assert!(ok >= 2 && limited >= 1, "{statuses:?}");
}

#[test]
fn the_serving_benchmark_script_measures_a_real_server() {
    let base = common::start(common::Options::default());
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../scripts/bench-serve.py");
    let out = std::process::Command::new("python3")
        .arg(script)
        .args(["--url", &base, "--model", "qwen2.5-coder-0.5b"])
        .args([
            "--clients",
            "2",
            "--requests",
            "4",
            "--max-tokens",
            "8",
            "--json",
        ])
        .output()
        .expect("run scripts/bench-serve.py");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "bench-serve.py failed: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_str(stdout.trim()).expect("one JSON report");
    assert_eq!(report["requests"], 4);
    assert_eq!(report["failed"], 0);
    assert!(
        report["output_tokens"].as_u64().unwrap_or(0) >= 4,
        "{report}"
    );
    assert!(
        report["ttft_p50_s"].as_f64().unwrap_or(-1.0) > 0.0,
        "{report}"
    );
}
