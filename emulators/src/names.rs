//! Unique resource names for parallel tests.
//!
//! ```text
//!  prefix --sanitize/truncate--> "orders" + "-" + pid + "-" + process-start nanos + "-" + counter
//! ```

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

/// Longest prefix kept, so the whole name stays well under Kinesis's 128-character limit.
const MAX_PREFIX_LEN: usize = 64;

/// Returns a name that is unique per process and per call, starting with `prefix`.
///
/// The result is a valid Kinesis stream name and DynamoDB table name
/// (`[A-Za-z0-9_.-]`, 3 to 128 characters): characters of `prefix` outside that set become
/// `-`, and the prefix is cut to 64 characters. The suffix holds the process id, the process
/// start time and a per-process counter, so tests running in parallel, in one process or in
/// several, against one endpoint never collide.
pub fn unique_name(prefix: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    static PROCESS_TAG: OnceLock<String> = OnceLock::new();
    let tag = PROCESS_TAG.get_or_init(|| {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        // Millisecond-and-below part is enough to separate two runs that reuse a pid.
        format!("{:x}-{:x}", std::process::id(), nanos % 1_000_000_000_000)
    });
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let clean: String = prefix
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '.' || c == '-' {
                c
            } else {
                '-'
            }
        })
        .take(MAX_PREFIX_LEN)
        .collect();
    let clean = if clean.is_empty() { "t" } else { &clean };
    format!("{clean}-{tag}-{n}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    fn valid(name: &str) -> bool {
        (3..=128).contains(&name.len())
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
    }

    #[test]
    fn names_are_unique_across_calls_and_threads() {
        let handles: Vec<_> = (0..4)
            .map(|_| std::thread::spawn(|| (0..250).map(|_| unique_name("s")).collect::<Vec<_>>()))
            .collect();
        let mut seen = HashSet::new();
        for h in handles {
            for name in h.join().expect("thread") {
                assert!(seen.insert(name.clone()), "duplicate {name}");
            }
        }
        assert_eq!(seen.len(), 1000);
    }

    #[test]
    fn names_are_valid_for_any_prefix() {
        let long = "x".repeat(500);
        for prefix in ["", "orders", "a b/c:ü", long.as_str(), "lease.table_1"] {
            let name = unique_name(prefix);
            assert!(valid(&name), "{name:?} from {prefix:?}");
        }
        assert!(unique_name("orders").starts_with("orders-"));
        assert!(unique_name("a b").starts_with("a-b-"));
    }
}
