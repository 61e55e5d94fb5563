//! skiff's `RuntimeDefault` seccomp profile, written for this project from what each system
//! call does. The idea is the one containerd and Docker follow: deny by default (EPERM),
//! allow what ordinary programs use, and keep the calls that reach kernel-wide state or
//! widen the attack surface (mounts and namespaces, keyrings, BPF, perf, modules, kexec,
//! reboot, swap, clocks, file handles, userfaultfd) for containers that hold the capability
//! that would make them legitimate anyway.

use serde_json::{json, Value};

#[rustfmt::skip]
/// Allowed for every container. The kernel still checks permissions (capabilities, file
/// modes) on these; the filter only decides whether the call is reachable at all.
const ALWAYS: &[&str] = &[
    // Reading and writing descriptors.
    "read", "write", "readv", "writev", "pread64", "pwrite64", "preadv", "pwritev",
    "preadv2", "pwritev2", "lseek", "sendfile", "splice", "tee", "vmsplice",
    "copy_file_range", "readahead", "ioctl", "fcntl", "flock", "dup", "dup2", "dup3",
    "close", "close_range", "pipe", "pipe2",
    // Opening, creating and inspecting files.
    "open", "openat", "openat2", "creat", "stat", "fstat", "lstat", "newfstatat", "statx",
    "statfs", "fstatfs", "access", "faccessat", "faccessat2", "readlink", "readlinkat",
    "getdents", "getdents64", "getcwd", "chdir", "fchdir", "umask",
    "truncate", "ftruncate", "fallocate", "fadvise64", "fsync", "fdatasync", "sync",
    "syncfs", "sync_file_range", "cachestat",
    // Changing the file tree (ordinary permission checks apply).
    "mkdir", "mkdirat", "rmdir", "rename", "renameat", "renameat2", "link", "linkat",
    "symlink", "symlinkat", "unlink", "unlinkat", "mknod", "mknodat", "chmod", "fchmod",
    "fchmodat", "fchmodat2", "chown", "fchown", "lchown", "fchownat", "utime", "utimes",
    "futimesat", "utimensat", "name_to_handle_at",
    // Extended attributes.
    "getxattr", "lgetxattr", "fgetxattr", "setxattr", "lsetxattr", "fsetxattr",
    "listxattr", "llistxattr", "flistxattr", "removexattr", "lremovexattr",
    "fremovexattr", "getxattrat", "setxattrat", "listxattrat", "removexattrat",
    // Watching files.
    "inotify_init", "inotify_init1", "inotify_add_watch", "inotify_rm_watch",
    "fanotify_mark",
    // Memory.
    "brk", "mmap", "munmap", "mremap", "mprotect", "madvise", "mincore", "msync", "mlock",
    "mlock2", "munlock", "mlockall", "munlockall", "membarrier", "memfd_create",
    "remap_file_pages", "get_mempolicy", "pkey_alloc", "pkey_free", "pkey_mprotect",
    "mseal", "map_shadow_stack", "process_madvise", "process_mrelease",
    // Processes and threads. `clone` and `clone3` are handled separately.
    "fork", "vfork", "execve", "execveat", "exit", "exit_group", "wait4", "waitid",
    "set_tid_address", "set_robust_list", "get_robust_list", "rseq", "arch_prctl",
    "prctl", "seccomp", "ptrace", "process_vm_readv", "process_vm_writev",
    "restart_syscall", "getcpu",
    "futex", "futex_waitv", "futex_wake", "futex_wait", "futex_requeue",
    "sched_yield", "sched_getaffinity", "sched_setaffinity", "sched_getparam",
    "sched_setparam", "sched_getscheduler", "sched_setscheduler", "sched_getattr",
    "sched_setattr", "sched_get_priority_max", "sched_get_priority_min",
    "sched_rr_get_interval", "getpriority", "setpriority", "ioprio_get", "ioprio_set",
    "getrlimit", "setrlimit", "prlimit64", "getrusage", "times",
    "set_thread_area", "get_thread_area",
    // Identity (changing it needs CAP_SETUID/CAP_SETGID, which the kernel checks).
    "getpid", "getppid", "gettid", "getpgid", "setpgid", "getpgrp", "getsid", "setsid",
    "getuid", "geteuid", "getgid", "getegid", "getresuid", "getresgid", "getgroups",
    "setuid", "setgid", "setreuid", "setregid", "setresuid", "setresgid", "setgroups",
    "setfsuid", "setfsgid", "capget", "capset",
    // Signals.
    "rt_sigaction", "rt_sigprocmask", "rt_sigreturn", "rt_sigpending", "rt_sigtimedwait",
    "rt_sigsuspend", "rt_sigqueueinfo", "rt_tgsigqueueinfo", "sigaltstack", "pause",
    "alarm", "kill", "tkill", "tgkill", "signalfd", "signalfd4",
    "pidfd_open", "pidfd_send_signal", "pidfd_getfd",
    // Time, reading and waiting (setting the clocks is below).
    "time", "gettimeofday", "clock_gettime", "clock_getres", "clock_nanosleep",
    "nanosleep", "getitimer", "setitimer", "timer_create", "timer_settime",
    "timer_gettime", "timer_getoverrun", "timer_delete", "timerfd_create",
    "timerfd_settime", "timerfd_gettime", "adjtimex",
    // Waiting for events.
    "select", "pselect6", "poll", "ppoll", "epoll_create", "epoll_create1", "epoll_ctl",
    "epoll_wait", "epoll_pwait", "epoll_pwait2", "eventfd", "eventfd2",
    // Asynchronous I/O (io_uring stays off: a large, frequently exploited surface).
    "io_setup", "io_destroy", "io_submit", "io_cancel", "io_getevents", "io_pgetevents",
    // System V and POSIX IPC (in the pod's own IPC namespace).
    "shmget", "shmat", "shmdt", "shmctl", "semget", "semop", "semtimedop", "semctl",
    "msgget", "msgsnd", "msgrcv", "msgctl", "mq_open", "mq_unlink", "mq_timedsend",
    "mq_timedreceive", "mq_notify", "mq_getsetattr",
    // Networking (`socket` itself is handled separately).
    "socketpair", "bind", "listen", "accept", "accept4", "connect", "getsockname",
    "getpeername", "sendto", "recvfrom", "sendmsg", "recvmsg", "sendmmsg", "recvmmsg",
    "shutdown", "setsockopt", "getsockopt",
    // System information; the host and domain name live in the pod's UTS namespace.
    "uname", "sysinfo", "getrandom", "sethostname", "setdomainname",
    // Sandboxing oneself.
    "landlock_create_ruleset", "landlock_add_rule", "landlock_restrict_self",
];

