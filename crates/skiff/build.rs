//! Links the `skiff` binary as a position-dependent executable.
//!
//! Every container costs an exec of this binary (its `skiff shim`), and as a PIE it carried
//! ~65,000 relative relocations that the dynamic loader applied at each start, copying
//! ~1.1 MiB of relocated read-only data into every process: ~1.4 ms of CPU per container
//! start and ~1.1 MiB of private memory per shim. Linked at a fixed address, those are
//! resolved at link time. The cost is ASLR of the binary's own image (libraries, heap and
//! stacks are still randomised), the trade-off Go binaries such as k3s's make by default.
fn main() {
    println!("cargo:rustc-link-arg-bins=-no-pie");
}
