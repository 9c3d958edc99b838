//! The reasoning controllers on real models: budgets hold, a think section prompted
//! into a default model is found and closed, the command line reports usage and
//! refuses bad strategies in one line, `early-exit` on a real llama.cpp server
//! reaches the same decision as on the local engine, and a JSON-constrained answer is
//! JSON on both.

mod common;

use common::{free_port, llama_cpp_bin_dir, wait_until_healthy, Server};
use std::process::{Command, Stdio};
use terse_engine::{Engine, EngineOptions};
use terse_reason::{
    Backend, ChatMessage, Completion, CompletionRequest, Grammar, LocalBackend, OpenAiBackend,
    Prompt, SamplerConfig, StrategySpec,
};

const QUESTION: &str = "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. How many clips did Natalia sell altogether in April and May?\nPlease reason step by step, and put your final answer within \\boxed{}.";

fn model(alias: &str) -> std::path::PathBuf {
    terse_store::ModelStore::from_env()
        .expect("model cache")
        .resolve(alias)
        .unwrap_or_else(|e| panic!("{alias} not pulled ({e}); run `terse models pull {alias}`"))
}

fn local(alias: &str) -> LocalBackend {
    let engine = Engine::load(
        model(alias),
        &EngineOptions {
            threads: 2,
            ctx_size: 2048,
            kv_capacity_tokens: 4096,
        },
    )
    .expect("load");
    LocalBackend::new(engine, 2).expect("backend")
}

fn request(
    messages: Vec<ChatMessage>,
    max_tokens: usize,
    strategy: &str,
    options: &[&str],
) -> CompletionRequest {
    let options: Vec<String> = options.iter().map(|s| s.to_string()).collect();
    CompletionRequest {
        strategy: StrategySpec::parse(strategy, &options).expect("strategy"),
        ..CompletionRequest::chat(messages, SamplerConfig::greedy(), max_tokens)
    }
}

fn probe_answers(c: &Completion) -> Vec<(u64, String)> {
    c.events
        .iter()
        .filter(|e| e.kind == "probe")
        .map(|e| (e.at_token, e.detail.clone().unwrap_or_default()))
        .collect()
}

#[test]
fn budget_never_decodes_more_reasoning_than_its_cap() {
    let backend = local("qwen2.5-coder-0.5b");
    for cap in [8, 40] {
        let c = backend
            .complete(&request(
                vec![ChatMessage::new("user", QUESTION)],
                300,
                "budget",
                &[&format!("reasoning_tokens={cap}")],
            ))
            .expect("complete");
        assert_eq!(c.stop_reason, "budget", "{c:?}");
        assert_eq!(c.usage.reasoning_tokens, cap as u64);
        assert!(c.usage.answer_tokens <= 16, "{:?}", c.usage);
        assert_eq!(
            c.usage.output_tokens,
            c.usage.reasoning_tokens + c.usage.answer_tokens
        );
        assert!(c.text.contains("Final answer: \\boxed{"), "{}", c.text);
        assert!(c.usage.injected_tokens > 0);
    }
}