#[rustfmt::skip]
/// Calls reachable only with a capability: the capability already grants the power the
/// call exposes, so the filter adds nothing by refusing it.
const WITH_CAPABILITY: &[(&str, &[&str])] = &[
    (
        "CAP_SYS_ADMIN",
        &[
            "mount", "umount2", "pivot_root", "unshare", "setns", "fsopen", "fsconfig",
            "fsmount", "fspick", "move_mount", "open_tree", "mount_setattr", "swapon",
            "swapoff", "quotactl", "quotactl_fd", "fanotify_init", "lookup_dcookie", "bpf",
            "perf_event_open", "statmount", "listmount",
        ],
    ),
    ("CAP_BPF", &["bpf"]),
    ("CAP_PERFMON", &["perf_event_open"]),
    ("CAP_SYS_BOOT", &["reboot", "kexec_load", "kexec_file_load"]),
    ("CAP_SYS_MODULE", &["init_module", "finit_module", "delete_module"]),
    ("CAP_SYS_TIME", &["settimeofday", "clock_settime", "clock_adjtime"]),
    ("CAP_SYS_PACCT", &["acct"]),
    ("CAP_SYS_RAWIO", &["iopl", "ioperm"]),
    ("CAP_SYS_PTRACE", &["kcmp", "userfaultfd"]),
    (
        "CAP_SYS_NICE",
        &["mbind", "set_mempolicy", "set_mempolicy_home_node", "migrate_pages", "move_pages"],
    ),
    ("CAP_SYS_CHROOT", &["chroot"]),
    ("CAP_SYSLOG", &["syslog"]),
    ("CAP_DAC_READ_SEARCH", &["open_by_handle_at"]),
    ("CAP_SYS_TTY_CONFIG", &["vhangup"]),
];

