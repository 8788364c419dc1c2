//! Rebuilds the server when a file of the web UI is added, changed or removed: the UI is
//! compiled in (`src/ui.rs`), and `include_bytes!` alone tracks only files that already exist.

fn main() {
    // A directory here makes cargo watch everything under it.
    println!("cargo:rerun-if-changed=ui");
}
