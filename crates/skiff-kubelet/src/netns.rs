//! Connecting to a port inside a pod's network namespace.
//!
//! Probes and port-forward reach the pod from inside its own network namespace, so they work
//! whether or not the pod network is wired (a pod with only loopback still answers) and
//! never depend on host routes. The connect happens on a short-lived thread that enters the
//! namespace; the socket keeps belonging to that namespace after the thread is gone, so the
//! async side can use it from any thread. Entering a namespace only affects the calling
//! thread, which is why the agent's own threads never do it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Connects to `addr` from inside the network namespace pinned at `netns` (the host's
/// namespace when `None`), giving up after `timeout`.
pub async fn connect_tcp(netns: Option<&Path>, addr: SocketAddr, timeout: Duration) -> std::io::Result<tokio::net::TcpStream> {
    let Some(netns) = netns else {
        return tokio::time::timeout(timeout, tokio::net::TcpStream::connect(addr))
            .await
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, format!("connect to {addr} timed out")))?;
    };
    let netns: PathBuf = netns.to_path_buf();
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("skiff-netns-connect".into())
        .spawn(move || {
            let result = (|| {
                let file = std::fs::File::open(&netns)?;
                nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET).map_err(std::io::Error::from)?;
                let stream = std::net::TcpStream::connect_timeout(&addr, timeout)?;
                stream.set_nonblocking(true)?;
                Ok::<_, std::io::Error>(stream)
            })();
            let _ = tx.send(result);
        })?;
    let stream = rx
        .await
        .map_err(|_| std::io::Error::other("namespace connect thread died"))??;
    tokio::net::TcpStream::from_std(stream)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn connects_in_the_host_namespace_without_a_path() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accept = tokio::spawn(async move { listener.accept().await.map(|_| ()) });
        connect_tcp(None, addr, Duration::from_secs(2)).await.unwrap();
        accept.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn a_missing_namespace_is_an_error() {
        let err = connect_tcp(Some(Path::new("/nonexistent/netns")), "127.0.0.1:1".parse().unwrap(), Duration::from_secs(1))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::NotFound);
    }
}