/// Namespace flags of `clone` (CLONE_NEWNS, NEWCGROUP, NEWUTS, NEWIPC, NEWUSER, NEWPID,
/// NEWNET): creating namespaces is what `unshare` is refused for, so `clone` may not do it
/// either.
const CLONE_NAMESPACE_FLAGS: u64 =
    0x0002_0000 | 0x0200_0000 | 0x0400_0000 | 0x0800_0000 | 0x1000_0000 | 0x2000_0000 | 0x4000_0000;

/// `personality` values that keep the process an ordinary Linux one (PER_LINUX,
/// PER_LINUX32, UNAME26 with either, and the query 0xffffffff); others can switch off
/// address space randomization, for example.
const PERSONALITIES: &[u64] = &[0x0, 0x8, 0x20000, 0x20008, 0xffff_ffff];

const AF_VSOCK: u64 = 40;
const ENOSYS: u32 = 38;

/// The RuntimeDefault profile (OCI `linux.seccomp`) for a container whose final
/// capability set is `caps` (`CAP_`-prefixed names).
pub fn runtime_default(caps: &[String]) -> Value {
    let has = |c: &str| caps.iter().any(|x| x == c);
    let mut allowed: Vec<&str> = ALWAYS.to_vec();
    for (cap, calls) in WITH_CAPABILITY {
        if has(cap) {
            allowed.extend(calls.iter().copied());
        }
    }
    allowed.sort_unstable();
    allowed.dedup();
    let mut syscalls = vec![json!({"names": allowed, "action": "SCMP_ACT_ALLOW"})];
    if has("CAP_SYS_ADMIN") {
        syscalls.push(json!({"names": ["clone", "clone3"], "action": "SCMP_ACT_ALLOW"}));
    } else {
        syscalls.push(json!({"names": ["clone"], "action": "SCMP_ACT_ALLOW", "args": [
            {"index": 0, "value": CLONE_NAMESPACE_FLAGS, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}
        ]}));
        // clone3 passes its flags in memory, out of a filter's reach: answer ENOSYS so that
        // the C library falls back to clone, whose flags the filter can see.
        syscalls.push(json!({"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": ENOSYS}));
    }
    syscalls.push(
        json!({"names": ["socket"], "action": "SCMP_ACT_ALLOW", "args": [
            {"index": 0, "value": AF_VSOCK, "op": "SCMP_CMP_NE"}
        ]}),
    );
    syscalls.push(json!({"names": ["personality"], "action": "SCMP_ACT_ALLOW",
        "args": PERSONALITIES.iter().map(|p| json!({"index": 0, "value": p, "op": "SCMP_CMP_EQ"})).collect::<Vec<_>>()
    }));
    json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": 1,
        "architectures": ["SCMP_ARCH_X86_64"],
        "syscalls": syscalls,
    })
}

#[cfg(all(test, target_arch = "x86_64"))]
mod tests {
    use super::*;
    use crate::seccomp::bpf::{compile, evaluate};
    use crate::seccomp::syscalls::number;

    const ALLOW: u32 = 0x7fff_0000;
    const EPERM: u32 = 0x0005_0001;

