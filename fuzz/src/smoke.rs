//! The runner of the fuzz smoke tests (`crates/*/tests/fuzz_smoke.rs`): feeds inputs to a
//! harness one at a time under `catch_unwind`, collects every panic with the input that caused
//! it, and fails with a report naming target, panic message and input. Also replays the saved
//! crash inputs under `fuzz/regressions/<target>/`.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::Once;
use std::time::{Duration, Instant};

thread_local! {
    static CAPTURING: Cell<bool> = const { Cell::new(false) };
    static LAST_PANIC: RefCell<Option<String>> = const { RefCell::new(None) };
}

static HOOK: Once = Once::new();

/// Installs (once) a panic hook that, on threads inside [`capture`], records the panic message
/// instead of printing it; other panics (the test's own assertions) go to the previous hook.
fn install_hook() {
    HOOK.call_once(|| {
        let previous = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            if CAPTURING.with(Cell::get) {
                LAST_PANIC.with(|p| *p.borrow_mut() = Some(info.to_string()));
            } else {
                previous(info);
            }
        }));
    });
}

/// Runs `f`, turning a panic into `Err(message with location)`.
pub fn capture<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    install_hook();
    CAPTURING.with(|c| c.set(true));
    let out = panic::catch_unwind(AssertUnwindSafe(f));
    CAPTURING.with(|c| c.set(false));
    out.map_err(|_| LAST_PANIC.with(|p| p.borrow_mut().take()).unwrap_or_else(|| "panic".into()))
}

/// The number of generated inputs per target: `SKIFF_FUZZ_SMOKE_ITERS`, else `default`.
pub fn iterations(default: usize) -> usize {
    std::env::var("SKIFF_FUZZ_SMOKE_ITERS").ok().and_then(|s| s.parse().ok()).unwrap_or(default)
}

/// The RNG seed: `SKIFF_FUZZ_SMOKE_SEED`, else a fixed one, so runs are reproducible.
pub fn seed(target: &str) -> u64 {
    let base = std::env::var("SKIFF_FUZZ_SMOKE_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(0x5eed_5eed);
    target.bytes().fold(base, |h, b| h.wrapping_mul(0x100_0000_01b3).wrapping_add(b as u64))
}

/// An input printed for a human: the string when it is UTF-8, hex otherwise (cut at 4 KiB).
pub fn show(input: &[u8]) -> String {
    let cut = &input[..input.len().min(4096)];
    let more = if cut.len() < input.len() { format!(" ... ({} bytes in all)", input.len()) } else { String::new() };
    match std::str::from_utf8(cut) {
        Ok(s) => format!("{s:?}{more}"),
        Err(_) => format!("hex {}{more}", cut.iter().map(|b| format!("{b:02x}")).collect::<String>()),
    }
}

/// Where a failing input is written so it can be copied to `fuzz/regressions/<target>/`.
fn save(target: &str, input: &[u8]) -> Option<PathBuf> {
    let h = input.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ *b as u64).wrapping_mul(0x100_0000_01b3));
    let dir = std::env::temp_dir().join("skiff-fuzz-smoke").join(target);
    std::fs::create_dir_all(&dir).ok()?;
    let path = dir.join(format!("crash-{h:016x}"));
    std::fs::write(&path, input).ok()?;
    Some(path)
}

/// The outcome of feeding a target: how many inputs ran, for how long, and the distinct
/// panics (by source location) with the message and smallest input of each.
pub struct Outcome {
    pub target: String,
    pub inputs: usize,
    pub elapsed: Duration,
    pub panics: BTreeMap<String, (String, Vec<u8>)>,
}

impl Outcome {
    /// A report of every distinct panic, or `None` when there were none.
    pub fn report(&self) -> Option<String> {
        if self.panics.is_empty() {
            return None;
        }
        let mut out = format!(
            "fuzz smoke: target `{}` PANICKED on {} distinct input(s) (of {} run). \
             The server must never panic on input: fix the code, and copy each input below \
             into fuzz/regressions/{}/ as a regression case.\n",
            self.target,
            self.panics.len(),
            self.inputs,
            self.target
        );
        for (msg, input) in self.panics.values() {
            out.push_str(&format!("\n--- panic: {msg}\n    input ({} bytes): {}\n", input.len(), show(input)));
            if let Some(p) = save(&self.target, input) {
                out.push_str(&format!("    saved to: {}\n", p.display()));
            }
        }
        Some(out)
    }
}

