//! The metrics of an answer that passes through the proxy untouched: the upstream's own
//! token counts (its `usage`), its finish reason, and the time to its first streamed
//! piece, between pieces and to its end, recorded as the local engine's answers are.
//!
//! A streamed answer is read event by event as it goes by. When the client did not ask
//! for `stream_options.include_usage`, the proxy asks the upstream for it anyway and
//! [`PassThroughMeter`] takes the usage chunk (`choices: []`) out of the stream, so the
//! client gets the events it asked for and the counters still get the upstream's
//! numbers; every other event goes on as its bytes came. The meter records at the end
//! of the answer, before its last bytes go (so a client that reads the answer and then
//! `/metrics` sees it counted), or when it is dropped because the client left.

use crate::metrics;
use axum::body::Bytes;
use serde_json::Value;
use std::time::Instant;

/// The most of a whole (not streamed) answer kept to read its usage from.
const MAX_WHOLE_BYTES: usize = 16 << 20;

/// Reads a passed-through answer on its way to the client.
pub struct PassThroughMeter {
    stream: bool,
    /// Take the usage chunk out: the client did not ask for it.
    drop_usage_chunk: bool,
    /// Bytes of a streamed event not yet complete; of a whole answer, all of it.
    pending: Vec<u8>,
    start: Instant,
    last_piece: Option<Instant>,
    prompt_tokens: Option<u64>,
    completion_tokens: Option<u64>,
    finish_reason: Option<String>,
    recorded: bool,
}

impl PassThroughMeter {
    pub fn new(stream: bool, drop_usage_chunk: bool) -> PassThroughMeter {
        PassThroughMeter {
            stream,
            drop_usage_chunk,
            pending: Vec::new(),
            start: Instant::now(),
            last_piece: None,
            prompt_tokens: None,
            completion_tokens: None,
            finish_reason: None,
            recorded: false,
        }
    }

    /// Takes the next bytes from the upstream and gives what goes on to the client: a
    /// whole answer at once; a stream's complete events (a partial one waits for the
    /// rest).
    pub fn feed(&mut self, chunk: &[u8]) -> Bytes {
        if !self.stream {
            if self.pending.len() + chunk.len() <= MAX_WHOLE_BYTES {
                self.pending.extend_from_slice(chunk);
            }
            return Bytes::copy_from_slice(chunk);
        }
        self.pending.extend_from_slice(chunk);
        let mut out = Vec::with_capacity(self.pending.len());
        while let Some(end) = event_end(&self.pending) {
            let event: Vec<u8> = self.pending.drain(..end).collect();
            if self.read_event(&event) {
                out.extend_from_slice(&event);
            }
        }
        Bytes::from(out)
    }

    /// What is left when the upstream's answer ends (a stream's last event without its
    /// blank line); records the answer's metrics before its last bytes go.
    pub fn finish(&mut self) -> Bytes {
        let rest = std::mem::take(&mut self.pending);
        let rest = if !self.stream {
            if let Ok(whole) = serde_json::from_slice::<Value>(&rest) {
                self.read_usage(&whole);
                if let Some(reason) = whole["choices"][0]["finish_reason"].as_str() {
                    self.finish_reason = Some(reason.to_string());
                }
            }
            Bytes::new()
        } else if rest.is_empty() || !self.read_event(&rest) {
            Bytes::new()
        } else {
            Bytes::from(rest)
        };
        self.record();
        rest
    }

    /// Records the answer once: at its end, or when the client left before it.
    fn record(&mut self) {
        if std::mem::replace(&mut self.recorded, true) {
            return;
        }
        metrics::passed_through(
            self.prompt_tokens,
            self.completion_tokens,
            self.finish_reason.as_deref(),
            self.start.elapsed().as_secs_f64(),
        );
    }

    /// Reads one event; whether it goes on to the client.
    fn read_event(&mut self, event: &[u8]) -> bool {
        let text = String::from_utf8_lossy(event);
        let mut keep = true;
        for data in text.lines().filter_map(|l| l.strip_prefix("data:")) {
            let Ok(chunk) = serde_json::from_str::<Value>(data.trim()) else {
                continue;
            };
            let choices = chunk["choices"].as_array().map_or(&[][..], Vec::as_slice);
            if choices.iter().any(has_text) {
                let now = Instant::now();
                match self.last_piece {
                    None => metrics::first_token((now - self.start).as_secs_f64()),
                    Some(t) => metrics::inter_token((now - t).as_secs_f64()),
                }
                self.last_piece = Some(now);
            }
            if let Some(reason) = choices.iter().find_map(|c| c["finish_reason"].as_str()) {
                self.finish_reason = Some(reason.to_string());
            }
            if chunk["usage"].is_object() {
                self.read_usage(&chunk);
                if choices.is_empty() && self.drop_usage_chunk {
                    keep = false;
                }
            }
        }
        keep
    }

