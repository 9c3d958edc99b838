//! Chat templates: render a conversation into a prompt with the model's Jinja
//! template (`tokenizer.chat_template`).
//!
//! Rendering follows Hugging Face transformers' Jinja2 setup, which the templates are
//! written for: `trim_blocks` and `lstrip_blocks` on, the trailing newline dropped,
//! Python string/dict methods (`.strip()`, `.startswith()`, `.items()`, …) available,
//! and the globals `raise_exception` and `strftime_now`.

use std::time::{SystemTime, UNIX_EPOCH};

use minijinja::{context, Environment, ErrorKind, Value};
use serde::{Deserialize, Serialize};
use terse_gguf::{GgufError, GgufFile};

use crate::Tokenizer;

/// One message of a conversation.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    pub role: String,
    pub content: String,
    /// An assistant turn's tool calls, in the shape the templates read (Hugging Face's):
    /// `{"id", "type": "function", "function": {"name", "arguments": {…}}}`, the
    /// arguments an object rather than the OpenAI API's JSON string.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<serde_json::Value>,
    /// A `tool` turn's answer is to this call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
}

impl ChatMessage {
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> Self {
        ChatMessage {
            role: role.into(),
            content: content.into(),
            ..ChatMessage::default()
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    #[error("chat template does not compile: {0:#}")]
    Syntax(#[source] minijinja::Error),
    #[error("chat template failed to render: {0:#}")]
    Render(#[source] minijinja::Error),
    #[error("reading tokenizer.chat_template: {0}")]
    Gguf(#[from] GgufError),
}

/// A compiled chat template with the model's BOS/EOS token texts.
pub struct ChatTemplate {
    env: Environment<'static>,
    bos_token: String,
    eos_token: String,
}

const TEMPLATE_NAME: &str = "chat";

/// The ChatML format (`<|im_start|>role\ncontent<|im_end|>\n`).
const CHATML: &str = "{%- for message in messages %}\
{{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}\
{%- endfor %}\
{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}";

impl ChatTemplate {
    /// Compiles `source`; `bos_token`/`eos_token` are the texts the template sees.
    pub fn new(source: &str, bos_token: &str, eos_token: &str) -> Result<Self, TemplateError> {
        let mut env = Environment::new();
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        env.set_keep_trailing_newline(false);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function("raise_exception", raise_exception);
        env.add_function("strftime_now", strftime_now);
        env.add_filter("tojson", tojson);
        env.add_template_owned(TEMPLATE_NAME, source.to_owned())
            .map_err(TemplateError::Syntax)?;
        Ok(ChatTemplate {
            env,
            bos_token: bos_token.to_owned(),
            eos_token: eos_token.to_owned(),
        })
    }

    /// The model's template from `tokenizer.chat_template`, or `Ok(None)` if it has
    /// none. BOS/EOS texts come from `tok` (empty if the model lacks them).
    pub fn from_gguf(g: &GgufFile, tok: &Tokenizer) -> Result<Option<Self>, TemplateError> {
        let Some(source) = g.opt_str("tokenizer.chat_template")? else {
            return Ok(None);
        };
        let text_of = |id: Option<u32>| id.and_then(|id| tok.token_text(id)).unwrap_or("");
        Self::new(source, text_of(tok.bos()), text_of(tok.eos())).map(Some)
    }

    /// The ChatML template, for models without one of their own.
    pub fn chatml() -> Self {
        // CHATML is a fixed, tested template; failing to compile it is a bug here.
        Self::new(CHATML, "", "").expect("built-in ChatML template compiles")
    }

    /// Renders `messages`; `add_generation_prompt` appends the opening of the
    /// assistant's turn.
    pub fn render(
        &self,
        messages: &[ChatMessage],
        add_generation_prompt: bool,
    ) -> Result<String, TemplateError> {
        self.render_with(messages, add_generation_prompt, ())
    }

    /// Like [`ChatTemplate::render`], with more variables for the template (the
    /// `chat_template_kwargs` of vLLM's and llama.cpp's servers, such as
    /// `enable_thinking`): a map or struct whose fields the template may read. The
    /// template's own variables (`messages`, `add_generation_prompt`, `bos_token`,
    /// `eos_token`) win over fields of the same name.
    pub fn render_with(
        &self,
        messages: &[ChatMessage],
        add_generation_prompt: bool,
        kwargs: impl serde::Serialize,
    ) -> Result<String, TemplateError> {
        let template = self
            .env
            .get_template(TEMPLATE_NAME)
            .map_err(TemplateError::Render)?;
        template
            .render(context! {
                messages => messages,
                add_generation_prompt => add_generation_prompt,
                bos_token => self.bos_token.as_str(),
                eos_token => self.eos_token.as_str(),
                ..Value::from_serialize(&kwargs)
            })
            .map_err(TemplateError::Render)
    }
}

/// `tojson` as transformers defines it for chat templates: Python's `json.dumps`
/// (separators `", "` and `": "`, or `indent` spaces; non-ASCII kept), not minijinja's
/// HTML-safe filter, which would write `<` as `\u003c` into the prompt. Tool
/// signatures and tool-call arguments reach the prompt through it.
fn tojson(value: Value, kwargs: minijinja::value::Kwargs) -> Result<Value, minijinja::Error> {
    let indent: Option<usize> = kwargs.get("indent")?;
    let sort_keys: Option<bool> = kwargs.get("sort_keys")?;
    kwargs.assert_all_used()?;
    let invalid = |e: serde_json::Error| {
        minijinja::Error::new(ErrorKind::InvalidOperation, format!("tojson: {e}"))
    };
    // Objects keep their order (the order the client sent them in: serde_json's
    // `preserve_order` is on in the workspace), as Python's dicts do.
    let mut json = serde_json::to_value(&value).map_err(invalid)?;
    if sort_keys == Some(true) {
        json = sorted(json);
    }
    let mut out = Vec::new();
    match indent {
        Some(n) => {
            let spaces = " ".repeat(n);
            let formatter = serde_json::ser::PrettyFormatter::with_indent(spaces.as_bytes());
            serde::Serialize::serialize(
                &json,
                &mut serde_json::Serializer::with_formatter(&mut out, formatter),
            )
        }
        None => serde::Serialize::serialize(
            &json,
            &mut serde_json::Serializer::with_formatter(&mut out, PythonFormatter),
        ),
    }
    .map_err(invalid)?;
    let text = String::from_utf8(out)
        .map_err(|e| minijinja::Error::new(ErrorKind::InvalidOperation, format!("tojson: {e}")))?;
    Ok(Value::from_safe_string(text))
}

/// `value` with every object's keys in order (`sort_keys=True`).
fn sorted(value: serde_json::Value) -> serde_json::Value {
    match value {
        serde_json::Value::Object(map) => {
            let mut entries: Vec<_> = map.into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            serde_json::Value::Object(entries.into_iter().map(|(k, v)| (k, sorted(v))).collect())
        }
        serde_json::Value::Array(items) => {
            serde_json::Value::Array(items.into_iter().map(sorted).collect())
        }
        other => other,
    }
}

/// One line, with Python's default separators: `, ` between items, `: ` after keys.
struct PythonFormatter;

impl serde_json::ser::Formatter for PythonFormatter {
    fn begin_array_value<W: ?Sized + std::io::Write>(
        &mut self,
        writer: &mut W,
        first: bool,
    ) -> std::io::Result<()> {
        if first {
            Ok(())
        } else {
            writer.write_all(b", ")
        }
    }

    fn begin_object_key<W: ?Sized + std::io::Write>(
        &mut self,
        writer: &mut W,
        first: bool,
    ) -> std::io::Result<()> {
        // Keys are separated as items are.
        self.begin_array_value(writer, first)
    }

    fn begin_object_value<W: ?Sized + std::io::Write>(
        &mut self,
        writer: &mut W,
    ) -> std::io::Result<()> {
        writer.write_all(b": ")
    }
}

fn raise_exception(message: String) -> Result<Value, minijinja::Error> {
    Err(minijinja::Error::new(ErrorKind::InvalidOperation, message))
}

/// Python's `datetime.now().strftime(format)`, in UTC.
fn strftime_now(format: String) -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    format_utc(&format, secs)
}

const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];
const WEEKDAYS: [&str; 7] = [
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
    "Sunday",
];

/// strftime over a Unix time in UTC, for the directives chat templates use.
/// Unknown directives are kept verbatim, as glibc does.
fn format_utc(format: &str, unix_secs: u64) -> String {
    let days = unix_secs / 86_400;
    let secs_of_day = unix_secs % 86_400;
    let (year, month, day) = civil_from_days(days);
    let (hour, minute, second) = (secs_of_day / 3600, secs_of_day / 60 % 60, secs_of_day % 60);
    // 1970-01-01 was a Thursday (index 3 from Monday).
    let weekday = ((days + 3) % 7) as usize;
    let month_name = MONTHS[(month - 1) as usize % 12];
    let day_name = WEEKDAYS[weekday];
    let day_of_year = days - days_from_civil(year, 1, 1) + 1;
    let hour12 = if hour % 12 == 0 { 12 } else { hour % 12 };

    let mut out = String::new();
    let mut chars = format.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('Y') => out.push_str(&year.to_string()),
            Some('y') => out.push_str(&format!("{:02}", year % 100)),
            Some('m') => out.push_str(&format!("{month:02}")),
            Some('d') => out.push_str(&format!("{day:02}")),
            Some('e') => out.push_str(&format!("{day:>2}")),
            Some('H') => out.push_str(&format!("{hour:02}")),
            Some('I') => out.push_str(&format!("{hour12:02}")),
            Some('M') => out.push_str(&format!("{minute:02}")),
            Some('S') => out.push_str(&format!("{second:02}")),
            Some('p') => out.push_str(if hour < 12 { "AM" } else { "PM" }),
            Some('j') => out.push_str(&format!("{day_of_year:03}")),
            Some('B') => out.push_str(month_name),
            Some('b') => out.push_str(month_name.get(..3).unwrap_or(month_name)),
            Some('A') => out.push_str(day_name),
            Some('a') => out.push_str(day_name.get(..3).unwrap_or(day_name)),
            Some('%') => out.push('%'),
            Some(other) => {
                out.push('%');
                out.push(other);
            }
            None => out.push('%'),
        }
    }
    out
}

/// Days since 1970-01-01 → (year, month 1..=12, day 1..=31); Howard Hinnant's algorithm.
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

/// (year, month, day) → days since 1970-01-01, for years from 1970.
fn days_from_civil(year: u64, month: u64, day: u64) -> u64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y / 400;
    let yoe = y % 400;
    let mp = if month > 2 { month - 3 } else { month + 9 };
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    (era * 146_097 + doe).saturating_sub(719_468)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msgs(pairs: &[(&str, &str)]) -> Vec<ChatMessage> {
        pairs
            .iter()
            .map(|(r, c)| ChatMessage::new(*r, *c))
            .collect()
    }

