//! Content-addressed cache of generations, so no model output is ever paid for twice.
//!
//! The key is the sha256 of the canonical JSON of (model fingerprint, rendered prompt,
//! sampling parameters with the seed, token cap, stop strings, strategy, sample index);
//! the value is the [`Completion`] as JSON in
//! `DIR/<first 2 hex>/<remaining 62 hex>.json`. Writes go to a temporary file in the
//! same directory and are renamed into place, so a reader sees a whole entry or none,
//! and a killed writer leaves only a stray temporary file. An unreadable entry is
//! treated as a miss and overwritten.

use serde::Serialize;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use terse_reason::{Completion, CompletionRequest, Grammar, SamplerConfig, StrategySpec};

#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("generation cache {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot serialise cache entry {key}: {source}")]
    Serialize {
        key: String,
        source: serde_json::Error,
    },
}

#[derive(Serialize)]
struct KeyFields<'a> {
    /// Bumped when terse's code gives another completion for the same request, so old
    /// entries are not served as new ones (3: `program`'s subset runs blocks and
    /// answers with the last assignment).
    version: u32,
    model: &'a str,
    prompt: &'a str,
    sampling: &'a SamplerConfig,
    max_tokens: usize,
    stop: &'a [String],
    strategy: &'a StrategySpec,
    sample: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    constraint: Option<&'a Grammar>,
}

/// The hex sha256 key of one request (`prompt` is its rendered text).
pub fn cache_key(model: &str, prompt: &str, request: &CompletionRequest, sample: u32) -> String {
    let fields = KeyFields {
        version: 3,
        model,
        prompt,
        sampling: &request.sampling,
        max_tokens: request.max_tokens,
        stop: &request.stop,
        strategy: &request.strategy,
        sample,
        constraint: request.constraint.as_ref(),
    };
    // Struct fields serialise in declaration order, so the JSON is canonical;
    // serialising these types cannot fail.
    let json = serde_json::to_vec(&fields).unwrap_or_default();
    Sha256::digest(&json)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A directory of cached generations.
#[derive(Debug, Clone)]
pub struct GenerationCache {
    dir: PathBuf,
}

/// Distinguishes temporary files of concurrent writers within one process.
static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

impl GenerationCache {
    /// Opens (creating) a cache directory.
    pub fn open(dir: &Path) -> Result<Self, CacheError> {
        std::fs::create_dir_all(dir).map_err(|source| CacheError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        Ok(GenerationCache {
            dir: dir.to_path_buf(),
        })
    }

    fn entry_path(&self, key: &str) -> PathBuf {
        let shard = key.get(..2).unwrap_or("__");
        let rest = key.get(2..).unwrap_or(key);
        self.dir.join(shard).join(format!("{rest}.json"))
    }

    /// The cached generation for `key`, if a complete entry exists.
    pub fn get(&self, key: &str) -> Option<Completion> {
        let bytes = std::fs::read(self.entry_path(key)).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    /// Stores a generation atomically.
    pub fn put(&self, key: &str, generation: &Completion) -> Result<(), CacheError> {
        let path = self.entry_path(key);
        let io = |source| CacheError::Io {
            path: path.clone(),
            source,
        };
        let json = serde_json::to_vec(generation).map_err(|source| CacheError::Serialize {
            key: key.to_string(),
            source,
        })?;
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(io)?;
        }
        let tmp = path.with_extension(format!(
            "tmp-{}-{}",
            std::process::id(),
            TMP_COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::write(&tmp, json).map_err(io)?;
        std::fs::rename(&tmp, &path).map_err(io)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn generation(text: &str) -> Completion {
        Completion {
            text: text.into(),
            reasoning: None,
            usage: terse_reason::Usage {
                prompt_tokens: 3,
                output_tokens: 4,
                ..Default::default()
            },
            finish: terse_reason::Finish::Stop,
            stop_reason: "eos".into(),
            events: Vec::new(),
            latency_s: 0.25,
            engine_time: None,
            logprobs: Vec::new(),
        }
    }

    fn request() -> CompletionRequest {
        CompletionRequest::chat(Vec::new(), SamplerConfig::greedy(), 16)
    }

    #[test]
    fn key_changes_with_every_component() {
        let r = request();
        let base = cache_key("m", "p", &r, 0);
        assert_eq!(base.len(), 64);
        assert_eq!(base, cache_key("m", "p", &r, 0));
        assert_ne!(base, cache_key("m2", "p", &r, 0));
        assert_ne!(base, cache_key("m", "p2", &r, 0));
        assert_ne!(base, cache_key("m", "p", &r, 1));
        let mut seeded = request();
        seeded.sampling.seed = 2;
        assert_ne!(base, cache_key("m", "p", &seeded, 0));
        let mut hotter = request();
        hotter.sampling.temperature = 0.7;
        assert_ne!(base, cache_key("m", "p", &hotter, 0));
        let mut longer = request();
        longer.max_tokens = 17;
        assert_ne!(base, cache_key("m", "p", &longer, 0));
        let mut steered = request();
        steered.strategy = StrategySpec::parse("early-exit", &[]).unwrap();
        assert_ne!(base, cache_key("m", "p", &steered, 0));
        let mut tuned = request();
        tuned.strategy = StrategySpec::parse("early-exit", &["every=16".into()]).unwrap();
        assert_ne!(
            cache_key("m", "p", &steered, 0),
            cache_key("m", "p", &tuned, 0)
        );
    }

    #[test]
    fn put_then_get_returns_the_generation_and_leaves_no_temp_files() {
        let dir = tempfile::tempdir().unwrap();
        let cache = GenerationCache::open(dir.path()).unwrap();
        let key = cache_key("m", "p", &request(), 0);
        assert_eq!(cache.get(&key), None);
        cache.put(&key, &generation("hello")).unwrap();
        assert_eq!(cache.get(&key), Some(generation("hello")));
        let shard = dir.path().join(&key[..2]);
        let names: Vec<String> = std::fs::read_dir(shard)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
            .collect();
        assert_eq!(names, [format!("{}.json", &key[2..])]);
    }

    #[test]
    fn corrupt_entry_is_a_miss_and_is_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let cache = GenerationCache::open(dir.path()).unwrap();
        let key = cache_key("m", "p", &request(), 0);
        std::fs::create_dir_all(dir.path().join(&key[..2])).unwrap();
        std::fs::write(cache.entry_path(&key), b"{\"text\": \"half").unwrap();
        assert_eq!(cache.get(&key), None);
        cache.put(&key, &generation("whole")).unwrap();
        assert_eq!(cache.get(&key), Some(generation("whole")));
    }
}
