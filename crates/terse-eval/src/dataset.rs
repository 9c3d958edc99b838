//! Datasets: loading problems, validating them line by line, and selecting subsets.
//!
//! Sources (see [`Source::parse`]):
//! - `gsm8k:PATH` — GSM8K JSONL (`question`, `answer` ending in `#### <number>`);
//! - `PATH` — generic JSONL with configurable field names ([`Fields`]); an answer that
//!   contains `#### x` is reduced to `x`, otherwise it is used as is;
//! - `synthetic[:dN][:nCOUNT][:sSEED]` — the seeded generator of [`crate::synthetic`];
//! - `hf:OWNER/NAME[:CONFIG[:SPLIT]]` — rows downloaded from the Hugging Face
//!   datasets-server API into a local JSONL cache (feature `hub`).
//!
//! Ids are stable so that runs pair problem by problem: GSM8K ids are
//! `gsm8k-<first 12 hex digits of sha256(question)>`, which survive reordering,
//! filtering and copying into another file (the line number is kept in `meta.line`);
//! a repeated question gets `-2`, `-3`… in order of appearance. Generic JSONL uses the
//! configured id field, or `<file stem>-<hash>` the same way.
//!
//! A bad line (not JSON, a missing field, an unparsable answer) is reported as a
//! [`LineIssue`] with its 1-based line number and skipped; in strict mode the first
//! bad line is an error instead.

use crate::grade::parse_number;
use crate::synthetic::{self, SyntheticSpec};
use rand::rngs::StdRng;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

/// One problem to pose to a model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Problem {
    pub id: String,
    pub question: String,
    pub gold: String,
    #[serde(default)]
    pub meta: Value,
}

/// A dataset line that was skipped, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LineIssue {
    /// 1-based line number in the source file.
    pub line: usize,
    pub reason: String,
}

/// Problems and the lines that were skipped while loading them.
pub type Loaded = (Vec<Problem>, Vec<LineIssue>);

#[derive(Debug, thiserror::Error)]
pub enum DatasetError {
    #[error("cannot read dataset {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}:{line}: {reason}")]
    BadLine {
        path: PathBuf,
        line: usize,
        reason: String,
    },
    #[error("invalid dataset source '{spec}': {reason}")]
    BadSource { spec: String, reason: String },
    #[error(
        "could not download Hugging Face dataset '{dataset}' from {url}: {reason} \
         (no network here? download the data as JSONL and pass its path instead)"
    )]
    Download {
        dataset: String,
        url: String,
        reason: String,
    },
    #[error(
        "cannot load Hugging Face dataset '{dataset}': terse-eval was built without the \
         `hub` feature; download the data as JSONL and pass its path instead"
    )]
    HubDisabled { dataset: String },
    #[error("cannot write dataset cache {path}: {source}")]
    Cache {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Field names of a generic JSONL dataset; dotted names reach into nested objects.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fields {
    pub question: String,
    pub answer: String,
    pub id: Option<String>,
}

impl Default for Fields {
    fn default() -> Self {
        Fields {
            question: "question".into(),
            answer: "answer".into(),
            id: None,
        }
    }
}

/// How a gold answer is read from its field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum GoldFormat {
    /// `#### <number>` is required and must parse as a number.
    Gsm8k,
    /// `#### x` when present, else the whole (non-empty) answer.
    Auto,
}

/// Where problems come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Gsm8k(PathBuf),
    Jsonl(PathBuf),
    Synthetic(SyntheticSpec),
    HuggingFace {
        dataset: String,
        config: String,
        split: String,
    },
}