    #[test]
    fn chatml_renders_turns_and_generation_prompt() {
        let out = ChatTemplate::chatml()
            .render(&msgs(&[("system", "S"), ("user", "Hi")]), true)
            .unwrap();
        assert_eq!(
            out,
            "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
        );
    }

    #[test]
    fn template_kwargs_reach_the_template_and_its_own_variables_win() {
        let source =
            "{% if enable_thinking is defined and not enable_thinking %}<think></think>{% endif %}\
{{ add_generation_prompt }}|{{ messages | length }}";
        let template = ChatTemplate::new(source, "<s>", "</s>").unwrap();
        let messages = msgs(&[("user", "Hi")]);
        assert_eq!(template.render(&messages, true).unwrap(), "True|1");
        let kwargs = serde_json::json!({
            "enable_thinking": false,
            "add_generation_prompt": false,
            "messages": [],
        });
        assert_eq!(
            template.render_with(&messages, true, &kwargs).unwrap(),
            "<think></think>True|1"
        );
    }

    #[test]
    fn tojson_writes_what_pythons_json_dumps_writes() {
        let src = "{{ messages[0].tool_calls[0] | tojson }}|{{ messages[0].tool_calls[0] | tojson(indent=2, sort_keys=true) }}";
        let template = ChatTemplate::new(src, "", "").unwrap();
        let mut message = ChatMessage::new("assistant", "");
        message.tool_calls = vec![serde_json::json!({"name": "f<x>", "b": [1, "é"], "a": {}})];
        assert_eq!(
            template.render(&[message], false).unwrap(),
            "{\"name\": \"f<x>\", \"b\": [1, \"é\"], \"a\": {}}|{\n  \"a\": {},\n  \"b\": [\n    1,\n    \"é\"\n  ],\n  \"name\": \"f<x>\"\n}"
        );
    }

