//! `skiff shim`: the single-threaded helper process behind every container.
//!
//! The node agent is multi-threaded, and forking a multi-threaded process is unsafe
//! (libcontainer also `chdir`s the whole process while it creates a container). So the agent
//! only ever starts this program with `std::process::Command`; the program forks while it is
//! still single-threaded. Subcommands:
//!
//! - `create`: creates the container with libcontainer, then stays its parent: it reaps it,
//!   writes its stdout/stderr (or its terminal's output) to a CRI log file, holds its stdin
//!   pipe or terminal master, serves `start`/`stop`/`kill`/`wait`/`status`/`reopen`/`attach`
//!   requests on a unix socket in the container's state directory (attach sessions: see
//!   `attach.rs`), and records the exit status (and OOM kills) in `status.json` before
//!   cleaning up the cgroup and exiting;
//! - `exec`: runs a process inside a running container (its namespaces and cgroup) with the
//!   caller's stdio, or on a new pseudo-terminal relayed to that stdio (`--tty`, resized from
//!   the sizes written to a FIFO, `--resize`), and exits with the process's exit code;
//! - `zygote`: forks a `create` per request instead of the agent executing the program for
//!   each container (see `zygote.rs`);
//! - `pins`: holds, in a mount namespace of its own, the mounts that keep pods' namespaces
//!   alive (see `pins.rs` and `runtime/pins.rs`).
//!
//! The agent side of these protocols is [`client`].

mod attach;
pub mod client;
mod confine;
mod create;
pub use create::IDLE_TRIM_DELAY;
mod exec;
mod fds;
pub mod log;
pub mod pins;
mod zygote;
pub use zygote::{Zygote, ZygoteError, RESTART_BACKOFF as ZYGOTE_RESTART_BACKOFF};

use std::path::PathBuf;

use crate::error::{Error, Result};

/// Flags without a value.
const SWITCHES: &[&str] = &["--host-network", "--stdin", "--stdin-once", "--terminal"];

/// Arguments of `shim create`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateArgs {
    /// Container id.
    pub id: String,
    /// OCI bundle directory holding `config.json`.
    pub bundle: PathBuf,
    /// Directory for `status.json`, `shim.sock` and `shim.log`.
    pub state_dir: PathBuf,
    /// CRI log file.
    pub log_path: PathBuf,
    /// libcontainer's state root.
    pub lc_root: PathBuf,
    /// The container's cgroups path, for OOM detection.
    pub cgroups_path: String,
    /// Give the container a stdin pipe that attach sessions write to.
    pub stdin: bool,
    /// Close that stdin when the first attach session ends.
    pub stdin_once: bool,
    /// Run the container on a pseudo-terminal whose master the shim holds.
    pub terminal: bool,
}

/// Arguments of `shim exec`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecArgs {
    /// Container id.
    pub id: String,
    /// libcontainer's state root.
    pub lc_root: PathBuf,
    /// Working directory.
    pub cwd: Option<String>,
    /// Extra `KEY=value` environment.
    pub env: Vec<String>,
    /// User id.
    pub uid: Option<u32>,
    /// Group id.
    pub gid: Option<u32>,
    /// Run the process on a new pseudo-terminal, relayed to the shim's stdin/stdout, with
    /// this initial size (rows, columns).
    pub tty: Option<(u16, u16)>,
    /// A FIFO to read terminal sizes from (`ROWS COLS` lines), with `tty`.
    pub resize: Option<PathBuf>,
    /// Command and arguments.
    pub command: Vec<String>,
}

/// A parsed shim command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShimCommand {
    /// `create --id ID --bundle DIR --state-dir DIR --log FILE --lc-root DIR --cgroup PATH
    /// [--stdin] [--stdin-once] [--terminal]`
    Create(CreateArgs),
    /// `exec --id ID --lc-root DIR [--cwd DIR] [--env K=V]... [--uid N] [--gid N]
    /// [--tty ROWSxCOLS [--resize FIFO]] -- CMD...`
    Exec(ExecArgs),
}

impl ShimCommand {
    /// Renders the command line (without the program and its `shim` word).
    pub fn to_args(&self) -> Vec<String> {
        let mut v: Vec<String> = Vec::new();
        match self {
            ShimCommand::Create(a) => {
                v.push("create".into());
                for (k, val) in [
                    ("--id", a.id.clone()),
                    ("--bundle", a.bundle.display().to_string()),
                    ("--state-dir", a.state_dir.display().to_string()),
                    ("--log", a.log_path.display().to_string()),
                    ("--lc-root", a.lc_root.display().to_string()),
                    ("--cgroup", a.cgroups_path.clone()),
                ] {
                    v.push(k.into());
                    v.push(val);
                }
                for (on, switch) in [
                    (a.stdin, "--stdin"),
                    (a.stdin_once, "--stdin-once"),
                    (a.terminal, "--terminal"),
                ] {
                    if on {
                        v.push(switch.into());
                    }
                }
            }
            ShimCommand::Exec(a) => {
                v.push("exec".into());
                v.extend([
                    "--id".into(),
                    a.id.clone(),
                    "--lc-root".into(),
                    a.lc_root.display().to_string(),
                ]);
                if let Some(c) = &a.cwd {
                    v.extend(["--cwd".into(), c.clone()]);
                }
                for e in &a.env {
                    v.extend(["--env".into(), e.clone()]);
                }
                if let Some(u) = a.uid {
                    v.extend(["--uid".into(), u.to_string()]);
                }
                if let Some(g) = a.gid {
                    v.extend(["--gid".into(), g.to_string()]);
                }
                if let Some((rows, cols)) = a.tty {
                    v.extend(["--tty".into(), format!("{rows}x{cols}")]);
                }
                if let Some(p) = &a.resize {
                    v.extend(["--resize".into(), p.display().to_string()]);
                }
                v.push("--".into());
                v.extend(a.command.iter().cloned());
            }
        }
        v
    }

