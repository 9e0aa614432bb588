//! What the report says about the machine and the memory and CPU time of the processes
//! under test, read from `/proc` (Linux); elsewhere the fields are simply empty.

use std::path::Path;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// A process whose memory the report gives, named for the reader (e.g. `"cluster"` for
/// the process running an embedded cluster, `"shard-0"` for an external shard).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WatchedProcess {
    /// Name in the report.
    pub label: String,
    /// Its process id.
    pub pid: u32,
}

impl WatchedProcess {
    /// The calling process itself. Its peak includes the harness's own workload (the
    /// pre-signed transactions), which an embedded cluster shares a process with.
    pub fn this_process(label: impl Into<String>) -> Self {
        WatchedProcess {
            label: label.into(),
            pid: std::process::id(),
        }
    }
}

/// Memory of one watched process at the end of the run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemoryUsage {
    /// Name in the report.
    pub label: String,
    /// Process id.
    pub pid: u32,
    /// Peak resident set (`VmHWM`), bytes.
    pub peak_rss_bytes: Option<u64>,
    /// Resident set at the end (`VmRSS`), bytes.
    pub rss_bytes: Option<u64>,
    /// Why the figures are missing (the process is gone, not Linux…).
    pub error: Option<String>,
}

impl MemoryUsage {
    /// Reads `/proc/PID/status` of `process`.
    pub fn read(process: &WatchedProcess) -> MemoryUsage {
        let path = Path::new("/proc")
            .join(process.pid.to_string())
            .join("status");
        let mut usage = MemoryUsage {
            label: process.label.clone(),
            pid: process.pid,
            peak_rss_bytes: None,
            rss_bytes: None,
            error: None,
        };
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                usage.peak_rss_bytes = status_field_bytes(&text, "VmHWM");
                usage.rss_bytes = status_field_bytes(&text, "VmRSS");
                if usage.peak_rss_bytes.is_none() {
                    usage.error = Some(format!("{} has no VmHWM", path.display()));
                }
            }
            Err(e) => usage.error = Some(format!("{}: {e}", path.display())),
        }
        usage
    }
}

/// A `Name:   1234 kB` line of `/proc/PID/status` (or `/proc/meminfo`), in bytes.
pub fn status_field_bytes(text: &str, name: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let rest = line.strip_prefix(name)?.strip_prefix(':')?;
        let mut parts = rest.split_whitespace();
        let value: u64 = parts.next()?.parse().ok()?;
        let scale = match parts.next() {
            Some("kB") => 1024,
            Some("mB") | Some("MB") => 1024 * 1024,
            None => 1,
            Some(_) => return None,
        };
        value.checked_mul(scale)
    })
}

/// CPU time one watched process spent over the measured part of the run.
///
/// Throughput on a small shared machine swings by ±15 % from run to run, while the CPU
/// time each transaction costs moves much less: it is the steadier figure for judging
/// whether a change made the system cheaper, and at a fixed open-loop rate it shows how
/// much headroom is left.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CpuUsage {
    /// Name in the report.
    pub label: String,
    /// Process id.
    pub pid: u32,
    /// User plus system CPU seconds, over all its threads, in the window.
    pub cpu_s: Option<f64>,
    /// Length of the window (from the end of the warm-up to the end of the drive), s.
    pub window_s: f64,
    /// `cpu_s / window_s`: how many cores it kept busy on average.
    pub cores_busy: Option<f64>,
    /// CPU milliseconds per 1,000 measured answers (the answers of the window).
    pub ms_per_1000_tx: Option<f64>,
    /// Why the figures are missing (the process is gone, not Linux…).
    pub error: Option<String>,
}

/// The start of a CPU measurement window over some processes.
#[derive(Debug)]
pub struct CpuWindow {
    processes: Vec<WatchedProcess>,
    started: Instant,
    at_start: Vec<Result<Duration, String>>,
}

impl CpuWindow {
    /// Reads the CPU time of each of `processes` now.
    pub fn start(processes: &[WatchedProcess]) -> CpuWindow {
        CpuWindow {
            processes: processes.to_vec(),
            started: Instant::now(),
            at_start: processes.iter().map(|p| cpu_time(p.pid)).collect(),
        }
    }

    /// Reads them again and gives what each spent since [`CpuWindow::start`], and per
    /// 1,000 of the `answers` counted in the window.
    pub fn finish(self, answers: u64) -> Vec<CpuUsage> {
        let window_s = self.started.elapsed().as_secs_f64();
        self.processes
            .into_iter()
            .zip(self.at_start)
            .map(|(process, start)| {
                let spent = start.and_then(|start| {
                    let end = cpu_time(process.pid)?;
                    end.checked_sub(start)
                        .ok_or_else(|| "the CPU time went backwards (another process?)".into())
                });
                let (cpu_s, error) = match spent {
                    Ok(spent) => (Some(spent.as_secs_f64()), None),
                    Err(e) => (None, Some(e)),
                };
                CpuUsage {
                    label: process.label,
                    pid: process.pid,
                    cpu_s,
                    window_s,
                    cores_busy: cpu_s.filter(|_| window_s > 0.0).map(|c| c / window_s),
                    ms_per_1000_tx: cpu_s
                        .filter(|_| answers > 0)
                        .map(|c| c * 1e6 / answers as f64),
                    error,
                }
            })
            .collect()
    }
}