    #[test]
    fn a_message_without_tool_calls_leaves_them_undefined() {
        let src = "{% for m in messages %}{{ m.tool_calls is defined }}{{ m.tool_call_id is defined }}{% endfor %}";
        let template = ChatTemplate::new(src, "", "").unwrap();
        let mut tool = ChatMessage::new("tool", "18");
        tool.tool_call_id = Some("call_1".into());
        let out = template
            .render(&[ChatMessage::new("user", "Hi"), tool], false)
            .unwrap();
        assert_eq!(out, "FalseFalseFalseTrue");
    }

    #[test]
    fn blocks_are_trimmed_like_transformers() {
        let src = "{% for m in messages %}\n  {% if m.role == 'user' %}\n[{{ m.content }}]\n  {% endif %}\n{% endfor %}\n";
        let out = ChatTemplate::new(src, "", "")
            .unwrap()
            .render(&msgs(&[("user", "a")]), false)
            .unwrap();
        assert_eq!(out, "[a]\n");
    }

    #[test]
    fn python_string_methods_work() {
        let src = "{{ messages[0].content.strip().upper() }}|{{ messages[0].content.startswith(' x') }}|{{ bos_token }}";
        let out = ChatTemplate::new(src, "<s>", "</s>")
            .unwrap()
            .render(&msgs(&[("user", " xy ")]), false)
            .unwrap();
        assert_eq!(out, "XY|True|<s>");
    }

    #[test]
    fn raise_exception_fails_the_render_with_its_message() {
        let src = "{{ raise_exception('roles must alternate') }}";
        let err = ChatTemplate::new(src, "", "")
            .unwrap()
            .render(&[], false)
            .err()
            .unwrap();
        assert!(err.to_string().contains("roles must alternate"), "{err}");
    }

    #[test]
    fn syntax_error_is_reported_at_compile_time() {
        let err = ChatTemplate::new("{% if %}", "", "").err().unwrap();
        assert!(matches!(err, TemplateError::Syntax(_)), "{err}");
    }

    #[test]
    fn strftime_formats_a_known_date() {
        // 2024-02-29 13:05:09 UTC, a Thursday.
        let t = 1_709_211_909;
        assert_eq!(
            format_utc("%d %b %Y %H:%M:%S %A %j %I%p %%", t),
            "29 Feb 2024 13:05:09 Thursday 060 01PM %"
        );
    }
}
