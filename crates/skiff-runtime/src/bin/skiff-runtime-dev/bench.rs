//! `bench`: latency of running a `/bin/true` container to completion (create, start, wait for
//! exit, remove), sequentially or `-c N` at a time.
//!
//! `--compare` measures skiff, runc (`--runc BIN`, default `runc` when on PATH) and, with
//! `--containerd BIN --ctr BIN --archive FILE` (the docker-archive the skiff image came
//! from), containerd's `ctr run --rm`, each sequentially and `-c N` (default 10) at a time, in
//! `--rounds R` rounds that rotate the order of the runtimes so that changes in machine load
//! fall on all of them alike. `-n N` containers per runtime and mode.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use skiff_runtime::runtime::{ContainerConfig, LoopbackOnly, SeccompProfile};
use skiff_runtime::{LocalRuntime, Runtime, RuntimeConfig};

use crate::compare::{Containerd, Runc, Runner, Sample, Skiff};
use crate::{flag, load_average, shim_program};

/// Samples of one runtime in one mode, with the wall time the batches took.
#[derive(Default)]
struct Series {
    samples: Vec<Sample>,
    wall: Duration,
    errors: usize,
}

static SEQ: AtomicUsize = AtomicUsize::new(0);

/// Runs `count` containers on `conc` workers that each take the next one when done, so
/// that `conc` are always in flight.
fn batch(r: &dyn Runner, count: usize, conc: usize, into: &mut Series) {
    let next = AtomicUsize::new(0);
    let out = Mutex::new(Vec::new());
    let errors = AtomicUsize::new(0);
    let t = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..conc.min(count) {
            s.spawn(|| {
                while next.fetch_add(1, Ordering::Relaxed) < count {
                    let id = format!(
                        "rtbench-{}-{}-{}",
                        r.name(),
                        std::process::id(),
                        SEQ.fetch_add(1, Ordering::Relaxed)
                    );
                    match r.run(&id) {
                        Ok(sample) => out.lock().unwrap().push(sample),
                        Err(e) => {
                            if errors.fetch_add(1, Ordering::Relaxed) < 3 {
                                eprintln!("error: {}: {e}", r.name());
                            }
                        }
                    }
                }
            });
        }
    });
    into.wall += t.elapsed();
    into.errors += errors.into_inner();
    into.samples.extend(out.into_inner().unwrap());
}

fn pct(sorted: &[Duration], q: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * q).round() as usize]
}

fn ms(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1e3)
}

fn print_header() {
    println!(
        "{:<6} {:<6} {:>4} {:>4} {:>8} {:>8} {:>8} {:>8} {:>8} {:>10} {:>8}",
        "rt", "mode", "n", "err", "create", "p50", "p90", "p99", "max", "p50+rm", "ctr/s"
    );
}

/// One line: latency to exit (ms) and, for skiff, to removed; containers per second of wall.
fn print_series(name: &str, mode: &str, s: &Series) {
    if s.samples.is_empty() {
        println!("{name:<6} {mode:<6}    0 {:>4}  (no samples)", s.errors);
        return;
    }
    let sorted = |f: &dyn Fn(&Sample) -> Duration| {
        let mut v: Vec<Duration> = s.samples.iter().map(f).collect();
        v.sort();
        v
    };
    let exit = sorted(&|x| x.exit);
    let done = sorted(&|x| x.done);
    let create = s
        .samples
        .iter()
        .filter_map(|x| x.create)
        .collect::<Vec<_>>();
    let create = if create.is_empty() {
        "-".to_string()
    } else {
        let mut c = create;
        c.sort();
        ms(pct(&c, 0.5))
    };
    println!(
        "{name:<6} {mode:<6} {:>4} {:>4} {:>8} {:>8} {:>8} {:>8} {:>8} {:>10} {:>8.1}",
        s.samples.len(),
        s.errors,
        create,
        ms(pct(&exit, 0.5)),
        ms(pct(&exit, 0.9)),
        ms(pct(&exit, 0.99)),
        ms(exit[exit.len() - 1]),
        ms(pct(&done, 0.5)),
        s.samples.len() as f64 / s.wall.as_secs_f64()
    );
}

