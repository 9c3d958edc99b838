//! Which reasoning strategy a request runs, from the three ways a client can say it.
//!
//! In order of precedence, the chain comes from
//! 1. the extension object `"terse": {"strategy": "early-exit", "options": {"every": 16}}`
//!    (what the `openai` client's `extra_body` sends; options may also sit flat beside
//!    `strategy`, as in `"terse": {"strategy": "budget", "reasoning_tokens": 64}`);
//! 2. a model-name suffix, `MODEL+early-exit` or `MODEL+loop-guard+early-exit`, for
//!    clients that can only set a model name;
//! 3. `reasoning_effort`, mapped to a preset by [`EFFORT_PRESETS`];
//!
//! and is the server's default strategy (`terse serve --strategy`, `none` unless set)
//! otherwise; options a request gives without naming a chain apply to the default's
//! chain in place of the default's own options. The thinking-budget dialects that clients
//! send, `thinking_token_budget` (vLLM), `thinking_budget_tokens` and
//! `reasoning_budget_tokens` (llama.cpp), `reasoning: {"max_tokens": N}` and
//! `chat_template_kwargs.enable_thinking: false` (a budget of 1), all set the
//! `budget` stage's `reasoning_tokens` (adding `budget` to the end of the chain when it
//! is not in it). Names and options are those of `terse eval --strategy`; a bad one is
//! a 400 with [`terse_reason::StrategyError`]'s message.

use crate::error::ApiError;
use serde_json::{Map, Value};
use terse_reason::StrategySpec;

/// `reasoning_effort` → strategy chain and options. More effort, less steering:
///
/// | effort    | strategy                                   |
/// |-----------|--------------------------------------------|
/// | `none`    | `budget`, `reasoning_tokens=1` (answer at once) |
/// | `minimal` | `budget`, `reasoning_tokens=128`           |
/// | `low`     | `budget`, `reasoning_tokens=512`           |
/// | `medium`  | `early-exit` (its defaults: stop once the probed answer settles) |
/// | `high`    | `none` (the model reasons as long as it wants) |
pub const EFFORT_PRESETS: &[(&str, &str, &[&str])] = &[
    ("none", "budget", &["reasoning_tokens=1"]),
    ("minimal", "budget", &["reasoning_tokens=128"]),
    ("low", "budget", &["reasoning_tokens=512"]),
    ("medium", "early-exit", &[]),
    ("high", "none", &[]),
];

/// What a request said about its strategy, gathered from the body and the model name.
#[derive(Debug, Default)]
pub struct StrategyAsk<'a> {
    /// The `terse` extension object.
    pub extension: Option<&'a Map<String, Value>>,
    /// The chain after `MODEL+`.
    pub model_suffix: Option<&'a str>,
    pub reasoning_effort: Option<&'a str>,
    /// A thinking budget in any dialect, with the field it came from.
    pub reasoning_budget: Option<(&'static str, u64)>,
    /// The server's default, for a request that names no strategy.
    pub default: Option<&'a StrategySpec>,
}

impl StrategyAsk<'_> {
    /// The strategy to run.
    pub fn resolve(&self) -> Result<StrategySpec, ApiError> {
        let mut options: Vec<String> = Vec::new();
        let mut chain = match self.extension.and_then(|e| e.get("strategy")) {
            Some(Value::String(s)) => s.clone(),
            Some(other) => {
                return Err(ApiError::invalid_param(
                    "terse.strategy",
                    format!("terse.strategy must be a string like \"early-exit\", not {other}"),
                ))
            }
            None => match (self.model_suffix, self.reasoning_effort) {
                (Some(suffix), _) => suffix.to_string(),
                (None, Some(effort)) => {
                    let (_, chain, preset) = EFFORT_PRESETS
                        .iter()
                        .find(|(name, _, _)| *name == effort)
                        .ok_or_else(|| {
                            ApiError::invalid_param(
                                "reasoning_effort",
                                format!(
                                    "reasoning_effort '{effort}' is not one of none, minimal, \
                                     low, medium, high"
                                ),
                            )
                        })?;
                    options.extend(preset.iter().map(|o| format!("{chain}.{o}")));
                    chain.to_string()
                }
                (None, None) => match self.default {
                    Some(spec) => {
                        let own_options = self
                            .extension
                            .is_some_and(|e| e.keys().any(|k| k != "strategy"));
                        if !own_options && self.reasoning_budget.is_none() {
                            return Ok(spec.clone());
                        }
                        spec.to_string()
                    }
                    None => "none".to_string(),
                },
            },
        };
        if let Some(extension) = self.extension {
            for (key, value) in extension {
                match key.as_str() {
                    "strategy" => {}
                    "options" => match value {
                        Value::Object(map) => {
                            for (k, v) in map {
                                options.push(option(k, v)?);
                            }
                        }
                        Value::Null => {}
                        other => {
                            return Err(ApiError::invalid_param(
                                "terse.options",
                                format!("terse.options must be an object, not {other}"),
                            ))
                        }
                    },
                    _ => options.push(option(key, value)?),
                }
            }
        }
        if let Some((field, tokens)) = self.reasoning_budget {
            let has_budget = chain.split('+').any(|s| s.trim() == "budget");
            if !has_budget {
                chain = if chain.trim() == "none" || chain.trim().is_empty() {
                    "budget".into()
                } else {
                    format!("{chain}+budget")
                };
            }
            if tokens == 0 {
                return Err(ApiError::invalid_param(
                    field,
                    format!("{field} must be at least 1"),
                ));
            }
            options.push(format!("budget.reasoning_tokens={tokens}"));
        }
        Ok(StrategySpec::parse(&chain, &options)?)
    }
}

