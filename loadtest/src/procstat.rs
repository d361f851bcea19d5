//! The servers' own cost over the measured window, for a deployment the load test launched
//! (`--deploy`): each member's resident memory (`VmRSS` of `/proc/PID/status`) at the
//! window's end and the CPU time (user + system, `utime` + `stime` of `/proc/PID/stat`) it
//! used between the window's start and end. Linux only: elsewhere, and for a process whose
//! files cannot be read, the figures are null with the reason.
//!
//! A member killed or restarted in the window is not the process it was at the start: its
//! CPU time is left out (null, with the reason) rather than reported as the difference of
//! two processes' counters, and its memory is that of the process running at the end, if
//! any.

use crate::report::ProcessReport;
use std::path::Path;
use std::sync::OnceLock;
use tokio::time::Instant;

/// One member of a deployment as it is now: its name (`meta`, `c1`, `p1`, …), its process
/// if it runs, and how many times it was started (a restart changes it even if the kernel
/// reuses the PID).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberProcess {
    pub name: String,
    /// `None` while it is not running (killed, exited, not started yet).
    pub pid: Option<u32>,
    pub starts: u32,
}

/// What `/proc` says about one process at one instant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Usage {
    /// User + system CPU time so far, in clock ticks.
    pub cpu_ticks: u64,
    /// Resident set size, in bytes.
    pub rss_bytes: u64,
}

/// Reads `/proc/PID/stat` and `/proc/PID/status`.
pub fn usage(pid: u32) -> Result<Usage, String> {
    let dir = Path::new("/proc").join(pid.to_string());
    let read = |file: &str| {
        std::fs::read_to_string(dir.join(file))
            .map_err(|e| format!("cannot read {}: {e}", dir.join(file).display()))
    };
    let stat = read("stat")?;
    let status = read("status")?;
    Ok(Usage {
        cpu_ticks: cpu_ticks(&stat)
            .ok_or_else(|| format!("no utime and stime in /proc/{pid}/stat: {stat:?}"))?,
        rss_bytes: rss_bytes(&status).ok_or_else(|| format!("no VmRSS in /proc/{pid}/status"))?,
    })
}

/// `utime + stime` (fields 14 and 15) of a `/proc/PID/stat` line. The command name (field
/// 2) is in parentheses and may itself hold spaces and parentheses, so the fields are
/// counted from the last `)`: the one after it is field 3 (the state).
pub fn cpu_ticks(stat: &str) -> Option<u64> {
    let (_, after_comm) = stat.rsplit_once(')')?;
    let fields: Vec<&str> = after_comm.split_whitespace().collect();
    let field = |n: usize| fields.get(n - 3)?.parse::<u64>().ok();
    Some(field(14)? + field(15)?)
}

/// `VmRSS` of a `/proc/PID/status` text, in bytes (the kernel writes it in kB, meaning KiB).
pub fn rss_bytes(status: &str) -> Option<u64> {
    let line = status.lines().find_map(|l| l.strip_prefix("VmRSS:"))?;
    let kib = line.trim().strip_suffix("kB")?.trim().parse::<u64>().ok()?;
    Some(kib * 1024)
}

/// Clock ticks per second of the `/proc` CPU times (`getconf CLK_TCK`): read once; when
/// `getconf` cannot be run, 100, which is what Linux reports to user space (`USER_HZ`) on
/// every architecture it commonly runs on.
pub fn ticks_per_s() -> u64 {
    static TICKS: OnceLock<u64> = OnceLock::new();
    *TICKS.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .filter(|o| o.status.success())
            .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
            .filter(|&t: &u64| t > 0)
            .unwrap_or(100)
    })
}

/// The members and their usage at one instant.
#[derive(Clone, Debug)]
pub struct Snapshot {
    at: Instant,
    members: Vec<(MemberProcess, Result<Usage, String>)>,
}

impl Snapshot {
    /// Reads every running member's `/proc` files now.
    pub fn take(members: Vec<MemberProcess>) -> Snapshot {
        let at = Instant::now();
        let members = members
            .into_iter()
            .map(|m| {
                let u = match m.pid {
                    Some(pid) => usage(pid),
                    None => Err("it was not running (killed, or exited)".to_string()),
                };
                (m, u)
            })
            .collect();
        Snapshot { at, members }
    }
}

