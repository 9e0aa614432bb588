//! What the report says about the machine and the memory of the processes under test,
//! read from `/proc` (Linux); elsewhere the fields are simply empty.

use std::path::Path;

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
}