#[test]
fn a_think_section_prompted_into_a_default_model_is_split_and_closed_by_the_budget() {
    let backend = local("qwen2.5-coder-1.5b");
    // What an R1-distill (Qwen-based) template renders: ChatML whose generation prompt
    // opens the think section, here with one worked example so a default model knows to
    // close it before answering, and a question of the example's own shape (on the AVX2
    // kernels the 1.5B leaves a GSM8K question's think section open to the end).
    let prompt = "<|im_start|>system\nYou think inside <think> </think> tags, then give the answer.<|im_end|>\n\
         <|im_start|>user\nTom has 3 apples and buys 4 more. How many apples does he have?<|im_end|>\n\
         <|im_start|>assistant\n<think>\nHe starts with 3 and buys 4: 3 + 4 = 7.\n</think>\n\n\\boxed{7}<|im_end|>\n\
         <|im_start|>user\nSam has 5 pens and buys 2 more. How many pens does he have?<|im_end|>\n<|im_start|>assistant\n<think>\n"
        .to_string();
    let text_request = |strategy: &str, options: &[&str]| {
        let options: Vec<String> = options.iter().map(|s| s.to_string()).collect();
        CompletionRequest {
            prompt: Prompt::Text(prompt.clone()),
            strategy: StrategySpec::parse(strategy, &options).expect("strategy"),
            ..CompletionRequest::chat(Vec::new(), SamplerConfig::greedy(), 400)
        }
    };
    let plain = backend
        .complete(&text_request("none", &[]))
        .expect("complete");
    let reasoning = plain
        .reasoning
        .as_deref()
        .unwrap_or_else(|| panic!("no think section was found: {plain:?}"));
    assert!(
        !reasoning.contains("<think>") && !reasoning.contains("</think>") && !reasoning.is_empty(),
        "{reasoning}"
    );
    assert!(!plain.text.contains("</think>"), "{}", plain.text);
    assert!(
        plain.text.contains("\\boxed{7}"),
        "the answer follows the think section: {plain:?}"
    );
    assert_eq!(
        plain.usage.output_tokens,
        plain.usage.reasoning_tokens + plain.usage.answer_tokens
    );
    assert!(plain.usage.answer_tokens > 0, "{:?}", plain.usage);

    let cut = backend
        .complete(&text_request("budget", &["reasoning_tokens=8"]))
        .expect("complete");
    assert_eq!(cut.stop_reason, "budget", "{cut:?}");
    assert_eq!(cut.usage.reasoning_tokens, 8, "{:?}", cut.usage);
    assert!(cut.reasoning.is_some(), "{cut:?}");
    assert!(
        cut.text.starts_with("Final answer: \\boxed{"),
        "the budget closed the think section first: {cut:?}"
    );
}

#[test]
fn a_json_constrained_answer_is_one_object_and_a_think_section_before_it_stays_free() {
    let backend = local("qwen2.5-coder-0.5b");
    let ask = |prompt: Prompt, constraint: Option<Grammar>| {
        let request = CompletionRequest {
            prompt,
            constraint,
            ..CompletionRequest::chat(Vec::new(), SamplerConfig::greedy(), 120)
        };
        backend.complete(&request).expect("complete")
    };
    let person = || {
        Prompt::Chat(vec![ChatMessage::new(
            "user",
            "Describe a person named Ann who is 30 and lives in Oslo.",
        )])
    };
    let json = ask(person(), Some(Grammar::json_object()));
    assert_eq!(json.stop_reason, "eos", "{json:?}");
    let object: serde_json::Value = serde_json::from_str(&json.text)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", json.text));
    assert!(object.is_object(), "{object}");
    // The same request unconstrained answers in prose: the grammar made the difference.
    let free = ask(person(), None);
    assert!(
        serde_json::from_str::<serde_json::Value>(&free.text).is_err(),
        "{}",
        free.text
    );

    // With a think section the reasoning is free text and the answer after it JSON.
    let think = "<|im_start|>system\nThink inside <think> </think> tags, then answer.<|im_end|>\n\
         <|im_start|>user\nWhat is 2 + 3? Answer as JSON with the key \"sum\".<|im_end|>\n\
         <|im_start|>assistant\n<think>\n";
    let c = ask(
        Prompt::Text(think.to_string()),
        Some(Grammar::json_object()),
    );
    let reasoning = c.reasoning.as_deref().unwrap_or_default();
    assert!(!reasoning.trim().is_empty(), "{c:?}");
    assert!(
        serde_json::from_str::<serde_json::Value>(c.text.trim()).is_ok_and(|v| v.is_object()),
        "the answer after the think section is a JSON object: {c:?}"
    );
}