impl Source {
    /// Parses a source spec as described in the module documentation.
    pub fn parse(spec: &str) -> Result<Source, DatasetError> {
        let bad = |reason: &str| DatasetError::BadSource {
            spec: spec.to_string(),
            reason: reason.to_string(),
        };
        if let Some(path) = spec.strip_prefix("gsm8k:") {
            return Ok(Source::Gsm8k(PathBuf::from(path)));
        }
        if let Some(rest) = spec.strip_prefix("hf:") {
            let mut parts = rest.split(':');
            let dataset = parts.next().unwrap_or("").trim().to_string();
            if dataset.is_empty() {
                return Err(bad("expected hf:OWNER/NAME[:CONFIG[:SPLIT]]"));
            }
            let config = parts.next().unwrap_or("default").to_string();
            let split = parts.next().unwrap_or("test").to_string();
            if parts.next().is_some() {
                return Err(bad(
                    "too many ':' parts; expected hf:OWNER/NAME[:CONFIG[:SPLIT]]",
                ));
            }
            return Ok(Source::HuggingFace {
                dataset,
                config,
                split,
            });
        }
        if spec == "synthetic" || spec.starts_with("synthetic:") {
            let mut parsed = SyntheticSpec::default();
            for part in spec.split(':').skip(1).filter(|p| !p.is_empty()) {
                let (key, value) = part.split_at(1);
                let number: u64 = value
                    .parse()
                    .map_err(|_| bad("synthetic parts are dN, nCOUNT, sSEED"))?;
                match key {
                    "d" => {
                        parsed.difficulty = u8::try_from(number)
                            .ok()
                            .filter(|d| (1..=synthetic::MAX_DIFFICULTY).contains(d))
                            .ok_or_else(|| bad("difficulty must be 1..=5"))?;
                    }
                    "n" => {
                        parsed.count = usize::try_from(number)
                            .map_err(|_| bad("count does not fit in memory"))?;
                    }
                    "s" => parsed.seed = number,
                    _ => return Err(bad("synthetic parts are dN, nCOUNT, sSEED")),
                }
            }
            return Ok(Source::Synthetic(parsed));
        }
        if spec.is_empty() {
            return Err(bad("empty"));
        }
        Ok(Source::Jsonl(PathBuf::from(spec)))
    }
}

/// Loads any [`Source`]. `cache_dir` holds downloaded `hf:` data.
pub fn load_source(
    source: &Source,
    fields: &Fields,
    strict: bool,
    cache_dir: &Path,
) -> Result<Loaded, DatasetError> {
    match source {
        Source::Gsm8k(path) => load_gsm8k(path, strict),
        Source::Jsonl(path) => load_jsonl(path, fields, strict),
        Source::Synthetic(spec) => Ok((synthetic::generate(spec), Vec::new())),
        Source::HuggingFace {
            dataset,
            config,
            split,
        } => {
            let path = fetch_hf(dataset, config, split, cache_dir)?;
            if dataset.to_ascii_lowercase().ends_with("gsm8k") {
                load_gsm8k(&path, strict)
            } else {
                load_jsonl(&path, fields, strict)
            }
        }
    }
}

/// Loads GSM8K JSONL.
pub fn load_gsm8k(path: &Path, strict: bool) -> Result<Loaded, DatasetError> {
    let file = open(path)?;
    parse_lines(
        BufReader::new(file),
        path,
        &Fields::default(),
        GoldFormat::Gsm8k,
        "gsm8k",
        strict,
    )
}

/// Loads generic JSONL with the given field names.
pub fn load_jsonl(path: &Path, fields: &Fields, strict: bool) -> Result<Loaded, DatasetError> {
    let file = open(path)?;
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().to_string())
        .unwrap_or_else(|| "jsonl".into());
    let prefix: String = stem
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    parse_lines(
        BufReader::new(file),
        path,
        fields,
        GoldFormat::Auto,
        &prefix,
        strict,
    )
}

fn open(path: &Path) -> Result<std::fs::File, DatasetError> {
    std::fs::File::open(path).map_err(|source| DatasetError::Io {
        path: path.to_path_buf(),
        source,
    })
}

