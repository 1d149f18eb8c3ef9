//! The build script's guest-target check: with a toolchain lacking `wasm32-wasip2` the build
//! stops with what is missing and the two ways to install it; with this toolchain it passes.

#[path = "../build/guest_target.rs"]
mod guest_target;

use std::os::unix::fs::PermissionsExt as _;

#[test]
fn a_toolchain_without_the_guest_target_fails_with_how_to_install_it() {
    let dir = tempfile::tempdir().unwrap();
    let sysroot = dir.path().join("toolchain");
    std::fs::create_dir_all(sysroot.join("lib/rustlib/x86_64-unknown-linux-gnu")).unwrap();
    // A `rustc` that reports that sysroot, as rustup's would for a toolchain without the target.
    let rustc = dir.path().join("rustc");
    std::fs::write(&rustc, format!("#!/bin/sh\necho '{}'\n", sysroot.display())).unwrap();
    std::fs::set_permissions(&rustc, std::fs::Permissions::from_mode(0o755)).unwrap();

    let error = guest_target::check_guest_target(rustc.to_str().unwrap())
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("the Rust target wasm32-wasip2 is not installed"),
        "{error}"
    );
    assert!(error.contains(&sysroot.display().to_string()), "{error}");
    assert!(error.contains("rustup target add wasm32-wasip2"), "{error}");
    assert!(error.contains("scripts/setup"), "{error}");
}

#[test]
fn a_rustc_that_cannot_run_is_named() {
    let error = guest_target::check_guest_target("/nonexistent/rustc")
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("/nonexistent/rustc --print sysroot"),
        "{error}"
    );
}

#[test]
fn this_toolchain_has_the_guest_target() {
    // `./test` runs scripts/setup first, which installs the target: the check passes here.
    guest_target::check_guest_target("rustc").unwrap();
}
