//! The local engine as a backend.

use crate::{Backend, BackendError, ChatMessage, Completion, Finish, Sampling};
use sha2::{Digest, Sha256};
use std::io::Read;
use std::sync::Mutex;
use std::time::Instant;
use terse_engine::{Engine, Sampler, SamplerConfig, StopReason};

pub struct LocalBackend {
    engine: Mutex<Engine>,
    fingerprint: String,
}

impl LocalBackend {
    /// Wraps a loaded engine; hashes its GGUF file once for the fingerprint.
    pub fn new(engine: Engine) -> Result<Self, BackendError> {
        let path = engine.path().to_path_buf();
        let fingerprint =
            sha256_file(&path).map_err(|source| BackendError::Fingerprint { path, source })?;
        Ok(LocalBackend {
            engine: Mutex::new(engine),
            fingerprint: format!("sha256:{fingerprint}"),
        })
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
        let engine = self.engine.lock().map_err(|_| BackendError::Poisoned)?;
        Ok(engine.render_chat(messages, true)?)
    }

    fn complete(
        &self,
        messages: &[ChatMessage],
        sampling: &Sampling,
    ) -> Result<Completion, BackendError> {
        let mut engine = self.engine.lock().map_err(|_| BackendError::Poisoned)?;
        let prompt = engine.render_chat(messages, true)?;
        let tokens = engine.tokenizer().encode(&prompt, false, true);
        let mut sampler = Sampler::new(SamplerConfig {
            temperature: sampling.temperature,
            top_k: sampling.top_k,
            top_p: sampling.top_p,
            min_p: sampling.min_p,
            seed: sampling.seed,
            ..SamplerConfig::default()
        });
        let start = Instant::now();
        let (generated, reason, _) =
            engine.generate(&tokens, &mut sampler, sampling.max_tokens, |_| true)?;
        let tokenizer = engine.tokenizer();
        // The end-of-generation token is counted (it was generated) but not shown.
        let shown: Vec<u32> = generated
            .iter()
            .copied()
            .filter(|&t| !tokenizer.is_eog(t))
            .collect();
        Ok(Completion {
            text: tokenizer.decode(&shown),
            prompt_tokens: tokens.len() as u64,
            output_tokens: generated.len() as u64,
            latency: start.elapsed(),
            finish: match reason {
                StopReason::EndOfGeneration | StopReason::Caller => Finish::Stop,
                StopReason::MaxTokens => Finish::Length,
            },
        })
    }
}
