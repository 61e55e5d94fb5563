//! The real backend: sends encoded batches over a `NETLINK_NETFILTER` socket.
//!
//! A netlink socket talks to the network namespace it was created in, so
//! [`NetlinkBackend::in_netns`] creates its socket on a short-lived thread that has joined the
//! target namespace; afterwards the socket can be used from any thread.

use std::fs::File;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::time::Duration;

use netlink_sys::{protocols::NETLINK_NETFILTER, Socket, SocketAddr};
use nix::sched::{setns, CloneFlags};
use nix::sys::socket::{setsockopt, sockopt};
use nix::sys::time::TimeVal;

use super::model::Transaction;
use super::wire;
use super::{Backend, Error};

const NLMSG_ERROR: u16 = 2;
/// How long to wait for the kernel's answer before giving up; a batch of thousands of rules
/// takes milliseconds, so this only fires when something is badly wrong.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);

/// Runs `f` on a new thread that has joined the network namespace at `netns` (a path such as
/// `/run/netns/NAME` or `/proc/PID/ns/net`), so the caller's threads stay where they are.
pub fn in_netns<T: Send + 'static>(
    netns: &Path,
    f: impl FnOnce() -> Result<T, Error> + Send + 'static,
) -> Result<T, Error> {
    let path = netns.to_path_buf();
    std::thread::spawn(move || {
        let file = File::open(&path).map_err(|e| Error::Netns {
            path: path.clone(),
            source: e,
        })?;
        setns(file.as_fd(), CloneFlags::CLONE_NEWNET).map_err(|e| Error::Netns {
            path: path.clone(),
            source: e.into(),
        })?;
        f()
    })
    .join()
    .map_err(|_| Error::Netns {
        path: netns.to_path_buf(),
        source: std::io::Error::other("thread panicked"),
    })?
}

/// nf_tables over netlink, in the current or a given network namespace.
pub struct NetlinkBackend {
    sock: Socket,
    seq: u32,
    netns: Option<PathBuf>,
}

impl NetlinkBackend {
    /// A backend for the caller's network namespace.
    pub fn new() -> Result<Self, Error> {
        Ok(NetlinkBackend {
            sock: open_socket()?,
            seq: initial_seq(),
            netns: None,
        })
    }

    /// A backend for the network namespace at `netns`.
    pub fn in_netns(netns: &Path) -> Result<Self, Error> {
        let sock = in_netns(netns, open_socket)?;
        Ok(NetlinkBackend {
            sock,
            seq: initial_seq(),
            netns: Some(netns.to_path_buf()),
        })
    }

    fn read_answer(&self, batch: &wire::Batch) -> Result<(), Error> {
        let mut first_err: Option<(i32, u32)> = None;
        let mut buf: Vec<u8> = Vec::with_capacity(64 * 1024);
        loop {
            buf.clear();
            let n = match self.sock.recv(&mut buf, 0) {
                Ok(n) => n,
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    return Err(match first_err {
                        Some((errno, seq)) => kernel_error(batch, errno, seq),
                        None => Error::Timeout,
                    });
                }
                Err(e) => {
                    return Err(Error::Io {
                        context: "receiving nf_tables answer".into(),
                        source: e,
                    })
                }
            };
            let mut off = 0;
            while off + 16 <= n {
                let len =
                    u32::from_ne_bytes(buf[off..off + 4].try_into().unwrap_or_default()) as usize;
                let ty = u16::from_ne_bytes([buf[off + 4], buf[off + 5]]);
                let seq = u32::from_ne_bytes(buf[off + 8..off + 12].try_into().unwrap_or_default());
                if len < 16 || off + len > n {
                    break;
                }
                if ty == NLMSG_ERROR && len >= 20 {
                    let errno =
                        -i32::from_ne_bytes(buf[off + 16..off + 20].try_into().unwrap_or_default());
                    if errno != 0 && first_err.is_none() {
                        first_err = Some((errno, seq));
                    }
                    if seq == batch.last_seq {
                        return match first_err {
                            Some((errno, seq)) => Err(kernel_error(batch, errno, seq)),
                            None => Ok(()),
                        };
                    }
                }
                off += (len + 3) & !3;
            }
        }
    }
}

fn initial_seq() -> u32 {
    // Any start works; using the clock makes stale answers from an earlier process unlikely
    // to match.
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as u32)
        .unwrap_or(1)
}

fn open_socket() -> Result<Socket, Error> {
    let io = |context: &str| {
        let context = context.to_string();
        move |source| Error::Io { context, source }
    };
    let mut sock = Socket::new(NETLINK_NETFILTER).map_err(io("opening netlink socket"))?;
    sock.bind_auto().map_err(io("binding netlink socket"))?;
    sock.connect(&SocketAddr::new(0, 0))
        .map_err(io("connecting netlink socket"))?;
    // Error answers then carry only the failing message's header, not a copy of it.
    sock.set_cap_ack(true)
        .map_err(io("setting NETLINK_CAP_ACK"))?;
    setsockopt(
        &sock,
        sockopt::ReceiveTimeout,
        &TimeVal::new(ANSWER_TIMEOUT.as_secs() as i64, 0),
    )
    .map_err(|e| Error::Io {
        context: "setting SO_RCVTIMEO".into(),
        source: e.into(),
    })?;
    Ok(sock)
}

fn kernel_error(batch: &wire::Batch, errno: i32, seq: u32) -> Error {
    let op = if seq == batch.begin_seq {
        "commit".to_string()
    } else {
        batch
            .messages
            .iter()
            .find(|(s, _)| *s == seq)
            .map(|(_, w)| w.clone())
            .unwrap_or_else(|| format!("message {seq}"))
    };
    Error::Kernel {
        op,
        source: std::io::Error::from_raw_os_error(errno),
    }
}

impl Backend for NetlinkBackend {
    fn apply(&mut self, tx: &Transaction) -> Result<(), Error> {
        if tx.is_empty() {
            return Ok(());
        }
        let batch = wire::encode(tx, self.seq);
        self.seq = self.seq.wrapping_add(batch.messages.len() as u32 + 2);
        // The whole batch must go in one sendmsg, which the kernel caps at the send buffer size.
        let want = batch.bytes.len() + 64 * 1024;
        setsockopt(&self.sock, sockopt::SndBufForce, &want)
            .or_else(|_| setsockopt(&self.sock, sockopt::SndBuf, &want))
            .map_err(|e| Error::Io {
                context: "setting netlink send buffer".into(),
                source: e.into(),
            })?;
        self.sock.send(&batch.bytes, 0).map_err(|e| Error::Io {
            context: format!("sending {} byte nf_tables batch", batch.bytes.len()),
            source: e,
        })?;
        self.read_answer(&batch)
    }

    fn enable_route_localnet(&mut self) -> Result<(), Error> {
        // /proc/sys/net resolves against the network namespace of the thread that opens it.
        let write = || {
            std::fs::write(ROUTE_LOCALNET, "1").map_err(|e| Error::Io {
                context: format!("writing {ROUTE_LOCALNET}"),
                source: e,
            })
        };
        match &self.netns {
            Some(ns) => in_netns(ns, write),
            None => write(),
        }
    }
}

const ROUTE_LOCALNET: &str = "/proc/sys/net/ipv4/conf/all/route_localnet";
