//! Hugging Face hub ids (`org/repo/path/to/file.gguf`) and their download.
//!
//! A `--model` spec with at least three `/`-separated parts ending in `.gguf`
//! that is not a file on disk names a file in a hub repository. It is fetched
//! from `<endpoint>/<org>/<repo>/resolve/main/<file>` (endpoint from
//! `$TERSE_HF_ENDPOINT`, default `https://huggingface.co`; `$HF_TOKEN` sent as a
//! bearer token for gated repos), streamed to `<file>.partial`, checked as GGUF
//! and renamed into `$root/hf/<org>/<repo>/<file>`.

use std::path::{Path, PathBuf};

/// Where the hub is reached when `$TERSE_HF_ENDPOINT` is unset.
pub const DEFAULT_HF_ENDPOINT: &str = "https://huggingface.co";

/// A file in a Hugging Face repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HfId {
    pub org: String,
    pub repo: String,
    /// Path of the file inside the repository (may contain `/`).
    pub file: String,
}

impl HfId {
    /// Parses `org/repo/file.gguf`; `None` when `spec` does not have that shape.
    pub fn parse(spec: &str) -> Option<Self> {
        let parts: Vec<&str> = spec.split('/').collect();
        let (org, repo, file_parts) = match parts.as_slice() {
            [org, repo, file_parts @ ..] if !file_parts.is_empty() => (*org, *repo, file_parts),
            _ => return None,
        };
        let is_name = |part: &&str| {
            !part.is_empty()
                && *part != "."
                && *part != ".."
                && part
                    .chars()
                    .all(|ch| ch.is_ascii_alphanumeric() || matches!(ch, '-' | '_' | '.'))
        };
        let all_parts_valid = [org, repo].iter().chain(file_parts).all(is_name);
        let is_gguf = spec.to_ascii_lowercase().ends_with(".gguf");
        (all_parts_valid && is_gguf).then(|| Self {
            org: org.to_string(),
            repo: repo.to_string(),
            file: file_parts.join("/"),
        })
    }

    /// Where the downloaded file lives in a store rooted at `root`.
    pub fn cache_path(&self, root: &Path) -> PathBuf {
        let mut path = root.join("hf").join(&self.org).join(&self.repo);
        path.extend(self.file.split('/'));
        path
    }

    /// The download URL under `endpoint` (no trailing slash needed).
    pub fn url(&self, endpoint: &str) -> String {
        format!(
            "{}/{}/{}/resolve/main/{}",
            endpoint.trim_end_matches('/'),
            self.org,
            self.repo,
            self.file
        )
    }
}

impl std::fmt::Display for HfId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}/{}", self.org, self.repo, self.file)
    }
}

/// The hub endpoint: `$TERSE_HF_ENDPOINT` when set, else the public hub.
pub fn hf_endpoint() -> String {
    std::env::var("TERSE_HF_ENDPOINT")
        .ok()
        .filter(|value| !value.is_empty())
        .unwrap_or_else(|| DEFAULT_HF_ENDPOINT.to_string())
}

#[cfg(feature = "hf-hub")]
pub(crate) use download::download;

#[cfg(feature = "hf-hub")]
mod download {
    use std::fs::File;
    use std::io::{BufWriter, Read, Write};
    use std::path::Path;
    use std::time::Duration;

    use indicatif::{ProgressBar, ProgressStyle};

    use super::HfId;
    use crate::assemble::{partial_path, validate_gguf};
    use crate::StoreError;

    const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
    const READ_TIMEOUT: Duration = Duration::from_secs(60);

