//! The build script's check that the toolchain has the guests' target, kept in its own file so
//! a test can run it against a toolchain without the target (host/tests/build_script.rs).

use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, bail};

/// The guest target triple.
pub const GUEST_TARGET: &str = "wasm32-wasip2";

/// Fails with what is missing and how to install it when the sysroot lacks the guest target.
pub fn check_guest_target(rustc: &str) -> anyhow::Result<()> {
    let output = Command::new(rustc)
        .args(["--print", "sysroot"])
        .output()
        .with_context(|| format!("running `{rustc} --print sysroot`"))?;
    if !output.status.success() {
        bail!(
            "`{rustc} --print sysroot` failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let sysroot = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
    let target_lib = sysroot.join("lib/rustlib").join(GUEST_TARGET);
    if !target_lib.is_dir() {
        bail!(
            "the Rust target {GUEST_TARGET} is not installed in the toolchain at {} \
             ({} does not exist); taskpod's built-in adapters are WebAssembly components compiled \
             during the build. Install it with `rustup target add {GUEST_TARGET}`, or run \
             `scripts/setup` (installs the toolchain pinned in rust-toolchain.toml with its targets).",
            sysroot.display(),
            target_lib.display()
        );
    }
    Ok(())
}
