//! Starting and stopping a testnet's daemons: `meshota node run` processes
//! of the current executable, logs in each node's directory, readiness by
//! the control socket, and a bounded stop (shutdown request, then SIGTERM,
//! then SIGKILL).

use std::fs::OpenOptions;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::failure::{AtPath, CmdResult, Failure};
use crate::testnet::control;
use crate::testnet::state::{NodeRecord, TestnetState};

/// How often the waits below look again.
const POLL: Duration = Duration::from_millis(100);
/// How long the medium server may take to open its socket.
const MEDIUM_READY: Duration = Duration::from_secs(10);

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

/// Whether `pid` is alive and is the daemon of `node` (its command line
/// names the node's config), so a recycled pid is never signalled.
pub(crate) fn is_daemon_of(pid: u32, node: &NodeRecord) -> bool {
    if !pid_alive(pid) {
        return false;
    }
    match std::fs::read(format!("/proc/{pid}/cmdline")) {
        Ok(cmd) => {
            let want = node.config.as_os_str().as_encoded_bytes();
            cmd.split(|&b| b == 0).any(|arg| arg == want)
        }
        // Without /proc, trust the pid.
        Err(_) => !Path::new("/proc/self").exists(),
    }
}

/// Sends `signal` (`TERM`, `KILL`) to `pid` with the `kill` command.
fn signal(pid: u32, signal: &str) {
    let _ = Command::new("kill")
        .args([format!("-{signal}"), pid.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// The last `lines` lines of `path`, for error messages.
pub(crate) fn log_tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read(path).unwrap_or_default();
    let text = String::from_utf8_lossy(&text);
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// The running daemons of a testnet. When this process spawned them it
/// holds their [`Child`] handles and reaps them.
#[derive(Debug, Default)]
pub(crate) struct Fleet {
    children: Vec<Child>,
}

impl Fleet {
    /// Spawns `meshota node run --config <node.toml>` for every node,
    /// recording the pids in `state` (not saved here). With `own_group`
    /// each daemon gets its own process group so that it outlives this
    /// command and a terminal's Ctrl-C; without it (the demo) a Ctrl-C
    /// reaches the daemons too.
    ///
    /// # Errors
    /// The executable or a log cannot be opened, or a spawn fails (the
    /// daemons already started are stopped).
    pub(crate) fn spawn(state: &mut TestnetState, own_group: bool) -> CmdResult<Self> {
        let exe = std::env::current_exe()
            .map_err(|e| Failure::rejected(format!("cannot find the meshota executable: {e}")))?;
        let mut fleet = Self::default();
        // The medium first: a radio node refuses to start without it.
        if state.lora.is_some() {
            if let Err(e) = fleet.spawn_medium(&exe, state, own_group) {
                fleet.stop(state);
                return Err(e);
            }
        }
        for i in 0..state.nodes.len() {
            match spawn_one(&exe, &state.nodes[i], own_group) {
                Ok(child) => {
                    state.nodes[i].pid = Some(child.id());
                    fleet.children.push(child);
                }
                Err(e) => {
                    fleet.stop(state);
                    return Err(e);
                }
            }
        }
        Ok(fleet)
    }

    /// Waits (at most `timeout`) until every node's control socket answers
    /// `status`.
    ///
    /// # Errors
    /// A daemon exited (its log's tail is in the message) or did not
    /// answer in time.
    pub(crate) fn wait_ready(&mut self, state: &TestnetState, timeout: Duration) -> CmdResult {
        let deadline = Instant::now() + timeout;
        let mut ready = vec![false; state.nodes.len()];
        loop {
            for (n, r) in state.nodes.iter().zip(ready.iter_mut()) {
                if *r {
                    continue;
                }
                if let Some(pid) = n.pid {
                    self.reap();
                    if !pid_alive(pid) {
                        return Err(Failure::rejected(format!(
                            "node {} (pid {pid}) exited during start-up; the end of {}:\n{}",
                            n.id,
                            n.log.display(),
                            log_tail(&n.log, 15)
                        )));
                    }
                }
                *r = control::status(&n.socket, Duration::from_secs(2)).is_ok();
            }
            if ready.iter().all(|&r| r) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                let late: Vec<String> = state
                    .nodes
                    .iter()
                    .zip(&ready)
                    .filter(|&(_, &r)| !r)
                    .map(|(n, _)| format!("node {} ({})", n.id, n.log.display()))
                    .collect();
                return Err(Failure::rejected(format!(
                    "no status answer within {} s from {}",
                    timeout.as_secs(),
                    late.join(", ")
                )));
            }
            std::thread::sleep(POLL * 2);
        }
    }

    /// Starts `meshota testnet medium --dir D` and waits (at most
    /// [`MEDIUM_READY`]) for its socket.
    fn spawn_medium(&mut self, exe: &Path, state: &mut TestnetState, own_group: bool) -> CmdResult {
        // A medium server left running (its nodes gone) is stopped first.
        let left = stop_medium(state, &mut || self.reap());
        if !left.is_empty() {
            return Err(Failure::rejected(format!(
                "an earlier medium server (pid {left:?}) does not stop"
            )));
        }
        let dir = state.dir.clone();
        let Some(l) = state.lora.as_mut() else {
            return Ok(());
        };
        let _ = std::fs::remove_file(&l.socket);
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&l.log)
            .at(&l.log)?;
        let err = log.try_clone().at(&l.log)?;
        let mut cmd = Command::new(exe);
        cmd.args(["testnet", "medium", "--dir"])
            .arg(&dir)
            .current_dir(&dir)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err);
        if own_group {
            cmd.process_group(0);
        }
        let mut child = cmd
            .spawn()
            .map_err(|e| Failure::rejected(format!("cannot start the medium server: {e}")))?;
        let pid = child.id();
        l.pid = Some(pid);
        let deadline = Instant::now() + MEDIUM_READY;
        while !l.socket.exists() {
            if matches!(child.try_wait(), Ok(Some(_))) || Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                l.pid = None;
                return Err(Failure::rejected(format!(
                    "the medium server did not start; the end of {}:\n{}",
                    l.log.display(),
                    log_tail(&l.log, 15)
                )));
            }
            std::thread::sleep(POLL);
        }
        self.children.push(child);
        Ok(())
    }

    /// Reaps children that exited (so they do not linger as zombies).
    fn reap(&mut self) {
        for c in &mut self.children {
            let _ = c.try_wait();
        }
    }

    /// Stops every daemon of `state` (see [`stop_nodes`]), reaping the
    /// ones this process spawned, and clears the pids in `state`. Returns
    /// the pids still alive afterwards (none, normally).
    pub(crate) fn stop(&mut self, state: &mut TestnetState) -> Vec<u32> {
        let left = stop_nodes(state, &mut || self.reap());
        self.reap();
        self.children.retain(|c| left.contains(&c.id()));
        left
    }
}

