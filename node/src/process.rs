//! Processes by pid: whether one still runs.

use std::path::Path;
use std::process::{Command, Stdio};

/// Whether process `pid` exists and is not a zombie.
pub(crate) fn pid_alive(pid: u32) -> bool {
    let proc_dir = Path::new("/proc");
    if proc_dir.join("self").exists() {
        return match std::fs::read_to_string(proc_dir.join(pid.to_string()).join("stat")) {
            // The state is the first field after the command name in parentheses.
            Ok(stat) => stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().next())
                .is_some_and(|s| s != "Z" && s != "X"),
            Err(_) => false,
        };
    }
    Command::new("kill")
        .args(["-0", &pid.to_string()])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Waits until process `pid` has exited (or is a zombie), polling every
/// 20 ms; `false` when it still runs after `timeout`.
pub(crate) fn wait_exit(pid: u32, timeout: std::time::Duration) -> bool {
    let deadline = std::time::Instant::now() + timeout;
    while pid_alive(pid) {
        if std::time::Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_alive_and_an_absurd_pid_is_not() {
        assert!(pid_alive(std::process::id()));
        assert!(!pid_alive(u32::MAX - 1));
    }

    #[test]
    fn waiting_for_a_child_ends_when_it_exits_and_times_out_while_it_runs() {
        let mut child = Command::new("sleep").arg("0.3").spawn().unwrap();
        assert!(!wait_exit(child.id(), std::time::Duration::from_millis(50)));
        assert!(wait_exit(child.id(), std::time::Duration::from_secs(10)));
        let _ = child.wait();
    }
}
