//! Descriptor plumbing shared by the shim and its client: passing descriptors over unix
//! sockets (SCM_RIGHTS), terminal sizes, and pipes for attach sessions.

use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;

use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::sys::socket::{recvmsg, sendmsg, ControlMessage, ControlMessageOwned, MsgFlags};

/// Most descriptors one message carries (stdin, stdout, stderr).
const MAX_FDS: usize = 4;

/// Sends `data` with `fds` attached.
pub(crate) fn send_with_fds(conn: &UnixStream, data: &[u8], fds: &[RawFd]) -> std::io::Result<()> {
    let iov = [IoSlice::new(data)];
    let cmsg = [ControlMessage::ScmRights(fds)];
    let cmsgs: &[ControlMessage] = if fds.is_empty() { &[] } else { &cmsg };
    let n = sendmsg::<()>(conn.as_raw_fd(), &iov, cmsgs, MsgFlags::MSG_NOSIGNAL, None)?;
    if n < data.len() {
        // The descriptors went with the first byte; the rest is plain data.
        use std::io::Write;
        (&*conn).write_all(&data[n..])?;
    }
    Ok(())
}

/// Receives into `buf` along with any descriptors sent with it (close-on-exec), from a unix
/// socket of any type (the zygote's is SOCK_SEQPACKET).
#[allow(unsafe_code)]
pub(crate) fn recv_with_fds(
    conn: &impl AsRawFd,
    buf: &mut [u8],
) -> std::io::Result<(usize, Vec<OwnedFd>)> {
    let mut iov = [IoSliceMut::new(buf)];
    let mut space = nix::cmsg_space!([RawFd; MAX_FDS]);
    let msg = recvmsg::<()>(
        conn.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )?;
    let mut fds = Vec::new();
    for cmsg in msg.cmsgs()? {
        if let ControlMessageOwned::ScmRights(received) = cmsg {
            for fd in received {
                // SAFETY: the kernel installed these descriptors in our table while receiving
                // the message; nothing else refers to them, so we may take ownership.
                fds.push(unsafe { OwnedFd::from_raw_fd(fd) });
            }
        }
    }
    Ok((msg.bytes, fds))
}

/// Sets a terminal's size; the foreground process group gets SIGWINCH.
#[allow(unsafe_code)]
pub(crate) fn set_winsize(terminal: &impl AsRawFd, rows: u16, cols: u16) {
    let ws = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads a `winsize` from the pointer, which is valid for the call;
    // on a descriptor that is not a terminal the call just fails.
    unsafe {
        libc::ioctl(terminal.as_raw_fd(), libc::TIOCSWINSZ, &ws);
    }
}

/// A pipe whose write end does not block, with room for bursts: the shim copies container
/// output into it and must never stall on a slow reader.
pub(crate) fn output_pipe() -> nix::Result<(OwnedFd, OwnedFd)> {
    let (r, w) = nix::unistd::pipe2(OFlag::O_CLOEXEC)?;
    fcntl(w.as_raw_fd(), FcntlArg::F_SETFL(OFlag::O_NONBLOCK))?;
    // Best effort: the default 64 KiB is enough, more only absorbs bigger bursts.
    let _ = fcntl(w.as_raw_fd(), FcntlArg::F_SETPIPE_SZ(1 << 20));
    Ok((r, w))
}

/// Writes as much of `data` as fits without blocking; `Err` when the reader is gone.
pub(crate) fn write_nonblocking(fd: &impl AsFd, mut data: &[u8]) -> nix::Result<usize> {
    let total = data.len();
    while !data.is_empty() {
        match nix::unistd::write(fd, data) {
            Ok(n) => data = &data[n..],
            Err(nix::errno::Errno::EAGAIN) => break,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(total - data.len())
}

/// Parses `ROWS COLS` (the resize line of both the attach and the exec protocols).
pub(crate) fn parse_size(words: &str) -> Option<(u16, u16)> {
    let mut it = words.split_whitespace();
    let rows = it.next()?.parse().ok()?;
    let cols = it.next()?.parse().ok()?;
    Some((rows, cols))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptors_travel_with_data() {
        let (a, b) = UnixStream::pair().unwrap();
        let (r, w) = output_pipe().unwrap();
        send_with_fds(&a, b"ok stdout\n", &[r.as_raw_fd()]).unwrap();
        drop(r);
        let mut buf = [0u8; 64];
        let (n, fds) = recv_with_fds(&b, &mut buf).unwrap();
        assert_eq!(&buf[..n], b"ok stdout\n");
        assert_eq!(fds.len(), 1);
        assert_eq!(write_nonblocking(&w, b"hi").unwrap(), 2);
        let mut got = [0u8; 2];
        nix::unistd::read(fds[0].as_raw_fd(), &mut got).unwrap();
        assert_eq!(&got, b"hi");
        drop(fds);
        assert!(
            write_nonblocking(&w, b"x").is_err(),
            "reader gone is an error"
        );
        assert_eq!(parse_size(" 24 80\n"), Some((24, 80)));
        assert_eq!(parse_size("24"), None);
    }
}
