//! End-to-end tests of `terse grade`, `terse eval` (local engine, real default model) and
//! `terse compare`: run directories are complete, resume recomputes nothing, bad
//! dataset lines are reported by number.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn terse(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_terse"))
        .args(args)
        .output()
        .expect("run terse")
}

fn scratch_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("terse-eval-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn summary(dir: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(dir.join("summary.json")).expect("summary.json");
    serde_json::from_str(&text).expect("summary is JSON")
}

fn eval(dataset: &str, out: &Path, extra: &[&str]) -> Output {
    eval_at(None, dataset, out, extra)
}

/// `terse eval` at the kernel level `level` (the default one when `None`).
fn eval_at(
    level: Option<terse_kernels::Level>,
    dataset: &str,
    out: &Path,
    extra: &[&str],
) -> Output {
    let mut args = vec![
        "eval",
        "--dataset",
        dataset,
        "--temperature",
        "0",
        "--no-cache",
        "--out",
        out.to_str().unwrap(),
    ];
    // 24 tokens unless the test sets its own cap.
    if !extra.contains(&"-n") {
        args.extend_from_slice(&["-n", "24"]);
    }
    args.extend_from_slice(extra);
    let mut command = Command::new(env!("CARGO_BIN_EXE_terse"));
    command.args(&args);
    if let Some(level) = level {
        command.env(terse_kernels::LEVEL_ENV, level.name());
    }
    command.output().expect("run terse")
}

