//! Proxy mode in front of a real llama.cpp server on the default model: strategy
//! `none` passes through (streamed and whole answers equal llama.cpp's own, their
//! tokens counted in `/metrics` from llama.cpp's usage), other
//! strategies run through the remote backend, an upstream that is down is a 502
//! naming its address, and an `https://` upstream is spoken to in TLS.

mod common;

use serde_json::{json, Value};

fn body(extra: Value) -> Value {
    let mut b = json!({
        "model": "qwen2.5-coder-0.5b",
        "messages": [{"role": "user", "content": "Name three colours."}],
        "max_tokens": 12,
        "temperature": 0,
    });
    if let (Value::Object(b), Value::Object(e)) = (&mut b, extra) {
        b.extend(e);
    }
    b
}

async fn post(base: &str, body: &Value) -> (u16, String) {
    let r = reqwest::Client::new()
        .post(format!("{base}/v1/chat/completions"))
        .json(body)
        .send()
        .await
        .expect("an answer");
    (r.status().as_u16(), r.text().await.expect("a body"))
}

fn content(text: &str) -> String {
    let v: Value = serde_json::from_str(text).expect("JSON");
    v["choices"][0]["message"]["content"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// The content deltas of an SSE body, joined.
fn joined(sse: &str) -> String {
    sse.lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter(|d| *d != "[DONE]")
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .filter_map(|c| {
            c["choices"][0]["delta"]["content"]
                .as_str()
                .map(String::from)
        })
        .collect()
}

async fn metrics(base: &str) -> String {
    reqwest::get(format!("{base}/metrics"))
        .await
        .expect("a metrics answer")
        .text()
        .await
        .expect("a metrics body")
}

/// The sum of a Prometheus series' samples whose labels contain `label`.
fn counter(scrape: &str, name: &str, label: &str) -> f64 {
    scrape
        .lines()
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with(' ') || rest.starts_with('{'))
                && l.contains(label)
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test]
async fn the_proxy_passes_through_and_runs_strategies_over_a_llama_cpp_server() {
    let llama = common::LlamaServer::start();
    let proxy = common::start_proxy(&llama.base);

    let (status, direct) = post(&llama.base, &body(json!({}))).await;
    assert_eq!(status, 200, "{direct}");
    let (status, proxied) = post(&proxy, &body(json!({}))).await;
    assert_eq!(status, 200, "{proxied}");
    assert_eq!(content(&proxied), content(&direct));

    let stream = body(json!({"stream": true}));
    let (_, direct_sse) = post(&llama.base, &stream).await;
    let (status, proxied_sse) = post(&proxy, &stream).await;
    assert_eq!(status, 200);
    assert_eq!(joined(&proxied_sse), joined(&direct_sse));
    assert_eq!(joined(&proxied_sse), content(&direct));
    assert!(proxied_sse.trim_end().ends_with("data: [DONE]"));
    // The proxy asked for the usage chunk to count the tokens, and took it out again.
    assert!(!proxied_sse.contains(r#""choices":[]"#), "{proxied_sse}");

    // /metrics counts the upstream's own usage of both passed-through answers.
    let whole: Value = serde_json::from_str(&direct).expect("JSON");
    let completion_tokens = whole["usage"]["completion_tokens"].as_f64().expect("usage");
    let prompt_tokens = whole["usage"]["prompt_tokens"].as_f64().expect("usage");
    let finish = whole["choices"][0]["finish_reason"]
        .as_str()
        .expect("a finish reason");
    let scrape = metrics(&proxy).await;
    assert_eq!(
        counter(&scrape, "terse_generation_tokens_total", ""),
        2.0 * completion_tokens,
        "{scrape}"
    );
    assert_eq!(
        counter(&scrape, "terse_prompt_tokens_total", ""),
        2.0 * prompt_tokens
    );
    let reason = format!("reason=\"{finish}\"");
    assert_eq!(
        counter(&scrape, "terse_stop_reasons_total", &reason),
        2.0,
        "{scrape}"
    );
    assert!(counter(&scrape, "terse_time_to_first_token_seconds_count", "") >= 1.0);
    // A client that asks for the usage chunk gets it.
    let with_usage = body(json!({"stream": true, "stream_options": {"include_usage": true}}));
    let (_, sse) = post(&proxy, &with_usage).await;
    assert!(sse.contains(r#""choices":[]"#), "{sse}");
    assert_eq!(joined(&sse), content(&direct));

    // A strategy runs through the remote backend, over llama.cpp's streamed text.
    let steered = body(json!({"model": "qwen2.5-coder-0.5b+budget",
                              "terse": {"options": {"reasoning_tokens": 2}}}));
    let (status, text) = post(&proxy, &steered).await;
    assert_eq!(status, 200, "{text}");
    let v: Value = serde_json::from_str(&text).expect("JSON");
    assert_eq!(v["usage"]["terse"]["strategy"], "budget");
    assert_eq!(v["usage"]["terse"]["events"][0]["kind"], "budget", "{v}");

    // early-exit's probes run upstream too (each a second request on the prefix).
    let question = body(json!({
        "model": "qwen2.5-coder-0.5b+early-exit",
        "messages": [{"role": "user", "content":
            "Tom has 3 boxes of 12 pencils and gives away 7 pencils. How many are left?"}],
        "max_tokens": 40,
        "terse": {"options": {"every": 16}},
    }));
    let (status, text) = post(&proxy, &question).await;
    assert_eq!(status, 200, "{text}");
    let v: Value = serde_json::from_str(&text).expect("JSON");
    assert!(
        v["usage"]["terse"]["probes"].as_u64().unwrap_or(0) >= 2,
        "{v}"
    );
    assert_eq!(v["usage"]["terse"]["events"][0]["kind"], "probe", "{v}");

    // n = 2 is fanned out as two requests.
    let (status, text) = post(&proxy, &body(json!({"n": 2}))).await;
    assert_eq!(status, 200, "{text}");
    let v: Value = serde_json::from_str(&text).expect("JSON");
    assert_eq!(v["choices"].as_array().map(Vec::len), Some(2));
}

#[tokio::test]
async fn an_upstream_that_is_down_is_a_502_naming_its_address() {
    let nowhere = format!("http://127.0.0.1:{}", common::free_port());
    let proxy = common::start_proxy(&nowhere);
    for extra in [json!({}), json!({"model": "qwen2.5-coder-0.5b+budget"})] {
        let (status, text) = post(&proxy, &body(extra)).await;
        assert_eq!(status, 502, "{text}");
        let v: Value = serde_json::from_str(&text).expect("JSON");
        let message = v["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(&nowhere), "{message}");
    }
}

#[tokio::test]
async fn an_https_upstream_is_spoken_to_in_tls() {
    // A listener that records the first byte of each connection: 0x16 opens a TLS
    // handshake record. It speaks no TLS back, so the answer is a 502.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a loopback port");
    let port = listener.local_addr().expect("its address").port();
    listener
        .set_nonblocking(true)
        .expect("a non-blocking listener");
    let first_bytes = std::thread::spawn(move || {
        use std::io::Read;
        // Gives up after 30 s, so a proxy that never connects fails the test.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        let mut seen = Vec::new();
        while seen.len() < 2 && std::time::Instant::now() < deadline {
            let Ok((mut conn, _)) = listener.accept() else {
                std::thread::sleep(std::time::Duration::from_millis(20));
                continue;
            };
            let _ = conn.set_nonblocking(false);
            let _ = conn.set_read_timeout(Some(std::time::Duration::from_secs(10)));
            let mut byte = [0u8; 1];
            if conn.read_exact(&mut byte).is_ok() {
                seen.push(byte[0]);
            }
        }
        seen
    });
    let upstream = format!("https://127.0.0.1:{port}");
    let proxy = common::start_proxy(&upstream);
    // Passed through (reqwest), then through the remote backend (ureq).
    for extra in [json!({}), json!({"model": "qwen2.5-coder-0.5b+budget"})] {
        let (status, text) = post(&proxy, &body(extra)).await;
        assert_eq!(status, 502, "{text}");
        assert!(text.contains(&upstream), "{text}");
    }
    let seen = first_bytes.join().expect("the listener thread");
    assert_eq!(seen, [0x16, 0x16], "both opened a TLS handshake");
}