pub fn main(args: &[String]) -> i32 {
    let root =
        PathBuf::from(flag(args, "--root").unwrap_or_else(|| "/var/tmp/skiff-rt-bench".into()));
    let image = flag(args, "--image").unwrap_or_else(|| "bench:1".into());
    let n: usize = flag(args, "-n").and_then(|s| s.parse().ok()).unwrap_or(20);
    let compare = args.iter().any(|a| a == "--compare");
    let conc: usize = flag(args, "-c")
        .and_then(|s| s.parse().ok())
        .unwrap_or(if compare { 10 } else { 1 })
        .max(1);
    let rounds: usize = flag(args, "--rounds")
        .and_then(|s| s.parse().ok())
        .unwrap_or(if compare { 5 } else { 1 })
        .clamp(1, n.max(1));
    let rt = match LocalRuntime::new(
        RuntimeConfig {
            root: root.clone(),
            state: root.clone(),
            shim: shim_program(args),
            cgroup_parent: "/skiff-bench".into(),
        },
        Arc::new(LoopbackOnly),
    ) {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: open runtime: {e}");
            return 1;
        }
    };
    // `--seccomp runtime-default` measures the cost of the filter (compile in the shim,
    // install before exec).
    let seccomp = match flag(args, "--seccomp").as_deref() {
        Some("runtime-default") => SeccompProfile::RuntimeDefault,
        _ => SeccompProfile::Unconfined,
    };
    let skiff = Skiff {
        rt: &rt,
        image: image.clone(),
        seccomp,
    };
    let mut runners: Vec<Box<dyn Runner + '_>> = vec![Box::new(skiff)];
    if compare {
        match compare_runners(args, &root, &image) {
            Ok(more) => runners.extend(more),
            Err(e) => {
                eprintln!("error: {e}");
                return 1;
            }
        }
    }
    let modes: Vec<(String, usize)> = if compare {
        vec![("seq".into(), 1), (format!("c{conc}"), conc)]
    } else {
        vec![(
            if conc == 1 {
                "seq".into()
            } else {
                format!("c{conc}")
            },
            conc,
        )]
    };
    let load = load_average();
    let mut series: Vec<Vec<Series>> = runners
        .iter()
        .map(|_| modes.iter().map(|_| Series::default()).collect())
        .collect();
    for round in 0..rounds {
        // This round's share of n, and the runtimes in rotated order.
        let count = n / rounds + usize::from(round < n % rounds);
        for k in 0..runners.len() {
            let i = (k + round) % runners.len();
            for (m, (_, c)) in modes.iter().enumerate() {
                batch(runners[i].as_ref(), count, *c, &mut series[i][m]);
            }
        }
    }
    println!(
        "n={n} per runtime and mode, {rounds} rounds, load average {load} before, {} after; \
         milliseconds (create: skiff create returned; p50..max: process exited; p50+rm: \
         container removed)",
        load_average()
    );
    print_header();
    for (i, r) in runners.iter().enumerate() {
        for (m, (mode, _)) in modes.iter().enumerate() {
            print_series(r.name(), mode, &series[i][m]);
        }
    }
    if !compare {
        print_shim_rss(&rt, &image);
    }
    let errors: usize = series.iter().flatten().map(|s| s.errors).sum();
    i32::from(errors > 0)
}

/// runc (unless `--runc none`) and, given `--containerd`, `--ctr` and `--archive`, containerd.
fn compare_runners(
    args: &[String],
    root: &Path,
    image: &str,
) -> Result<Vec<Box<dyn Runner>>, String> {
    let mut out: Vec<Box<dyn Runner>> = Vec::new();
    let runc = flag(args, "--runc").unwrap_or_else(|| "runc".into());
    if runc != "none" {
        out.push(Box::new(Runc::new(Path::new(&runc), root, image)?));
    }
    match (
        flag(args, "--containerd"),
        flag(args, "--ctr"),
        flag(args, "--archive"),
    ) {
        (Some(containerd), Some(ctr), Some(archive)) => {
            let mut c = Containerd::start(Path::new(&containerd), Path::new(&ctr))?;
            let took = c.import(Path::new(&archive))?;
            println!(
                "containerd: imported {archive} as {} in {}",
                c.image,
                ms(took)
            );
            out.push(Box::new(c));
        }
        _ => println!(
            "note: no containerd comparison (needs --containerd BIN --ctr BIN --archive FILE)"
        ),
    }
    Ok(out)
}

/// Memory of one supervised, running container's shim.
fn print_shim_rss(rt: &LocalRuntime, image: &str) {
    let c = ContainerConfig {
        id: "bench-rss".into(),
        image: image.to_string(),
        command: vec![
            "/bin/sh".into(),
            "-c".into(),
            "while true; do sleep 1; done".into(),
        ],
        ..Default::default()
    };
    let pid = match rt
        .create_container(&c)
        .and_then(|st| rt.start_container("bench-rss").map(|()| st))
    {
        Ok(st) => st.shim_pid.unwrap_or(0),
        Err(e) => {
            eprintln!("error: bench-rss: {e}");
            let _ = rt.remove_container("bench-rss");
            return;
        }
    };
    let rss = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .map(|l| l["VmRSS:".len()..].trim().to_string())
        })
        .unwrap_or_default();
    println!("shim VmRSS={rss} (pid {pid})");
    let _ = rt.remove_container("bench-rss");
}