impl Fleet {
    /// Lets the daemons run on after this process exits (`testnet up`):
    /// forgets their handles without stopping them.
    pub(crate) fn detach(mut self) {
        self.children.clear();
    }
}

impl Drop for Fleet {
    /// The last resort on every exit path: children still running are
    /// killed and reaped.
    fn drop(&mut self) {
        for c in &mut self.children {
            if matches!(c.try_wait(), Ok(None)) {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
}

fn spawn_one(exe: &Path, node: &NodeRecord, own_group: bool) -> CmdResult<Child> {
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&node.log)
        .at(&node.log)?;
    let err = log.try_clone().at(&node.log)?;
    // A node whose config has a [gateway] table runs as a gateway.
    let role = if crate::config::NodeConfig::load(&node.config).is_ok_and(|c| c.gateway.is_some()) {
        "gateway"
    } else {
        "node"
    };
    let mut cmd = Command::new(exe);
    cmd.arg(role)
        .arg("run")
        .arg("--config")
        .arg(&node.config)
        .current_dir(&node.dir)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(err);
    if own_group {
        cmd.process_group(0);
    }
    cmd.spawn().map_err(|e| {
        Failure::rejected(format!(
            "cannot start node {} ({} {role} run): {e}",
            node.id,
            exe.display()
        ))
    })
}

/// Waits until none of `pids` is alive or `timeout` passes; `reap` runs on
/// every look. Returns the ones still alive.
fn wait_gone(pids: &[u32], timeout: Duration, reap: &mut dyn FnMut()) -> Vec<u32> {
    let deadline = Instant::now() + timeout;
    loop {
        reap();
        let alive: Vec<u32> = pids.iter().copied().filter(|&p| pid_alive(p)).collect();
        if alive.is_empty() || Instant::now() >= deadline {
            return alive;
        }
        std::thread::sleep(POLL);
    }
}

/// Stops the daemons of `state`: a `shutdown` request on every control
/// socket, up to 10 s for them to exit, then SIGTERM and up to 5 s, then
/// SIGKILL and up to 2 s. Only pids whose command line names the node's
/// config are signalled. Clears the pids in `state`; returns the pids still
/// alive.
pub(crate) fn stop_nodes(state: &mut TestnetState, reap: &mut dyn FnMut()) -> Vec<u32> {
    let ours: Vec<u32> = state
        .nodes
        .iter()
        .filter_map(|n| n.pid.filter(|&p| is_daemon_of(p, n)))
        .collect();
    for n in &state.nodes {
        if n.pid.is_some_and(|p| ours.contains(&p)) || n.socket.exists() {
            let _ = control::shutdown(&n.socket, Duration::from_secs(2));
        }
    }
    let mut left = wait_gone(&ours, Duration::from_secs(10), reap);
    for (sig, wait) in [("TERM", 5), ("KILL", 2)] {
        if left.is_empty() {
            break;
        }
        for &p in &left {
            signal(p, sig);
        }
        left = wait_gone(&left, Duration::from_secs(wait), reap);
    }
    for n in &mut state.nodes {
        if n.pid.is_some_and(|p| !left.contains(&p)) {
            n.pid = None;
        }
    }
    left.extend(stop_medium(state, reap));
    left
}

/// Whether `pid` is alive and is the medium server of testnet `dir`.
fn is_medium_of(pid: u32, dir: &Path) -> bool {
    if !pid_alive(pid) {
        return false;
    }
    match std::fs::read(format!("/proc/{pid}/cmdline")) {
        Ok(cmd) => {
            let want = dir.as_os_str().as_encoded_bytes();
            let args: Vec<&[u8]> = cmd.split(|&b| b == 0).collect();
            args.contains(&&b"medium"[..]) && args.contains(&want)
        }
        Err(_) => !Path::new("/proc/self").exists(),
    }
}

/// Stops the medium server of `state` (after the nodes): SIGTERM, up to
/// 5 s, then SIGKILL and up to 2 s. Returns its pid if still alive.
fn stop_medium(state: &mut TestnetState, reap: &mut dyn FnMut()) -> Vec<u32> {
    let dir = state.dir.clone();
    let Some(l) = state.lora.as_mut() else {
        return Vec::new();
    };
    let Some(pid) = l.pid.filter(|&p| is_medium_of(p, &dir)) else {
        l.pid = None;
        return Vec::new();
    };
    let mut left = vec![pid];
    for (sig, wait) in [("TERM", 5), ("KILL", 2)] {
        if left.is_empty() {
            break;
        }
        signal(pid, sig);
        left = wait_gone(&left, Duration::from_secs(wait), reap);
    }
    if left.is_empty() {
        l.pid = None;
    }
    left
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_alive_and_an_absurd_pid_is_not() {
        assert!(pid_alive(std::process::id()));
        assert!(!pid_alive(u32::MAX - 1));
    }
}