/// Each member's figures from the snapshots at the window's start and end, in the end
/// snapshot's order; CPU ticks are converted at `ticks_per_s`.
pub fn window_figures(start: &Snapshot, end: &Snapshot, ticks_per_s: u64) -> Vec<ProcessReport> {
    let window_s = (end.at - start.at).as_secs_f64();
    end.members
        .iter()
        .map(|(m, last)| {
            let first = start.members.iter().find(|(s, _)| s.name == m.name);
            let (rss_bytes, cpu_s, partial) = match (first, last) {
                (_, Err(e)) => (
                    None,
                    None,
                    Some(format!("nothing to read at the window's end: {e}")),
                ),
                (Some((s, Ok(a))), Ok(b)) if s.pid == m.pid && s.starts == m.starts => {
                    let cpu = b.cpu_ticks.saturating_sub(a.cpu_ticks) as f64 / ticks_per_s as f64;
                    (Some(b.rss_bytes), Some(cpu), None)
                }
                (Some((s, Ok(_))), Ok(b)) => (
                    Some(b.rss_bytes),
                    None,
                    Some(format!(
                        "no CPU figure: it was restarted in the window (start #{} at the \
                         window's start, #{} at its end)",
                        s.starts, m.starts
                    )),
                ),
                (Some((_, Err(e))), Ok(b)) => (
                    Some(b.rss_bytes),
                    None,
                    Some(format!("no CPU figure: at the window's start, {e}")),
                ),
                (None, Ok(b)) => (
                    Some(b.rss_bytes),
                    None,
                    Some("no CPU figure: it was not read at the window's start".to_string()),
                ),
            };
            ProcessReport {
                member: m.name.clone(),
                pid: m.pid,
                rss_bytes,
                cpu_s,
                window_s,
                partial,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// A `/proc/PID/stat` line of a process whose name holds spaces and parentheses
    /// (utime 1234, stime 567).
    const STAT: &str = "4242 (warren (cell) x) S 1 4242 4242 0 -1 4194560 2213 0 0 0 \
                        1234 567 0 0 20 0 9 0 1860577 1023975424 3412 18446744073709551615 \
                        1 1 0 0 0 0 0 4096 17642 0 0 0 17 1 0 0 0 0 0\n";

    const STATUS: &str = "Name:\twarren\nUmask:\t0022\nState:\tS (sleeping)\n\
                          VmPeak:\t 1000000 kB\nVmSize:\t  999936 kB\nVmHWM:\t   14000 kB\n\
                          VmRSS:\t   13648 kB\nRssAnon:\t    6120 kB\nThreads:\t9\n";

    #[test]
    fn proc_texts_parse() {
        assert_eq!(cpu_ticks(STAT), Some(1234 + 567));
        assert_eq!(rss_bytes(STATUS), Some(13648 * 1024));
        // Counting from the first ')' would read the wrong fields.
        assert_eq!(cpu_ticks("1 (a) b) S 1 1 1 0 -1 0 0 0 0 0 7 8 0"), Some(15));
        assert_eq!(cpu_ticks("1 (short) S 1 1"), None);
        assert_eq!(cpu_ticks("no parenthesis"), None);
        assert_eq!(rss_bytes("Name:\tkthreadd\nThreads:\t1\n"), None);
    }

    #[test]
    fn this_process_can_be_read() {
        let u = usage(std::process::id()).expect("/proc/self");
        assert!(u.rss_bytes > 1024 * 1024, "{u:?}");
        assert!(ticks_per_s() > 0);
    }

    fn member(name: &str, pid: Option<u32>, starts: u32) -> MemberProcess {
        MemberProcess {
            name: name.into(),
            pid,
            starts,
        }
    }

    fn used(cpu_ticks: u64, mib: u64) -> Result<Usage, String> {
        Ok(Usage {
            cpu_ticks,
            rss_bytes: mib << 20,
        })
    }

    #[test]
    fn figures_over_the_window_and_what_a_fault_leaves_out() {
        let t0 = Instant::now();
        let start = Snapshot {
            at: t0,
            members: vec![
                (member("meta", Some(10), 1), used(100, 20)),
                (member("c1", Some(11), 1), used(500, 30)),
                (member("p1", Some(12), 1), used(50, 10)),
                (member("p2", None, 1), Err("it was not running".into())),
            ],
        };
        let end = Snapshot {
            at: t0 + Duration::from_secs(10),
            members: vec![
                (member("meta", Some(10), 1), used(150, 21)),
                // Restarted: a new process (even were its PID the same).
                (member("c1", Some(11), 2), used(20, 15)),
                (member("p1", None, 1), Err("it was not running".into())),
                // Not running at the start (killed, not yet restarted), running at the end.
                (member("p2", Some(14), 2), used(5, 12)),
            ],
        };
        let r = window_figures(&start, &end, 100);
        assert_eq!(r.len(), 4);
        assert_eq!(r[0].member, "meta");
        assert_eq!(r[0].rss_bytes, Some(21 << 20));
        assert_eq!(r[0].cpu_s, Some(0.5));
        assert_eq!(r[0].window_s, 10.0);
        assert_eq!(r[0].partial, None);
        assert_eq!(r[0].cpu_share(), Some(0.05));
        assert_eq!(r[1].rss_bytes, Some(15 << 20));
        assert_eq!(r[1].cpu_s, None);
        assert!(r[1].partial.as_deref().unwrap().contains("restarted"));
        assert_eq!((r[2].rss_bytes, r[2].cpu_s, r[2].pid), (None, None, None));
        assert_eq!(
            r[2].partial.as_deref(),
            Some("nothing to read at the window's end: it was not running")
        );
        assert_eq!((r[3].rss_bytes, r[3].cpu_s), (Some(12 << 20), None));
        assert_eq!(
            r[3].partial.as_deref(),
            Some("no CPU figure: at the window's start, it was not running")
        );
    }
}
