//! `terse serve` as a user starts it: the flags parse, it listens, turns healthy, takes
//! its key from `TERSE_API_KEY`, reads its model flags, strategy presets and the served
//! model's own presets from `--config` and answers a chat on the default model.

mod common;

use std::process::{Command, Stdio};

#[test]
fn terse_serve_listens_takes_the_key_from_the_environment_and_its_settings_from_its_config() {
    let port = common::free_port();
    let config = std::env::temp_dir().join(format!("terse-serve-{port}.toml"));
    std::fs::write(
        &config,
        "[server]\nmodel = \"qwen2.5-coder-0.5b\"\nctx_size = 512\nthreads = 2\n\
         [preset.tiny]\nstrategy = \"budget\"\n[preset.tiny.budget]\nreasoning_tokens = 50\n\
         [models.\"qwen2.5-coder-0.5b\"]\nstrategy = \"loop-guard\"\n\
         [models.\"qwen2.5-coder-0.5b\".preset.tiny]\nstrategy = \"budget\"\n\
         [models.\"qwen2.5-coder-0.5b\".preset.tiny.budget]\nreasoning_tokens = 2\n\
         [models.\"qwen2.5-coder-1.5b\"]\nstrategy = \"program\"\n",
    )
    .expect("write the config");
    let log = std::env::temp_dir().join(format!("terse-serve-{port}.log"));
    let log_file = std::fs::File::create(&log).expect("a log file");
    let child = Command::new(env!("CARGO_BIN_EXE_terse"))
        .args(["serve", "--port", &port.to_string()])
        .args(["--max-sequences", "2", "--max-queue", "4", "-n", "6"])
        .arg("--config")
        .arg(&config)
        .env("TERSE_API_KEY", "cli-key")
        .stdout(Stdio::null())
        .stderr(log_file)
        .spawn()
        .expect("start terse serve");
    let mut server = common::Server(child);
    common::wait_until_healthy(&mut server, port, Some(&log));
    let base = format!("http://127.0.0.1:{port}");
    match ureq::get(&format!("{base}/v1/models")).call() {
        Err(ureq::Error::Status(code, _)) => assert_eq!(code, 401),
        other => panic!("expected a 401 without the key, got {other:?}"),
    }
    let body = serde_json::json!({
        "model": "qwen2.5-coder-0.5b",
        "messages": [{"role": "user", "content": "Say hi."}],
        "temperature": 0,
    });
    let resp = ureq::post(&format!("{base}/v1/chat/completions"))
        .set("Authorization", "Bearer cli-key")
        .set("Content-Type", "application/json")
        .send_string(&body.to_string())
        .expect("a chat answer");
    let v: serde_json::Value =
        serde_json::from_str(&resp.into_string().expect("a body")).expect("JSON");
    assert!(v["choices"][0]["message"]["content"].is_string(), "{v}");
    // The served model's table sets the strategy of a request that names none; the
    // 1.5B's table is not used.
    assert_eq!(v["usage"]["terse"]["strategy"], "loop-guard", "{v}");
    // `-n 6` is the default max_tokens.
    assert!(
        v["usage"]["completion_tokens"].as_u64().unwrap_or(99) <= 6,
        "{v}"
    );
    let preset = serde_json::json!({
        "model": "qwen2.5-coder-0.5b+tiny",
        "messages": [{"role": "user", "content": "Say hi."}],
        "temperature": 0,
    });
    let resp = ureq::post(&format!("{base}/v1/chat/completions"))
        .set("Authorization", "Bearer cli-key")
        .send_string(&preset.to_string())
        .expect("a chat answer with the preset");
    let v: serde_json::Value =
        serde_json::from_str(&resp.into_string().expect("a body")).expect("JSON");
    assert_eq!(v["usage"]["terse"]["strategy"], "budget", "{v}");
    // The served model's preset (a budget of 2 reasoning tokens, not the top level's
    // 50) cut the answer.
    assert_eq!(v["usage"]["terse"]["events"][0]["kind"], "budget", "{v}");
    // `ctx_size = 512` from the config: a longer prompt is refused with the counts.
    let long = serde_json::json!({
        "model": "qwen2.5-coder-0.5b",
        "messages": [{"role": "user", "content": "one two three ".repeat(200)}],
    });
    match ureq::post(&format!("{base}/v1/chat/completions"))
        .set("Authorization", "Bearer cli-key")
        .send_string(&long.to_string())
    {
        Err(ureq::Error::Status(400, resp)) => {
            let text = resp.into_string().expect("a body");
            assert!(
                text.contains("exceed_context_size_error") && text.contains("512"),
                "{text}"
            );
        }
        other => panic!("expected a 400 for a prompt over 512 tokens, got {other:?}"),
    }
}
