//! Test harness: start the real skiff binary on a temp data dir and drive it with real clients.
