//! The local engine as a backend.
//!
//! The engine runs on its own thread behind a [`BatchScheduler`]: concurrent requests
//! (from several eval workers, or server connections) share every forward pass. Each
//! request carries a [`Runner`] as its steering object, so strategies see and steer
//! every token; the runner streams the visible text back to the caller's thread while
//! the batch runs, and comes back with the generation to make the completion. A
//! caller that stops listening (a closed connection) ends its request at the next
//! token, freeing its sequence and probes.

use crate::adaptive::Difficulty;
use crate::constraint::{Constraint, MaskVocab};
use crate::difficulty::{probe_path, DifficultyProbe};
use crate::strategy::{PieceSink, Runner, TokenIds};
use crate::{
    Backend, BackendError, Capabilities, ChoicesSink, Completion, CompletionRequest, EngineTime,
    Finish, ListeningSink, PieceKind, Prompt, Sink, StrategySpec, TokenLogprob, Usage,
};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::Instant;
use terse_engine::{
    Action, BatchScheduler, ChatTemplate, Engine, EngineError, Generation, GenerationRequest,
    RequestId, Sampler, SamplerConfig, StopCause, Tokenizer,
};

/// What the driver thread sends back for the request at an index of its job.
enum Reply {
    Piece(usize, PieceKind, String, Vec<TokenLogprob>),
    Done(usize, Result<Generation, String>),
}

/// Requests for the driver: one, or siblings of one prompt (which share its prefill),
/// answering on one channel.
struct Job {
    requests: Vec<GenerationRequest>,
    reply: mpsc::Sender<Reply>,
}

/// Where the driver answers a request: its job's channel and its index there.
type ReplyTo = (mpsc::Sender<Reply>, usize);

/// Counters of the engine behind a [`LocalBackend`], for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EngineLoad {
    pub running: usize,
    pub waiting: usize,
    pub live_probes: usize,
    /// KV cache blocks in use and in all.
    pub kv_blocks_used: usize,
    pub kv_blocks_total: usize,
}

pub struct LocalBackend {
    /// `None` only while dropping.
    jobs: Option<mpsc::Sender<Job>>,
    driver: Option<JoinHandle<()>>,
    load: Arc<std::sync::Mutex<EngineLoad>>,
    tokenizer: Arc<Tokenizer>,
    template: ChatTemplate,
    ids: TokenIds,
    fingerprint: String,
    ctx_size: usize,
    model_file: PathBuf,
    /// Difficulty probes read so far, by path (each checked against this model once).
    probes: Mutex<HashMap<PathBuf, Arc<DifficultyProbe>>>,
    /// The vocabulary as the grammar mask reads it, built on the first constrained
    /// request.
    mask_vocab: OnceLock<Arc<MaskVocab>>,
}

impl LocalBackend {
    /// Moves a loaded engine onto a driver thread that runs up to `max_sequences`
    /// requests per forward pass; hashes its GGUF file once for the fingerprint.
    pub fn new(engine: Engine, max_sequences: usize) -> Result<Self, BackendError> {
        let model_file = engine.path().to_path_buf();
        let fingerprint = sha256_file(&model_file).map_err(|source| BackendError::Fingerprint {
            path: model_file.clone(),
            source,
        })?;
        let template = match ChatTemplate::from_gguf(engine.gguf(), engine.tokenizer()) {
            Ok(Some(t)) => t,
            Ok(None) => ChatTemplate::chatml(),
            Err(e) => return Err(BackendError::Engine(EngineError::Template(e))),
        };
        let tokenizer = engine.tokenizer().clone();
        let ids = TokenIds::from_tokenizer(&tokenizer);
        let ctx_size = engine.ctx_size();
        let load = Arc::new(std::sync::Mutex::new(EngineLoad::default()));
        let (jobs, inbox) = mpsc::channel();
        let driver_load = load.clone();
        let driver = std::thread::Builder::new()
            .name("terse-engine".into())
            .spawn(move || drive(engine, inbox, max_sequences, driver_load))
            .map_err(|e| BackendError::Driver(e.to_string()))?;
        Ok(LocalBackend {
            jobs: Some(jobs),
            driver: Some(driver),
            load,
            tokenizer,
            template,
            ids,
            fingerprint: format!("sha256:{fingerprint}"),
            ctx_size,
            model_file,
            probes: Mutex::new(HashMap::new()),
            mask_vocab: OnceLock::new(),
        })
    }