    fn verdict(caps: &[&str], name: &str, args: [u64; 6]) -> u32 {
        let caps: Vec<String> = caps.iter().map(|s| s.to_string()).collect();
        let profile = serde_json::from_value(runtime_default(&caps)).unwrap();
        let f = compile(&profile).unwrap();
        evaluate(&f.program, 0xc000_003e, number(name).unwrap(), args)
    }

    #[test]
    fn every_listed_name_is_an_x86_64_call() {
        for name in ALWAYS
            .iter()
            .chain(WITH_CAPABILITY.iter().flat_map(|(_, c)| c.iter()))
        {
            assert!(number(name).is_some(), "{name}");
        }
    }

    #[test]
    fn ordinary_calls_pass_dangerous_ones_do_not() {
        let caps = crate::spec::DEFAULT_CAPABILITIES;
        for ok in [
            "read",
            "openat",
            "execve",
            "wait4",
            "futex",
            "epoll_wait",
            "chroot",
        ] {
            assert_eq!(verdict(caps, ok, [0; 6]), ALLOW, "{ok}");
        }
        for no in [
            "mount",
            "umount2",
            "pivot_root",
            "unshare",
            "setns",
            "keyctl",
            "add_key",
            "request_key",
            "bpf",
            "perf_event_open",
            "kexec_load",
            "init_module",
            "finit_module",
            "delete_module",
            "reboot",
            "swapon",
            "swapoff",
            "open_by_handle_at",
            "userfaultfd",
            "clock_settime",
            "settimeofday",
            "io_uring_setup",
        ] {
            assert_eq!(verdict(caps, no, [0; 6]), EPERM, "{no}");
        }
    }

    #[test]
    fn clone_without_namespaces_socket_without_vsock() {
        let caps = crate::spec::DEFAULT_CAPABILITIES;
        // fork-like and pthread-like clones.
        assert_eq!(verdict(caps, "clone", [0x1200011, 0, 0, 0, 0, 0]), ALLOW);
        assert_eq!(verdict(caps, "clone", [0x3d0f00, 0, 0, 0, 0, 0]), ALLOW);
        // CLONE_NEWUSER, CLONE_NEWNET.
        assert_eq!(verdict(caps, "clone", [0x1000_0011, 0, 0, 0, 0, 0]), EPERM);
        assert_eq!(verdict(caps, "clone", [0x4000_0011, 0, 0, 0, 0, 0]), EPERM);
        assert_eq!(verdict(caps, "clone3", [0; 6]), 0x0005_0000 | ENOSYS);
        assert_eq!(verdict(caps, "socket", [2, 1, 0, 0, 0, 0]), ALLOW);
        assert_eq!(verdict(caps, "socket", [AF_VSOCK, 1, 0, 0, 0, 0]), EPERM);
        assert_eq!(
            verdict(caps, "personality", [0xffff_ffff, 0, 0, 0, 0, 0]),
            ALLOW
        );
        assert_eq!(
            verdict(caps, "personality", [0x0040000, 0, 0, 0, 0, 0]),
            EPERM
        );
    }

    #[test]
    fn capabilities_open_their_calls() {
        let admin = ["CAP_SYS_ADMIN"];
        for name in ["mount", "unshare", "setns", "clone3", "bpf"] {
            assert_eq!(verdict(&admin, name, [0; 6]), ALLOW, "{name}");
        }
        assert_eq!(
            verdict(&admin, "clone", [0x1000_0011, 0, 0, 0, 0, 0]),
            ALLOW
        );
        assert_eq!(verdict(&["CAP_SYS_TIME"], "clock_settime", [0; 6]), ALLOW);
        // Keyrings stay closed whatever the capabilities.
        assert_eq!(verdict(&admin, "keyctl", [0; 6]), EPERM);
        // Without CAP_SYS_CHROOT there is no chroot.
        assert_eq!(verdict(&[], "chroot", [0; 6]), EPERM);
    }
}
