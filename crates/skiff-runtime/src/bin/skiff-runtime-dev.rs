//! Development binary: `skiff-runtime-dev shim ...` runs the shim (as `skiff shim` will),
//! `skiff-runtime-dev image import|ls|rm --root DIR ...` manages images, and
//! `skiff-runtime-dev bench --root DIR --image REF [-n N] [-c C]` measures create-to-exit latency,
//! and `skiff-runtime-dev create-many --root DIR --image REF --cgroup-parent P [-n N]
//! [--hold SECS] [--shim PROGRAM]` starts N sleeping containers from N threads (a driver for
//! crash-recovery tests to kill; with `--hold`, removed again after SECS), and
//! `skiff-runtime-dev mkimage --out FILE [--tag REF]` writes a docker-archive of static
//! busybox (from Debian's busybox-static) for benchmarks.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use skiff_runtime::runtime::{ContainerConfig, LoopbackOnly};
use skiff_runtime::shim::client::ShimProgram;
use skiff_runtime::{cli, LocalRuntime, Runtime, RuntimeConfig};

fn flag(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

/// The shim to run: this program, or `--shim PROGRAM` (e.g. the release `skiff` binary, whose
/// `skiff shim` is what the node agent runs; measuring its memory needs that binary).
fn shim_program(args: &[String]) -> ShimProgram {
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
        Some("bench") => bench(&args[1..]),
        Some("create-many") => create_many(&args[1..]),
        Some("mkimage") => mkimage(&args[1..]),
        _ => {
            eprintln!(
                "usage: skiff-runtime-dev shim ... | image import|ls|rm --root DIR ... | bench --root DIR --image REF [-n N] [-c C] [--seccomp runtime-default] [--shim PROGRAM] | create-many ... | mkimage --out FILE [--tag REF]"
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

fn bench(args: &[String]) -> i32 {
    let root =
        PathBuf::from(flag(args, "--root").unwrap_or_else(|| "/var/tmp/skiff-rt-bench".into()));
    let image = flag(args, "--image").unwrap_or_else(|| "bench:1".into());
    let n: usize = flag(args, "-n").and_then(|s| s.parse().ok()).unwrap_or(20);
    let shim = shim_program(args);
    let cfg = RuntimeConfig {
        root,
        shim,
        cgroup_parent: "/skiff-bench".into(),
    };
    let rt = LocalRuntime::new(cfg, Arc::new(LoopbackOnly)).expect("open runtime");
    // `--seccomp runtime-default` measures the cost of the filter (compile in the shim,
    // install before exec).
    let seccomp = match flag(args, "--seccomp").as_deref() {
        Some("runtime-default") => skiff_runtime::runtime::SeccompProfile::RuntimeDefault,
        _ => skiff_runtime::runtime::SeccompProfile::Unconfined,
    };
    let concurrency: usize = flag(args, "-c")
        .and_then(|s| s.parse().ok())
        .unwrap_or(1)
        .max(1);
    let one = |i: usize| {
        let id = format!("bench-{i}");
        let t = Instant::now();
        let c = ContainerConfig {
            id: id.clone(),
            image: image.clone(),
            command: vec!["/bin/true".into()],
            seccomp: seccomp.clone(),
            ..Default::default()
        };
        rt.create_container(&c).expect("create");
        let created = t.elapsed();
        rt.start_container(&id).expect("start");
        let st = rt
            .wait_container(&id, Some(Duration::from_secs(10)))
            .expect("wait");
        let total = t.elapsed();
        assert_eq!(st.exit_code, Some(0), "{st:?}");
        rt.remove_container(&id).expect("remove");
        (created, total)
    };
    let mut samples = Vec::new();
    let wall = Instant::now();
    for batch in (0..n).collect::<Vec<_>>().chunks(concurrency) {
        std::thread::scope(|s| {
            let handles: Vec<_> = batch.iter().map(|&i| s.spawn(move || one(i))).collect();
            samples.extend(handles.into_iter().map(|h| h.join().expect("bench thread")));
        });
    }
    println!("n={n} concurrency={concurrency} wall={:?}", wall.elapsed());
    // Memory cost of one supervised, running container.
    let c = ContainerConfig {
        id: "bench-rss".into(),
        image: image.clone(),
        command: vec![
            "/bin/sh".into(),
            "-c".into(),
            "while true; do sleep 1; done".into(),
        ],
        ..Default::default()
    };
    let st = rt.create_container(&c).expect("create");
    rt.start_container("bench-rss").expect("start");
    let rss = |pid: i32| {
        std::fs::read_to_string(format!("/proc/{pid}/status"))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("VmRSS:"))
                    .map(|l| l["VmRSS:".len()..].trim().to_string())
            })
            .unwrap_or_default()
    };
    println!(
        "shim VmRSS={} (pid {})",
        rss(st.shim_pid.unwrap_or(0)),
        st.shim_pid.unwrap_or(0)
    );
    rt.remove_container("bench-rss").expect("remove");
    let mut totals: Vec<Duration> = samples.iter().map(|s| s.1).collect();
    let mut creates: Vec<Duration> = samples.iter().map(|s| s.0).collect();
    totals.sort();
    creates.sort();
    let p = |v: &[Duration], q: f64| v[((v.len() as f64 - 1.0) * q).round() as usize];
    println!(
        "n={n} create p50={:?} | create+start+exit p50={:?} p90={:?} max={:?}",
        p(&creates, 0.5),
        p(&totals, 0.5),
        p(&totals, 0.9),
        totals[totals.len() - 1]
    );
    0
}

fn create_many(args: &[String]) -> i32 {
    let root = PathBuf::from(flag(args, "--root").expect("--root"));
    let image = flag(args, "--image").expect("--image");
    let n: usize = flag(args, "-n").and_then(|s| s.parse().ok()).unwrap_or(20);
    let shim = shim_program(args);
    let cgroup_parent = flag(args, "--cgroup-parent").unwrap_or_else(|| "/skiff".into());
    let rt = LocalRuntime::new(
        RuntimeConfig {
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

fn mkimage(args: &[String]) -> i32 {
    use sha2::{Digest, Sha256};
    let out = PathBuf::from(flag(args, "--out").unwrap_or_else(|| "busybox.tar".into()));
    let tag = flag(args, "--tag").unwrap_or_else(|| "bench:1".into());
    let hex = |b: &[u8]| {
        Sha256::digest(b)
            .iter()
            .map(|x| format!("{x:02x}"))
            .collect::<String>()
    };
    let header = |kind: tar::EntryType, mode: u32, size: u64| {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_size(size);
        h.set_uid(0);
        h.set_gid(0);
        h
    };
    let busybox = match std::fs::read("/bin/busybox") {
        Ok(b) => b,
        Err(e) => {
            eprintln!("error: read /bin/busybox (apt-get install busybox-static): {e}");
            return 1;
        }
    };
    let mut layer = tar::Builder::new(Vec::new());
    for d in ["bin", "etc", "tmp", "proc", "sys", "dev"] {
        layer
            .append_data(
                &mut header(tar::EntryType::Directory, 0o755, 0),
                d,
                std::io::empty(),
            )
            .expect("tar");
    }
    layer
        .append_data(
            &mut header(tar::EntryType::Regular, 0o755, busybox.len() as u64),
            "bin/busybox",
            &busybox[..],
        )
        .expect("tar");
    for applet in ["sh", "true", "sleep", "echo", "cat"] {
        layer
            .append_link(
                &mut header(tar::EntryType::Symlink, 0o777, 0),
                format!("bin/{applet}"),
                "busybox",
            )
            .expect("tar");
    }
    let layer = layer.into_inner().expect("tar");
    let diff = hex(&layer);
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "config": {"Cmd": ["/bin/true"], "Env": ["PATH=/bin"]},
        "rootfs": {"type": "layers", "diff_ids": [format!("sha256:{diff}")]},
    }))
    .expect("json");
    let config_name = format!("{}.json", hex(&config));
    let manifest = serde_json::to_vec(&serde_json::json!([
        {"Config": config_name, "RepoTags": [tag], "Layers": [format!("{diff}/layer.tar")]}
    ]))
    .expect("json");
    let file = match std::fs::File::create(&out) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("error: create {}: {e}", out.display());
            return 1;
        }
    };
    let mut archive = tar::Builder::new(file);
    for (name, data) in [
        (format!("{diff}/layer.tar"), &layer),
        (config_name, &config),
        ("manifest.json".to_string(), &manifest),
    ] {
        archive
            .append_data(
                &mut header(tar::EntryType::Regular, 0o644, data.len() as u64),
                name,
                &data[..],
            )
            .expect("tar");
    }
    archive.finish().expect("tar");
    println!("wrote {}", out.display());
    0
}
