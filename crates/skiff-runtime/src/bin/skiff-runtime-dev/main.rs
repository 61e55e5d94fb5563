//! Development binary: `skiff-runtime-dev shim ...` runs the shim (as `skiff shim` will),
//! `skiff-runtime-dev image import|ls|rm --root DIR ...` manages images,
//! `skiff-runtime-dev bench --root DIR --image REF [-n N] [-c C] [--compare ...]` measures
//! create-to-exit latency (against runc and containerd with `--compare`, see bench.rs),
//! `skiff-runtime-dev unpack-bench --archive FILE ...` measures import/unpack throughput,
//! `skiff-runtime-dev create-many --root DIR [--state DIR] --image REF --cgroup-parent P [-n N]
//! [--hold SECS] [--shim PROGRAM]` starts N sleeping containers from N threads (a driver for
//! crash-recovery tests to kill; with `--hold`, removed again after SECS), and
//! `skiff-runtime-dev mkimage --out FILE [--tag REF] [--size-mb N [--gzip]]` writes a
//! docker-archive of static busybox (from Debian's busybox-static), optionally with ~N MB of
//! extra layers, for benchmarks.

mod bench;
mod compare;
mod mkimage;
mod unpack_bench;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use skiff_runtime::runtime::{ContainerConfig, LoopbackOnly};
use skiff_runtime::shim::client::ShimProgram;
use skiff_runtime::{cli, LocalRuntime, Runtime, RuntimeConfig};

/// The 1/5/15-minute load averages, printed with figures: read before a run, since the run
/// itself (many short-lived processes) raises them.
pub(crate) fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split(' ')
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

pub(crate) fn flag(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

/// The shim to run: this program, or `--shim PROGRAM` (e.g. the release `skiff` binary, whose
/// `skiff shim` is what the node agent runs; measuring its memory needs that binary).
pub(crate) fn shim_program(args: &[String]) -> ShimProgram {
    ShimProgram {
        program: flag(args, "--shim")
            .map(PathBuf::from)
            .unwrap_or_else(|| std::env::current_exe().expect("current exe")),
        prefix: vec!["shim".into()],
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let code = match args.first().map(String::as_str) {
        Some("shim") => skiff_runtime::shim::main(args[1..].to_vec()),
        Some("image") => image(&args[1..]),
        Some("bench") => bench::main(&args[1..]),
        Some("unpack-bench") => unpack_bench::main(&args[1..]),
        Some("create-many") => create_many(&args[1..]),
        Some("mkimage") => mkimage::main(&args[1..]),
        _ => {
            eprintln!(
                "usage: skiff-runtime-dev shim ... | image import|ls|rm --root DIR ... | bench --root DIR --image REF [-n N] [-c C] [--seccomp runtime-default] [--shim PROGRAM] [--compare [--rounds R] [--runc BIN] [--containerd BIN --ctr BIN --archive FILE]] | unpack-bench --archive FILE [--dir D] [--rounds R] [--containerd BIN --ctr BIN] | create-many --root DIR [--state DIR] ... | mkimage --out FILE [--tag REF] [--size-mb N [--gzip]]"
            );
            2
        }
    };
    std::process::exit(code);
}

fn image(args: &[String]) -> i32 {
    let Some(root) = flag(args, "--root").map(PathBuf::from) else {
        eprintln!("error: --root is required");
        return 2;
    };
    // Everything after the subcommand that is neither a flag nor a flag's value.
    let mut positional = Vec::new();
    let mut rest = args.iter().skip(1);
    while let Some(a) = rest.next() {
        if a.starts_with("--") {
            rest.next();
        } else {
            positional.push(a.clone());
        }
    }
    let mut out = std::io::stdout();
    let res = match args.first().map(String::as_str) {
        Some("import") => {
            let files: Vec<PathBuf> = positional.iter().map(PathBuf::from).collect();
            cli::image_import(&root, &files, flag(args, "--name").as_deref(), &mut out)
        }
        Some("ls") => cli::image_ls(&root, &mut out),
        Some("rm") => cli::image_rm(&root, &positional, &mut out),
        _ => {
            eprintln!("usage: image import|ls|rm --root DIR ...");
            return 2;
        }
    };
    match res {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("error: {e}");
            1
        }
    }
}

fn create_many(args: &[String]) -> i32 {
    let root = PathBuf::from(flag(args, "--root").expect("--root"));
    let image = flag(args, "--image").expect("--image");
    let n: usize = flag(args, "-n").and_then(|s| s.parse().ok()).unwrap_or(20);
    let shim = shim_program(args);
    let cgroup_parent = flag(args, "--cgroup-parent").unwrap_or_else(|| "/skiff".into());
    let state = flag(args, "--state").map(PathBuf::from).unwrap_or_else(|| root.clone());
    let rt = LocalRuntime::new(
        RuntimeConfig {
            state,
            root,
            shim,
            cgroup_parent,
        },
        Arc::new(LoopbackOnly),
    )
    .expect("open runtime");
    std::thread::scope(|s| {
        for i in 0..n {
            let rt = &rt;
            let image = image.clone();
            s.spawn(move || {
                let id = format!("many-{i}");
                let c = ContainerConfig {
                    id: id.clone(),
                    image,
                    command: vec![
                        "/bin/sh".into(),
                        "-c".into(),
                        "while true; do sleep 1; done".into(),
                    ],
                    ..Default::default()
                };
                match rt.create_container(&c).and_then(|st| {
                    rt.start_container(&id)?;
                    Ok(st)
                }) {
                    Ok(st) => println!("started {id} shim {}", st.shim_pid.unwrap_or(0)),
                    Err(e) => eprintln!("error: {id}: {e}"),
                }
            });
        }
    });
    // `--hold SECS`: keep them running that long (to measure the shims), then remove them.
    if let Some(secs) = flag(args, "--hold").and_then(|s| s.parse::<u64>().ok()) {
        std::thread::sleep(Duration::from_secs(secs));
        for i in 0..n {
            if let Err(e) = rt.remove_container(&format!("many-{i}")) {
                eprintln!("error: remove many-{i}: {e}");
            }
        }
        println!("removed {n}");
    }
    0
}
