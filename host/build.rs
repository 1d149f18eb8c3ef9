//! Builds the WebAssembly guests from source as part of the normal `cargo build`/`cargo test`.
//!
//! The built-in adapters (embedded in the `taskpod` binary), the example user adapter and the
//! hostile test guest are ordinary workspace crates compiled for `wasm32-wasip2`. This script
//! runs one nested `cargo build --release --target wasm32-wasip2` for them into
//! `<target dir>/guests`, with the variables cargo sets for build scripts removed from the child's
//! environment (they describe *this* build — host target, flags, wrappers — and would leak into the
//! guests' build), then writes `$OUT_DIR/guests.rs`: `POD_TEMPLATE` (the component's bytes, embedded)
//! and path constants for the guests that tests and benchmarks load from disk.

use std::env;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

// The target check, shared with its test (host/tests/build_script.rs).
#[path = "build/guest_target.rs"]
mod guest_target;
use guest_target::{GUEST_TARGET, check_guest_target};

/// (crate name, constant prefix, embedded?) of every guest this build produces.
const GUESTS: &[(&str, &str, bool)] = &[
    ("taskpod-adapter-pod-template", "POD_TEMPLATE", true),
    ("taskpod-adapter-overlord-single", "OVERLORD_SINGLE", true),
    ("taskpod-adapter-overlord-multi", "OVERLORD_MULTI", true),
    ("taskpod-adapter-teraslice", "TERASLICE", true),
    ("taskpod-adapter-samza", "SAMZA", true),
    ("taskpod-example-team-labels", "TEAM_LABELS", false),
    ("taskpod-test-hostile", "HOSTILE", false),
];

/// Variables cargo sets for build scripts (or users set for the host build) that must not reach
/// the nested guest build. Prefixes end with `_`.
const REMOVED_ENV: &[&str] = &[
    "RUSTFLAGS",
    "CARGO_ENCODED_RUSTFLAGS",
    "CARGO_BUILD_RUSTFLAGS",
    "RUSTC_WRAPPER",
    "RUSTC_WORKSPACE_WRAPPER",
    "CARGO_BUILD_RUSTC_WRAPPER",
    "CARGO_BUILD_RUSTC_WORKSPACE_WRAPPER",
    "CARGO_TARGET_DIR",
    "CARGO_BUILD_TARGET_DIR",
    "CARGO_BUILD_TARGET",
    "CARGO_MANIFEST_DIR",
    "CARGO_MANIFEST_PATH",
    "CARGO_MANIFEST_LINKS",
    "CARGO_PRIMARY_PACKAGE",
    "CARGO_CRATE_NAME",
    "CARGO_TARGET_TMPDIR",
    "CARGO_PKG_",
    "CARGO_CFG_",
    "CARGO_FEATURE_",
    "CARGO_LLVM_COV",
    "RUSTC_LINKER",
    "RUSTDOCFLAGS",
    "OUT_DIR",
    "TARGET",
    "HOST",
    "NUM_JOBS",
    "OPT_LEVEL",
    "DEBUG",
    "PROFILE",
    "LLVM_PROFILE_FILE",
];

fn main() -> anyhow::Result<()> {
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR")?);
    let workspace = manifest_dir
        .parent()
        .context("host/ has no parent directory")?
        .to_path_buf();
    let out_dir = PathBuf::from(env::var("OUT_DIR")?);

    for watched in [
        "wit",
        "adapters",
        "tests/guests",
        "Cargo.lock",
        "Cargo.toml",
    ] {
        println!(
            "cargo:rerun-if-changed={}",
            workspace.join(watched).display()
        );
    }
    println!("cargo:rerun-if-env-changed=CARGO_TARGET_DIR");

    let rustc = env::var("RUSTC").unwrap_or_else(|_| "rustc".to_owned());
    check_guest_target(&rustc)?;

    let target_dir = match env::var_os("CARGO_TARGET_DIR") {
        Some(dir) if Path::new(&dir).is_absolute() => PathBuf::from(dir),
        Some(dir) => workspace.join(dir),
        None => workspace.join("target"),
    };
    let guest_target_dir = target_dir.join("guests");

    let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let mut cmd = Command::new(&cargo);
    cmd.current_dir(&workspace)
        .arg("build")
        .arg("--release")
        .arg("--target")
        .arg(GUEST_TARGET)
        .arg("--manifest-path")
        .arg(workspace.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(&guest_target_dir);
    for (name, _, _) in GUESTS {
        cmd.arg("-p").arg(name);
    }
    // No DWARF in the guests (12 MB → 1 MB each, much faster to compile and cache; traps are
    // still named from the name section) and wasm SIMD, which wasmtime compiles to native vector
    // instructions. Fat LTO with one codegen unit was measured with `taskpod bench adapters` and
    // gave no gain, so the guests keep the workspace's release profile otherwise. An initial
    // linear memory of 4 MiB (1 MiB of it stack) instead of the linker's stack + data: a call
    // then never grows its memory, and growing is an `mprotect` on the host each time (and
    // another to take it back when the pooled slot is reused). Untouched pages cost nothing.
    cmd.env("CARGO_PROFILE_RELEASE_DEBUG", "false").env(
        "CARGO_TARGET_WASM32_WASIP2_RUSTFLAGS",
        "-Ctarget-feature=+simd128 -Clink-arg=--initial-memory=4194304",
    );
    for (key, _) in env::vars_os() {
        let Some(key_str) = key.to_str() else {
            continue;
        };
        let leaks = REMOVED_ENV.iter().any(|removed| {
            if removed.ends_with('_') {
                key_str.starts_with(removed)
            } else {
                key_str == *removed
            }
        });
        if leaks {
            cmd.env_remove(&key);
        }
    }
    let status = cmd
        .status()
        .with_context(|| format!("running `{cargo} build` for the {GUEST_TARGET} guests"))?;
    if !status.success() {
        bail!(
            "building the WebAssembly guests failed ({status}); the compiler output is above. \
             Reproduce with: cargo build --release --target {GUEST_TARGET} {} --target-dir {}",
            GUESTS
                .iter()
                .map(|(name, _, _)| format!("-p {name}"))
                .collect::<Vec<_>>()
                .join(" "),
            guest_target_dir.display()
        );
    }

    let release = guest_target_dir.join(GUEST_TARGET).join("release");
    let mut generated = String::from(
        "// Generated by host/build.rs: the WebAssembly guests built from this workspace.\n",
    );
    for (name, constant, embedded) in GUESTS {
        let path = release.join(format!("{}.wasm", name.replace('-', "_")));
        let bytes = std::fs::read(&path).with_context(|| {
            format!(
                "the guest build succeeded but {} is missing",
                path.display()
            )
        })?;
        if bytes.get(4..8) != Some(&[0x0d, 0x00, 0x01, 0x00][..]) {
            bail!(
                "{} is not a WebAssembly component (expected component header bytes 0d 00 01 00); \
                 is crate {name} built with `crate-type = [\"cdylib\", …]` for {GUEST_TARGET}?",
                path.display()
            );
        }
        let path_literal = format!("{:?}", path.display().to_string());
        if *embedded {
            writeln!(
                generated,
                "/// The `{name}` component, embedded in the binary.\n\
                 pub const {constant}: &[u8] = include_bytes!({path_literal});"
            )?;
        }
        writeln!(
            generated,
            "/// Where the build wrote the `{name}` component.\n\
             pub const {constant}_PATH: &str = {path_literal};"
        )?;
    }
    std::fs::write(out_dir.join("guests.rs"), generated)
        .with_context(|| format!("writing {}", out_dir.join("guests.rs").display()))?;
    Ok(())
}