    fn read_usage(&mut self, body: &Value) {
        let usage = &body["usage"];
        if let Some(n) = usage["prompt_tokens"].as_u64() {
            self.prompt_tokens = Some(n);
        }
        if let Some(n) = usage["completion_tokens"].as_u64() {
            self.completion_tokens = Some(n);
        }
    }
}

impl Drop for PassThroughMeter {
    fn drop(&mut self) {
        self.record();
    }
}

/// A streamed chunk's choice with text in it (chat's delta, completions' text).
fn has_text(choice: &Value) -> bool {
    let non_empty = |v: &Value| v.as_str().is_some_and(|s| !s.is_empty());
    non_empty(&choice["delta"]["content"])
        || non_empty(&choice["delta"]["reasoning_content"])
        || non_empty(&choice["text"])
}

/// The length of the first complete server-sent event in `bytes`, its blank line
/// included.
fn event_end(bytes: &[u8]) -> Option<usize> {
    let lf = bytes.windows(2).position(|w| w == b"\n\n").map(|i| i + 2);
    let crlf = bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| i + 4);
    match (lf, crlf) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHUNK: &str = "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi\"},\"finish_reason\":null}]}\n\n";
    const LAST: &str =
        "data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"length\"}]}\n\n";
    const USAGE: &str = "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":2,\"total_tokens\":11}}\n\n";
    const DONE: &str = "data: [DONE]\n\n";

    #[test]
    fn a_stream_goes_on_event_by_event_and_a_usage_chunk_not_asked_for_is_taken_out() {
        let all = format!("{CHUNK}{CHUNK}{LAST}{USAGE}{DONE}");
        let mut meter = PassThroughMeter::new(true, true);
        let mut out = Vec::new();
        // Split in the middle of events: each goes on only when complete.
        for piece in all.as_bytes().chunks(7) {
            out.extend_from_slice(&meter.feed(piece));
        }
        out.extend_from_slice(&meter.finish());
        assert_eq!(
            String::from_utf8(out).unwrap(),
            format!("{CHUNK}{CHUNK}{LAST}{DONE}")
        );
        assert_eq!(
            (meter.prompt_tokens, meter.completion_tokens),
            (Some(9), Some(2))
        );
        assert_eq!(meter.finish_reason.as_deref(), Some("length"));
        assert!(meter.last_piece.is_some());
    }

    #[test]
    fn a_usage_chunk_the_client_asked_for_stays_and_crlf_events_are_read() {
        let all = format!("{CHUNK}{USAGE}{DONE}").replace("\n\n", "\r\n\r\n");
        let mut meter = PassThroughMeter::new(true, false);
        let mut out = meter.feed(all.as_bytes()).to_vec();
        out.extend_from_slice(&meter.finish());
        assert_eq!(String::from_utf8(out).unwrap(), all);
        assert_eq!(meter.completion_tokens, Some(2));
    }

    #[test]
    fn a_whole_answer_passes_as_it_came_and_its_usage_is_read_at_the_end() {
        let body = br#"{"choices":[{"index":0,"message":{"content":"Hi"},"finish_reason":"stop"}],"usage":{"prompt_tokens":5,"completion_tokens":1}}"#;
        let mut meter = PassThroughMeter::new(false, false);
        let mut out = meter.feed(&body[..10]).to_vec();
        out.extend_from_slice(&meter.feed(&body[10..]));
        assert!(meter.finish().is_empty());
        assert_eq!(out, body);
        assert_eq!(
            (meter.prompt_tokens, meter.completion_tokens),
            (Some(5), Some(1))
        );
        assert_eq!(meter.finish_reason.as_deref(), Some("stop"));
    }

    #[test]
    fn a_stream_cut_off_before_its_blank_line_still_ends_with_its_last_event() {
        let mut meter = PassThroughMeter::new(true, true);
        let mut out = meter.feed(CHUNK.trim_end().as_bytes()).to_vec();
        assert!(out.is_empty());
        out.extend_from_slice(&meter.finish());
        assert_eq!(String::from_utf8(out).unwrap(), CHUNK.trim_end());
    }
}