    pub fn tokenizer(&self) -> &Arc<Tokenizer> {
        &self.tokenizer
    }

    pub fn ctx_size(&self) -> usize {
        self.ctx_size
    }

    /// What the engine is doing now.
    pub fn load(&self) -> EngineLoad {
        self.load.lock().map(|l| *l).unwrap_or_default()
    }

    /// The prompt tokens of `request` and, of those, how many the strategy added
    /// after the rendered prompt (a hidden opening hint).
    pub fn prompt_tokens(
        &self,
        request: &CompletionRequest,
        runner: &Runner,
    ) -> Result<(Vec<u32>, usize), BackendError> {
        let (text, add_bos) = match &request.prompt {
            Prompt::Chat(_) => (self.render_prompt(request)?, false),
            Prompt::Text(text) => (text.clone(), true),
        };
        let base = self.tokenizer.encode(&text, add_bos, true);
        let prefix = runner.assistant_prefix();
        if prefix.is_empty() {
            return Ok((base, 0));
        }
        let full = self
            .tokenizer
            .encode(&format!("{text}{prefix}"), add_bos, true);
        let added = full.len().saturating_sub(base.len());
        Ok((full, added))
    }

    fn render_prompt(&self, request: &CompletionRequest) -> Result<String, BackendError> {
        match &request.prompt {
            Prompt::Chat(messages) => {
                let messages = request.strategy.prepare_messages(messages);
                Ok(self
                    .template
                    .render_with(&messages, true, &request.template_kwargs)
                    .map_err(EngineError::Template)?)
            }
            Prompt::Text(text) => Ok(text.clone()),
        }
    }
}

impl Drop for LocalBackend {
    fn drop(&mut self) {
        // Closing the channel ends the driver once its running requests finish.
        self.jobs.take();
        if let Some(driver) = self.driver.take() {
            let _ = driver.join();
        }
    }
}

/// The driver thread: admits requests as they arrive and steps the batch until
/// every backend handle is gone.
fn drive(
    mut engine: Engine,
    inbox: mpsc::Receiver<Job>,
    max_sequences: usize,
    load: Arc<std::sync::Mutex<EngineLoad>>,
) {
    let mut scheduler = BatchScheduler::new(max_sequences);
    let mut replies: Vec<(RequestId, ReplyTo)> = Vec::new();
    let total_blocks =
        engine.kv_cache().shape().capacity_tokens / terse_engine::kv_cache::BLOCK_TOKENS;
    loop {
        if scheduler.is_idle() {
            if let Ok(mut l) = load.lock() {
                *l = EngineLoad {
                    kv_blocks_used: total_blocks - engine.kv_cache().free_block_count(),
                    kv_blocks_total: total_blocks,
                    ..EngineLoad::default()
                };
            }
            match inbox.recv() {
                Ok(job) => submit(&mut scheduler, job, &mut replies),
                Err(mpsc::RecvError) => return,
            }
        }
        while let Ok(job) = inbox.try_recv() {
            submit(&mut scheduler, job, &mut replies);
        }
        match scheduler.step(&mut engine) {
            Ok(finished) => {
                for (id, result) in finished {
                    if let Some(i) = replies.iter().position(|(r, _)| *r == id) {
                        let (_, (reply, index)) = replies.swap_remove(i);
                        // A caller that gave up waiting is not an error of the batch.
                        let _ = reply.send(Reply::Done(index, result.map_err(|e| e.to_string())));
                    }
                }
            }
            Err(err) => {
                // The scheduler freed its running requests; fail them and keep serving.
                let message = err.to_string();
                for (_, (reply, index)) in replies.drain(..) {
                    let _ = reply.send(Reply::Done(index, Err(message.clone())));
                }
                scheduler = BatchScheduler::new(max_sequences);
            }
        }
        if let Ok(mut l) = load.lock() {
            *l = EngineLoad {
                running: scheduler.running(),
                waiting: scheduler.waiting(),
                live_probes: scheduler.live_probes(),
                kv_blocks_used: total_blocks - engine.kv_cache().free_block_count(),
                kv_blocks_total: total_blocks,
            };
        }
    }
}

