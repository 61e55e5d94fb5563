//! Command-line surface: `skiff up`, `skiff server`, `skiff snapshot`, `skiff kubeconfig`.

use std::net::IpAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// skiff: Kubernetes in one small binary.
#[derive(Parser, Debug)]
#[command(name = "skiff", version, about)]
pub struct Cli {
    /// Log at debug level (or set SKIFF_LOG, e.g. SKIFF_LOG=skiff_apiserver=debug).
    #[arg(long, short, global = true)]
    pub verbose: bool,
    #[command(subcommand)]
    pub command: Command,
}

/// The roles and tools of the binary.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Start a whole cluster on this machine (the main job): control plane with embedded store.
    Up(ServerArgs),
    /// Run a control-plane server.
    Server(ServerArgs),
    /// Run a node that joins a server.
    Agent(AgentArgs),
    /// Store snapshots: save the embedded store to one file, or restore it.
    Snapshot {
        #[command(subcommand)]
        action: SnapshotAction,
    },
    /// Container images in the node's image store.
    Image {
        #[command(subcommand)]
        action: ImageAction,
    },
    /// Stop every container and pod sandbox of a stopped node and unmount what it mounted.
    Killall {
        /// Data directory of the node.
        #[arg(long, default_value = "/var/lib/skiff")]
        data_dir: PathBuf,
    },
    /// Per-container supervisor started by the node agent (internal).
    #[command(hide = true)]
    Shim,
    /// Join tokens for agents.
    Token {
        #[command(subcommand)]
        action: TokenAction,
    },
    /// Print the admin kubeconfig of a data dir.
    Kubeconfig {
        /// Data directory of the server.
        #[arg(long, default_value = "/var/lib/skiff")]
        data_dir: PathBuf,
    },
}

/// Token actions.
#[derive(Subcommand, Debug)]
pub enum TokenAction {
    /// Create a bootstrap token and print the command that joins an agent with it.
    Create {
        /// Data directory of the server.
        #[arg(long, default_value = "/var/lib/skiff")]
        data_dir: PathBuf,
        /// Lifetime, e.g. `24h`, `90m`, `0` for never expiring.
        #[arg(long, default_value = "24h")]
        ttl: String,
    },
}

