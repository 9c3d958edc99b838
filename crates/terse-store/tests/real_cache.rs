//! The default store on this machine: the default model, assembled earlier,
//! must be found at `~/.cache/terse` through the alias alone.

use std::path::PathBuf;

use terse_store::{ModelStore, DEFAULT_MODEL};

#[test]
fn default_alias_resolves_to_the_real_cached_model() {
    let store = ModelStore::from_env().unwrap();
    if std::env::var_os("TERSE_HOME").is_none() {
        let home = PathBuf::from(std::env::var_os("HOME").unwrap());
        assert_eq!(store.root(), home.join(".cache/terse"));
    }
    let path = store.resolve(DEFAULT_MODEL).unwrap();
    assert_eq!(
        path,
        store
            .root()
            .join("models/qwen2.5-coder-0.5b/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf")
    );
    let size = std::fs::metadata(&path).unwrap().len();
    assert_eq!(
        size, 491_400_064,
        "the Q4_K_M 0.5B file is 491,400,064 bytes"
    );
    terse_gguf::GgufFile::open(&path).unwrap();
}
