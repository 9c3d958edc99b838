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
//!
//! [`Presets`] (`terse serve --config FILE`) add named strategies, usable wherever a
//! chain is (`MODEL+fast`, `"terse": {"strategy": "fast"}`), and remap the effort
//! levels:
//!
//! ```toml
//! [preset.fast]                 # eval --strategy-config's format
//! strategy = "loop-guard+early-exit"
//! [preset.fast.early-exit]
//! every = 16
//!
//! [effort]                      # a level → a preset or a chain
//! low = "fast"
//! high = "none"
//!
//! [models."qwen2.5-coder-1.5b"]  # only when this model is served
//! strategy = "program"          # its default strategy
//! [models."qwen2.5-coder-1.5b".preset.fast]
//! strategy = "program"
//! [models."qwen2.5-coder-1.5b".effort]
//! low = "fast"
//! ```
//!
//! A `[models.NAME]` table holds the presets, effort levels and default strategy of one
//! model; it applies when NAME is the served model (its alias, file, served name or
//! upstream model, [`Presets::for_model`]) and wins there over the tables above it, so
//! one file can hold the best presets of several models.

use crate::error::ApiError;
use serde::Deserialize;
use serde_json::{Map, Value};
use terse_reason::{StrategyError, StrategySpec};

/// `reasoning_effort` → strategy chain and options. More effort, less steering:
///
/// | effort    | strategy                                   |
/// |-----------|--------------------------------------------|
/// | `none`    | `budget`, `reasoning_tokens=1` (answer at once) |
/// | `minimal` | `budget`, `reasoning_tokens=128`           |
/// | `low`     | `budget`, `reasoning_tokens=512`           |
/// | `medium`  | `loop-guard` (cuts an answer that repeats itself; early exit's defaults lost accuracy on the default models, see `docs/strategies`) |
/// | `high`    | `none` (the model reasons as long as it wants) |
pub const EFFORT_PRESETS: &[(&str, &str, &[&str])] = &[
    ("none", "budget", &["reasoning_tokens=1"]),
    ("minimal", "budget", &["reasoning_tokens=128"]),
    ("low", "budget", &["reasoning_tokens=512"]),
    ("medium", "loop-guard", &[]),
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
    pub presets: Option<&'a Presets>,
}

/// The `[server]` table of the configuration file: `terse serve`'s flags, which win
/// over it when given.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSettings {
    /// The model: an alias, a .gguf path or a Hugging Face id.
    pub model: Option<String>,
    pub threads: Option<usize>,
    pub ctx_size: Option<usize>,
    pub host: Option<String>,
    pub port: Option<u16>,
    pub max_sequences: Option<usize>,
    pub max_queue: Option<usize>,
    pub served_model_name: Option<String>,
    pub upstream: Option<String>,
    pub upstream_model: Option<String>,
    /// The strategy chain of requests that name none.
    pub strategy: Option<String>,
}

impl ServerSettings {
    /// The `[server]` table of a configuration file (empty when it has none).
    pub fn from_toml(text: &str) -> Result<ServerSettings, StrategyError> {
        let config = |m: String| StrategyError::Config(m);
        let table: toml::Table = toml::from_str(text).map_err(|e| config(e.message().into()))?;
        let Some(server) = table.get("server") else {
            return Ok(ServerSettings::default());
        };
        let settings: ServerSettings = server
            .clone()
            .try_into()
            .map_err(|e: toml::de::Error| config(format!("[server]: {}", e.message())))?;
        if let Some(chain) = &settings.strategy {
            StrategySpec::parse(chain, &[])
                .map_err(|e| config(format!("[server] strategy = \"{chain}\": {e}")))?;
        }
        Ok(settings)
    }
}

/// Named strategies and effort levels from the server's configuration file.
#[derive(Debug, Clone, Default)]
pub struct Presets {
    named: Vec<Preset>,
    effort: Vec<(String, String)>,
    models: Vec<ModelPresets>,
}

/// A `[models.NAME]` table.
#[derive(Debug, Clone)]
struct ModelPresets {
    model: String,
    /// The strategy of requests that name none, on this model.
    strategy: Option<String>,
    presets: Presets,
}