/// Image actions.
#[derive(Subcommand, Debug)]
pub enum ImageAction {
    /// Import docker-archive or OCI-archive tarballs (or OCI layout directories).
    Import {
        /// Data directory of the node.
        #[arg(long, default_value = "/var/lib/skiff")]
        data_dir: PathBuf,
        /// Name to give the image (when the archive carries none).
        #[arg(long)]
        name: Option<String>,
        /// Archives to import.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Pull an image from a registry, with the mirrors and credentials of
    /// `<data-dir>/registries.yaml`.
    Pull {
        /// Data directory of the node.
        #[arg(long, default_value = "/var/lib/skiff")]
        data_dir: PathBuf,
        /// Image reference, such as `nginx` or `registry.local:5000/app:v1`.
        reference: String,
    },
    /// List images.
    Ls {
        /// Data directory of the node.
        #[arg(long, default_value = "/var/lib/skiff")]
        data_dir: PathBuf,
    },
    /// Remove images by name or id.
    Rm {
        /// Data directory of the node.
        #[arg(long, default_value = "/var/lib/skiff")]
        data_dir: PathBuf,
        /// Images to remove.
        #[arg(required = true)]
        images: Vec<String>,
    },
}

/// Snapshot actions.
#[derive(Subcommand, Debug)]
pub enum SnapshotAction {
    /// Write a consistent snapshot of a stopped or running server's store to FILE.
    Save {
        /// Data directory of the server.
        #[arg(long, default_value = "/var/lib/skiff")]
        data_dir: PathBuf,
        /// Where to write the snapshot.
        file: PathBuf,
    },
    /// Replace the store of a stopped server with the snapshot FILE.
    Restore {
        /// Data directory of the server.
        #[arg(long, default_value = "/var/lib/skiff")]
        data_dir: PathBuf,
        /// Snapshot to restore.
        file: PathBuf,
    },
}

/// Settings shared by `up` and `server`.
#[derive(Args, Debug, Clone)]
pub struct ServerArgs {
    /// Where state, certificates and the kubeconfig live.
    #[arg(long, default_value = "/var/lib/skiff")]
    pub data_dir: PathBuf,
    /// HTTPS port of the API server (1-65535; the `kubernetes` Service points at it, so it
    /// cannot be left to the kernel with 0).
    #[arg(long, default_value_t = 6443, value_parser = clap::value_parser!(u16).range(1..))]
    pub port: u16,
    /// Address to listen on.
    #[arg(long, default_value = "0.0.0.0")]
    pub bind_address: IpAddr,
    /// Address other nodes and the `kubernetes` Service use to reach this server.
    #[arg(long)]
    pub advertise_address: Option<IpAddr>,
    /// Also write the admin kubeconfig here.
    #[arg(long)]
    pub write_kubeconfig: Option<PathBuf>,
    /// Extra names or IPs for the serving certificate (repeatable).
    #[arg(long)]
    pub tls_san: Vec<String>,
    /// Store backend: `sqlite` (durable, default) or `memory` (tests; nothing survives).
    #[arg(long, default_value = "sqlite")]
    pub store: String,
    /// Seconds between store compactions (history older than --compaction-retain revisions
    /// is dropped; watches from before it get 410 Gone).
    #[arg(long, default_value_t = 300)]
    pub compaction_interval: u64,
    /// Revisions of history kept by compaction.
    #[arg(long, default_value_t = 10_000)]
    pub compaction_retain: i64,
    /// Seconds without a node heartbeat before the node is marked Unknown and tainted.
    #[arg(long, default_value_t = 20)]
    pub node_monitor_grace_period: u64,
    /// tolerationSeconds added to pods for not-ready/unreachable nodes (upstream: 300).
    #[arg(long, default_value_t = 30)]
    pub default_unreachable_toleration_seconds: i64,
    /// HTTPS port of the controller manager's /healthz and /metrics (0 = off).
    #[arg(long, default_value_t = 10257)]
    pub controller_manager_port: u16,
    /// HTTPS port of the scheduler's /healthz and /metrics (0 = off).
    #[arg(long, default_value_t = 10259)]
    pub scheduler_port: u16,
    /// Run without a node agent on this machine (control plane only).
    #[arg(long)]
    pub disable_agent: bool,
    /// Do not run the scheduler in this server (as k3s: another server or an external
    /// scheduler binds pods).
    #[arg(long)]
    pub disable_scheduler: bool,
    /// Do not run the controller manager in this server (as k3s).
    #[arg(long)]
    pub disable_controller_manager: bool,
    /// Settings of this machine's node agent.
    #[command(flatten)]
    pub node: NodeArgs,
}

/// Settings of a node agent, shared by `server` and `agent`.
#[derive(Args, Debug, Clone)]
pub struct NodeArgs {
    /// Port of the node agent's HTTPS server (logs, exec, port-forward, stats).
    #[arg(long, default_value_t = 10250)]
    pub kubelet_port: u16,
    /// Port of the node agent's plain /healthz on localhost (0 = off).
    #[arg(long, default_value_t = 10248)]
    pub kubelet_healthz_port: u16,
    /// How pod traffic crosses nodes: `vxlan` (default), `host-gw` (nodes on one L2
    /// segment), or `none` (pods get only loopback; no Services, DNS or policies on the node).
    #[arg(long, default_value = "vxlan", value_parser = ["vxlan", "host-gw", "none"])]
    pub flannel_backend: String,
    /// Wire pods with the CNI plugins configured in this directory (the first `*.conflist`,
    /// `*.conf` or `*.json` file by name, e.g. the one a Flannel, Calico or Cilium install
    /// writes) instead of skiff's own bridge and VXLAN. Services, DNS, NetworkPolicies and
    /// Ingress still run on the node unless disabled.
    #[arg(long, value_name = "DIR", conflicts_with = "flannel_backend")]
    pub cni_conf_dir: Option<PathBuf>,
    /// Where the CNI plugins are, as CNI_PATH: a directory or a `:`-separated list (Debian's
    /// containernetworking-plugins installs them in /usr/lib/cni).
    #[arg(long, value_name = "DIR[:DIR...]", default_value = skiff_kubelet::network::cni::DEFAULT_BIN_DIR)]
    pub cni_bin_dir: String,
    /// Do not program Services into nftables on this node.
    #[arg(long)]
    pub disable_kube_proxy: bool,
    /// Do not run the built-in cluster DNS on this node.
    #[arg(long)]
    pub disable_dns: bool,
    /// Do not run the built-in Ingress controller (ports 80 and 443) on this node.
    #[arg(long)]
    pub disable_ingress: bool,
    /// Do not enforce NetworkPolicies on this node.
    #[arg(long)]
    pub disable_network_policy: bool,
    /// Port of the service proxy's /healthz and /livez on all addresses (0 = off).
    #[arg(long, default_value_t = 10256)]
    pub kube_proxy_healthz_port: u16,
    /// Port of the service proxy's Prometheus /metrics on localhost (0 = off).
    #[arg(long, default_value_t = 10249)]
    pub kube_proxy_metrics_port: u16,
    /// Name of this machine's node (default: the hostname).
    #[arg(long)]
    pub node_name: Option<String>,
    /// This node's address (default: the server's advertise address, or for `agent` the
    /// address of the interface that reaches the server).
    #[arg(long)]
    pub node_ip: Option<IpAddr>,
    /// Hard eviction thresholds, as the kubelet's flag: e.g.
    /// `memory.available<100Mi,nodefs.available<10%` (signals: memory.available,
    /// nodefs.available, nodefs.inodesFree, imagefs.available, imagefs.inodesFree,
    /// pid.available). Signals left out get no threshold; without the flag upstream's
    /// defaults apply (memory.available<100Mi, nodefs.available<10%, imagefs.available<15%,
    /// nodefs.inodesFree<5%).
    #[arg(long, value_parser = parse_eviction_hard)]
    pub eviction_hard: Option<String>,
    /// Rotate a container's log once it is larger than this (a quantity, e.g. `10Mi`).
    #[arg(long, default_value = "10Mi", value_parser = parse_byte_quantity)]
    pub container_log_max_size: u64,
    /// Log files kept per container, the current one included (at least 2).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(2..))]
    pub container_log_max_files: u32,
    /// How often container log sizes are checked for rotation, in seconds.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    pub container_log_monitor_interval: u64,
}

impl NodeArgs {
    /// The container log rotation these flags ask for.
    pub fn log_rotation(&self) -> skiff_kubelet::log_rotation::Policy {
        skiff_kubelet::log_rotation::Policy {
            max_size: self.container_log_max_size,
            max_files: self.container_log_max_files as usize,
            interval: std::time::Duration::from_secs(self.container_log_monitor_interval),
        }
    }
}

/// A byte count written as a Kubernetes quantity (`10Mi`, `512Ki`, `1G`, `4096`).
fn parse_byte_quantity(s: &str) -> Result<u64, String> {
    skiff_kubelet::volumes::quantity::Quantity::parse(s)
        .map(|q| q.value())
        .filter(|v| *v > 0)
        .and_then(|v| u64::try_from(v).ok())
        .ok_or_else(|| format!("{s:?} is not a positive size such as 10Mi or 512Ki"))
}

fn parse_eviction_hard(text: &str) -> Result<String, String> {
    skiff_kubelet::eviction::parse_list(text).map(|_| text.to_string())
}

/// `skiff agent`: a node that joins a server.
#[derive(Args, Debug, Clone)]
pub struct AgentArgs {
    /// Where the agent keeps its state.
    #[arg(long, default_value = "/var/lib/skiff")]
    pub data_dir: PathBuf,
    /// The server to join, e.g. `https://10.0.0.1:6443` (with --token).
    #[arg(long, env = "SKIFF_URL")]
    pub server: Option<String>,
    /// Join token from `skiff token create` on the server.
    #[arg(long, env = "SKIFF_TOKEN")]
    pub token: Option<String>,
    /// `sha256:<hex>` of the server CA's public key (printed by `skiff token create`);
    /// without it the CA is trusted on the token's signature alone.
    #[arg(long)]
    pub ca_pin: Option<String>,
    /// Use this kubeconfig instead of joining with a token (an admin kubeconfig, say).
    #[arg(long, conflicts_with = "token")]
    pub kubeconfig: Option<PathBuf>,
    /// Settings of the node.
    #[command(flatten)]
    pub node: NodeArgs,
}

/// Run the chosen command.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Up(args) => crate::server::up(args).await,
        Command::Server(args) => crate::server::run(args).await,
        Command::Agent(args) => crate::agent::run_agent(args).await,
        Command::Snapshot { action } => crate::server::snapshot(action).await,
        Command::Image { action } => {
            let mut out = std::io::stdout();
            let r = match action {
                ImageAction::Import { data_dir, name, files } => {
                    skiff_runtime::cli::image_import(&skiff_runtime::cli::runtime_root(&data_dir), &files, name.as_deref(), &mut out)
                }
                ImageAction::Pull { data_dir, reference } => skiff_runtime::cli::image_pull(
                    &skiff_runtime::cli::runtime_root(&data_dir),
                    &data_dir.join("registries.yaml"),
                    &reference,
                    &mut out,
                ),
                ImageAction::Ls { data_dir } => skiff_runtime::cli::image_ls(&skiff_runtime::cli::runtime_root(&data_dir), &mut out),
                ImageAction::Rm { data_dir, images } => {
                    skiff_runtime::cli::image_rm(&skiff_runtime::cli::runtime_root(&data_dir), &images, &mut out)
                }
            };
            r.map_err(|e| anyhow::anyhow!("{e}"))
        }
        Command::Killall { data_dir } => crate::agent::killall(&data_dir),
        Command::Shim => anyhow::bail!("`skiff shim` is started by the node agent, not by hand"),
        Command::Token { action: TokenAction::Create { data_dir, ttl } } => crate::token::print_new_token(&data_dir, &ttl).await,
        Command::Kubeconfig { data_dir } => {
            let path = data_dir.join("kubeconfig.yaml");
            let text = std::fs::read_to_string(&path).map_err(|e| {
                anyhow::anyhow!("cannot read {}: {e} (has `skiff server --data-dir {}` run yet?)", path.display(), data_dir.display())
            })?;
            print!("{text}");
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use clap::Parser;

    use super::{Cli, Command};

    #[test]
    fn port_zero_is_refused_with_the_range() {
        let err = Cli::try_parse_from(["skiff", "server", "--port", "0"]).err().expect("port 0 refused");
        assert!(err.to_string().contains("0 is not in 1..=65535"), "{err}");
        assert!(Cli::try_parse_from(["skiff", "server", "--port", "16443"]).is_ok());
    }

    #[test]
    fn cni_mode_excludes_a_flannel_backend() {
        let err = Cli::try_parse_from(["skiff", "agent", "--cni-conf-dir", "/etc/cni/net.d", "--flannel-backend", "host-gw"])
            .expect_err("both refused");
        let text = err.to_string();
        assert!(text.contains("--cni-conf-dir") && text.contains("--flannel-backend"), "{text}");
        let Command::Server(args) = Cli::try_parse_from(["skiff", "server", "--cni-conf-dir", "/etc/cni/net.d"]).unwrap().command else {
            panic!("server args")
        };
        assert_eq!(args.node.cni_bin_dir, "/usr/lib/cni");
        let options = crate::server::network_options(&args.node).expect("network on");
        let cni = options.cni.expect("CNI mode");
        assert_eq!(cni.conf_dir, PathBuf::from("/etc/cni/net.d"));
        assert_eq!(cni.bin_dirs, vec![PathBuf::from("/usr/lib/cni")]);
        let Command::Agent(args) = Cli::try_parse_from(["skiff", "agent", "--cni-conf-dir", "d", "--cni-bin-dir", "/opt/cni/bin:/usr/lib/cni"]).unwrap().command else {
            panic!("agent args")
        };
        assert_eq!(crate::server::network_options(&args.node).unwrap().cni.unwrap().bin_dirs.len(), 2);
    }
}