/// A real llama.cpp server on `alias`, and a backend on it.
fn llama_server(alias: &str) -> (Server, OpenAiBackend) {
    let port = free_port();
    let mut server = Server(
        Command::new(llama_cpp_bin_dir().join("llama-server"))
            .args([
                "-m",
                model(alias).to_str().unwrap(),
                "--host",
                "127.0.0.1",
                "--port",
                &port.to_string(),
            ])
            .args(["-t", "2", "-c", "4096", "--jinja", "--parallel", "2"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start llama-server"),
    );
    wait_until_healthy(&mut server, port, None);
    let remote = OpenAiBackend::new(&format!("http://127.0.0.1:{port}/v1"), alias, None);
    (server, remote)
}

#[test]
fn a_json_object_or_schema_asked_of_a_llama_cpp_server_comes_back_as_asked_and_other_grammars_are_refused(
) {
    let (_server, remote) = llama_server("qwen2.5-coder-0.5b");
    let person = vec![ChatMessage::new(
        "user",
        "Describe a person named Ann who is 30 and lives in Oslo.",
    )];
    let request = CompletionRequest {
        constraint: Some(Grammar::json_object()),
        ..CompletionRequest::chat(person, SamplerConfig::greedy(), 120)
    };
    let c = remote.complete(&request).expect("remote json");
    let object: serde_json::Value =
        serde_json::from_str(&c.text).unwrap_or_else(|e| panic!("not JSON ({e}): {}", c.text));
    assert!(object.is_object(), "{object}");
    // A schema goes upstream as llama.cpp's own json_schema response_format.
    let schema = serde_json::json!({"type": "object", "properties": {
        "name": {"type": "string"}, "age": {"type": "integer"}}, "required": ["name", "age"]});
    let typed = remote
        .complete(&CompletionRequest {
            constraint: Some(Grammar::from_json_schema(&schema).expect("schema")),
            ..request.clone()
        })
        .expect("remote json_schema");
    let person: serde_json::Value = serde_json::from_str(&typed.text)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", typed.text));
    assert!(
        person["name"].is_string() && person["age"].is_i64(),
        "{person}"
    );
    let call = Grammar::new(vec![
        terse_reason::Segment::Text("<tool_call>".into()),
        terse_reason::Segment::Json(terse_reason::JsonType::OBJECT),
    ])
    .expect("grammar");
    let err = remote
        .complete(&CompletionRequest {
            constraint: Some(call),
            ..request
        })
        .expect_err("a grammar the upstream cannot enforce");
    assert!(err.to_string().contains("grammar"), "{err}");
}

#[test]
fn early_exit_on_a_llama_cpp_server_stops_where_the_local_engine_stops() {
    let alias = "qwen2.5-coder-0.5b";
    let (_server, remote) = llama_server(alias);
    let messages = vec![ChatMessage::new("user", QUESTION)];
    let req = request(messages, 300, "early-exit", &["every=16", "window=2"]);
    let there = remote.complete(&req).expect("remote early-exit");
    let here = local(alias).complete(&req).expect("local early-exit");
    assert_eq!(here.stop_reason, "early-exit", "{here:?}");
    assert_eq!(there.stop_reason, here.stop_reason, "remote {there:?}");
    let (a, b) = (probe_answers(&here), probe_answers(&there));
    assert_eq!(
        a, b,
        "the same probes at the same tokens give the same answers"
    );
    assert_eq!(
        here.text.rsplit("\\boxed{").next(),
        there.text.rsplit("\\boxed{").next()
    );
    assert!(
        there.usage.probes >= 2 && there.usage.probe_decoded_tokens > 0,
        "{:?}",
        there.usage
    );
}

#[test]
fn generate_with_a_strategy_prints_usage_and_the_stop_reason() {
    let out = Command::new(env!("CARGO_BIN_EXE_terse"))
        .args([
            "generate",
            "-m",
            "qwen2.5-coder-0.5b",
            "-t",
            "2",
            "--temperature",
            "0",
            "-n",
            "120",
        ])
        .args([
            "--chat",
            QUESTION,
            "--strategy",
            "loop-guard+budget",
            "--strategy-opt",
            "reasoning_tokens=30",
        ])
        .output()
        .expect("run terse");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("Final answer: \\boxed{"));
    assert!(
        stderr.contains("stop: budget") && stderr.contains("cost tokens"),
        "{stderr}"
    );
}

#[test]
fn an_unknown_strategy_or_option_is_one_line_naming_the_valid_choices() {
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_terse"))
            .args(["generate", "-m", "qwen2.5-coder-0.5b", "--chat", "hi"])
            .args(args)
            .output()
            .expect("run terse");
        assert!(!out.status.success());
        String::from_utf8_lossy(&out.stderr).trim().to_string()
    };
    let err = run(&["--strategy", "fast-think"]);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("unknown strategy 'fast-think'") && err.contains("early-exit"),
        "{err}"
    );
    let err = run(&["--strategy", "early-exit", "--strategy-opt", "window=99"]);
    assert!(
        err.contains("'window' = 99") && err.contains("1 to 16"),
        "{err}"
    );
    let err = run(&["--strategy", "early-exit", "--strategy-opt", "speed=2"]);
    assert!(err.contains("'speed' matches no strategy"), "{err}");
}

