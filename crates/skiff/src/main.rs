//! skiff: Kubernetes in one binary. Thin `main`: parse the command line, build the
//! components a role needs, run until SIGTERM/SIGINT, then drain.

mod agent;
mod alloc;
mod cli;
mod health;
mod server;
mod token;
mod trim;

use clap::Parser;

/// mimalloc, except in `skiff shim` processes (see `alloc`).
#[global_allocator]
static GLOBAL: alloc::Dispatch = alloc::Dispatch;

fn main() -> std::process::ExitCode {
    // `skiff shim` forks containers: it must stay single-threaded, so it is dispatched before
    // any runtime or logging thread starts.
    let raw: Vec<String> = std::env::args().collect();
    if raw.get(1).map(String::as_str) == Some("shim") {
        let code = skiff_runtime::shim::main(raw[2..].to_vec());
        return std::process::ExitCode::from(code.clamp(0, 255) as u8);
    }
    let args = cli::Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_env("SKIFF_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(if args.verbose { "debug" } else { "info" }));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
    let runtime = match build_runtime(tokio::runtime::Builder::new_multi_thread()) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::from(1);
        }
    };
    match runtime.block_on(cli::run(args)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::from(1)
        }
    }
}

/// Builds a runtime with skiff's settings (the process's main one, and each control-plane
/// component's in `skiff server`). Blocking-pool threads that sat idle for 2 s end (tokio's
/// default is 10 s): after a burst of pod starts the node agent had ~70 of them, each
/// holding megabytes of allocator heap. Runtime threads hand back their allocator's free
/// pages when they go idle after a trim asked for it (crate::trim).
pub(crate) fn build_runtime(mut builder: tokio::runtime::Builder) -> std::io::Result<tokio::runtime::Runtime> {
    builder.enable_all().thread_keep_alive(std::time::Duration::from_secs(2)).on_thread_park(alloc::collect_if_asked).build()
}