fn submit(scheduler: &mut BatchScheduler, job: Job, replies: &mut Vec<(RequestId, ReplyTo)>) {
    let ids = scheduler.submit_siblings(job.requests);
    replies.extend(
        ids.into_iter()
            .enumerate()
            .map(|(index, id)| (id, (job.reply.clone(), index))),
    );
}

fn sha256_file(path: &std::path::Path) -> std::io::Result<String> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

impl Backend for LocalBackend {
    fn fingerprint(&self) -> String {
        self.fingerprint.clone()
    }

    fn render(&self, request: &CompletionRequest) -> Result<String, BackendError> {
        let rendered = self.render_prompt(request)?;
        let runner = Runner::new(&request.strategy, &rendered, None, None);
        Ok(format!("{rendered}{}", runner.assistant_prefix()))
    }

    fn difficulty(
        &self,
        request: &CompletionRequest,
        probe: Option<&Path>,
    ) -> Result<Difficulty, BackendError> {
        // The probe was trained on plain-CoT prompts: read the prompt without the
        // request's strategy stages.
        let plain = CompletionRequest {
            strategy: StrategySpec::none(),
            ..request.clone()
        };
        let prompt = self.render(&plain)?;
        let hidden = self
            .prompt_hidden_states(&[prompt])?
            .pop()
            .ok_or_else(|| BackendError::Generation("no prompt hidden state".into()))?;
        let path = probe.map_or_else(|| probe_path(&self.model_file), Path::to_path_buf);
        let probe = {
            // Entries are only ever inserted whole: a poisoned map is still sound.
            let mut probes = self.probes.lock().unwrap_or_else(|e| e.into_inner());
            match probes.get(&path) {
                Some(p) => p.clone(),
                None => {
                    let p = Arc::new(DifficultyProbe::load(
                        &path,
                        &self.fingerprint,
                        hidden.len(),
                    )?);
                    probes.insert(path, p.clone());
                    p
                }
            }
        };
        let (p_right, p_long) = probe.predict(&hidden);
        Ok(Difficulty { p_right, p_long })
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            logits: true,
            hidden_states: true,
            logprobs: true,
        }
    }

    fn complete_streaming(
        &self,
        request: &CompletionRequest,
        sink: Sink<'_>,
    ) -> Result<Completion, BackendError> {
        self.complete_until(request, &mut |kind, text, logprobs| {
            sink(kind, text, logprobs);
            true
        })
    }

    /// Runs siblings of one prompt in the batch together: the prompt is prefilled
    /// once and forked for each (see [`BatchScheduler::submit_siblings`]).
    fn complete_siblings(
        &self,
        requests: &[CompletionRequest],
    ) -> Result<Vec<Completion>, BackendError> {
        self.complete_siblings_until(requests, &mut |_, _, _, _| true)?
            .into_iter()
            .collect()
    }
}

impl LocalBackend {
    /// Like [`Backend::complete_streaming`], but `sink` answers whether the caller
    /// still listens: after a `false` the request ends at its next token (stop reason
    /// `cancelled`), freeing its sequence, probes and KV cache, and the completion so
    /// far is returned. The server uses this to cancel the generation of a client that
    /// disconnected.
    pub fn complete_until(
        &self,
        request: &CompletionRequest,
        sink: ListeningSink<'_>,
    ) -> Result<Completion, BackendError> {
        let mut results = self.complete_siblings_until(
            std::slice::from_ref(request),
            &mut |_, kind, text, logprobs| sink(kind, text, logprobs),
        )?;
        results.pop().unwrap_or(Err(BackendError::DriverStopped))
    }

