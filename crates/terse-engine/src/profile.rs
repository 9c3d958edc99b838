//! An opt-in profiler of the forward pass: wall time per kind of operation (and, for
//! matrix products, the weight bytes they read), so a benchmark can say where a step's
//! time goes. Switched off, timing an operation costs one `Option` check.

use std::cell::RefCell;
use std::time::{Duration, Instant};
use terse_gguf::GgmlType;

/// Time spent in one kind of operation.
#[derive(Debug, Clone, PartialEq)]
pub struct ProfileEntry {
    /// "rms norm", "attention", "matmul Q4_K", …
    pub kind: String,
    pub total: Duration,
    pub calls: u64,
    /// Weight bytes read by these calls (matrix products only, 0 for the rest).
    pub weight_bytes: u64,
}

/// What the accumulator is keyed by: comparing these is cheaper than formatting kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct OpKey {
    op: &'static str,
    weight_type: Option<GgmlType>,
}

impl OpKey {
    fn kind(self) -> String {
        match self.weight_type {
            Some(ty) => format!("{} {}", self.op, ty.name()),
            None => self.op.to_string(),
        }
    }
}

/// Accumulated timings by kind of operation, in the order the kinds were first seen.
#[derive(Debug, Clone, Default)]
pub struct Profile {
    entries: Vec<(OpKey, ProfileEntry)>,
}

impl Profile {
    pub fn entries(&self) -> impl Iterator<Item = &ProfileEntry> {
        self.entries.iter().map(|(_, e)| e)
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Adds `calls` calls taking `elapsed` in all to the kind `op` (for work timed
    /// outside the engine, such as a caller's sampling).
    pub fn record(&mut self, op: &'static str, elapsed: Duration, calls: u64) {
        let key = OpKey {
            op,
            weight_type: None,
        };
        self.add(key, elapsed, calls, 0);
    }

    /// Adds every entry of `other` to this profile.
    pub fn merge(&mut self, other: &Profile) {
        for (key, e) in &other.entries {
            self.add(*key, e.total, e.calls, e.weight_bytes);
        }
    }

    fn add(&mut self, key: OpKey, elapsed: Duration, calls: u64, weight_bytes: u64) {
        // A linear search: a forward pass has about fifteen kinds.
        let index = match self.entries.iter().position(|(k, _)| *k == key) {
            Some(i) => i,
            None => {
                let entry = ProfileEntry {
                    kind: key.kind(),
                    total: Duration::ZERO,
                    calls: 0,
                    weight_bytes: 0,
                };
                self.entries.push((key, entry));
                self.entries.len() - 1
            }
        };
        let entry = &mut self.entries[index].1;
        entry.total += elapsed;
        entry.calls += calls;
        entry.weight_bytes += weight_bytes;
    }
}

/// Times operations into a [`Profile`] while enabled. Shared by reference through the
/// forward pass, hence the `RefCell`: timed operations never nest, so it is borrowed
/// only between the end of one operation and the start of the next.
#[derive(Debug, Default)]
pub struct Profiler {
    profile: Option<RefCell<Profile>>,
}

impl Profiler {
    /// Starts (keeping what was recorded so far) or stops profiling.
    pub fn set_enabled(&mut self, on: bool) {
        if !on {
            self.profile = None;
        } else if self.profile.is_none() {
            self.profile = Some(RefCell::default());
        }
    }

    /// What was recorded since the last take; profiling stays as it was.
    pub fn take(&mut self) -> Profile {
        self.profile
            .as_mut()
            .map(|p| std::mem::take(p.get_mut()))
            .unwrap_or_default()
    }

    /// Runs `f`, counting its time under `op`.
    #[inline]
    pub fn time<R>(&self, op: &'static str, f: impl FnOnce() -> R) -> R {
        let key = OpKey {
            op,
            weight_type: None,
        };
        self.time_key(key, 0, f)
    }

    /// Runs `f`, a product with a `weight_type` matrix of `weight_bytes` bytes, counting
    /// its time under "`op` `weight_type`".
    #[inline]
    pub fn time_matmul<R>(
        &self,
        op: &'static str,
        weight_type: GgmlType,
        weight_bytes: usize,
        f: impl FnOnce() -> R,
    ) -> R {
        let key = OpKey {
            op,
            weight_type: Some(weight_type),
        };
        self.time_key(key, weight_bytes as u64, f)
    }

    #[inline]
    fn time_key<R>(&self, key: OpKey, weight_bytes: u64, f: impl FnOnce() -> R) -> R {
        let Some(profile) = &self.profile else {
            return f();
        };
        let start = Instant::now();
        let result = f();
        let elapsed = start.elapsed();
        profile.borrow_mut().add(key, elapsed, 1, weight_bytes);
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disabled_profiler_runs_the_op_and_records_nothing() {
        let mut profiler = Profiler::default();
        assert_eq!(profiler.time("rms norm", || 7), 7);
        assert!(profiler.take().is_empty());
    }

    #[test]
    fn enabled_profiler_accumulates_by_kind_and_weight_type() {
        let mut profiler = Profiler::default();
        profiler.set_enabled(true);
        profiler.time("rope", || ());
        profiler.time("rope", || ());
        profiler.time_matmul("matmul", GgmlType::Q4_K, 100, || ());
        profiler.time_matmul("matmul", GgmlType::Q6_K, 50, || ());
        profiler.time_matmul("matmul", GgmlType::Q4_K, 100, || ());
        let profile = profiler.take();
        let entries: Vec<_> = profile
            .entries()
            .map(|e| (e.kind.as_str(), e.calls, e.weight_bytes))
            .collect();
        assert_eq!(
            entries,
            [
                ("rope", 2, 0),
                ("matmul Q4_K", 2, 200),
                ("matmul Q6_K", 1, 50)
            ]
        );
        assert!(profiler.take().is_empty(), "take empties the profile");
    }

    #[test]
    fn merge_and_record_add_to_existing_kinds() {
        let mut a = Profile::default();
        a.record("argmax", Duration::from_millis(2), 3);
        let mut b = Profile::default();
        b.record("argmax", Duration::from_millis(1), 1);
        b.record("attention", Duration::from_millis(5), 1);
        a.merge(&b);
        let entries: Vec<_> = a
            .entries()
            .map(|e| (e.kind.as_str(), e.total, e.calls))
            .collect();
        assert_eq!(
            entries,
            [
                ("argmax", Duration::from_millis(3), 4),
                ("attention", Duration::from_millis(5), 1)
            ]
        );
    }
}
