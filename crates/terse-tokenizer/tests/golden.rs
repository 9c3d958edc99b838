//! End-to-end checks against llama.cpp: token ids, decoded text and rendered chat
//! prompts for the three default models, from the golden fixtures recorded with
//! llama.cpp. The model files must be present (`$TERSE_HOME/models/...`, default
//! `~/.cache/terse`); a missing model fails its tests instead of skipping them.

use std::path::PathBuf;
use std::time::Instant;

use serde_json::Value;
use terse_gguf::GgufFile;
use terse_tokenizer::{ChatMessage, ChatTemplate, StreamDecoder, Tokenizer};

struct Model {
    alias: &'static str,
    file: &'static str,
}

const QWEN_05B: Model = Model {
    alias: "qwen2.5-coder-0.5b",
    file: "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
};
const QWEN_15B: Model = Model {
    alias: "qwen2.5-coder-1.5b",
    file: "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
};
const GEMMA3_270M: Model = Model {
    alias: "gemma3-270m",
    file: "gemma-3-270m-q4_k_m.gguf",
};

fn terse_home() -> PathBuf {
    if let Some(home) = std::env::var_os("TERSE_HOME") {
        return PathBuf::from(home);
    }
    let home = std::env::var_os("HOME").expect("HOME or TERSE_HOME must be set");
    PathBuf::from(home).join(".cache/terse")
}

fn open(model: &Model) -> GgufFile {
    let path = terse_home()
        .join("models")
        .join(model.alias)
        .join(model.file);
    assert!(
        path.exists(),
        "model file {} is missing: pull model '{}' first (this test does not skip)",
        path.display(),
        model.alias
    );
    GgufFile::open(&path).unwrap_or_else(|e| panic!("opening {}: {e}", path.display()))
}

fn load(model: &Model) -> (GgufFile, Tokenizer) {
    let g = open(model);
    let tok = Tokenizer::from_gguf(&g).unwrap_or_else(|e| panic!("{}: {e}", model.alias));
    (g, tok)
}

fn golden(model: &Model) -> Value {
    let path = format!(
        "{}/../../tests/fixtures/golden/{}.json",
        env!("CARGO_MANIFEST_DIR"),
        model.alias
    );
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap()
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| u32::try_from(x.as_u64().unwrap()).unwrap())
        .collect()
}