    /// Downloads `id` from `endpoint` into `target` (via `<target>.partial`).
    pub(crate) fn download(id: &HfId, endpoint: &str, target: &Path) -> Result<(), StoreError> {
        let spec = id.to_string();
        let url = id.url(endpoint);
        let agent = ureq::AgentBuilder::new()
            .timeout_connect(CONNECT_TIMEOUT)
            .timeout_read(READ_TIMEOUT)
            .build();
        let mut request = agent.get(&url);
        if let Some(token) = std::env::var("HF_TOKEN").ok().filter(|t| !t.is_empty()) {
            request = request.set("Authorization", &format!("Bearer {token}"));
        }
        let response = match request.call() {
            Ok(response) => response,
            Err(ureq::Error::Status(status, _)) => {
                return Err(StoreError::HubStatus {
                    spec,
                    url,
                    status,
                    hint: status_hint(status),
                })
            }
            Err(ureq::Error::Transport(transport)) => {
                return Err(StoreError::HubUnreachable {
                    spec,
                    url,
                    detail: transport.to_string(),
                })
            }
        };
        let expected_len = response
            .header("Content-Length")
            .and_then(|value| value.parse::<u64>().ok());

        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent).map_err(|source| StoreError::Io {
                step: "download",
                path: parent.to_path_buf(),
                source,
            })?;
        }
        let partial = partial_path(target);
        let result = stream_to(response.into_reader(), &partial, expected_len, &spec, &url)
            .and_then(|()| validate_gguf(&partial))
            .and_then(|()| {
                std::fs::rename(&partial, target).map_err(|source| StoreError::Io {
                    step: "install",
                    path: target.to_path_buf(),
                    source,
                })
            });
        if result.is_err() {
            // Best effort: the download error matters more than a failed cleanup.
            let _ = std::fs::remove_file(&partial);
        }
        result
    }

    fn stream_to(
        mut body: impl Read,
        partial: &Path,
        expected_len: Option<u64>,
        spec: &str,
        url: &str,
    ) -> Result<(), StoreError> {
        let write_error = |source| StoreError::Io {
            step: "download",
            path: partial.to_path_buf(),
            source,
        };
        let bar = ProgressBar::new(expected_len.unwrap_or(0));
        if let Ok(style) = ProgressStyle::with_template(
            "downloading [{bar:40}] {bytes}/{total_bytes} ({bytes_per_sec}, {eta})",
        ) {
            bar.set_style(style.progress_chars("=> "));
        }
        let mut writer = BufWriter::new(File::create(partial).map_err(write_error)?);
        let mut buffer = vec![0u8; 1 << 20];
        let mut received = 0u64;
        loop {
            let read = body
                .read(&mut buffer)
                .map_err(|err| StoreError::HubUnreachable {
                    spec: spec.to_string(),
                    url: url.to_string(),
                    detail: format!("connection failed after {received} bytes: {err}"),
                })?;
            let Some(block) = buffer.get(..read).filter(|block| !block.is_empty()) else {
                break;
            };
            writer.write_all(block).map_err(write_error)?;
            received += block.len() as u64;
            bar.set_position(received);
        }
        bar.finish_and_clear();
        let file = writer
            .into_inner()
            .map_err(|err| write_error(err.into_error()))?;
        file.sync_all().map_err(write_error)?;
        match expected_len {
            Some(expected) if expected != received => Err(StoreError::HubTruncated {
                spec: spec.to_string(),
                url: url.to_string(),
                received,
                expected,
            }),
            _ => Ok(()),
        }
    }

    fn status_hint(status: u16) -> &'static str {
        match status {
            401 | 403 => "the repository is gated or private; set HF_TOKEN to a token with access",
            404 => "no such repository or file; check the org/repo/file spelling",
            429 => "rate limited; wait and retry, or set HF_TOKEN",
            _ => "retry later, or download the file elsewhere and pass its local path",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hub_ids_need_org_repo_and_a_gguf_file() {
        assert_eq!(
            HfId::parse(
                "Qwen/Qwen2.5-Coder-0.5B-Instruct-GGUF/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"
            ),
            Some(HfId {
                org: "Qwen".into(),
                repo: "Qwen2.5-Coder-0.5B-Instruct-GGUF".into(),
                file: "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf".into(),
            })
        );
        assert_eq!(
            HfId::parse("org/repo/sub/dir/m.GGUF").map(|id| id.file),
            Some("sub/dir/m.GGUF".to_string())
        );
        for not_an_id in [
            "qwen2.5-coder-0.5b",
            "repo/file.gguf",
            "org/repo/file.bin",
            "/abs/org/repo/file.gguf",
            "org/../file.gguf",
            "org//file.gguf",
            "org/re po/file.gguf",
        ] {
            assert_eq!(HfId::parse(not_an_id), None, "{not_an_id}");
        }
    }

    #[test]
    fn hub_url_and_cache_path_follow_the_id() {
        let id = HfId::parse("org/repo/sub/m.gguf").unwrap();
        assert_eq!(
            id.url("https://huggingface.co/"),
            "https://huggingface.co/org/repo/resolve/main/sub/m.gguf"
        );
        assert_eq!(
            id.cache_path(Path::new("/store")),
            PathBuf::from("/store/hf/org/repo/sub/m.gguf")
        );
        assert_eq!(id.to_string(), "org/repo/sub/m.gguf");
    }
}