/// User plus system CPU time of process `pid` so far, all threads (`/proc/PID/stat`).
pub fn cpu_time(pid: u32) -> Result<Duration, String> {
    let path = Path::new("/proc").join(pid.to_string()).join("stat");
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let ticks =
        stat_cpu_ticks(&text).ok_or_else(|| format!("{} has no CPU times", path.display()))?;
    let per_s = clock_ticks_per_s().ok_or("the clock tick rate is unknown")?;
    Ok(Duration::from_secs_f64(ticks as f64 / per_s as f64))
}

/// `utime + stime` of a `/proc/PID/stat` line, in clock ticks. The command name (field
/// 2) is in parentheses and may hold spaces or parentheses itself, so the fields are
/// counted from the last `)`: the state is field 3, `utime` and `stime` 14 and 15.
fn stat_cpu_ticks(stat: &str) -> Option<u64> {
    let (_, rest) = stat.rsplit_once(')')?;
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    utime.checked_add(stime)
}

/// Clock ticks per second, the unit of `/proc/PID/stat`'s times.
fn clock_ticks_per_s() -> Option<u64> {
    // SAFETY: sysconf only reads a system constant; it has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    u64::try_from(ticks).ok().filter(|&t| t > 0)
}

/// The machine a run was measured on, so that reports from different machines are not
/// compared by mistake.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Machine {
    /// CPU model (`/proc/cpuinfo`).
    pub cpu_model: Option<String>,
    /// Cores available to this process.
    pub cores: usize,
    /// Total memory, bytes (`/proc/meminfo`).
    pub memory_bytes: Option<u64>,
    /// Operating system and kernel release.
    pub os: String,
}

impl Machine {
    /// Looks at this machine.
    pub fn detect() -> Machine {
        let cpu_model = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|text| cpu_model(&text));
        let memory_bytes = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|text| status_field_bytes(&text, "MemTotal"));
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|s| s.trim().to_string())
            .unwrap_or_default();
        Machine {
            cpu_model,
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            memory_bytes,
            os: format!("{} {kernel}", std::env::consts::OS)
                .trim()
                .to_string(),
        }
    }
}

fn cpu_model(cpuinfo: &str) -> Option<String> {
    cpuinfo.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        (key.trim() == "model name").then(|| value.trim().to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATUS: &str = "Name:\tcbdc\nVmPeak:\t  900000 kB\nVmHWM:\t   524288 kB\nVmRSS:\t   262144 kB\nThreads:\t17\n";

    #[test]
    fn test_status_field_bytes_parses_kb_lines() {
        assert_eq!(status_field_bytes(STATUS, "VmHWM"), Some(512 * 1024 * 1024));
        assert_eq!(status_field_bytes(STATUS, "VmRSS"), Some(256 * 1024 * 1024));
        assert_eq!(status_field_bytes(STATUS, "Threads"), Some(17));
        assert_eq!(status_field_bytes(STATUS, "VmSwap"), None);
        assert_eq!(status_field_bytes("VmHWM: lots kB", "VmHWM"), None);
        // A prefix of another name does not match it.
        assert_eq!(status_field_bytes(STATUS, "Vm"), None);
    }

    #[test]
    fn test_cpu_model() {
        let text =
            "processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Xeon(R) 8375C\n";
        assert_eq!(cpu_model(text).as_deref(), Some("Intel(R) Xeon(R) 8375C"));
        assert_eq!(cpu_model("processor: 0\n"), None);
    }

    #[test]
    fn test_memory_of_this_process_and_of_a_missing_one() {
        let me = MemoryUsage::read(&WatchedProcess::this_process("test"));
        if cfg!(target_os = "linux") {
            assert!(me.peak_rss_bytes.is_some_and(|b| b > 0), "{me:?}");
            assert!(me.error.is_none());
        }
        let gone = MemoryUsage::read(&WatchedProcess {
            label: "gone".into(),
            pid: u32::MAX,
        });
        assert!(gone.peak_rss_bytes.is_none());
        assert!(gone.error.is_some());
    }

    #[test]
    fn test_stat_cpu_ticks_counts_fields_after_the_name() {
        // A name with a space and a parenthesis must not shift the fields.
        let line = "4242 (tokio (rt) x) S 1 4242 4242 0 -1 4194560 500 0 0 0 1234 56 0 0 20 0 9 0 100 2000000 3000 18446744073709551615";
        assert_eq!(stat_cpu_ticks(line), Some(1234 + 56));
        assert_eq!(stat_cpu_ticks("4242 (cbdc) S 1 2 3"), None);
        assert_eq!(stat_cpu_ticks("no parenthesis at all"), None);
    }

    #[test]
    fn test_cpu_window_of_this_process_and_of_a_missing_one() {
        let me = WatchedProcess::this_process("test");
        let gone = WatchedProcess {
            label: "gone".into(),
            pid: u32::MAX,
        };
        let window = CpuWindow::start(&[me, gone]);
        // Spend some CPU so that the window has something to count (clock ticks are
        // usually 10 ms).
        let started = Instant::now();
        let mut x = 0u64;
        while started.elapsed() < Duration::from_millis(60) {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
        }
        let usage = window.finish(1000);
        assert_eq!(usage.len(), 2);
        if cfg!(target_os = "linux") {
            let cpu = usage[0].cpu_s.expect("this process's CPU time");
            assert!(cpu > 0.0, "{usage:?}");
            let per_1000 = usage[0].ms_per_1000_tx.expect("per 1000 answers");
            assert!((per_1000 - cpu * 1000.0).abs() < 1e-9);
            assert!(usage[0].cores_busy.is_some() && usage[0].error.is_none());
        }
        assert!(usage[1].cpu_s.is_none() && usage[1].cores_busy.is_none());
        assert!(usage[1].error.is_some());
    }
}