fn parse_lines(
    reader: impl BufRead,
    path: &Path,
    fields: &Fields,
    format: GoldFormat,
    id_prefix: &str,
    strict: bool,
) -> Result<Loaded, DatasetError> {
    let mut problems = Vec::new();
    let mut issues = Vec::new();
    let mut explicit_ids: HashSet<String> = HashSet::new();
    // Occurrences of each question hash, to number repeated questions.
    let mut hashed_ids: HashMap<String, usize> = HashMap::new();
    for (index, line) in reader.lines().enumerate() {
        let line_number = index + 1;
        let line = line.map_err(|source| DatasetError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        if line.trim().is_empty() {
            continue;
        }
        match parse_line(&line, fields, format) {
            Ok((question, gold, explicit_id)) => {
                let id = match explicit_id {
                    Some(id) => {
                        if !explicit_ids.insert(id.clone()) {
                            let reason = format!("duplicate id '{id}'");
                            if strict {
                                return Err(bad_line(path, line_number, reason));
                            }
                            issues.push(LineIssue {
                                line: line_number,
                                reason,
                            });
                            continue;
                        }
                        id
                    }
                    None => {
                        let base = format!("{id_prefix}-{}", question_hash(&question));
                        let count = hashed_ids.entry(base.clone()).or_insert(0);
                        *count += 1;
                        if *count == 1 {
                            base
                        } else {
                            format!("{base}-{count}")
                        }
                    }
                };
                problems.push(Problem {
                    id,
                    question,
                    gold,
                    meta: serde_json::json!({ "line": line_number }),
                });
            }
            Err(reason) => {
                if strict {
                    return Err(bad_line(path, line_number, reason));
                }
                issues.push(LineIssue {
                    line: line_number,
                    reason,
                });
            }
        }
    }
    Ok((problems, issues))
}

fn bad_line(path: &Path, line: usize, reason: String) -> DatasetError {
    DatasetError::BadLine {
        path: path.to_path_buf(),
        line,
        reason,
    }
}

/// First 12 hex digits of the sha256 of the question text.
pub fn question_hash(question: &str) -> String {
    let digest = Sha256::digest(question.as_bytes());
    digest.iter().take(6).map(|b| format!("{b:02x}")).collect()
}

/// Returns (question, gold, explicit id) or the reason the line is unusable.
fn parse_line(
    line: &str,
    fields: &Fields,
    format: GoldFormat,
) -> Result<(String, String, Option<String>), String> {
    let value: Value = serde_json::from_str(line).map_err(|e| format!("not JSON: {e}"))?;
    let question = field_text(&value, &fields.question)
        .ok_or_else(|| format!("missing or non-text field '{}'", fields.question))?;
    if question.trim().is_empty() {
        return Err(format!("empty field '{}'", fields.question));
    }
    let answer = field_text(&value, &fields.answer)
        .ok_or_else(|| format!("missing or non-text field '{}'", fields.answer))?;
    let gold = gold_from_answer(&answer, format)?;
    let id = match &fields.id {
        Some(name) => {
            Some(field_text(&value, name).ok_or_else(|| format!("missing id field '{name}'"))?)
        }
        None => None,
    };
    Ok((question, gold, id))
}

fn field_text(value: &Value, dotted: &str) -> Option<String> {
    let mut current = value;
    for key in dotted.split('.') {
        current = current.get(key)?;
    }
    match current {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn gold_from_answer(answer: &str, format: GoldFormat) -> Result<String, String> {
    let after_hashes = answer
        .rfind("####")
        .and_then(|pos| answer.get(pos + 4..))
        .map(|rest| rest.trim().to_string());
    let gold = match (format, after_hashes) {
        (_, Some(gold)) => gold,
        (GoldFormat::Gsm8k, None) => return Err("answer has no '#### <number>' line".into()),
        (GoldFormat::Auto, None) => answer.trim().to_string(),
    };
    if gold.is_empty() {
        return Err("empty gold answer".into());
    }
    if format == GoldFormat::Gsm8k {
        // GSM8K golds are plain numbers, sometimes with thousands commas.
        let plain = gold.replace(',', "");
        if parse_number(&plain).is_none() {
            return Err(format!("gold answer '{gold}' is not a number"));
        }
        return Ok(plain);
    }
    Ok(gold)
}

/// Picks a subset: first a seeded random sample of `n` problems (kept in dataset
/// order), then `offset` and `limit` on the result.
pub fn select(
    problems: Vec<Problem>,
    offset: usize,
    limit: Option<usize>,
    sample: Option<(usize, u64)>,
) -> Vec<Problem> {
    let sampled = match sample {
        Some((n, seed)) if n < problems.len() => {
            let mut rng = StdRng::seed_from_u64(seed);
            let mut picked = rand::seq::index::sample(&mut rng, problems.len(), n).into_vec();
            picked.sort_unstable();
            let mut keep = vec![false; problems.len()];
            for i in picked {
                if let Some(slot) = keep.get_mut(i) {
                    *slot = true;
                }
            }
            problems
                .into_iter()
                .zip(keep)
                .filter_map(|(p, k)| k.then_some(p))
                .collect()
        }
        _ => problems,
    };
    sampled
        .into_iter()
        .skip(offset)
        .take(limit.unwrap_or(usize::MAX))
        .collect()
}

/// Downloads an `hf:` dataset split into `cache_dir` (once) and returns the JSONL path.
pub fn fetch_hf(
    dataset: &str,
    config: &str,
    split: &str,
    cache_dir: &Path,
) -> Result<PathBuf, DatasetError> {
    let safe = |s: &str| -> String {
        s.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                    c
                } else {
                    '_'
                }
            })
            .collect()
    };
    let path = cache_dir.join("hf").join(safe(dataset)).join(format!(
        "{}-{}.jsonl",
        safe(config),
        safe(split)
    ));
    if path.is_file() {
        return Ok(path);
    }
    let lines = download_rows(dataset, config, split)?;
    let cache_error = |source| DatasetError::Cache {
        path: path.clone(),
        source,
    };
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(cache_error)?;
    }
    let tmp = path.with_extension(format!("jsonl.tmp-{}", std::process::id()));
    std::fs::write(&tmp, lines.join("\n") + "\n").map_err(cache_error)?;
    std::fs::rename(&tmp, &path).map_err(cache_error)?;
    Ok(path)
}

