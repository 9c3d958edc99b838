//! The HTTP surface of a real server on the default model, through reqwest: error
//! shapes and statuses, auth, the queue limit, strategy selection, the streaming
//! protocol, and cancellation of a client that leaves.

mod common;

use serde_json::{json, Value};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The open server all tests of this file share.
fn open() -> &'static str {
    static BASE: OnceLock<String> = OnceLock::new();
    BASE.get_or_init(|| common::start(common::Options::default()))
}

/// A server with a key, one sequence in the batch and no waiting queue.
fn keyed() -> &'static str {
    static BASE: OnceLock<String> = OnceLock::new();
    BASE.get_or_init(|| {
        common::start(common::Options {
            api_key: Some("sekret".into()),
            max_sequences: 1,
            max_queue: 0,
        })
    })
}

async fn post(base: &str, path: &str, body: &str) -> (u16, Value) {
    let resp = reqwest::Client::new()
        .post(format!("{base}{path}"))
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .expect("the server answers");
    let status = resp.status().as_u16();
    let text = resp.text().await.expect("a body");
    let value = serde_json::from_str(&text).unwrap_or_else(|_| json!({ "raw": text }));
    (status, value)
}

fn assert_error_shape(v: &Value) {
    let e = &v["error"];
    assert!(e["message"].is_string(), "no error.message in {v}");
    assert!(e["type"].is_string(), "no error.type in {v}");
    assert!(e.get("param").is_some() && e.get("code").is_some(), "{v}");
}

fn chat_body(extra: Value) -> String {
    let mut body = json!({
        "model": "qwen2.5-coder-0.5b",
        "messages": [{"role": "user", "content": "Say hello."}],
        "max_tokens": 8,
        "temperature": 0,
    });
    if let (Value::Object(b), Value::Object(e)) = (&mut body, extra) {
        b.extend(e);
    }
    body.to_string()
}

/// The `data:` payloads of an SSE body, in order.
fn sse_data(text: &str) -> Vec<String> {
    text.split("\n\n")
        .filter_map(|event| {
            event
                .lines()
                .find_map(|l| l.strip_prefix("data: ").or_else(|| l.strip_prefix("data:")))
                .map(|d| d.trim().to_string())
        })
        .collect()
}

/// The value of one Prometheus series (0 when it is not there yet).
async fn metric(base: &str, series: &str) -> f64 {
    let text = reqwest::get(format!("{base}/metrics"))
        .await
        .expect("metrics answer")
        .text()
        .await
        .expect("a metrics body");
    text.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|v| v.trim().parse().ok()))
        .unwrap_or(0.0)
}

#[tokio::test]
async fn health_and_the_api_are_503_while_the_model_loads() {
    let (release, wait) = std::sync::mpsc::channel::<()>();
    let base = common::start_with(
        common::Options::default(),
        Box::new(move || {
            let _ = wait.recv();
            Err("the test ended before loading".into())
        }),
    );
    assert_eq!(common::get_status(&base, "/health"), Some(503));
    let (status, body) = post(&base, "/v1/chat/completions", &chat_body(json!({}))).await;
    assert_eq!(status, 503);
    assert_error_shape(&body);
    drop(release);
}

