//! A backend for unit tests of strategies that compose passes (`program`, `refine`):
//! it answers each request with what a closure says and records the requests, so a
//! test can check what a strategy asked for and how it counted the answers.

use crate::{
    adaptive, Backend, BackendError, Capabilities, Completion, CompletionRequest, Finish, Sink,
    Usage,
};
use std::sync::Mutex;

type Answer = dyn Fn(&CompletionRequest) -> Completion + Send + Sync;

pub(crate) struct ScriptedBackend {
    answer: Box<Answer>,
    requests: Mutex<Vec<CompletionRequest>>,
    logprobs: bool,
}

impl ScriptedBackend {
    pub(crate) fn new(
        answer: impl Fn(&CompletionRequest) -> Completion + Send + Sync + 'static,
    ) -> Self {
        ScriptedBackend {
            answer: Box::new(answer),
            requests: Mutex::new(Vec::new()),
            logprobs: false,
        }
    }

    /// Says it returns log-probabilities (the closure's completions carry them).
    pub(crate) fn with_logprobs(mut self) -> Self {
        self.logprobs = true;
        self
    }

    pub(crate) fn requests(&self) -> Vec<CompletionRequest> {
        self.requests.lock().unwrap().clone()
    }
}

/// A finished completion of `text` with `usage`.
pub(crate) fn completion(text: &str, usage: Usage) -> Completion {
    Completion {
        text: text.into(),
        reasoning: None,
        usage,
        finish: Finish::Stop,
        stop_reason: "eos".into(),
        events: Vec::new(),
        latency_s: 0.0,
        engine_time: None,
        logprobs: Vec::new(),
    }
}

impl Backend for ScriptedBackend {
    fn fingerprint(&self) -> String {
        "scripted".into()
    }

    fn render(&self, _: &CompletionRequest) -> Result<String, BackendError> {
        Ok(String::new())
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            logits: false,
            hidden_states: false,
            logprobs: self.logprobs,
        }
    }

    fn difficulty(
        &self,
        _: &CompletionRequest,
        _: Option<&std::path::Path>,
    ) -> Result<adaptive::Difficulty, BackendError> {
        Err(BackendError::Generation(
            "a scripted backend has no hidden states".into(),
        ))
    }

    fn complete_streaming(
        &self,
        request: &CompletionRequest,
        _: Sink<'_>,
    ) -> Result<Completion, BackendError> {
        self.requests.lock().unwrap().push(request.clone());
        Ok((self.answer)(request))
    }
}