#[cfg(feature = "hub")]
fn download_rows(dataset: &str, config: &str, split: &str) -> Result<Vec<String>, DatasetError> {
    const PAGE: usize = 100;
    const ENDPOINT: &str = "https://datasets-server.huggingface.co/rows";
    let agent = ureq::AgentBuilder::new()
        .timeout(std::time::Duration::from_secs(30))
        .build();
    let mut lines = Vec::new();
    let mut offset = 0usize;
    loop {
        let url = format!(
            "{ENDPOINT}?dataset={dataset}&config={config}&split={split}&offset={offset}&length={PAGE}"
        );
        let fail = |reason: String| DatasetError::Download {
            dataset: dataset.to_string(),
            url: url.clone(),
            reason,
        };
        let response = agent
            .get(ENDPOINT)
            .query("dataset", dataset)
            .query("config", config)
            .query("split", split)
            .query("offset", &offset.to_string())
            .query("length", &PAGE.to_string())
            .call()
            .map_err(|e| {
                fail(match e {
                    ureq::Error::Status(code, _) => format!("HTTP status {code}"),
                    ureq::Error::Transport(transport) => match transport.message() {
                        Some(message) => format!("{}: {message}", transport.kind()),
                        None => transport.kind().to_string(),
                    },
                })
            })?;
        let body: Value = serde_json::from_reader(response.into_reader())
            .map_err(|e| fail(format!("response is not JSON: {e}")))?;
        let rows = body
            .get("rows")
            .and_then(Value::as_array)
            .ok_or_else(|| fail("response has no 'rows' array".into()))?;
        for row in rows {
            let fields = row
                .get("row")
                .ok_or_else(|| fail("a row has no 'row' object".into()))?;
            lines.push(fields.to_string());
        }
        offset += rows.len();
        let total = body
            .get("num_rows_total")
            .and_then(Value::as_u64)
            .and_then(|n| usize::try_from(n).ok())
            .unwrap_or(offset);
        if rows.is_empty() || offset >= total {
            break;
        }
    }
    Ok(lines)
}