#[derive(Debug, Clone)]
struct Preset {
    name: String,
    chain: String,
    /// Its table, as `StrategySpec::from_toml` reads it.
    toml: String,
}

impl Presets {
    /// From TOML: `[preset.NAME]` tables in `eval --strategy-config`'s format and an
    /// `[effort]` table of `LEVEL = "PRESET or CHAIN"`. Every preset is checked here.
    pub fn from_toml(text: &str) -> Result<Presets, StrategyError> {
        let table: toml::Table =
            toml::from_str(text).map_err(|e| StrategyError::Config(e.message().into()))?;
        Presets::from_table(table, None)
    }

    /// The presets of the file's top level (`model` is `None`) or of one
    /// `[models.NAME]` table, whose messages name it.
    fn from_table(table: toml::Table, model: Option<&str>) -> Result<Presets, StrategyError> {
        let at = model.map_or(String::new(), |m| format!("[models.\"{m}\"] "));
        let config = |m: String| StrategyError::Config(format!("{at}{m}"));
        let mut presets = Presets::default();
        for (key, value) in table {
            match (key.as_str(), value) {
                ("preset", toml::Value::Table(named)) => {
                    for (name, value) in named {
                        let toml::Value::Table(t) = value else {
                            return Err(config(format!("[preset.{name}] must be a table")));
                        };
                        let chain = match t.get("strategy") {
                            Some(toml::Value::String(c)) => c.clone(),
                            _ => {
                                return Err(config(format!(
                                    "[preset.{name}] needs strategy = \"CHAIN\""
                                )))
                            }
                        };
                        let toml = toml::to_string(&t).map_err(|e| config(e.to_string()))?;
                        StrategySpec::from_toml(&toml, None, &[])
                            .map_err(|e| config(format!("[preset.{name}]: {e}")))?;
                        presets.named.push(Preset { name, chain, toml });
                    }
                }
                ("effort", toml::Value::Table(levels)) => {
                    for (level, value) in levels {
                        if !EFFORT_PRESETS.iter().any(|(l, _, _)| *l == level) {
                            return Err(config(format!(
                                "[effort] {level}: not one of none, minimal, low, medium, high"
                            )));
                        }
                        let toml::Value::String(target) = value else {
                            return Err(config(format!("[effort] {level} must be a string")));
                        };
                        presets.effort.push((level, target));
                    }
                }
                // Read by `ServerSettings::from_toml`.
                ("server", _) if model.is_none() => {}
                ("models", toml::Value::Table(models)) if model.is_none() => {
                    for (name, value) in models {
                        let toml::Value::Table(mut t) = value else {
                            return Err(config(format!("[models.\"{name}\"] must be a table")));
                        };
                        let strategy = match t.remove("strategy") {
                            None => None,
                            Some(toml::Value::String(chain)) => Some(chain),
                            Some(other) => {
                                return Err(config(format!(
                                    "[models.\"{name}\"] strategy must be a chain like \
                                     \"early-exit\", not {other}"
                                )))
                            }
                        };
                        let model_presets = Presets::from_table(t, Some(&name))?;
                        presets.models.push(ModelPresets {
                            model: name,
                            strategy,
                            presets: model_presets,
                        });
                    }
                }
                (other, _) if model.is_some() => {
                    return Err(config(format!(
                        "'{other}' is not strategy, [preset.NAME] or [effort]"
                    )))
                }
                (other, _) => {
                    return Err(config(format!(
                        "'{other}' is not [server], [preset.NAME], [effort] or [models.NAME]"
                    )))
                }
            }
        }
        // A model's effort levels may name the top level's presets: checked merged.
        if model.is_none() {
            presets.check_effort("")?;
            for m in &presets.models {
                let at = format!("[models.\"{}\"] ", m.model);
                let (merged, strategy) = presets.for_model(&[&m.model]);
                merged.check_effort(&at)?;
                if let Some(chain) = strategy {
                    merged.spec(&chain, &[]).map_err(|e| {
                        StrategyError::Config(format!("{at}strategy = \"{chain}\": {e}"))
                    })?;
                }
            }
        }
        Ok(presets)
    }

