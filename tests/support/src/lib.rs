//! Helpers shared by taskpod's test suites (dev-dependency only):
//!
//! - [`kubernetes_validate`] / [`kubernetes_validate_files`]: every manifest taskpod produces is
//!   checked offline against the Kubernetes 1.37 JSON schemas, strictly (unknown fields are
//!   errors), with PyPI's `kubernetes-validate` (installed by `scripts/setup`).
//! - [`golden`]: compares an output with a file under version control; `TASKPOD_BLESS=1` rewrites
//!   the file instead, for review in the diff.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The Kubernetes version manifests are validated for.
pub const KUBERNETES_VERSION: &str = "1.37.0";

/// The repository's root directory.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A file of the repository, by its path from the root.
pub fn repo_file(rel: &str) -> PathBuf {
    repo_root().join(rel)
}

/// Validates `documents` (each a JSON or YAML manifest; YAML may hold several documents) with
/// `kubernetes-validate --strict` for [`KUBERNETES_VERSION`]; panics with the tool's output,
/// naming `label`, when one is refused.
pub fn kubernetes_validate<S: AsRef<str>>(label: &str, documents: &[S]) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let files: Vec<PathBuf> = documents
        .iter()
        .enumerate()
        .map(|(i, doc)| {
            let text = doc.as_ref();
            let ext = if text.trim_start().starts_with('{') {
                "json"
            } else {
                "yaml"
            };
            let file = dir.path().join(format!("{i}.{ext}"));
            std::fs::write(&file, text).expect("write a manifest for validation");
            file
        })
        .collect();
    run(label, &files);
}

/// Validates manifest files (JSON or multi-document YAML) as [`kubernetes_validate`] does.
pub fn kubernetes_validate_files<P: AsRef<Path>>(label: &str, files: &[P]) {
    let files: Vec<PathBuf> = files.iter().map(|f| f.as_ref().to_path_buf()).collect();
    run(label, &files);
}

fn run(label: &str, files: &[PathBuf]) {
    assert!(!files.is_empty(), "{label}: nothing to validate");
    let output = Command::new("kubernetes-validate")
        .args(["--strict", "--kubernetes-version", KUBERNETES_VERSION])
        .args(files)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "kubernetes-validate cannot run ({e}): run scripts/setup (pip install kubernetes-validate==1.37.0)"
            )
        });
    assert!(
        output.status.success(),
        "kubernetes-validate rejected {label}:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Compares `actual` with the golden file `path`; with `TASKPOD_BLESS` set, writes it instead.
/// On a difference, panics showing the first differing line of each and how to re-bless
/// (`bless_command`, e.g. `cargo test -p taskpod-adapter-samza --test adapt`).
pub fn golden(path: &Path, actual: &str, bless_command: &str) {
    if std::env::var_os("TASKPOD_BLESS").is_some() {
        std::fs::write(path, actual)
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
    }
    let expected = std::fs::read_to_string(path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; create it with TASKPOD_BLESS=1 {bless_command}",
            path.display()
        )
    });
    if expected == actual {
        return;
    }
    let line = expected
        .lines()
        .zip(actual.lines())
        .position(|(e, a)| e != a)
        .unwrap_or_else(|| expected.lines().count().min(actual.lines().count()));
    panic!(
        "output differs from {} at line {}:\n  expected: {}\n  actual:   {}\n({} vs {} lines; if the change is intended, re-bless with TASKPOD_BLESS=1 {bless_command} and review the diff)",
        path.display(),
        line + 1,
        expected.lines().nth(line).unwrap_or("<end of file>"),
        actual.lines().nth(line).unwrap_or("<end of output>"),
        expected.lines().count(),
        actual.lines().count(),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn golden_accepts_equal_output_and_names_the_first_differing_line() {
        if std::env::var_os("TASKPOD_BLESS").is_some() {
            return; // blessing rewrites instead of comparing: nothing to check here
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("expected.yaml");
        std::fs::write(&path, "a: 1\nb: 2\n").unwrap();
        golden(&path, "a: 1\nb: 2\n", "cargo test");
        let panic = std::panic::catch_unwind(|| golden(&path, "a: 1\nb: 3\n", "cargo test -p x"))
            .unwrap_err();
        let message = panic.downcast_ref::<String>().cloned().unwrap_or_default();
        assert!(message.contains("at line 2"), "{message}");
        assert!(message.contains("expected: b: 2"), "{message}");
        assert!(message.contains("actual:   b: 3"), "{message}");
        assert!(
            message.contains("TASKPOD_BLESS=1 cargo test -p x"),
            "{message}"
        );
    }

    #[test]
    fn kubernetes_validate_refuses_an_invalid_manifest() {
        let job = r#"{"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "ok"},
            "spec": {"template": {"spec": {"restartPolicy": "Never",
            "containers": [{"name": "main", "image": "busybox"}]}}}}"#;
        kubernetes_validate("a valid Job", &[job]);
        let bad = job.replace("\"restartPolicy\"", "\"restartPolicyy\"");
        let panic =
            std::panic::catch_unwind(|| kubernetes_validate("a bad Job", &[bad])).unwrap_err();
        let message = panic.downcast_ref::<String>().cloned().unwrap_or_default();
        assert!(message.contains("rejected a bad Job"), "{message}");
    }
}
