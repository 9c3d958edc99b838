//! Per-problem run records and the crash-safe `records.jsonl` writer and reader.
//!
//! One JSON line is appended and flushed (and synced) as soon as a problem finishes,
//! so a run killed at any moment loses at most the line being written. On resume the
//! reader accepts a torn last line (a write cut by SIGKILL), truncates the file back
//! to the end of the last complete record and appends from there; a malformed line
//! anywhere else is an error that names the line, since it is not a crash artefact.

use crate::extract::Rule;
use serde::{Deserialize, Serialize};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use terse_reason::{EngineTime, SamplerConfig, StrategyEvent, Usage};

/// File name of the records inside a run directory.
pub const RECORDS_FILE: &str = "records.jsonl";

/// Everything known about one answered problem (one sample of it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    pub id: String,
    /// Sample index when several samples per problem are drawn.
    #[serde(default)]
    pub sample: u32,
    pub prompt: String,
    /// The answer as returned (the think section apart, in `reasoning`).
    pub output: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning: Option<String>,
    pub extracted: Option<String>,
    pub rule: Rule,
    pub gold: String,
    /// Correct with any configured rule (lenient accuracy).
    pub correct: bool,
    /// Correct and found by a strict rule (strict accuracy).
    pub correct_strict: bool,
    /// Every token the answer cost, by kind.
    pub usage: Usage,
    /// Why the answer ended (`eos`, `length`, or the strategy's reason).
    pub stop_reason: String,
    /// What the strategy did (probe answers, hints, exits), in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub events: Vec<StrategyEvent>,
    pub latency_s: f64,
    /// The local engine's forward-pass time of this answer and its probes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub engine_time: Option<EngineTime>,
    pub sampling: SamplerConfig,
    pub max_tokens: u32,
    /// The strategy chain (`none`, `loop-guard+early-exit`, …).
    pub strategy: String,
    /// The seed this generation used.
    pub seed: u64,
    /// True when the generation came from the cache instead of the model.
    #[serde(default)]
    pub cached: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("cannot access {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}:{line}: malformed record ({reason}); only a torn last line is repaired")]
    Corrupt {
        path: PathBuf,
        line: usize,
        reason: String,
    },
    #[error("cannot serialise record '{id}': {source}")]
    Serialize {
        id: String,
        source: serde_json::Error,
    },
}

/// Records read back from a file.
#[derive(Debug, Clone, Default)]
pub struct ReadRecords {
    pub records: Vec<Record>,
    /// Byte length of the complete records (where appending should resume).
    pub valid_len: u64,
    /// A torn last line was found (and will be dropped).
    pub torn_tail: bool,
}

/// Reads `records.jsonl`, tolerating a torn last line. A missing file reads as empty.
pub fn read_records(path: &Path) -> Result<ReadRecords, RecordError> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(ReadRecords::default()),
        Err(source) => {
            return Err(RecordError::Io {
                path: path.to_path_buf(),
                source,
            })
        }
    };
    let mut result = ReadRecords::default();
    let mut start = 0usize;
    let mut line_number = 0usize;
    while start < bytes.len() {
        line_number += 1;
        let newline = bytes
            .get(start..)
            .and_then(|rest| rest.iter().position(|&b| b == b'\n'));
        let (end, terminated) = match newline {
            Some(offset) => (start + offset, true),
            None => (bytes.len(), false),
        };
        let line = bytes.get(start..end).unwrap_or(&[]);
        let next = if terminated { end + 1 } else { end };
        if line.iter().all(u8::is_ascii_whitespace) {
            start = next;
            if terminated {
                result.valid_len = next as u64;
            }
            continue;
        }
        if !terminated {
            // An unterminated last line is a write cut by a kill, even when it happens
            // to parse (the kill fell between the JSON and its newline): it is dropped
            // and recomputed rather than trusted.
            result.torn_tail = true;
            break;
        }
        let parsed = std::str::from_utf8(line)
            .map_err(|e| e.to_string())
            .and_then(|text| serde_json::from_str::<Record>(text).map_err(|e| e.to_string()));
        match parsed {
            Ok(record) => {
                result.records.push(record);
                result.valid_len = next as u64;
            }
            Err(reason) => {
                return Err(RecordError::Corrupt {
                    path: path.to_path_buf(),
                    line: line_number,
                    reason,
                })
            }
        }
        start = next;
    }
    Ok(result)
}