/// One JSON option as the `KEY=VALUE` text [`StrategySpec::parse`] reads (values are
/// TOML; a JSON string is a TOML basic string, except `format`, which takes a bare name).
fn option(key: &str, value: &Value) -> Result<String, ApiError> {
    let text = match value {
        Value::String(s) if key == "format" => s.clone(),
        Value::String(_) | Value::Number(_) | Value::Bool(_) => value.to_string(),
        other => {
            return Err(ApiError::invalid_param(
                "terse.options",
                format!("strategy option '{key}' must be a string, number or boolean, not {other}"),
            ))
        }
    };
    Ok(format!("{key}={text}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ext(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => Map::new(),
        }
    }

    #[test]
    fn nothing_asked_is_plain_decoding() {
        let spec = StrategyAsk::default().resolve().unwrap();
        assert_eq!(spec.to_string(), "none");
    }

    #[test]
    fn the_extension_wins_over_the_suffix_and_takes_options_nested_or_flat() {
        let e = ext(json!({"strategy": "budget", "options": {"reasoning_tokens": 7}}));
        let ask = StrategyAsk {
            extension: Some(&e),
            model_suffix: Some("early-exit"),
            ..Default::default()
        };
        let spec = ask.resolve().unwrap();
        assert_eq!(spec.to_string(), "budget");
        let flat = ext(json!({"strategy": "budget", "reasoning_tokens": 7}));
        let flat_spec = StrategyAsk {
            extension: Some(&flat),
            ..Default::default()
        }
        .resolve()
        .unwrap();
        assert_eq!(spec, flat_spec);
    }

    #[test]
    fn a_model_suffix_names_a_chain() {
        let ask = StrategyAsk {
            model_suffix: Some("loop-guard+early-exit"),
            ..Default::default()
        };
        assert_eq!(ask.resolve().unwrap().to_string(), "loop-guard+early-exit");
    }

    #[test]
    fn every_reasoning_effort_maps_to_a_valid_preset() {
        for (effort, chain, _) in EFFORT_PRESETS {
            let ask = StrategyAsk {
                reasoning_effort: Some(effort),
                ..Default::default()
            };
            assert_eq!(ask.resolve().unwrap().to_string(), *chain, "{effort}");
        }
        let bad = StrategyAsk {
            reasoning_effort: Some("extreme"),
            ..Default::default()
        };
        assert_eq!(
            bad.resolve().unwrap_err().param.as_deref(),
            Some("reasoning_effort")
        );
    }

    #[test]
    fn a_thinking_budget_becomes_the_budget_stage() {
        let plain = StrategyAsk {
            reasoning_budget: Some(("thinking_token_budget", 33)),
            ..Default::default()
        };
        let direct = StrategySpec::parse("budget", &["reasoning_tokens=33".into()]).unwrap();
        assert_eq!(plain.resolve().unwrap(), direct);
        let chained = StrategyAsk {
            model_suffix: Some("loop-guard"),
            reasoning_budget: Some(("thinking_token_budget", 33)),
            ..Default::default()
        };
        assert_eq!(chained.resolve().unwrap().to_string(), "loop-guard+budget");
    }

    #[test]
    fn the_server_default_applies_only_when_a_request_names_no_strategy() {
        let default = StrategySpec::parse("budget", &["reasoning_tokens=9".into()]).unwrap();
        let ask = StrategyAsk {
            default: Some(&default),
            ..Default::default()
        };
        assert_eq!(ask.resolve().unwrap(), default);
        let named = StrategyAsk {
            model_suffix: Some("loop-guard"),
            default: Some(&default),
            ..Default::default()
        };
        assert_eq!(named.resolve().unwrap().to_string(), "loop-guard");
        let e = ext(json!({"options": {"reasoning_tokens": 3}}));
        let tuned = StrategyAsk {
            extension: Some(&e),
            default: Some(&default),
            ..Default::default()
        };
        let three = StrategySpec::parse("budget", &["reasoning_tokens=3".into()]).unwrap();
        assert_eq!(tuned.resolve().unwrap(), three);
    }

    #[test]
    fn an_unknown_strategy_is_a_400_with_the_valid_names() {
        let e = ext(json!({"strategy": "think-harder"}));
        let err = StrategyAsk {
            extension: Some(&e),
            ..Default::default()
        }
        .resolve()
        .unwrap_err();
        assert_eq!(err.status, axum::http::StatusCode::BAD_REQUEST);
        assert!(err.message.contains("early-exit"), "{}", err.message);
    }
}
