//! What benchmark reports say about the machine and the processes they measure, read from
//! `/proc` (Linux): CPU time of a process (and of its descendants), the load average, the
//! CPU model, the run's time.
//!
//! ```text
//!  /proc/<pid>/stat ─▶ cpu_of(pid), children_cpu_of(pid)     (clock ticks ─▶ Duration)
//!  /proc/loadavg ─▶ load_average()   /proc/cpuinfo ─▶ cpu_model()   SystemTime ─▶ utc_minute()
//! ```

use std::time::{Duration, SystemTime};

use aws_sdk_kinesis::primitives::{DateTime, DateTimeFormat};

/// The fields of `/proc/<pid>/stat` after the command name (field 3, the state, first; the
/// state, a letter, reads as 0).
fn stat_fields(pid: u32) -> Option<Vec<u64>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces: split after it.
    let rest = stat.rsplit_once(')')?.1;
    Some(
        rest.split_whitespace()
            .map(|f| f.parse().unwrap_or(0))
            .collect(),
    )
}

/// User + system CPU of process `pid` so far (fields 14 and 15), its children excluded.
pub fn cpu_of(pid: u32) -> Option<Duration> {
    let f = stat_fields(pid)?;
    Some(ticks(f.get(11)? + f.get(12)?))
}

/// CPU of `pid`'s descendants: each live one's own (fields 14 and 15) and, for `pid` and
/// each of them, what they reaped (fields 16 and 17); with the number of live descendants.
pub fn children_cpu_of(pid: u32) -> (Duration, usize) {
    let mut parents: Vec<(u32, u32)> = Vec::new();
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for entry in dir.flatten() {
            let Some(p) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<u32>().ok())
            else {
                continue;
            };
            // Field 4 (the parent), at index 1 after the command name.
            if let Some(ppid) = stat_fields(p).and_then(|f| f.get(1).copied()) {
                parents.push((p, u32::try_from(ppid).unwrap_or(0)));
            }
        }
    }
    let mut family = vec![pid];
    let mut i = 0;
    while i < family.len() {
        let parent = family[i];
        family.extend(
            parents
                .iter()
                .filter(|(_, pp)| *pp == parent)
                .map(|(p, _)| *p),
        );
        i += 1;
    }
    let mut total = 0;
    for (k, p) in family.iter().enumerate() {
        if let Some(f) = stat_fields(*p) {
            let own = if k == 0 {
                0
            } else {
                f.get(11).unwrap_or(&0) + f.get(12).unwrap_or(&0)
            };
            let reaped = f.get(13).unwrap_or(&0) + f.get(14).unwrap_or(&0);
            total += own + reaped;
        }
    }
    (ticks(total), family.len() - 1)
}

/// `n` clock ticks as a duration.
fn ticks(n: u64) -> Duration {
    Duration::from_secs_f64(n as f64 / clock_ticks_per_sec())
}

/// The kernel's clock ticks per second (`getconf CLK_TCK`; 100, Linux's value, if that
/// fails), asked once.
fn clock_ticks_per_sec() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(100.0)
    })
}

/// The 1, 5 and 15-minute load averages.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".to_owned())
}

/// The CPU's model name.
pub fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".to_owned())
}

/// `t` as `YYYY-MM-DD HH:MM` (UTC).
pub fn utc_minute(t: SystemTime) -> String {
    let rfc3339 = DateTime::from(t)
        .fmt(DateTimeFormat::DateTime)
        .unwrap_or_default();
    // 2024-01-02T03:04:05Z ─▶ 2024-01-02 03:04
    rfc3339.get(..16).unwrap_or(&rfc3339).replacen('T', " ", 1)
}

/// A bench setting from the environment: the positive whole number in `var`, or `default`
/// when `var` is not set.
///
/// # Errors
/// A value that is not a positive whole number, named with its variable.
pub fn env_count(var: &str, default: usize) -> Result<usize, String> {
    count_setting(var, std::env::var(var).ok().as_deref(), default)
}

/// [`env_count`] of the value `value` of `var` (`None`: not set).
fn count_setting(var: &str, value: Option<&str>, default: usize) -> Result<usize, String> {
    match value {
        Some(v) => v
            .parse::<usize>()
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| format!("{var}={v:?}: expected a positive whole number")),
        None => Ok(default),
    }
}

/// The `main` of a bench binary (`harness = false`) after its own child modes: under
/// `cargo test --benches`, which runs bench binaries without `--bench`, it only says how to
/// run it (`cargo bench -p <package> --bench <name>`); otherwise it reads the bench's
/// settings (an error ends it with a failure status, naming the bench) and runs it on a
/// multi-thread tokio runtime.
pub fn bench_main<S, E, F>(
    package: &str,
    name: &str,
    settings: impl FnOnce() -> Result<S, E>,
    run: impl FnOnce(S) -> F,
) -> std::process::ExitCode
where
    E: std::fmt::Display,
    F: std::future::Future<Output = std::process::ExitCode>,
{
    if !std::env::args().any(|a| a == "--bench") {
        println!("{name}: a benchmark; run it with `cargo bench -p {package} --bench {name}`");
        return std::process::ExitCode::SUCCESS;
    }
    let settings = match settings() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{name} bench: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime for the bench")
        .block_on(run(settings))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_read_to_the_minute() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_704_164_645);
        assert_eq!(utc_minute(t), "2024-01-02 03:04");
        assert_eq!(utc_minute(SystemTime::UNIX_EPOCH), "1970-01-01 00:00");
    }

    #[test]
    fn a_count_setting_is_a_positive_whole_number_or_its_default() {
        assert_eq!(count_setting("N", None, 7), Ok(7));
        assert_eq!(count_setting("N", Some("12"), 7), Ok(12));
        for bad in ["0", "-1", "1.5", "x", ""] {
            let err = count_setting("N", Some(bad), 7).unwrap_err();
            assert!(
                err.starts_with("N=") && err.contains("positive whole number"),
                "{err}"
            );
        }
    }

    #[test]
    fn this_process_has_a_cpu_time() {
        assert!(cpu_of(std::process::id()).is_some());
    }
}