/// Every golden `tokenize` entry, reporting all mismatches before failing.
fn check_tokenize(model: &Model) {
    let (_, tok) = load(model);
    let golden = golden(model);
    let entries = golden["tokenize"].as_array().unwrap();
    assert!(!entries.is_empty());
    let mut failures = Vec::new();
    for e in entries {
        let text = e["text"].as_str().unwrap();
        let add_special = e["add_special"].as_bool().unwrap();
        let parse_special = e["parse_special"].as_bool().unwrap();
        let expected = ids(&e["ids"]);
        let got = tok.encode(text, add_special, parse_special);
        if got != expected {
            failures.push(format!(
                "{text:?} add_special={add_special} parse_special={parse_special}\n  expected {expected:?}\n  got      {got:?}"
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{}: {} of {} texts tokenize differently from llama.cpp:\n{}",
        model.alias,
        failures.len(),
        entries.len(),
        failures.join("\n")
    );
}

/// Greedy prompts: prompt ids (BOS per the model, special text parsed) and the text
/// of the generated ids.
fn check_greedy_prompts(model: &Model) {
    let (_, tok) = load(model);
    let golden = golden(model);
    let mut failures = Vec::new();
    for e in golden["greedy"].as_array().unwrap() {
        let prompt = e["prompt_text"].as_str().unwrap();
        let expected = ids(&e["prompt_ids"]);
        let got = tok.encode(prompt, true, true);
        if got != expected {
            failures.push(format!(
                "prompt {prompt:?}\n  expected {expected:?}\n  got      {got:?}"
            ));
        }
        let output = ids(&e["output_ids"]);
        let shown: Vec<u32> = output
            .iter()
            .copied()
            .filter(|&id| !tok.is_eog(id))
            .collect();
        let text = tok.decode(&shown);
        let expected_text = e["output_text"].as_str().unwrap();
        if text != expected_text {
            failures.push(format!(
                "output {output:?}\n  expected {expected_text:?}\n  got      {text:?}"
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{}:\n{}",
        model.alias,
        failures.join("\n")
    );
}

/// decode(encode(text)) == text for every corpus text, as it is in llama.cpp when
/// special tokens are not added.
fn check_roundtrip(model: &Model) {
    let (_, tok) = load(model);
    let golden = golden(model);
    let mut failures = Vec::new();
    for e in golden["tokenize"].as_array().unwrap() {
        let text = e["text"].as_str().unwrap();
        for parse_special in [false, true] {
            let back = tok.decode(&tok.encode(text, false, parse_special));
            if back != text {
                failures.push(format!(
                    "{text:?} (parse_special={parse_special}) -> {back:?}"
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{}:\n{}",
        model.alias,
        failures.join("\n")
    );
}

/// Rendering each golden conversation gives llama.cpp's prompt byte for byte.
fn check_chat_template(model: &Model) {
    let (g, tok) = load(model);
    let template = ChatTemplate::from_gguf(&g, &tok)
        .unwrap()
        .expect("instruct model has a chat template");
    let golden = golden(model);
    let mut checked = 0;
    for case in golden["chat_template"].as_array().unwrap() {
        let messages: Vec<ChatMessage> = serde_json::from_value(case["messages"].clone()).unwrap();
        let add_generation_prompt = case["add_generation_prompt"].as_bool().unwrap();
        let got = template.render(&messages, add_generation_prompt).unwrap();
        assert_eq!(got, case["prompt"].as_str().unwrap(), "{messages:?}");
        checked += 1;
    }
    for e in golden["greedy"].as_array().unwrap() {
        if e["kind"] != "chat" {
            continue;
        }
        let user = e["user_text"].as_str().unwrap();
        let got = template
            .render(&[ChatMessage::new("user", user)], true)
            .unwrap();
        assert_eq!(got, e["prompt_text"].as_str().unwrap());
        checked += 1;
    }
    assert!(checked >= 3, "only {checked} template cases checked");
}

fn check_stream_decoder(model: &Model) {
    let (_, tok) = load(model);
    let text = "emoji: 👍🏽 🚀 🇩🇪 ❤️ 你好，世界！日本語のテキスト é";
    let tokens = tok.encode(text, false, false);
    let mut decoder = StreamDecoder::new();
    let mut streamed = String::new();
    for &id in &tokens {
        let piece = decoder.push(&tok, id);
        assert!(
            !piece.contains('\u{FFFD}'),
            "broken UTF-8 after token {id}: {piece:?}"
        );
        streamed.push_str(&piece);
    }
    streamed.push_str(&decoder.flush());
    assert_eq!(streamed, text);
}

#[test]
fn qwen_05b_tokenize_matches_llama_cpp() {
    check_tokenize(&QWEN_05B);
}

#[test]
fn qwen_15b_tokenize_matches_llama_cpp() {
    check_tokenize(&QWEN_15B);
}

#[test]
fn gemma3_tokenize_matches_llama_cpp() {
    check_tokenize(&GEMMA3_270M);
}

#[test]
fn qwen_05b_greedy_prompts_match_llama_cpp() {
    check_greedy_prompts(&QWEN_05B);
}

#[test]
fn qwen_15b_greedy_prompts_match_llama_cpp() {
    check_greedy_prompts(&QWEN_15B);
}

#[test]
fn gemma3_greedy_prompts_match_llama_cpp() {
    check_greedy_prompts(&GEMMA3_270M);
}

#[test]
fn qwen_05b_decode_inverts_encode() {
    check_roundtrip(&QWEN_05B);
}

#[test]
fn gemma3_decode_inverts_encode() {
    check_roundtrip(&GEMMA3_270M);
}

#[test]
fn qwen_05b_chat_template_matches_llama_cpp() {
    check_chat_template(&QWEN_05B);
}

#[test]
fn qwen_15b_chat_template_matches_llama_cpp() {
    check_chat_template(&QWEN_15B);
}

#[test]
fn gemma3_base_model_has_no_chat_template() {
    let (g, tok) = load(&GEMMA3_270M);
    assert!(ChatTemplate::from_gguf(&g, &tok).unwrap().is_none());
}

#[test]
fn qwen_05b_stream_decoder_never_splits_characters() {
    check_stream_decoder(&QWEN_05B);
}

#[test]
fn gemma3_stream_decoder_never_splits_characters() {
    check_stream_decoder(&GEMMA3_270M);
}

#[test]
fn qwen_05b_end_of_generation_set_matches_llama_cpp() {
    let (_, tok) = load(&QWEN_05B);
    let eog: Vec<&str> = tok
        .eog_ids()
        .map(|id| tok.token_text(id).unwrap())
        .collect();
    // eos <|im_end|>, the texts llama.cpp lists as end of generation ("</s>" among
    // them), and the FIM pad/repo/file-separator tokens.
    assert_eq!(
        eog,
        [
            "</s>",
            "<|endoftext|>",
            "<|im_end|>",
            "<|fim_pad|>",
            "<|repo_name|>",
            "<|file_sep|>"
        ]
    );
    assert!(tok.is_control(tok.token_id("</s>").unwrap()));
    assert_eq!(tok.eos(), tok.token_id("<|im_end|>"));
    assert!(!tok.add_bos() && !tok.add_eos());
}

#[test]
fn gemma3_end_of_generation_set_matches_llama_cpp() {
    let (_, tok) = load(&GEMMA3_270M);
    let eog: Vec<&str> = tok
        .eog_ids()
        .map(|id| tok.token_text(id).unwrap())
        .collect();
    assert_eq!(eog, ["<eos>", "<end_of_turn>", "</s>"]);
    assert!(tok.add_bos());
    assert_eq!(tok.bos(), Some(2));
}

/// A long prompt (corpus repeated to over 10k tokens) must tokenize quickly; the
/// bound is loose so that debug builds pass too.
fn check_long_prompt_speed(model: &Model) {
    let (_, tok) = load(model);
    let golden = golden(model);
    let corpus: Vec<&str> = golden["tokenize"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["text"].as_str().unwrap())
        .collect();
    let text = corpus.join("\n").repeat(12);
    let start = Instant::now();
    let n = tok.encode(&text, true, true).len();
    let elapsed = start.elapsed();
    eprintln!("{}: {n} tokens in {elapsed:?}", model.alias);
    assert!(n > 10_000, "only {n} tokens");
    assert!(elapsed.as_secs_f64() < 5.0, "{n} tokens took {elapsed:?}");
}

#[test]
fn qwen_05b_long_prompt_tokenizes_quickly() {
    check_long_prompt_speed(&QWEN_05B);
}

#[test]
fn gemma3_long_prompt_tokenizes_quickly() {
    check_long_prompt_speed(&GEMMA3_270M);
}

/// A tool conversation through Qwen 2.5's own template renders as transformers renders
/// it: the signatures as Python's `json.dumps` writes them, the call's arguments an
/// object, the result in a user turn.
#[test]
fn qwen_05b_renders_tools_calls_and_results_as_transformers_does() {
    let (g, tok) = load(&QWEN_05B);
    let template = ChatTemplate::from_gguf(&g, &tok).unwrap().unwrap();
    let mut call = ChatMessage::new("assistant", "");
    call.tool_calls = vec![serde_json::json!({"id": "call_1", "type": "function",
        "function": {"name": "get_weather", "arguments": {"city": "Paris"}}})];
    let mut result = ChatMessage::new("tool", "18 C");
    result.tool_call_id = Some("call_1".into());
    let messages = [ChatMessage::new("user", "Weather in Paris?"), call, result];
    let tools = serde_json::json!({"tools": [{"type": "function", "function":
        {"name": "get_weather", "parameters": {"type": "object"}}}]});
    let got = template.render_with(&messages, true, &tools).unwrap();
    for part in [
        "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.\n\n# Tools\n",
        "<tools>\n{\"type\": \"function\", \"function\": {\"name\": \"get_weather\", \"parameters\": {\"type\": \"object\"}}}\n</tools>",
        "<|im_start|>user\nWeather in Paris?<|im_end|>\n\
         <|im_start|>assistant\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call><|im_end|>\n\
         <|im_start|>user\n<tool_response>\n18 C\n</tool_response><|im_end|>\n<|im_start|>assistant\n",
    ] {
        assert!(got.contains(part), "missing {part:?} in {got:?}");
    }
    assert!(got.ends_with("<|im_start|>assistant\n"));
}