#[test]
fn grade_prints_extracted_rule_and_verdict() {
    let o = terse(&["grade", "--gold", "1000", "So the total is \\boxed{1,000}."]);
    assert!(o.status.success());
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        r#"{"extracted":"1,000","rule":"boxed","correct":true}"#
    );
    let o = terse(&["grade", "--gold", "0.05", "The answer is 5%"]);
    assert!(String::from_utf8_lossy(&o.stdout).contains(r#""correct":false"#));
    let o = terse(&[
        "grade",
        "--percent-as-fraction",
        "--gold",
        "0.05",
        "The answer is 5%",
    ]);
    assert!(String::from_utf8_lossy(&o.stdout).contains(r#""correct":true"#));
}

#[test]
fn eval_writes_a_complete_run_and_resume_recomputes_nothing() {
    let out = scratch_dir("run");
    let o = eval("synthetic:d1:n3:s11", &out, &[]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    for file in [
        "config.json",
        "records.jsonl",
        "summary.json",
        "report.md",
        "accuracy_vs_tokens.png",
        "tokens_hist.svg",
    ] {
        assert!(out.join(file).is_file(), "{file} missing");
    }
    let records = std::fs::read_to_string(out.join("records.jsonl")).unwrap();
    assert_eq!(records.lines().count(), 3);
    let s = summary(&out);
    assert_eq!(s["n"], 3);
    // Every answer was cut at 24 tokens or ended earlier; counts come from the engine.
    let mean = s["output_tokens_mean"].as_f64().unwrap();
    assert!(mean > 0.0 && mean <= 24.0, "mean output tokens {mean}");

    // Drop the last record as a kill would, then resume: only that problem is re-run.
    let kept: Vec<&str> = records.lines().take(2).collect();
    std::fs::write(out.join("records.jsonl"), kept.join("\n") + "\n").unwrap();
    let o = eval("synthetic:d1:n3:s11", &out, &["--resume"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let resumed = std::fs::read_to_string(out.join("records.jsonl")).unwrap();
    assert_eq!(resumed.lines().count(), 3);
    assert_eq!(
        &resumed.lines().take(2).collect::<Vec<_>>(),
        &kept,
        "finished records untouched"
    );
    // Greedy decoding: the re-run of the dropped problem gives the same answer.
    let field = |text: &str, key: &str| -> serde_json::Value {
        let line = text.lines().nth(2).expect("third record");
        serde_json::from_str::<serde_json::Value>(line).expect("record is JSON")[key].clone()
    };
    for key in ["id", "output", "stop_reason", "correct"] {
        assert_eq!(
            field(&resumed, key),
            field(&records, key),
            "{key} of the re-run record"
        );
    }
    // The same tokens, except that the prefix cache holds what this process prefilled
    // before (the first run had the other problems' shared prompt prefix cached).
    let mut usage = field(&resumed, "usage");
    let mut first = field(&records, "usage");
    let cached = |u: &serde_json::Value| u["prompt_cached_tokens"].as_u64().unwrap();
    assert!(cached(&usage) <= cached(&first));
    for u in [&mut usage, &mut first] {
        u["prompt_cached_tokens"] = 0.into();
    }
    assert_eq!(usage, first, "usage of the re-run record");
}

#[test]
fn eval_reports_bad_dataset_lines_and_strict_stops() {
    let dir = scratch_dir("data");
    std::fs::create_dir_all(&dir).unwrap();
    let data = dir.join("tiny.jsonl");
    std::fs::write(
        &data,
        "{\"question\": \"What is 2 + 3?\", \"answer\": \"2 + 3 = 5\\n#### 5\"}\nnot json\n{\"question\": \"no answer\"}\n",
    )
    .unwrap();
    let spec = format!("gsm8k:{}", data.display());
    let o = eval(&spec, &dir.join("run"), &[]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(
        err.contains("line 2 skipped") && err.contains("line 3 skipped"),
        "{err}"
    );
    assert_eq!(summary(&dir.join("run"))["n"], 1);

    let o = eval(&spec, &dir.join("strict"), &["--strict"]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("tiny.jsonl:2: not JSON"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn compare_pairs_two_runs() {
    let a = scratch_dir("cmp-a");
    let b = scratch_dir("cmp-b");
    assert!(eval("synthetic:d1:n2:s5", &a, &["--label", "step"])
        .status
        .success());
    assert!(eval(
        "synthetic:d1:n2:s5",
        &b,
        &["--label", "brief", "--prompt-style", "brief"]
    )
    .status
    .success());
    let out = scratch_dir("cmp-out");
    let o = terse(&[
        "compare",
        a.to_str().unwrap(),
        b.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let md = String::from_utf8_lossy(&o.stdout);
    assert!(md.contains("step") && md.contains("brief"), "{md}");
    assert!(out.join("comparison.json").is_file() && out.join("pareto.png").is_file());
}

/// (id → (output, output tokens)) of a run directory's records.
fn answers(dir: &Path) -> std::collections::BTreeMap<String, (String, u64)> {
    std::fs::read_to_string(dir.join("records.jsonl"))
        .expect("records.jsonl")
        .lines()
        .map(|line| {
            let r: serde_json::Value = serde_json::from_str(line).expect("record is JSON");
            (
                r["id"].as_str().expect("id").to_string(),
                (
                    r["output"].as_str().expect("output").to_string(),
                    r["usage"]["output_tokens"].as_u64().expect("output tokens"),
                ),
            )
        })
        .collect()
}

/// At every SIMD kernel level this CPU runs; levels it lacks are reported as
/// not tested, and the scalar level as not run (its matmuls take one row pair
/// at a time, so batching cannot reach its results, which the kernels' matmul
/// test checks; and this would take minutes on it).
#[test]
fn concurrent_eval_records_the_same_answers_as_one_at_a_time_at_every_level() {
    use std::io::Write;
    for level in terse_kernels::Level::ALL {
        let skipped = if !level.is_supported() {
            Some(format!("NOT TESTED at level {level}: this CPU lacks it"))
        } else if level == terse_kernels::Level::Scalar {
            Some(
                "NOT RUN at level scalar (one pair per call: batch-invariant by construction)"
                    .into(),
            )
        } else {
            None
        };
        if let Some(line) = skipped {
            let _ = writeln!(std::io::stderr(), "concurrent eval: {line}");
            continue;
        }
        let one = scratch_dir(&format!("one-at-a-time-{level}"));
        let many = scratch_dir(&format!("concurrent-{level}"));
        let o = eval_at(Some(level), "synthetic:d2:n5:s3", &one, &[]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let o = eval_at(
            Some(level),
            "synthetic:d2:n5:s3",
            &many,
            &["--concurrency", "3"],
        );
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let (a, b) = (answers(&one), answers(&many));
        assert_eq!(a.len(), 5);
        assert_eq!(
            a, b,
            "batched generation changed an answer at level {level}"
        );
    }
}

#[test]
fn a_run_on_a_model_file_is_labelled_by_the_file_stem() {
    let model = terse_store::ModelStore::from_env()
        .expect("model cache")
        .resolve("qwen2.5-coder-0.5b")
        .expect("default model pulled");
    let out = scratch_dir("stem");
    let o = eval(
        "synthetic:d1:n1:s1",
        &out,
        &["-m", model.to_str().unwrap(), "-n", "4"],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let stem = model.file_stem().unwrap().to_string_lossy().to_string();
    assert_eq!(summary(&out)["label"], format!("{stem}-step"));
}

#[test]
fn a_steered_eval_records_usage_by_kind_and_summarises_cost_tokens() {
    let out = scratch_dir("steered");
    let o = eval(
        "synthetic:d1:n2:s4",
        &out,
        &[
            "-n",
            "60",
            "--strategy",
            "loop-guard+budget",
            "--strategy-opt",
            "reasoning_tokens=20",
        ],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let s = summary(&out);
    assert_eq!(s["stop_reasons"]["budget"], 2, "{s}");
    let output = s["output_tokens_mean"].as_f64().unwrap();
    let injected = s["injected_tokens_mean"].as_f64().unwrap();
    assert!(injected > 0.0);
    assert_eq!(s["cost_tokens_mean"].as_f64().unwrap(), output + injected);
    let text = std::fs::read_to_string(out.join("records.jsonl")).unwrap();
    let record: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert_eq!(record["strategy"], "loop-guard+budget");
    assert_eq!(record["usage"]["reasoning_tokens"], 20);
    assert_eq!(record["events"][0]["kind"], "budget");
}

#[test]
fn train_probe_fits_on_a_plain_run_and_refuses_the_run_of_another_model() {
    let run = scratch_dir("probe-run");
    let o = eval("synthetic:d1:n12:s3", &run, &["-m", "gemma3-270m"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let probe = run.join("probe.json");
    let o = terse(&[
        "train-probe",
        "-m",
        "gemma3-270m",
        "--run",
        run.to_str().unwrap(),
        "--folds",
        "2",
        "--out",
        probe.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(stdout.contains("plain CoT right"), "{stdout}");
    let written: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&probe).expect("probe written"))
            .expect("probe is JSON");
    assert_eq!(written["trained_on"], 12);
    // Gemma 3 270M's hidden size.
    assert_eq!(written["hidden_size"], 640);
    assert_eq!(
        written["correct"]["weights"].as_array().map(Vec::len),
        Some(640)
    );
    assert!(written["model_fingerprint"]
        .as_str()
        .is_some_and(|f| f.starts_with("sha256:")));

    let o = terse(&[
        "train-probe",
        "-m",
        "qwen2.5-coder-0.5b",
        "--run",
        run.to_str().unwrap(),
        "--out",
        probe.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(stderr.contains("another model"), "{stderr}");
    let _ = std::fs::remove_dir_all(&run);
}

fn records(dir: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(dir.join("records.jsonl"))
        .expect("records.jsonl")
        .lines()
        .map(|l| serde_json::from_str(l).expect("a record is JSON"))
        .collect()
}

#[test]
fn adaptive_answers_each_problem_exactly_as_its_class_preset_does() {
    let train = scratch_dir("adaptive-train");
    let o = eval("synthetic:d1:n12:s3", &train, &["-m", "gemma3-270m"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let probe = train.join("probe.json");
    let predictions = train.join("cv.jsonl");
    let o = terse(&[
        "train-probe",
        "-m",
        "gemma3-270m",
        "--run",
        train.to_str().unwrap(),
        "--folds",
        "2",
        "--out",
        probe.to_str().unwrap(),
        "--predictions",
        predictions.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let cv = std::fs::read_to_string(&predictions).expect("predictions written");
    assert_eq!(cv.lines().count(), 12);
    assert!(cv.contains("\"p_long\""), "{cv}");

    // The hard preset from a table (a budget of 8 reasoning tokens), the easy one by
    // name; thresholds at 1 make every problem easy, at 0 every problem hard.
    let config = train.join("adaptive.toml");
    std::fs::write(
        &config,
        format!(
            "strategy = \"adaptive\"\n[adaptive]\nprobe = {:?}\neasy = \"be-brief\"\n\
             [adaptive.hard]\nstrategy = \"budget\"\nbudget = {{ reasoning_tokens = 8 }}\n",
            probe.to_str().unwrap()
        ),
    )
    .unwrap();
    let dataset = "synthetic:d1:n4:s9";
    let mut routed = Vec::new();
    for (label, threshold, preset) in [("easy", "1", "be-brief"), ("hard", "0", "budget")] {
        let out = train.join(format!("all-{label}"));
        let config = config.to_str().unwrap();
        let o = eval(
            dataset,
            &out,
            &[
                "-m",
                "gemma3-270m",
                "--strategy-config",
                config,
                "--strategy-opt",
                &format!("easy_below={threshold}"),
                "--strategy-opt",
                &format!("hard_above={threshold}"),
            ],
        );
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let recs = records(&out);
        assert_eq!(recs.len(), 4);
        assert_eq!(
            summary(&out)["adaptive_routes"][format!("{label} → {preset}")],
            4
        );
        for r in &recs {
            let route = &r["events"][0];
            assert_eq!(route["kind"], "route", "{r}");
            let detail = route["detail"].as_str().unwrap();
            assert!(
                detail.starts_with(label) && detail.contains("P(long)"),
                "{detail}"
            );
        }
        routed.push(recs);
    }
    for (preset, options, recs) in [
        ("be-brief", vec![], &routed[0]),
        (
            "budget",
            vec!["--strategy-opt", "reasoning_tokens=8"],
            &routed[1],
        ),
    ] {
        let out = train.join(preset);
        let mut extra = vec!["-m", "gemma3-270m", "--strategy", preset];
        extra.extend(options);
        let o = eval(dataset, &out, &extra);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let alone = records(&out);
        for (a, r) in alone.iter().zip(recs) {
            assert_eq!(a["output"], r["output"], "{preset} alone and routed differ");
            assert_eq!(a["usage"]["output_tokens"], r["usage"]["output_tokens"]);
            assert_eq!(a["stop_reason"], r["stop_reason"]);
        }
    }

    let o = terse(&[
        "generate",
        "-m",
        "qwen2.5-coder-0.5b",
        "-n",
        "4",
        "--strategy",
        "adaptive",
        "--strategy-opt",
        &format!("probe={}", probe.to_str().unwrap()),
        "--chat",
        "1 + 1?",
    ]);
    assert_eq!(o.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        stderr.contains("was trained for model") && stderr.contains("train-probe"),
        "{stderr}"
    );
    let _ = std::fs::remove_dir_all(&train);
}

#[test]
fn a_program_answers_with_what_it_computes_and_a_failed_one_falls_back_to_plain_cot() {
    let dir = scratch_dir("program");
    let dataset = "synthetic:d1:n4:s9";
    let model = ["-m", "qwen2.5-coder-0.5b", "-n", "96"];
    let out = dir.join("program");
    let mut extra = model.to_vec();
    extra.extend(["--strategy", "program"]);
    let o = eval(dataset, &out, &extra);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let recs = records(&out);
    assert_eq!(recs.len(), 4);
    let mut ran = 0;
    for r in &recs {
        let first = &r["events"][0];
        assert_eq!(first["strategy"], "program", "{r}");
        if r["stop_reason"] == "program" {
            ran += 1;
            let answer = common::checked_program_answer(r);
            assert_eq!(r["extracted"], answer.as_str(), "{r}");
            assert!(
                r["prompt"].as_str().unwrap().contains("Python program"),
                "{r}"
            );
            assert!(
                !r["prompt"].as_str().unwrap().contains("step by step,"),
                "{r}"
            );
        } else {
            assert_eq!(first["kind"], "fallback", "{r}");
        }
    }
    assert!(ran > 0, "the 0.5B coder model ran no program: {recs:?}");

    // An instruction that asks for no code makes every problem fall back; the fallback
    // sees the original prompt, so it answers exactly as plain chain of thought does,
    // and the program pass and the fallback's prompt are counted on top.
    let fallen = dir.join("fallback");
    let mut extra = model.to_vec();
    extra.extend([
        "--strategy",
        "program",
        "--strategy-opt",
        "instruction=Reply with one word and no code.",
    ]);
    let o = eval(dataset, &fallen, &extra);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let plain = dir.join("none");
    let o = eval(dataset, &plain, &model);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let plain = records(&plain);
    for (f, p) in records(&fallen).iter().zip(&plain) {
        assert_eq!(f["events"][0]["kind"], "fallback", "{f}");
        assert_eq!(f["output"], p["output"], "the fallback differs from none");
        assert_eq!(f["stop_reason"], p["stop_reason"]);
        let (fu, pu) = (&f["usage"], &p["usage"]);
        let program_tokens = f["events"][0]["at_token"].as_u64().unwrap();
        assert!(program_tokens > 0, "{f}");
        assert_eq!(
            fu["output_tokens"].as_u64().unwrap(),
            pu["output_tokens"].as_u64().unwrap() + program_tokens
        );
        assert!(fu["injected_tokens"].as_u64().unwrap() > 0, "{f}");
    }
}

#[test]
fn refine_drafts_as_siblings_refines_once_and_counts_every_pass() {
    let dir = scratch_dir("refine");
    let extra = [
        "-m",
        "qwen2.5-coder-0.5b",
        "-n",
        "64",
        "--strategy",
        "refine",
        "--strategy-opt",
        "drafts=2",
    ];
    let o = eval("synthetic:d1:n2:s9", &dir, &extra);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    for r in records(&dir) {
        assert_eq!(r["stop_reason"], "refine", "{r}");
        let events = r["events"].as_array().unwrap();
        let kinds: Vec<&str> = events.iter().map(|e| e["kind"].as_str().unwrap()).collect();
        assert_eq!(kinds[..4], ["draft", "draft", "workspace", "answer"], "{r}");
        // Output = both drafts' tokens + the refined answer's.
        let decoded: u64 = [0, 1, 3]
            .iter()
            .map(|&i| events[i]["at_token"].as_u64().unwrap())
            .sum();
        let u = &r["usage"];
        assert_eq!(u["output_tokens"].as_u64().unwrap(), decoded, "{r}");
        // The workspace prompt is prefilled beyond the shared problem prefix, and the
        // second draft forked the first's prompt instead of computing it.
        assert!(u["injected_tokens"].as_u64().unwrap() > 0, "{r}");
        let prompt = u["prompt_tokens"].as_u64().unwrap();
        assert!(
            u["prompt_cached_tokens"].as_u64().unwrap() >= prompt - 1,
            "the drafts did not share the prompt: {r}"
        );
    }
}