    /// Every effort level names a preset or a valid chain.
    fn check_effort(&self, at: &str) -> Result<(), StrategyError> {
        for (level, target) in &self.effort {
            if self.preset(target).is_none() {
                StrategySpec::parse(target, &[]).map_err(|e| {
                    StrategyError::Config(format!("{at}[effort] {level} = \"{target}\": {e}"))
                })?;
            }
        }
        Ok(())
    }

    /// The presets that apply when serving the model known by `names` (the alias or
    /// file given, the served name, the upstream model): the top level's, with those of
    /// the first `[models.NAME]` table naming it put over them; and that table's
    /// default strategy.
    pub fn for_model(&self, names: &[&str]) -> (Presets, Option<String>) {
        let mut merged = Presets {
            models: Vec::new(),
            ..self.clone()
        };
        let Some(model) = self
            .models
            .iter()
            .find(|m| names.contains(&m.model.as_str()))
        else {
            return (merged, None);
        };
        for preset in &model.presets.named {
            merged.named.retain(|p| p.name != preset.name);
            merged.named.push(preset.clone());
        }
        for (level, target) in &model.presets.effort {
            merged.effort.retain(|(l, _)| l != level);
            merged.effort.push((level.clone(), target.clone()));
        }
        (merged, model.strategy.clone())
    }

    /// The strategy `chain` names, a preset or a chain of strategies, with `options`
    /// (`KEY=VALUE`) over its own.
    pub fn spec(&self, chain: &str, options: &[String]) -> Result<StrategySpec, StrategyError> {
        match self.preset(chain.trim()) {
            Some(p) => StrategySpec::from_toml(&p.toml, None, options),
            None => StrategySpec::parse(chain, options),
        }
    }

    /// The `[models.NAME]` tables' names.
    pub fn models(&self) -> impl Iterator<Item = &str> {
        self.models.iter().map(|m| m.model.as_str())
    }

    fn preset(&self, name: &str) -> Option<&Preset> {
        self.named.iter().find(|p| p.name == name)
    }