fn trace_answers(c: &Completion) -> Vec<String> {
    c.events
        .iter()
        .filter(|e| e.strategy == "consistency" && e.kind.starts_with("trace"))
        .map(|e| e.detail.clone().unwrap_or_default())
        .collect()
}

#[test]
fn adaptive_consistency_draws_the_first_traces_of_fixed_self_consistency_and_shares_the_prompt() {
    // Five traces in a round, so the batch holds them all.
    let engine = Engine::load(
        model("qwen2.5-coder-0.5b"),
        &EngineOptions {
            threads: 2,
            ctx_size: 1024,
            kv_capacity_tokens: 5 * 1024,
        },
    )
    .expect("load");
    let backend = LocalBackend::new(engine, 5).expect("backend");
    let messages = vec![ChatMessage::new("user", QUESTION)];
    let fixed = backend
        .complete(&request(
            messages.clone(),
            160,
            "consistency",
            &["rule=fixed", "max_samples=5"],
        ))
        .expect("fixed");
    let all = trace_answers(&fixed);
    assert_eq!(all.len(), 5, "{:?}", fixed.events);
    assert_eq!(fixed.stop_reason, "max-samples");
    // One prefill for the five siblings: each other trace computed only the prompt's
    // last token.
    let p = fixed.usage.prompt_tokens;
    assert_eq!(
        fixed.usage.prompt_cached_tokens,
        4 * (p - 1),
        "{:?}",
        fixed.usage
    );

    for options in [["rule=beta", "max_samples=5"], ["rule=window", "window=2"]] {
        let adaptive = backend
            .complete(&request(messages.clone(), 160, "consistency", &options))
            .expect("adaptive");
        let drawn = trace_answers(&adaptive);
        assert!(!drawn.is_empty() && drawn.len() <= 5);
        assert_eq!(
            drawn,
            all[..drawn.len()],
            "{options:?}: trace j has seed + j whether drawn alone or among siblings"
        );
        assert!(adaptive.usage.output_tokens <= fixed.usage.output_tokens);
        if adaptive.stop_reason == "consistency" && options[0] == "rule=window" {
            assert_eq!(drawn[drawn.len() - 2], drawn[drawn.len() - 1], "{drawn:?}");
        }
    }
}

#[test]
fn consistency_refuses_a_zero_temperature_and_names_its_options() {
    let err = StrategySpec::parse("consistency", &["temperature=0".into()])
        .unwrap_err()
        .to_string();
    assert!(err.contains("temperature"), "{err}");
    let err = StrategySpec::parse("consistency", &["samples=5".into()])
        .unwrap_err()
        .to_string();
    assert!(err.contains("samples"), "{err}");
}