#[tokio::test]
async fn malformed_bodies_and_bad_fields_are_400s_in_the_openai_error_shape() {
    let base = open();
    for body in [
        "{not json".to_string(),
        "".to_string(),
        "[]".to_string(),
        r#"{"messages": null}"#.to_string(),
        r#"{"messages": [{"role": "user", "content": 5}]}"#.to_string(),
        chat_body(json!({"temperature": "hot"})),
        chat_body(json!({"temperature": 3.5})),
        chat_body(json!({"n": 0})),
        chat_body(json!({"stop": [1, 2]})),
        chat_body(json!({"logprobs": true, "top_logprobs": 21})),
        chat_body(json!({"terse": {"strategy": "think-harder"}})),
        chat_body(json!({"terse": {"strategy": "budget", "reasoning_tokens": 0}})),
        chat_body(json!({"reasoning_effort": "extreme"})),
    ] {
        let (status, v) = post(base, "/v1/chat/completions", &body).await;
        assert_eq!(status, 400, "{body} → {v}");
        assert_error_shape(&v);
    }
    let (status, v) = post(base, "/v1/completions", r#"{"prompt": 12}"#).await;
    assert_eq!(status, 400, "{v}");
    let huge = format!(r#"{{"prompt": "{}"}}"#, "a".repeat(17 << 20));
    let (status, v) = post(base, "/v1/completions", &huge).await;
    assert_eq!(status, 413, "a body over 16 MiB");
    assert_error_shape(&v);
    let (status, _) = post(base, "/v1/chat/completions", &chat_body(json!({}))).await;
    assert_eq!(status, 200, "the server still serves after the 400s");
    // A max_tokens far beyond the context is capped, not an overflow.
    let (status, v) = post(
        base,
        "/v1/chat/completions",
        &chat_body(json!({"max_tokens": 1_000_000_000_000_000u64})),
    )
    .await;
    assert_eq!(status, 200, "{v}");
}

#[tokio::test]
async fn a_prompt_over_the_context_is_a_400_with_the_counts() {
    let body = json!({
        "messages": [{"role": "user", "content": "word ".repeat(2 * common::CTX)}],
        "max_tokens": 4,
    });
    let (status, v) = post(open(), "/v1/chat/completions", &body.to_string()).await;
    assert_eq!(status, 400, "{v}");
    assert_eq!(v["error"]["type"], "exceed_context_size_error");
    assert_eq!(v["error"]["n_ctx"], common::CTX);
    assert!(v["error"]["n_prompt_tokens"].as_u64().unwrap_or(0) > common::CTX as u64);
}

#[tokio::test]
async fn unknown_routes_and_models_are_404s() {
    let base = open();
    let (status, v) = post(base, "/v1/embeddings", "{}").await;
    assert_eq!(status, 404);
    assert_error_shape(&v);
    let (status, v) = post(
        base,
        "/v1/chat/completions",
        &chat_body(json!({"model": "gpt-4o"})),
    )
    .await;
    assert_eq!(status, 404);
    assert_eq!(v["error"]["code"], "model_not_found");
}

#[tokio::test]
async fn the_api_key_guards_v1_but_not_health() {
    let base = keyed();
    let client = reqwest::Client::new();
    let models = |key: Option<&str>| {
        let mut r = client.get(format!("{base}/v1/models"));
        if let Some(k) = key {
            r = r.bearer_auth(k);
        }
        r.send()
    };
    let status = |r: reqwest::Response| r.status().as_u16();
    assert_eq!(status(models(None).await.expect("answer")), 401);
    assert_eq!(status(models(Some("wrong")).await.expect("answer")), 401);
    assert_eq!(status(models(Some("sekre")).await.expect("answer")), 401);
    let ok = models(Some("sekret")).await.expect("answer");
    assert_eq!(ok.status().as_u16(), 200);
    let list: Value = ok.json().await.expect("json");
    assert_eq!(list["data"][0]["id"], "qwen2.5-coder-0.5b");
    assert_eq!(common::get_status(base, "/health"), Some(200));
}

#[tokio::test]
async fn a_full_queue_answers_429_and_frees_when_the_request_ends() {
    let base = keyed();
    let client = reqwest::Client::new();
    let send = |max_tokens: u32, stream: bool| {
        client
            .post(format!("{base}/v1/chat/completions"))
            .bearer_auth("sekret")
            .body(chat_body(
                json!({"max_tokens": max_tokens, "stream": stream,
                       "messages": [{"role": "user", "content": "Write a long story."}]}),
            ))
            .send()
    };
    let mut long = send(400, true).await.expect("the first request");
    assert_eq!(long.status().as_u16(), 200);
    // Its first chunk: it holds the only slot.
    long.chunk().await.expect("a first chunk");
    let second = send(4, false).await.expect("the second request");
    assert_eq!(second.status().as_u16(), 429);
    let v: Value = second.json().await.expect("json");
    assert_error_shape(&v);
    drop(long);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let r = send(2, false).await.expect("a later request");
        if r.status().as_u16() == 200 {
            break;
        }
        assert_eq!(r.status().as_u16(), 429);
        assert!(Instant::now() < deadline, "the slot was never freed");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn a_model_suffix_selects_the_strategy() {
    let (status, v) = post(
        open(),
        "/v1/chat/completions",
        &chat_body(json!({"model": "qwen2.5-coder-0.5b+budget",
                          "terse": {"options": {"reasoning_tokens": 2}}})),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["usage"]["terse"]["strategy"], "budget");
    // The budget cut the answer (what ended it then, the box closing or EOS, is the
    // model's choice).
    assert_eq!(v["usage"]["terse"]["events"][0]["kind"], "budget", "{v}");
    assert!(v["usage"]["terse"]["injected_tokens"].as_u64().unwrap_or(0) > 0);
    assert_eq!(v["model"], "qwen2.5-coder-0.5b+budget");
}

#[tokio::test]
async fn a_stream_has_one_id_the_role_first_one_finish_the_usage_and_done() {
    let base = open();
    let body = chat_body(json!({"max_tokens": 12}));
    let (_, whole) = post(base, "/v1/chat/completions", &body).await;
    let streamed = chat_body(json!({"max_tokens": 12, "stream": true,
                                    "stream_options": {"include_usage": true}}));
    let resp = reqwest::Client::new()
        .post(format!("{base}/v1/chat/completions"))
        .body(streamed)
        .send()
        .await
        .expect("a stream");
    assert_eq!(resp.status().as_u16(), 200);
    assert!(resp.headers()["content-type"]
        .to_str()
        .unwrap_or("")
        .starts_with("text/event-stream"));
    let data = sse_data(&resp.text().await.expect("the stream's body"));
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"));
    let chunks: Vec<Value> = data[..data.len() - 1]
        .iter()
        .map(|d| serde_json::from_str(d).expect("each chunk is JSON"))
        .collect();
    let id = &chunks[0]["id"];
    assert!(chunks.iter().all(|c| &c["id"] == id));
    assert!(chunks
        .iter()
        .all(|c| c["object"] == "chat.completion.chunk"));
    let roles = chunks
        .iter()
        .filter(|c| !c["choices"][0]["delta"]["role"].is_null())
        .count();
    assert_eq!(roles, 1);
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let finishes = chunks
        .iter()
        .filter(|c| !c["choices"][0]["finish_reason"].is_null())
        .count();
    assert_eq!(finishes, 1);
    let usage = chunks.last().expect("a usage chunk");
    assert_eq!(usage["choices"], json!([]));
    assert_eq!(usage["usage"], whole["usage"]);
    let joined: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(joined, whole["choices"][0]["message"]["content"]);
}

#[tokio::test]
async fn a_client_that_disconnects_cancels_its_generation() {
    let base = open();
    // A strategy no other test uses, so its series counts this request alone.
    let series = r#"terse_stop_reasons_total{strategy="loop-guard",reason="cancelled"}"#;
    let before = metric(base, series).await;
    let mut resp = reqwest::Client::new()
        .post(format!("{base}/v1/chat/completions"))
        .body(chat_body(json!({
            "model": "qwen2.5-coder-0.5b+loop-guard", "max_tokens": 500, "stream": true,
            "messages": [{"role": "user", "content": "Write a very long story."}]})))
        .send()
        .await
        .expect("a stream");
    resp.chunk().await.expect("a first chunk");
    resp.chunk().await.expect("a second chunk");
    drop(resp);
    // The series counts the request when the engine has ended its sequence (and freed
    // its KV cache).
    let left = Instant::now();
    while metric(base, series).await <= before {
        assert!(
            left.elapsed() < Duration::from_secs(10),
            "the generation was not cancelled within 10 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!("cancelled {:?} after the client left", left.elapsed());
}

#[tokio::test]
async fn a_think_section_comes_back_as_reasoning_content_whole_and_streamed() {
    let base = open();
    // `format=think` reads the whole output as an unclosed think section.
    let extra = json!({"max_tokens": 10, "terse": {"format": "think"}});
    let (status, v) = post(base, "/v1/chat/completions", &chat_body(extra.clone())).await;
    assert_eq!(status, 200, "{v}");
    let message = &v["choices"][0]["message"];
    let reasoning = message["reasoning_content"]
        .as_str()
        .expect("reasoning_content");
    assert!(!reasoning.is_empty());
    assert_eq!(message["reasoning"], message["reasoning_content"]);
    assert_eq!(message["content"], "");
    assert!(
        v["usage"]["completion_tokens_details"]["reasoning_tokens"]
            .as_u64()
            .unwrap_or(0)
            > 0,
        "{v}"
    );
    let mut streamed = extra;
    streamed["stream"] = json!(true);
    let resp = reqwest::Client::new()
        .post(format!("{base}/v1/chat/completions"))
        .body(chat_body(streamed))
        .send()
        .await
        .expect("a stream");
    let data = sse_data(&resp.text().await.expect("a body"));
    let joined: String = data
        .iter()
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .filter_map(|c| {
            c["choices"][0]["delta"]["reasoning_content"]
                .as_str()
                .map(String::from)
        })
        .collect();
    assert_eq!(joined.trim_end(), reasoning);
}
