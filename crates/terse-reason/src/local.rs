//! The local engine as a backend.
//!
//! The engine runs on its own thread behind a [`BatchScheduler`]: concurrent
//! `complete` calls (from several eval workers, or server connections) become
//! requests of one continuous batch, so they share every forward pass.

use crate::{Backend, BackendError, ChatMessage, Completion, Finish, Sampling};
use sha2::{Digest, Sha256};
use std::io::Read;
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;
use terse_engine::{
    BatchScheduler, ChatTemplate, Engine, EngineError, Generation, GenerationRequest, RequestId,
    Sampler, SamplerConfig, StopReason, Tokenizer,
};

type Reply = mpsc::Sender<Result<Generation, String>>;

pub struct LocalBackend {
    /// `None` only while dropping.
    jobs: Option<mpsc::Sender<(GenerationRequest, Reply)>>,
    driver: Option<JoinHandle<()>>,
    tokenizer: Arc<Tokenizer>,
    template: ChatTemplate,
    fingerprint: String,
}

impl LocalBackend {
    /// Moves a loaded engine onto a driver thread that runs up to `max_sequences`
    /// requests per forward pass; hashes its GGUF file once for the fingerprint.
    pub fn new(engine: Engine, max_sequences: usize) -> Result<Self, BackendError> {
        let path = engine.path().to_path_buf();
        let fingerprint =
            sha256_file(&path).map_err(|source| BackendError::Fingerprint { path, source })?;
        let template = match ChatTemplate::from_gguf(engine.gguf(), engine.tokenizer()) {
            Ok(Some(t)) => t,
            Ok(None) => ChatTemplate::chatml(),
            Err(e) => return Err(BackendError::Engine(EngineError::Template(e))),
        };
        let tokenizer = engine.tokenizer().clone();
        let (jobs, inbox) = mpsc::channel();
        let driver = std::thread::Builder::new()
            .name("terse-engine".into())
            .spawn(move || drive(engine, inbox, max_sequences))
            .map_err(|e| BackendError::Driver(e.to_string()))?;
        Ok(LocalBackend {
            jobs: Some(jobs),
            driver: Some(driver),
            tokenizer,
            template,
            fingerprint: format!("sha256:{fingerprint}"),
        })
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
    inbox: mpsc::Receiver<(GenerationRequest, Reply)>,
    max_sequences: usize,
) {
    let mut scheduler = BatchScheduler::new(max_sequences);
    let mut replies: Vec<(RequestId, Reply)> = Vec::new();
    loop {
        if scheduler.is_idle() {
            match inbox.recv() {
                Ok((request, reply)) => replies.push((scheduler.submit(request), reply)),
                Err(mpsc::RecvError) => return,
            }
        }
        while let Ok((request, reply)) = inbox.try_recv() {
            replies.push((scheduler.submit(request), reply));
        }
        match scheduler.step(&mut engine) {
            Ok(finished) => {
                for (id, result) in finished {
                    if let Some(i) = replies.iter().position(|(r, _)| *r == id) {
                        let (_, reply) = replies.swap_remove(i);
                        // A caller that gave up waiting is not an error of the batch.
                        let _ = reply.send(result.map_err(|e| e.to_string()));
                    }
                }
            }
            Err(err) => {
                // The scheduler freed its running requests; fail them and keep serving.
                let message = err.to_string();
                for (_, reply) in replies.drain(..) {
                    let _ = reply.send(Err(message.clone()));
                }
                scheduler = BatchScheduler::new(max_sequences);
            }
        }
    }
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

    fn render(&self, messages: &[ChatMessage]) -> Result<String, BackendError> {
        Ok(self
            .template
            .render(messages, true)
            .map_err(EngineError::Template)?)
    }

    fn complete(
        &self,
        messages: &[ChatMessage],
        sampling: &Sampling,
    ) -> Result<Completion, BackendError> {
        let prompt = self.render(messages)?;
        let tokens = self.tokenizer.encode(&prompt, false, true);
        let sampler = Sampler::new(SamplerConfig {
            temperature: sampling.temperature,
            top_k: sampling.top_k,
            top_p: sampling.top_p,
            min_p: sampling.min_p,
            seed: sampling.seed,
            ..SamplerConfig::default()
        });
        let start = Instant::now();
        let (reply, answer) = mpsc::channel();
        let request = GenerationRequest {
            prompt: tokens.clone(),
            sampler,
            max_tokens: sampling.max_tokens,
        };
        let jobs = self.jobs.as_ref().ok_or(BackendError::DriverStopped)?;
        jobs.send((request, reply))
            .map_err(|_| BackendError::DriverStopped)?;
        let generation = answer
            .recv()
            .map_err(|_| BackendError::DriverStopped)?
            .map_err(BackendError::Generation)?;
        // The end-of-generation token is counted (it was generated) but not shown.
        let shown: Vec<u32> = generation
            .tokens
            .iter()
            .copied()
            .filter(|&t| !self.tokenizer.is_eog(t))
            .collect();
        Ok(Completion {
            text: self.tokenizer.decode(&shown),
            prompt_tokens: tokens.len() as u64,
            output_tokens: generation.tokens.len() as u64,
            latency: start.elapsed(),
            finish: match generation.reason {
                StopReason::EndOfGeneration | StopReason::Caller => Finish::Stop,
                StopReason::MaxTokens => Finish::Length,
            },
        })
    }
}