    fn effort(&self, level: &str) -> Option<&str> {
        self.effort
            .iter()
            .find(|(l, _)| l == level)
            .map(|(_, t)| t.as_str())
    }
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
                (None, Some(effort)) if self.presets.and_then(|p| p.effort(effort)).is_some() => {
                    self.presets
                        .and_then(|p| p.effort(effort))
                        .unwrap_or("none")
                        .to_string()
                }
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
        let preset = self.presets.and_then(|p| p.preset(chain.trim()));
        if let Some(p) = preset {
            chain = p.chain.clone();
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
        Ok(match preset {
            Some(p) => StrategySpec::from_toml(&p.toml, Some(&chain), &options)?,
            None => StrategySpec::parse(&chain, &options)?,
        })
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
    fn the_server_table_holds_serve_flags_beside_the_presets() {
        let text = "[server]\nport = 9000\nmax_sequences = 16\nstrategy = \"loop-guard\"\n\
                    model = \"qwen2.5-coder-1.5b\"\nthreads = 2\nctx_size = 2048\n\
                    [preset.fast]\nstrategy = \"early-exit\"\n";
        let settings = ServerSettings::from_toml(text).unwrap();
        assert_eq!(settings.model.as_deref(), Some("qwen2.5-coder-1.5b"));
        assert_eq!((settings.threads, settings.ctx_size), (Some(2), Some(2048)));
        assert_eq!(settings.port, Some(9000));
        assert_eq!(settings.max_sequences, Some(16));
        assert_eq!(settings.strategy.as_deref(), Some("loop-guard"));
        assert_eq!(settings.host, None);
        assert!(Presets::from_toml(text).unwrap().preset("fast").is_some());
        assert_eq!(
            ServerSettings::from_toml("[preset.fast]\nstrategy = \"none\"\n").unwrap(),
            ServerSettings::default()
        );
        let err = ServerSettings::from_toml("[server]\nprot = 9000\n").unwrap_err();
        assert!(err.to_string().contains("prot"), "{err}");
        let err = ServerSettings::from_toml("[server]\nstrategy = \"fast-exit\"\n").unwrap_err();
        assert!(err.to_string().contains("fast-exit"), "{err}");
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

    const CONFIG: &str = r#"
        [preset.fast]
        strategy = "loop-guard+early-exit"
        [preset.fast.early-exit]
        every = 16

        [effort]
        low = "fast"
        high = "budget"
    "#;

    #[test]
    fn presets_name_strategies_and_remap_effort_levels() {
        let presets = Presets::from_toml(CONFIG).unwrap();
        let fast = StrategySpec::parse("loop-guard+early-exit", &["every=16".into()]).unwrap();
        let by_suffix = StrategyAsk {
            model_suffix: Some("fast"),
            presets: Some(&presets),
            ..Default::default()
        };
        assert_eq!(by_suffix.resolve().unwrap(), fast);
        let by_effort = StrategyAsk {
            reasoning_effort: Some("low"),
            presets: Some(&presets),
            ..Default::default()
        };
        assert_eq!(by_effort.resolve().unwrap(), fast);
        let high = StrategyAsk {
            reasoning_effort: Some("high"),
            presets: Some(&presets),
            ..Default::default()
        };
        assert_eq!(high.resolve().unwrap().to_string(), "budget");
        // A request's options and budget still apply on top of a preset.
        let e = ext(json!({"strategy": "fast", "every": 8}));
        let tuned = StrategyAsk {
            extension: Some(&e),
            reasoning_budget: Some(("thinking_token_budget", 5)),
            presets: Some(&presets),
            ..Default::default()
        };
        let want = StrategySpec::parse(
            "loop-guard+early-exit+budget",
            &["every=8".into(), "reasoning_tokens=5".into()],
        )
        .unwrap();
        assert_eq!(tuned.resolve().unwrap(), want);
    }

    #[test]
    fn a_model_table_applies_only_to_its_model_and_wins_there() {
        let text = r#"
            [preset.fast]
            strategy = "early-exit"
            [effort]
            low = "fast"

            [models."qwen2.5-coder-1.5b"]
            strategy = "program"
            [models."qwen2.5-coder-1.5b".preset.fast]
            strategy = "program"
            [models."qwen2.5-coder-1.5b".preset.fast.program]
            whole = true
            [models."qwen2.5-coder-1.5b".effort]
            high = "fast"
            minimal = "loop-guard"
        "#;
        let presets = Presets::from_toml(text).unwrap();
        assert_eq!(presets.models().collect::<Vec<_>>(), ["qwen2.5-coder-1.5b"]);
        let resolve = |presets: &Presets, suffix: Option<&str>, effort: Option<&str>| {
            StrategyAsk {
                model_suffix: suffix,
                reasoning_effort: effort,
                presets: Some(presets),
                ..Default::default()
            }
            .resolve()
            .unwrap()
            .to_string()
        };
        let (other, default) = presets.for_model(&["qwen2.5-coder-0.5b", "q05"]);
        assert_eq!(default, None);
        assert_eq!(resolve(&other, Some("fast"), None), "early-exit");
        assert_eq!(resolve(&other, None, Some("high")), "none");
        let (own, default) = presets.for_model(&["./m.gguf", "qwen2.5-coder-1.5b"]);
        assert_eq!(default.as_deref(), Some("program"));
        assert_eq!(resolve(&own, Some("fast"), None), "program");
        // Its own effort levels, and the top level's where it sets none.
        assert_eq!(resolve(&own, None, Some("high")), "program");
        assert_eq!(resolve(&own, None, Some("low")), "program");
        assert_eq!(resolve(&own, None, Some("minimal")), "loop-guard");
        let whole = own.spec("fast", &[]).unwrap();
        assert!(whole.program().is_some_and(|p| p.whole));
        assert_eq!(
            own.spec("loop-guard", &[]).unwrap().to_string(),
            "loop-guard"
        );
    }

    #[test]
    fn a_bad_config_is_refused_when_loaded() {
        for bad in [
            "[preset.x]\nstrategy = \"nope\"",
            "[preset.x]\nevery = 3",
            "[effort]\nextreme = \"none\"",
            "[effort]\nlow = \"think-harder\"",
            "[other]\na = 1",
            "[models.m]\nstrategy = \"nope\"",
            "[models.m]\nport = 80",
            "[models.m.effort]\nlow = \"missing\"",
            "[models.m.models.n]\nstrategy = \"none\"",
            "[models]\nm = 3",
        ] {
            assert!(Presets::from_toml(bad).is_err(), "{bad}");
        }
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
