//! Proxy mode in front of a real llama.cpp server on the default model: strategy
//! `none` passes through (streamed and whole answers equal llama.cpp's own), other
//! strategies run through the remote backend, and an upstream that is down is a 502
//! naming its address.

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