/// Appends records to `records.jsonl`, one flushed and synced line each.
pub struct RunWriter {
    file: File,
    path: PathBuf,
}

impl RunWriter {
    /// Opens `dir/records.jsonl` for appending after dropping any torn last line, and
    /// returns the complete records already there.
    pub fn open(dir: &Path) -> Result<(RunWriter, ReadRecords), RecordError> {
        let path = dir.join(RECORDS_FILE);
        let existing = read_records(&path)?;
        let io = |source| RecordError::Io {
            path: path.clone(),
            source,
        };
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(io)?;
        let current_len = file.metadata().map_err(io)?.len();
        if current_len != existing.valid_len {
            file.set_len(existing.valid_len).map_err(io)?;
        }
        Ok((RunWriter { file, path }, existing))
    }

    /// Writes one record as a line and makes it durable before returning.
    pub fn append(&mut self, record: &Record) -> Result<(), RecordError> {
        let mut line = serde_json::to_string(record).map_err(|source| RecordError::Serialize {
            id: record.id.clone(),
            source,
        })?;
        line.push('\n');
        let io = |source| RecordError::Io {
            path: self.path.clone(),
            source,
        };
        self.file.write_all(line.as_bytes()).map_err(io)?;
        self.file.flush().map_err(io)?;
        self.file.sync_data().map_err(io)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn record(id: &str, correct: bool, output_tokens: u64) -> Record {
        Record {
            id: id.to_string(),
            sample: 0,
            prompt: format!("prompt {id}"),
            output: "#### 1".into(),
            extracted: Some("1".into()),
            rule: Rule::Hashes,
            gold: "1".into(),
            correct,
            correct_strict: correct,
            reasoning: None,
            usage: Usage {
                prompt_tokens: 10,
                output_tokens,
                ..Usage::default()
            },
            stop_reason: "eos".into(),
            events: Vec::new(),
            latency_s: 0.5,
            engine_time: None,
            sampling: SamplerConfig::greedy(),
            max_tokens: 1024,
            strategy: "none".into(),
            seed: 0,
            cached: false,
        }
    }

    #[test]
    fn records_round_trip_through_the_writer() {
        let dir = tempfile::tempdir().unwrap();
        let (mut writer, existing) = RunWriter::open(dir.path()).unwrap();
        assert!(existing.records.is_empty());
        writer.append(&record("a", true, 5)).unwrap();
        writer.append(&record("b", false, 7)).unwrap();
        let read = read_records(&dir.path().join(RECORDS_FILE)).unwrap();
        assert_eq!(
            read.records,
            vec![record("a", true, 5), record("b", false, 7)]
        );
        assert!(!read.torn_tail);
    }

    #[test]
    fn torn_last_line_is_dropped_and_truncated_on_open() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(RECORDS_FILE);
        let first = serde_json::to_string(&record("a", true, 5)).unwrap();
        let second = serde_json::to_string(&record("b", true, 5)).unwrap();
        let torn = &second[..second.len() / 2];
        std::fs::write(&path, format!("{first}\n{torn}")).unwrap();
        let (mut writer, existing) = RunWriter::open(dir.path()).unwrap();
        assert!(existing.torn_tail);
        assert_eq!(existing.records.len(), 1);
        assert_eq!(
            std::fs::metadata(&path).unwrap().len(),
            first.len() as u64 + 1
        );
        writer.append(&record("c", false, 1)).unwrap();
        let ids: Vec<String> = read_records(&path)
            .unwrap()
            .records
            .into_iter()
            .map(|r| r.id)
            .collect();
        assert_eq!(ids, ["a", "c"]);
    }

    #[test]
    fn malformed_middle_line_is_an_error_naming_the_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(RECORDS_FILE);
        let good = serde_json::to_string(&record("a", true, 5)).unwrap();
        std::fs::write(&path, format!("{good}\n{{garbage\n{good}\n")).unwrap();
        match read_records(&path) {
            Err(RecordError::Corrupt { line, .. }) => assert_eq!(line, 2),
            other => panic!("expected corrupt error, got {other:?}"),
        }
    }

    #[test]
    fn missing_file_reads_as_empty() {
        let dir = tempfile::tempdir().unwrap();
        let read = read_records(&dir.path().join("nope.jsonl")).unwrap();
        assert!(read.records.is_empty());
        assert_eq!(read.valid_len, 0);
    }
}
