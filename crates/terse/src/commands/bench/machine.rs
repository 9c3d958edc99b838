//! What the machine allows: main-memory read bandwidth (the bound on decoding, which
//! reads every weight once per token) and the process's peak resident memory.

use std::time::{Duration, Instant};

/// Larger than any CPU cache, so every pass reads from main memory.
const BUFFER_BYTES: usize = 1 << 30;
/// Timed passes; the fastest counts, as in STREAM.
const PASSES: usize = 5;

/// Main-memory read bandwidth in bytes per second with `threads` threads, each summing
/// its own slice of a 1 GiB buffer: the best of a few passes.
pub fn read_bandwidth(threads: usize) -> f64 {
    let threads = threads.max(1);
    let words = BUFFER_BYTES / size_of::<u64>();
    let slice_len = words.div_ceil(threads);
    // Zeroed pages all map to one shared page until written, and reading them would
    // measure a cache; each thread writes its own slice first, so the pages are real
    // and (on NUMA machines) near the thread that reads them.
    let mut buffer = vec![0u64; words];
    std::thread::scope(|scope| {
        for (i, slice) in buffer.chunks_mut(slice_len).enumerate() {
            scope.spawn(move || {
                for (j, word) in slice.iter_mut().enumerate() {
                    *word = (i * slice_len + j) as u64;
                }
            });
        }
    });
    let best = (0..PASSES)
        .map(|_| {
            let start = Instant::now();
            std::thread::scope(|scope| {
                for slice in buffer.chunks(slice_len) {
                    scope.spawn(move || std::hint::black_box(sum(slice)));
                }
            });
            start.elapsed()
        })
        .min()
        .unwrap_or(Duration::MAX);
    BUFFER_BYTES as f64 / best.as_secs_f64().max(1e-9)
}

/// A read-only loop the compiler vectorizes (integer addition may be reordered freely).
fn sum(words: &[u64]) -> u64 {
    words.iter().fold(0u64, |acc, &w| acc.wrapping_add(w))
}

/// Peak resident set size of this process in bytes (`VmHWM`), where the system tells it.
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    parse_vm_hwm(&status)
}

/// The `VmHWM:   1234 kB` line of /proc/self/status, in bytes.
fn parse_vm_hwm(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let mut fields = line["VmHWM:".len()..].split_whitespace();
    let value: u64 = fields.next()?.parse().ok()?;
    match fields.next()? {
        "kB" => Some(value * 1024),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vm_hwm_is_read_in_bytes() {
        let status = "Name:\tterse\nVmPeak:\t  900 kB\nVmHWM:\t   2048 kB\nVmRSS:\t 1024 kB\n";
        assert_eq!(parse_vm_hwm(status), Some(2048 * 1024));
        assert_eq!(parse_vm_hwm("Name:\tterse\n"), None);
        assert_eq!(parse_vm_hwm("VmHWM:\t12 MB\n"), None);
    }

    #[test]
    fn sum_adds_every_word() {
        assert_eq!(sum(&[1, 2, 3, u64::MAX]), 5);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn peak_rss_is_known_on_linux() {
        assert!(peak_rss_bytes().is_some_and(|b| b > 0));
    }
}