    /// Runs siblings of one prompt together (the prompt prefilled once, see
    /// [`BatchScheduler::submit_siblings`]), streaming each one's visible text to
    /// `sink` with its index; a `false` from `sink` cancels that sibling as in
    /// [`LocalBackend::complete_until`]. Returns each sibling's result in order.
    pub fn complete_siblings_until(
        &self,
        requests: &[CompletionRequest],
        sink: ChoicesSink<'_>,
    ) -> Result<Vec<Result<Completion, BackendError>>, BackendError> {
        let start = Instant::now();
        let (reply, answers) = mpsc::channel();
        let mut listening = Vec::with_capacity(requests.len());
        let mut generation_requests = Vec::with_capacity(requests.len());
        let mut prefix_tokens = Vec::with_capacity(requests.len());
        for (index, request) in requests.iter().enumerate() {
            let flag = Arc::new(AtomicBool::new(true));
            let (still_listening, pieces) = (flag.clone(), reply.clone());
            let prepared = self.prepare(
                request,
                Box::new(move |kind, text, logprobs| {
                    still_listening.load(Ordering::Relaxed)
                        && pieces
                            .send(Reply::Piece(
                                index,
                                kind,
                                text.to_string(),
                                logprobs.to_vec(),
                            ))
                            .is_ok()
                }),
            )?;
            listening.push(flag);
            generation_requests.push(prepared.request);
            prefix_tokens.push(prepared.prefix_tokens);
        }
        let jobs = self.jobs.as_ref().ok_or(BackendError::DriverStopped)?;
        jobs.send(Job {
            requests: generation_requests,
            reply,
        })
        .map_err(|_| BackendError::DriverStopped)?;
        let mut generations: Vec<Option<Result<Generation, String>>> =
            requests.iter().map(|_| None).collect();
        while generations.iter().any(Option::is_none) {
            match answers.recv().map_err(|_| BackendError::DriverStopped)? {
                Reply::Piece(index, kind, text, logprobs) => {
                    if !sink(index, kind, &text, &logprobs) {
                        listening[index].store(false, Ordering::Relaxed);
                    }
                }
                Reply::Done(index, result) => generations[index] = Some(result),
            }
        }
        let mut results = Vec::with_capacity(requests.len());
        for (index, generation) in generations.into_iter().flatten().enumerate() {
            let generation = match generation {
                Ok(g) => g,
                Err(e) => {
                    results.push(Err(BackendError::Generation(e)));
                    continue;
                }
            };
            let mut held_back = Vec::new();
            let completion = finish(generation, prefix_tokens[index], start, &mut || {
                // `finish` streams the text the runner held back (a partial stop
                // string or think marker); it arrives on the channel now.
                while let Ok(reply) = answers.try_recv() {
                    if let Reply::Piece(i, kind, text, logprobs) = reply {
                        held_back.push((i, kind, text, logprobs));
                    }
                }
            });
            for (i, kind, text, logprobs) in held_back {
                sink(i, kind, &text, &logprobs);
            }
            results.push(Ok(completion));
        }
        Ok(results)
    }

    /// The prompt, sampler and runner of `request`, its visible text going to `sink`.
    fn prepare(
        &self,
        request: &CompletionRequest,
        sink: PieceSink,
    ) -> Result<Prepared, BackendError> {
        let rendered = self.render_prompt(request)?;
        let mut runner = Runner::new(
            &request.strategy,
            &rendered,
            Some(self.ids.clone()),
            Some(self.tokenizer.clone()),
        )
        .with_stop_strings(&request.stop)
        .with_sink(sink);
        if request.logprobs {
            runner = runner.with_logprobs(request.top_logprobs);
        }
        if let Some(grammar) = &request.constraint {
            let vocab = self
                .mask_vocab
                .get_or_init(|| Arc::new(MaskVocab::new(&self.tokenizer)))
                .clone();
            runner = runner.with_constraint(Constraint::new(grammar.clone(), vocab));
        }
        let (tokens, prefix_tokens) = self.prompt_tokens(request, &runner)?;
        Ok(Prepared {
            request: GenerationRequest {
                steering: Some(Box::new(runner)),
                ..GenerationRequest::new(
                    tokens,
                    Sampler::new(request.sampling.clone()),
                    request.max_tokens,
                )
            },
            prefix_tokens,
        })
    }
}

/// Keeps the prompt's final hidden state and ends the request at its first token.
#[derive(Default)]
struct HiddenCapture {
    hidden: Option<Vec<f32>>,
}

impl terse_engine::Steering for HiddenCapture {
    fn wants_prompt_hidden(&self) -> bool {
        true
    }

    fn on_prompt_hidden(&mut self, hidden: &[f32]) {
        self.hidden = Some(hidden.to_vec());
    }

