//! What the harness reads about processes from /proc: CPU time and
//! resident memory, of a process or of a process and its children (nginx's
//! master and workers).

use std::fs;

/// CPU time of every thread of `pid` so far, nanoseconds: the sum of the
/// first field of each `/proc/PID/task/*/schedstat`. 0 if `pid` is gone.
pub(crate) fn cpu_ns(pid: u32) -> u64 {
    let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    tasks
        .flatten()
        .filter_map(|t| fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

/// Time on a CPU and time waiting in a run queue (preempted or not yet
/// scheduled), nanoseconds, summed over the threads of `pid` whose name
/// starts with `prefix`: the first two fields of their
/// `/proc/PID/task/*/schedstat`. (0, 0) if there are none.
pub(crate) fn thread_times(pid: u32, prefix: &str) -> (u64, u64) {
    let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else {
        return (0, 0);
    };
    tasks
        .flatten()
        .filter(|t| fs::read_to_string(t.path().join("comm")).is_ok_and(|c| c.starts_with(prefix)))
        .filter_map(|t| fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| {
            let mut f = s.split_whitespace().map(str::parse::<u64>);
            Some((f.next()?.ok()?, f.next()?.ok()?))
        })
        .fold((0, 0), |(r, w), (r1, w1)| (r + r1, w + w1))
}

/// `VmRSS` of `pid`, KiB; 0 if `pid` is gone.
pub(crate) fn rss_kib(pid: u32) -> u64 {
    fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// This process's soft limit of open files (`/proc/self/limits`);
/// `u64::MAX` for unlimited or unreadable.
pub(crate) fn open_files_limit() -> u64 {
    fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|s| {
            let line = s.lines().find(|l| l.starts_with("Max open files"))?;
            line.split_whitespace().nth(3)?.parse().ok()
        })
        .unwrap_or(u64::MAX)
}

/// The parent of `pid` (field 4 of `/proc/PID/stat`, after the
/// parenthesised command, which may itself hold spaces and parentheses).
fn ppid(pid: u32) -> Option<u32> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &stat[stat.rfind(')')? + 1..];
    after.split_whitespace().nth(1)?.parse().ok()
}

/// `pid` and its children (one level: nginx's master and its workers).
pub(crate) fn with_children(pid: u32) -> Vec<u32> {
    let mut pids = vec![pid];
    if let Ok(entries) = fs::read_dir("/proc") {
        pids.extend(
            entries
                .flatten()
                .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
                .filter(|&p| ppid(p) == Some(pid)),
        );
    }
    pids
}

/// Whether `pid`'s network namespace has a TCP socket listening on
/// `port` (`/proc/PID/net/tcp`, state 0A).
pub(crate) fn listening(pid: u32, port: u16) -> bool {
    let Ok(table) = fs::read_to_string(format!("/proc/{pid}/net/tcp")) else {
        return false;
    };
    let want = format!(":{port:04X}");
    table.lines().skip(1).any(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        f.len() > 3 && f[1].ends_with(&want) && f[3] == "0A"
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_has_cpu_time_memory_and_itself_as_child_zero() {
        let me = std::process::id();
        assert!(cpu_ns(me) > 0);
        assert!(rss_kib(me) > 0);
        assert_eq!(with_children(me)[0], me);
        let name = fs::read_to_string("/proc/self/comm").unwrap();
        assert!(
            thread_times(me, name.trim_end()).0 > 0,
            "the main thread ran"
        );
        assert_eq!(thread_times(me, "no such thread"), (0, 0));
        assert_eq!(ppid(me), Some(std::os::unix::process::parent_id()));
    }

    #[test]
    fn a_listener_shows() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        assert!(listening(std::process::id(), port));
        drop(l);
        assert!(!listening(std::process::id(), port));
    }
}