#[cfg(not(feature = "hub"))]
fn download_rows(dataset: &str, _config: &str, _split: &str) -> Result<Vec<String>, DatasetError> {
    Err(DatasetError::HubDisabled {
        dataset: dataset.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn write_temp(contents: &str) -> tempfile::NamedTempFile {
        let mut file = tempfile::Builder::new()
            .suffix(".jsonl")
            .tempfile()
            .unwrap();
        file.write_all(contents.as_bytes()).unwrap();
        file
    }

    const GSM: &str = r#####"{"question": "Q one?", "answer": "a\n#### 72"}
not json at all
{"question": "Q two?", "answer": "no marker"}
{"answer": "#### 3"}

{"question": "Q three?", "answer": "x\n#### 1,200"}
{"question": "Q four?", "answer": "#### banana"}
{"question": "Q one?", "answer": "#### 72"}
"#####;

    #[test]
    fn gsm8k_loader_reports_bad_lines_with_numbers_and_keeps_good_ones() {
        let file = write_temp(GSM);
        let (problems, issues) = load_gsm8k(file.path(), false).unwrap();
        let golds: Vec<&str> = problems.iter().map(|p| p.gold.as_str()).collect();
        assert_eq!(golds, ["72", "1200", "72"]);
        let lines: Vec<usize> = issues.iter().map(|i| i.line).collect();
        assert_eq!(lines, [2, 3, 4, 7]);
        assert!(issues[0].reason.starts_with("not JSON"));
        assert!(issues[1].reason.contains("####"));
        assert!(issues[2].reason.contains("'question'"));
        assert!(issues[3].reason.contains("banana"));
        assert_eq!(problems[0].meta["line"], 1);
        assert_eq!(problems[1].meta["line"], 6);
    }

    #[test]
    fn gsm8k_ids_hash_the_question_and_number_repeats() {
        let file = write_temp(GSM);
        let (problems, _) = load_gsm8k(file.path(), false).unwrap();
        let base = format!("gsm8k-{}", question_hash("Q one?"));
        assert_eq!(problems[0].id, base);
        assert_eq!(problems[2].id, format!("{base}-2"));
        assert_eq!(problems[0].id.len(), "gsm8k-".len() + 12);
    }

    #[test]
    fn strict_mode_stops_at_first_bad_line() {
        let file = write_temp(GSM);
        let err = load_gsm8k(file.path(), true).unwrap_err();
        match err {
            DatasetError::BadLine { line, .. } => assert_eq!(line, 2),
            other => panic!("unexpected {other}"),
        }
    }

    #[test]
    fn generic_jsonl_uses_configured_and_nested_fields() {
        let file = write_temp(
            r#"{"problem": {"text": "2+2?"}, "solution": 4, "uid": "a1"}
{"problem": {"text": "3+3?"}, "solution": "6", "uid": "a2"}
{"problem": {"text": "dup?"}, "solution": "1", "uid": "a1"}
{"problem": {"text": "no id"}, "solution": "1"}
"#,
        );
        let fields = Fields {
            question: "problem.text".into(),
            answer: "solution".into(),
            id: Some("uid".into()),
        };
        let (problems, issues) = load_jsonl(file.path(), &fields, false).unwrap();
        assert_eq!(problems.len(), 2);
        assert_eq!(problems[0].id, "a1");
        assert_eq!(problems[0].gold, "4");
        assert_eq!(problems[1].question, "3+3?");
        assert_eq!(issues.len(), 2);
        assert!(issues[0].reason.contains("duplicate id"));
        assert!(issues[1].reason.contains("missing id field"));
    }

    #[test]
    fn the_real_gsm8k_file_loads_without_issues() {
        // The shared read-only folder sits beside the repository.
        let path =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/gsm8k/train.jsonl");
        assert!(
            path.exists(),
            "{} is missing: the shared data folder must sit beside the repository",
            path.display()
        );
        let (problems, issues) = load_gsm8k(&path, true).unwrap();
        assert!(issues.is_empty());
        assert!(problems.len() > 7000);
        assert_eq!(problems[0].gold, "72");
        let unique: std::collections::HashSet<&str> =
            problems.iter().map(|p| p.id.as_str()).collect();
        assert_eq!(unique.len(), problems.len());
    }

    fn numbered(n: usize) -> Vec<Problem> {
        (0..n)
            .map(|i| Problem {
                id: format!("p{i}"),
                question: String::new(),
                gold: String::new(),
                meta: Value::Null,
            })
            .collect()
    }

    fn ids(problems: &[Problem]) -> Vec<String> {
        problems.iter().map(|p| p.id.clone()).collect()
    }

    #[test]
    fn select_applies_offset_and_limit() {
        assert_eq!(ids(&select(numbered(10), 3, Some(2), None)), ["p3", "p4"]);
        assert_eq!(select(numbered(10), 8, Some(5), None).len(), 2);
        assert!(select(numbered(3), 5, None, None).is_empty());
    }

    #[test]
    fn sample_is_seeded_ordered_and_stable() {
        let a = ids(&select(numbered(100), 0, None, Some((10, 7))));
        let b = ids(&select(numbered(100), 0, None, Some((10, 7))));
        let c = ids(&select(numbered(100), 0, None, Some((10, 8))));
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_eq!(a.len(), 10);
        let positions: Vec<usize> = a.iter().map(|id| id[1..].parse().unwrap()).collect();
        assert!(positions.windows(2).all(|w| w[0] < w[1]));
        let first_three = ids(&select(numbered(100), 0, Some(3), Some((10, 7))));
        assert_eq!(first_three, a[..3]);
    }

    #[test]
    fn source_specs_parse() {
        assert_eq!(
            Source::parse("gsm8k:/d/test.jsonl").unwrap(),
            Source::Gsm8k("/d/test.jsonl".into())
        );
        assert_eq!(
            Source::parse("hf:openai/gsm8k:main").unwrap(),
            Source::HuggingFace {
                dataset: "openai/gsm8k".into(),
                config: "main".into(),
                split: "test".into()
            }
        );
        assert_eq!(
            Source::parse("synthetic:d3:n20:s9").unwrap(),
            Source::Synthetic(SyntheticSpec {
                difficulty: 3,
                count: 20,
                seed: 9
            })
        );
        assert!(Source::parse("synthetic:d9").is_err());
        assert!(Source::parse("synthetic:q1").is_err());
        assert_eq!(
            Source::parse("data.jsonl").unwrap(),
            Source::Jsonl("data.jsonl".into())
        );
    }

    #[test]
    fn hf_download_offline_fails_with_a_clear_message() {
        let dir = tempfile::tempdir().unwrap();
        let source = Source::parse("hf:openai/gsm8k:main:test").unwrap();
        match load_source(&source, &Fields::default(), false, dir.path()) {
            // Offline (as in CI): the error names the dataset and suggests a way out.
            Err(err) => {
                let message = err.to_string();
                assert!(message.contains("openai/gsm8k"), "{message}");
                assert!(message.contains("JSONL"), "{message}");
            }
            // With a network the download must produce real problems.
            Ok((problems, _)) => assert!(problems.len() > 1000),
        }
    }
}
