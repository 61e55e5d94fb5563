//! A small network of test "machines" on this host: network namespaces joined by a bridge
//! in a LAN namespace, each with an address in 192.168.254.0/24. Nothing touches the root
//! namespace; dropping the lab deletes every namespace it made (and with them their
//! interfaces, routes and nftables tables).

use std::process::{Child, Command, Output, Stdio};

use anyhow::{bail, Context, Result};

/// The LAN prefix machines get addresses in.
pub const LAN: &str = "192.168.254";

/// Network namespaces acting as machines on one LAN.
pub struct NetLab {
    prefix: String,
    machines: Vec<String>,
}

fn run(args: &[&str]) -> Result<()> {
    let out = Command::new(args[0]).args(&args[1..]).output().with_context(|| format!("running {args:?}"))?;
    if !out.status.success() {
        bail!("{args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}

impl NetLab {
    /// Creates `count` machines named `<prefix>-1` ... with addresses 192.168.254.1 ...
    /// (`prefix` must be short: interface names are limited to 15 characters).
    pub fn new(prefix: &str, count: usize) -> Result<Self> {
        let mut lab = NetLab { prefix: prefix.to_string(), machines: Vec::new() };
        let lan = lab.lan();
        run(&["ip", "netns", "add", &lan])?;
        run(&["ip", "-n", &lan, "link", "add", "br0", "type", "bridge"])?;
        run(&["ip", "-n", &lan, "link", "set", "br0", "up"])?;
        for i in 1..=count {
            let ns = format!("{prefix}-{i}");
            run(&["ip", "netns", "add", &ns])?;
            lab.machines.push(ns.clone());
            let host_end = format!("{prefix}v{i}");
            run(&["ip", "-n", &lan, "link", "add", &host_end, "type", "veth", "peer", "name", "eth0", "netns", &ns])?;
            run(&["ip", "-n", &lan, "link", "set", &host_end, "master", "br0", "up"])?;
            run(&["ip", "-n", &ns, "addr", "add", &format!("{LAN}.{i}/24"), "dev", "eth0"])?;
            run(&["ip", "-n", &ns, "link", "set", "eth0", "up"])?;
            run(&["ip", "-n", &ns, "link", "set", "lo", "up"])?;
        }
        Ok(lab)
    }

    fn lan(&self) -> String {
        format!("{}-lan", self.prefix)
    }

    /// The namespace name of machine `i` (1-based).
    pub fn machine(&self, i: usize) -> &str {
        &self.machines[i - 1]
    }

    /// The address of machine `i`.
    pub fn address(&self, i: usize) -> String {
        format!("{LAN}.{i}")
    }

    /// A command running in machine `i`'s network namespace (mounts stay the host's).
    pub fn command(&self, i: usize, program: &str) -> Command {
        let mut c = Command::new("nsenter");
        c.arg(format!("--net=/run/netns/{}", self.machine(i))).arg("--").arg(program);
        c
    }

    /// Runs `program args` in machine `i` and returns its output.
    pub fn output(&self, i: usize, program: &str, args: &[&str]) -> Result<Output> {
        Ok(self.command(i, program).args(args).stdin(Stdio::null()).output()?)
    }

    /// Starts `program args` in machine `i` in the background, output to `log`.
    pub fn spawn(&self, i: usize, program: &str, args: &[&str], log: &std::path::Path) -> Result<Child> {
        let file = std::fs::OpenOptions::new().create(true).append(true).open(log)?;
        Ok(self.command(i, program).args(args).stdin(Stdio::null()).stdout(file.try_clone()?).stderr(file).spawn()?)
    }
}

impl Drop for NetLab {
    fn drop(&mut self) {
        for ns in self.machines.iter().chain(std::iter::once(&self.lan())) {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}
