//! The official `openai` Python package against real servers on the default model
//! (one open, one with a key): runs `tests/openai_client.py` with the virtual
//! environment `.ci/run` installs (`target/py-venv`, or `$TERSE_PY_VENV`). A missing
//! environment or package fails this test; it is never skipped.

mod common;

use std::path::PathBuf;
use std::process::Command;

fn venv_python() -> PathBuf {
    let venv = std::env::var_os("TERSE_PY_VENV").map_or_else(
        || PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../target/py-venv")),
        PathBuf::from,
    );
    let python = venv.join("bin/python");
    assert!(
        python.exists(),
        "no Python virtual environment at {} — create it as .ci/run does: \
         python3 -m venv target/py-venv && target/py-venv/bin/pip install openai",
        venv.display()
    );
    let check = Command::new(&python)
        .args(["-c", "import openai"])
        .output()
        .expect("run the venv's python");
    assert!(
        check.status.success(),
        "the `openai` package is not installed in {}: {} — install it with \
         {}/bin/pip install openai",
        venv.display(),
        String::from_utf8_lossy(&check.stderr),
        venv.display()
    );
    python
}

#[test]
fn the_official_openai_client_works_against_terse_serve() {
    let python = venv_python();
    let open = common::start(common::Options::default());
    let key = "test-key-7f3a";
    let keyed = common::start(common::Options {
        api_key: Some(key.into()),
        ..common::Options::default()
    });
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/openai_client.py");
    let out = Command::new(&python)
        .arg(script)
        .args([
            open.as_str(),
            keyed.as_str(),
            key,
            terse_store::DEFAULT_MODEL,
            &common::CTX.to_string(),
        ])
        .output()
        .expect("run openai_client.py");
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}");
    assert!(
        out.status.success(),
        "openai_client.py failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains(" 0 failed"), "{stdout}");
}
