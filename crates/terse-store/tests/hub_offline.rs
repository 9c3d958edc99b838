//! The Hugging Face path when the hub cannot be reached: a plain error that says
//! so and how to use a local file, and nothing left behind. Its own test binary
//! because it sets `$TERSE_HF_ENDPOINT` for the process.

use terse_store::{ModelStore, StoreError};

#[test]
fn unreachable_hub_says_so_and_suggests_a_local_path() {
    // Port 9 (discard) on loopback: connection refused at once, no network needed.
    std::env::set_var("TERSE_HF_ENDPOINT", "http://127.0.0.1:9");
    let root = tempfile::tempdir().unwrap();
    let store = ModelStore::at(root.path().to_path_buf());

    let err = store
        .resolve("Qwen/Qwen2.5-Coder-0.5B-Instruct-GGUF/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf")
        .unwrap_err();
    let message = err.to_string();
    match &err {
        StoreError::HubUnreachable { url, .. } => assert_eq!(
            url,
            "http://127.0.0.1:9/Qwen/Qwen2.5-Coder-0.5B-Instruct-GGUF/resolve/main/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"
        ),
        other => panic!("expected HubUnreachable, got {other:?}"),
    }
    assert!(
        message.contains("could not reach the Hugging Face hub"),
        "{message}"
    );
    assert!(message.contains("local path"), "{message}");
    assert!(
        std::fs::read_dir(root.path()).unwrap().next().is_none(),
        "nothing may be left in the store"
    );
}
