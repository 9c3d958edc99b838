//! Content-addressed cache of generations, so no model output is ever paid for twice.
//!
//! The key is the sha256 of the canonical JSON of (model fingerprint, rendered prompt,
//! sampling parameters, seed, sample index); the value is the [`Generation`] as JSON in
//! `DIR/<first 2 hex>/<remaining 62 hex>.json`. Writes go to a temporary file in the
//! same directory and are renamed into place, so a reader sees a whole entry or none,
//! and a killed writer leaves only a stray temporary file. An unreadable entry is
//! treated as a miss and overwritten.

use crate::record::SamplingParams;
use crate::run::Generation;
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

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
    version: u32,
    model: &'a str,
    prompt: &'a str,
    params: &'a SamplingParams,
    seed: u64,
    sample: u32,
}

/// The hex sha256 key of one generation request.
pub fn cache_key(
    model: &str,
    prompt: &str,
    params: &SamplingParams,
    seed: u64,
    sample: u32,
) -> String {
    let fields = KeyFields {
        version: 1,
        model,
        prompt,
        params,
        seed,
        sample,
    };
    // Struct fields serialise in declaration order and `extra` is a BTreeMap, so the
    // JSON is canonical; serialising these types cannot fail.
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
    pub fn get(&self, key: &str) -> Option<Generation> {
        let bytes = std::fs::read(self.entry_path(key)).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    /// Stores a generation atomically.
    pub fn put(&self, key: &str, generation: &Generation) -> Result<(), CacheError> {
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

    fn generation(text: &str) -> Generation {
        Generation {
            text: text.into(),
            prompt_tokens: 3,
            output_tokens: 4,
            latency_s: 0.25,
        }
    }

    #[test]
    fn key_changes_with_every_component() {
        let params = SamplingParams::default();
        let base = cache_key("m", "p", &params, 1, 0);
        assert_eq!(base.len(), 64);
        assert_eq!(base, cache_key("m", "p", &params, 1, 0));
        assert_ne!(base, cache_key("m2", "p", &params, 1, 0));
        assert_ne!(base, cache_key("m", "p2", &params, 1, 0));
        assert_ne!(base, cache_key("m", "p", &params, 2, 0));
        assert_ne!(base, cache_key("m", "p", &params, 1, 1));
        let hotter = SamplingParams {
            temperature: 0.7,
            ..SamplingParams::default()
        };
        assert_ne!(base, cache_key("m", "p", &hotter, 1, 0));
        let mut with_extra = SamplingParams::default();
        with_extra
            .extra
            .insert("strategy".into(), serde_json::json!("early-exit"));
        assert_ne!(base, cache_key("m", "p", &with_extra, 1, 0));
    }

    #[test]
    fn put_then_get_returns_the_generation_and_leaves_no_temp_files() {
        let dir = tempfile::tempdir().unwrap();
        let cache = GenerationCache::open(dir.path()).unwrap();
        let key = cache_key("m", "p", &SamplingParams::default(), 0, 0);
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
        let key = cache_key("m", "p", &SamplingParams::default(), 0, 0);
        std::fs::create_dir_all(dir.path().join(&key[..2])).unwrap();
        std::fs::write(cache.entry_path(&key), b"{\"text\": \"half").unwrap();
        assert_eq!(cache.get(&key), None);
        cache.put(&key, &generation("whole")).unwrap();
        assert_eq!(cache.get(&key), Some(generation("whole")));
    }
}