    /// Parses a command line (without the program and its `shim` word).
    pub fn parse(args: &[String]) -> Result<Self> {
        let bad = |m: String| Error::InvalidArgument(m);
        let (sub, rest) = args
            .split_first()
            .ok_or_else(|| bad("shim: missing subcommand (create, exec, sandbox)".into()))?;
        let mut flags: Vec<(String, String)> = Vec::new();
        let mut switches: Vec<String> = Vec::new();
        let mut command = Vec::new();
        let mut i = 0;
        while i < rest.len() {
            let a = &rest[i];
            if a == "--" {
                command = rest[i + 1..].to_vec();
                break;
            }
            if SWITCHES.contains(&a.as_str()) {
                switches.push(a.clone());
                i += 1;
                continue;
            }
            if !a.starts_with("--") || i + 1 >= rest.len() {
                return Err(bad(format!("shim {sub}: unexpected argument {a:?}")));
            }
            flags.push((a.clone(), rest[i + 1].clone()));
            i += 2;
        }
        let get = |k: &str| flags.iter().find(|(f, _)| f == k).map(|(_, v)| v.clone());
        let need = |k: &str| get(k).ok_or_else(|| bad(format!("shim {sub}: missing {k}")));
        let num = |k: &str| -> Result<Option<u32>> {
            get(k)
                .map(|v| {
                    v.parse()
                        .map_err(|_| bad(format!("shim {sub}: {k} must be a number")))
                })
                .transpose()
        };
        match sub.as_str() {
            "create" => Ok(ShimCommand::Create(CreateArgs {
                id: need("--id")?,
                bundle: need("--bundle")?.into(),
                state_dir: need("--state-dir")?.into(),
                log_path: need("--log")?.into(),
                lc_root: need("--lc-root")?.into(),
                cgroups_path: need("--cgroup")?,
                stdin: switches.iter().any(|s| s == "--stdin"),
                stdin_once: switches.iter().any(|s| s == "--stdin-once"),
                terminal: switches.iter().any(|s| s == "--terminal"),
            })),
            "exec" => {
                if command.is_empty() {
                    return Err(bad("shim exec: missing command after --".into()));
                }
                Ok(ShimCommand::Exec(ExecArgs {
                    id: need("--id")?,
                    lc_root: need("--lc-root")?.into(),
                    cwd: get("--cwd"),
                    env: flags
                        .iter()
                        .filter(|(f, _)| f == "--env")
                        .map(|(_, v)| v.clone())
                        .collect(),
                    uid: num("--uid")?,
                    gid: num("--gid")?,
                    tty: get("--tty")
                        .map(|t| {
                            t.split_once('x')
                                .and_then(|(r, c)| Some((r.parse().ok()?, c.parse().ok()?)))
                                .ok_or_else(|| {
                                    bad(format!("shim exec: --tty wants ROWSxCOLS, got {t:?}"))
                                })
                        })
                        .transpose()?,
                    resize: get("--resize").map(PathBuf::from),
                    command,
                }))
            }
            other => Err(bad(format!(
                "shim: unknown subcommand {other:?} (expected create or exec)"
            ))),
        }
    }
}

/// Entry point of `skiff shim ARGS...`: parses `args` (everything after `shim`), runs the
/// subcommand and returns the process exit code. Must be called before the process starts
/// any thread.
pub fn main(args: Vec<String>) -> i32 {
    if args.first().is_some_and(|a| a == "zygote") {
        // Its own flags (`--lc-root DIR`, `--room ...`) only name the runtime it serves and
        // reserve room for its children's command lines.
        let argv: Vec<String> = std::env::args().collect();
        let prefix = argv[..argv.len().saturating_sub(args.len())].to_vec();
        return zygote::serve(prefix);
    }
    if args.first().is_some_and(|a| a == "pins") {
        return match args.get(1..) {
            Some([flag, state]) if flag == "--state" => pins::serve(PathBuf::from(state)),
            _ => {
                eprintln!("error: usage: shim pins --state DIR");
                2
            }
        };
    }
    match ShimCommand::parse(&args) {
        Ok(cmd) => run(cmd),
        Err(e) => {
            eprintln!("error: {e}");
            2
        }
    }
}

/// Runs a parsed shim command; see [`main`].
pub fn run(cmd: ShimCommand) -> i32 {
    match cmd {
        ShimCommand::Create(a) => create::run(&a),
        ShimCommand::Exec(a) => exec::run(&a),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn args_round_trip() {
        let cmds = [
            ShimCommand::Create(CreateArgs {
                id: "c1".into(),
                bundle: "/b".into(),
                state_dir: "/s".into(),
                log_path: "/l".into(),
                lc_root: "/r".into(),
                cgroups_path: "/skiff/c1".into(),
                stdin: true,
                stdin_once: false,
                terminal: true,
            }),
            ShimCommand::Exec(ExecArgs {
                id: "c1".into(),
                lc_root: "/r".into(),
                cwd: Some("/".into()),
                env: vec!["A=1".into()],
                uid: Some(1),
                gid: None,
                tty: Some((24, 80)),
                resize: Some("/s/exec-1.resize".into()),
                command: vec!["sh".into(), "-c".into(), "exit 3".into()],
            }),
        ];
        for c in cmds {
            assert_eq!(ShimCommand::parse(&c.to_args()).unwrap(), c);
        }
        assert!(ShimCommand::parse(&["bogus".to_string()]).is_err());
    }
}