/// Feeds every input to `f` under `catch_unwind` and collects the panics.
pub fn feed(target: &str, f: fn(&[u8]), inputs: impl IntoIterator<Item = Vec<u8>>) -> Outcome {
    let start = Instant::now();
    let mut outcome = Outcome { target: target.into(), inputs: 0, elapsed: Duration::ZERO, panics: BTreeMap::new() };
    for input in inputs {
        outcome.inputs += 1;
        if let Err(msg) = capture(|| f(&input)) {
            // "panicked at file:line:col:" — one report per place, with the smallest input.
            let place = msg.lines().next().unwrap_or_default().to_string();
            let keep = outcome.panics.get(&place).is_none_or(|(_, old)| input.len() < old.len());
            if keep {
                outcome.panics.insert(place, (msg, input));
            }
        }
    }
    outcome.elapsed = start.elapsed();
    outcome
}

/// [`feed`], then fail the test with the report if anything panicked.
pub fn run(target: &str, f: fn(&[u8]), inputs: impl IntoIterator<Item = Vec<u8>>) {
    let outcome = feed(target, f, inputs);
    eprintln!("fuzz smoke: {target}: {} inputs in {:.2?}", outcome.inputs, outcome.elapsed);
    if let Some(report) = outcome.report() {
        panic!("{report}");
    }
}

/// How long one regression input may run before it counts as a hang (debug builds are slow;
/// a fixed input takes milliseconds).
pub const REGRESSION_DEADLINE: Duration = Duration::from_secs(5);

/// Runs `f(input)` on its own thread under [`capture`]: `Ok` when it returned in time,
/// `Err` with the panic message, or with a hang report after `deadline` (the thread is then
/// left behind; it ends with the test process).
pub fn run_with_deadline(f: fn(&[u8]), input: Vec<u8>, deadline: Duration) -> Result<(), String> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("fuzz-regression".into())
        .spawn(move || {
            let _ = tx.send(capture(|| f(&input)));
        })
        .map_err(|e| format!("spawning: {e}"))?;
    match rx.recv_timeout(deadline) {
        Ok(r) => r,
        Err(_) => Err(format!("HANG: did not finish within {deadline:?} (a denial of service)")),
    }
}

/// Replays every file under `root/<target>/` for the targets in `targets`, each under
/// [`REGRESSION_DEADLINE`]; directories named in `elsewhere` belong to another test and are
/// skipped, any other directory is an error.
pub fn regressions(root: &Path, targets: &[(&str, fn(&[u8]))], elsewhere: &[&str]) {
    let Ok(dirs) = std::fs::read_dir(root) else { return };
    let mut reports = Vec::new();
    let mut dirs: Vec<_> = dirs.filter_map(Result::ok).filter(|d| d.path().is_dir()).collect();
    dirs.sort_by_key(|d| d.file_name());
    for dir in dirs {
        let name = dir.file_name().to_string_lossy().into_owned();
        if elsewhere.contains(&name.as_str()) {
            continue;
        }
        let Some((_, f)) = targets.iter().find(|(t, _)| *t == name) else {
            reports.push(format!("fuzz/regressions/{name}/ names no fuzz target"));
            continue;
        };
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir.path())
            .map(|rd| rd.filter_map(Result::ok).map(|e| e.path()).filter(|p| p.is_file()).collect())
            .unwrap_or_default();
        files.sort();
        for file in files {
            let input = std::fs::read(&file).unwrap_or_else(|e| panic!("reading {}: {e}", file.display()));
            if let Err(msg) = run_with_deadline(*f, input.clone(), REGRESSION_DEADLINE) {
                reports.push(format!(
                    "regression fuzz/regressions/{name}/{} FAILED (the bug it records is back or not fixed yet):\n    {msg}\n    input ({} bytes): {}",
                    file.file_name().unwrap_or_default().to_string_lossy(),
                    input.len(),
                    show(&input)
                ));
            }
        }
    }
    if !reports.is_empty() {
        panic!("fuzz regressions failed:\n{}", reports.join("\n"));
    }
}
