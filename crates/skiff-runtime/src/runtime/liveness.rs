//! Is a container's shim still alive?
//!
//! The status file names the shim's pid; the pid may have been reused since, so the check
//! confirms the process is that container's shim by its command line. Reading another
//! process's command line makes the kernel walk that process's memory, and the node agent
//! asks for every container every second, so a confirmed (pid, start time) pair is
//! remembered: a later check reads only `/proc/PID/stat` for the start time, which changes
//! when the pid is reused.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

/// Confirmed shims: pid -> (container id, process start time in clock ticks since boot).
fn confirmed() -> &'static Mutex<HashMap<i32, (String, u64)>> {
    static CONFIRMED: OnceLock<Mutex<HashMap<i32, (String, u64)>>> = OnceLock::new();
    CONFIRMED.get_or_init(Default::default)
}

/// Upper bound on remembered shims (one per container; cleared wholesale when exceeded).
const MAX_CONFIRMED: usize = 8192;

/// True when `pid` is alive and is the shim of container `id`.
pub(crate) fn shim_alive(pid: i32, id: &str) -> bool {
    let Some(start) = start_time(pid) else {
        confirmed().lock().unwrap().remove(&pid);
        return false;
    };
    if let Some((known, at)) = confirmed().lock().unwrap().get(&pid) {
        if known == id && *at == start {
            return true;
        }
    }
    if !cmdline_names(pid, id) {
        return false;
    }
    let mut cache = confirmed().lock().unwrap();
    if cache.len() >= MAX_CONFIRMED {
        cache.clear();
    }
    cache.insert(pid, (id.to_string(), start));
    true
}

/// The process's start time (field 22 of /proc/PID/stat), None when there is no such process
/// or it has exited and awaits reaping (a zombie keeps its pid and start time, not its life).
fn start_time(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: count from its end.
    let mut fields = stat.rsplit_once(')')?.1.split_whitespace();
    if matches!(fields.next()?, "Z" | "X" | "x") {
        return None;
    }
    fields.nth(18)?.parse().ok()
}

/// Whether the command line of `pid` is a shim's for container `id`.
fn cmdline_names(pid: i32, id: &str) -> bool {
    cmdline_contains(pid, &format!("\0--id\0{id}\0"))
}

/// Whether the command line of `pid` (NUL-separated arguments) contains `needle`; false for
/// a process that is gone or a zombie (which has none).
pub(super) fn cmdline_contains(pid: i32, needle: &str) -> bool {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|c| String::from_utf8_lossy(&c).contains(needle))
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_process_has_a_start_time_and_is_not_a_shim() {
        let me = std::process::id() as i32;
        assert!(start_time(me).is_some_and(|t| t > 0));
        assert!(!shim_alive(me, "some-container"));
        assert!(start_time(i32::MAX).is_none());
        assert!(!shim_alive(i32::MAX, "x"));
    }

    #[test]
    fn a_process_with_the_id_on_its_command_line_is_confirmed_and_remembered() {
        let mut holder = std::process::Command::new("sh").args(["-c", "sleep 30; true", "--id", "c-123"]).spawn().unwrap();
        let pid = holder.id() as i32;
        // Right after spawn the child may not have finished exec (empty command line).
        for _ in 0..100 {
            if std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| !c.is_empty()) {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        // sh -c CMD NAME ARG: argv is sh, -c, CMD, --id, c-123 (a second command keeps sh from exec-ing sleep).
        assert!(shim_alive(pid, "c-123"), "the id is on the command line");
        assert!(confirmed().lock().unwrap().get(&pid).is_some_and(|(id, _)| id == "c-123"));
        assert!(shim_alive(pid, "c-123"), "the remembered answer holds while the process lives");
        assert!(!shim_alive(pid, "other"), "another container's id does not match");
        holder.kill().unwrap();
        // Killed but not reaped: a zombie, which is not alive either.
        for _ in 0..100 {
            if std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| s.contains(") Z ")) {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert!(!shim_alive(pid, "c-123"), "a zombie is not alive");
        holder.wait().unwrap();
        assert!(!shim_alive(pid, "c-123"), "a dead process is not alive");
        assert!(confirmed().lock().unwrap().get(&pid).is_none(), "and is forgotten");
    }
}