    fn on_token(&mut self, _event: &terse_engine::TokenEvent<'_>, actions: &mut Vec<Action>) {
        actions.push(Action::Stop(StopCause("prompt hidden state taken".into())));
    }
}

impl LocalBackend {
    /// The final hidden state of the last position of each rendered prompt (the text
    /// [`Backend::render`] gives and eval records keep), computed in the batch like any
    /// request; nothing is generated. For the difficulty probe.
    pub fn prompt_hidden_states(&self, prompts: &[String]) -> Result<Vec<Vec<f32>>, BackendError> {
        let jobs = self.jobs.as_ref().ok_or(BackendError::DriverStopped)?;
        let mut answers = Vec::with_capacity(prompts.len());
        for prompt in prompts {
            let (reply, answer) = mpsc::channel();
            let tokens = self.tokenizer.encode(prompt, false, true);
            let request = GenerationRequest {
                steering: Some(Box::new(HiddenCapture::default())),
                ..GenerationRequest::new(tokens, Sampler::new(SamplerConfig::greedy()), 1)
            };
            jobs.send(Job {
                requests: vec![request],
                reply,
            })
            .map_err(|_| BackendError::DriverStopped)?;
            answers.push(answer);
        }
        let mut hidden = Vec::with_capacity(prompts.len());
        for answer in answers {
            let generation = loop {
                match answer.recv().map_err(|_| BackendError::DriverStopped)? {
                    Reply::Done(_, result) => break result.map_err(BackendError::Generation)?,
                    Reply::Piece(..) => {}
                }
            };
            let capture = generation
                .steering
                .and_then(|s| {
                    (s as Box<dyn std::any::Any>)
                        .downcast::<HiddenCapture>()
                        .ok()
                })
                .and_then(|c| c.hidden)
                .ok_or_else(|| {
                    BackendError::Generation("the engine gave no prompt hidden state".into())
                })?;
            hidden.push(capture);
        }
        Ok(hidden)
    }
}

/// A request ready for the driver, and how many of its prompt tokens the strategy
/// added (counted as injected, not as prompt).
struct Prepared {
    request: GenerationRequest,
    prefix_tokens: usize,
}

/// The completion of a finished generation; `after_runner` runs once the runner has
/// streamed the text it held back until the end.
fn finish(
    generation: Generation,
    prefix_tokens: usize,
    start: Instant,
    after_runner: &mut dyn FnMut(),
) -> Completion {
    let runner = match generation.steering {
        Some(steering) => (steering as Box<dyn std::any::Any>)
            .downcast::<Runner>()
            .ok(),
        None => None,
    };
    let u = generation.usage;
    let prompt_tokens = u.prompt - prefix_tokens;
    let (text, reasoning, stop_reason, events, logprobs, reasoning_tokens, answer_tokens) =
        match runner {
            Some(runner) => {
                let out = runner.finish(generation.reason);
                after_runner();
                (
                    out.text,
                    out.reasoning,
                    out.stop_reason,
                    out.events,
                    out.logprobs,
                    out.reasoning_tokens,
                    out.answer_tokens,
                )
            }
            // A request the engine refused before running (no tokens to generate).
            None => (
                String::new(),
                None,
                "length".to_string(),
                Vec::new(),
                Vec::new(),
                0,
                0,
            ),
        };
    Completion {
        text,
        reasoning,
        usage: Usage {
            prompt_tokens: prompt_tokens as u64,
            prompt_cached_tokens: u.prompt_cached.min(prompt_tokens) as u64,
            output_tokens: u.sampled as u64,
            reasoning_tokens,
            answer_tokens,
            probes: u.probes as u64,
            probe_prefill_tokens: u.probe_prefill as u64,
            probe_decoded_tokens: u.probe_decoded as u64,
            injected_tokens: (u.injected + prefix_tokens) as u64,
        },
        finish: if stop_reason == "length" {
            Finish::Length
        } else {
            Finish::Stop
        },
        stop_reason,
        events,
        latency_s: start.elapsed().as_secs_f64(),
        engine_time: Some(EngineTime {
            forward_s: generation.stats.forward_time.as_secs_f64(),
            probe_forward_s: generation.stats.probe_forward_time.as_secs_f64(),
        }),
        logprobs,
    }
}
