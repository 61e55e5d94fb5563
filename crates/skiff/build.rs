//! Link options of the `skiff` binary.
//!
//! Position-dependent: every container costs an exec of this binary (its `skiff shim`), and
//! as a PIE it carried ~65,000 relative relocations that the dynamic loader applied at each
//! start, copying ~1.1 MiB of relocated read-only data into every process: ~1.4 ms of CPU
//! per container start and ~1.1 MiB of private memory per shim. Linked at a fixed address,
//! those are resolved at link time. The cost is ASLR of the binary's own image (libraries,
//! heap and stacks are still randomised), the trade-off Go binaries such as k3s's make by
//! default.
//!
//! Code laid out by use: `text-order.txt` lists the functions an idle node agent and an
//! idle server run (recorded by `scripts/text-order/`), and the linker places them together
//! at the start of the code. The kernel maps 64 KiB of a binary around each page a process touches, so
//! with those functions scattered over ~50 MB of code an idle agent kept ~20 MiB of it
//! resident for ~4 MiB it runs. Names the current code no longer has are skipped (silently:
//! a stale list costs memory, never correctness).
fn main() {
    println!("cargo:rustc-link-arg-bins=-no-pie");
    let order = std::path::Path::new(&std::env::var("CARGO_MANIFEST_DIR").unwrap()).join("text-order.txt");
    println!("cargo:rerun-if-changed={}", order.display());
    // `--symbol-ordering-file` is an lld option: Rust's default linker for this target
    // (rust-lld since 1.90); skipped where a linker of the user's choice is configured.
    let lld = std::env::var("TARGET").as_deref() == Ok("x86_64-unknown-linux-gnu") && std::env::var_os("RUSTC_LINKER").is_none();
    if lld && order.exists() {
        println!("cargo:rustc-link-arg-bins=-Wl,--symbol-ordering-file={}", order.display());
        println!("cargo:rustc-link-arg-bins=-Wl,--no-warn-symbol-ordering");
    }
}
