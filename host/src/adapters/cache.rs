//! The disk cache of compiled components, so each component is compiled once per machine.
//!
//! A compiled component (`.cwasm`) is stored as `<sha256 of the component>-<engine hash>.cwasm`
//! in a private directory (created 0700; a directory others can write to is refused), with a
//! `.sha256` file beside it holding the digest of the `.cwasm` itself. The engine hash is the
//! sha256 of wasmtime's `precompile_compatibility_hash`, so a different wasmtime version or
//! engine configuration never reads another's files. Loading verifies the stored digest before
//! deserializing and treats any mismatch or error as a miss (the component is recompiled and
//! the entry rewritten).

use std::hash::{Hash, Hasher};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

/// Why the cache directory could not be used.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// The directory could not be created or inspected.
    #[error(
        "adapter cache directory {path}: {error} (set `cacheDir` in the config to a writable \
         directory)"
    )]
    Io {
        /// The directory or file.
        path: PathBuf,
        /// The I/O error.
        error: std::io::Error,
    },
    /// The directory is writable by other users, so its files cannot be trusted.
    #[error(
        "adapter cache directory {path} is accessible to other users (mode {mode:o}); compiled \
         code is only loaded from a private directory: run `chmod 700 {path}` or set `cacheDir`"
    )]
    NotPrivate {
        /// The directory.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
}

/// The disk cache (or its absence).
pub(crate) struct DiskCache {
    dir: Option<PathBuf>,
    engine_hash: String,
    hits: AtomicU64,
}

/// Feeds `Hash` output into sha256, so the engine's compatibility hash has a stable form.
struct Sha256Hasher(Sha256);

impl Hasher for Sha256Hasher {
    fn finish(&self) -> u64 {
        // Only `write` is used; the digest is read with `finalize`.
        0
    }

    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
}

impl DiskCache {
    /// A cache that never stores anything.
    pub(crate) fn disabled() -> DiskCache {
        DiskCache {
            dir: None,
            engine_hash: String::new(),
            hits: AtomicU64::new(0),
        }
    }

    /// Opens (creating, 0700) the cache directory: `dir` or the default.
    pub(crate) fn open(dir: Option<PathBuf>, engine: &Engine) -> Result<DiskCache, CacheError> {
        let dir = dir.unwrap_or_else(default_dir);
        create_private_dir(&dir)?;
        let mut hasher = Sha256Hasher(Sha256::new());
        engine.precompile_compatibility_hash().hash(&mut hasher);
        let engine_hash = hex::encode(&hasher.0.finalize()[..12]);
        Ok(DiskCache {
            dir: Some(dir),
            engine_hash,
            hits: AtomicU64::new(0),
        })
    }

    /// The directory, when the cache is on.
    pub(crate) fn dir(&self) -> Option<&Path> {
        self.dir.as_deref()
    }

    /// Components read from disk so far.
    pub(crate) fn hits(&self) -> u64 {
        self.hits.load(Ordering::Relaxed)
    }

    fn paths(&self, digest: &[u8; 32]) -> Option<(PathBuf, PathBuf)> {
        let dir = self.dir.as_ref()?;
        let stem = format!("{}-{}", hex::encode(digest), self.engine_hash);
        Some((
            dir.join(format!("{stem}.cwasm")),
            dir.join(format!("{stem}.sha256")),
        ))
    }

    /// The cached compilation of the component with sha256 `digest`, if present and intact.
    pub(crate) fn load(&self, engine: &Engine, digest: &[u8; 32]) -> Option<Component> {
        let (cwasm, sum) = self.paths(digest)?;
        let expected = std::fs::read_to_string(&sum).ok()?;
        let bytes = std::fs::read(&cwasm).ok()?;
        if hex::encode(Sha256::digest(&bytes)) != expected.trim() {
            tracing::warn!(file = %cwasm.display(), "cached compiled component does not match its digest; recompiling");
            return None;
        }
        match Self::deserialize_fresh(engine, &bytes) {
            Ok(component) => {
                self.hits.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(file = %cwasm.display(), "loaded compiled component from the cache");
                Some(component)
            }
            Err(e) => {
                tracing::warn!(file = %cwasm.display(), error = %format!("{e:#}"), "cached compiled component unusable; recompiling");
                None
            }
        }
    }

    /// Deserializes bytes produced by `Engine::precompile_component` of this engine (just now,
    /// or read from the cache and verified against their stored sha256).
    pub(crate) fn deserialize_fresh(engine: &Engine, bytes: &[u8]) -> wasmtime::Result<Component> {
        // SAFETY: `Component::deserialize` trusts its input to be wasmtime's own compilation
        // output. The bytes come either straight from `engine.precompile_component` in this
        // process, or from a file in our private (0700, owner-checked) cache directory whose
        // name is keyed by the component's sha256 and this engine's compatibility hash, and whose
        // content matched the sha256 we stored beside it when we wrote it. wasmtime additionally
        // checks the engine compatibility header before using them.
        #[allow(unsafe_code)]
        let component = unsafe { Component::deserialize(engine, bytes) }?;
        Ok(component)
    }

    /// Stores a compilation (atomically: temporary file then rename). A failure to write is
    /// logged and otherwise ignored: the cache is an optimisation.
    pub(crate) fn store(&self, digest: &[u8; 32], compiled: &[u8]) -> Result<(), CacheError> {
        let Some((cwasm, sum)) = self.paths(digest) else {
            return Ok(());
        };
        let write = |path: &Path, bytes: &[u8]| -> std::io::Result<()> {
            static UNIQUE: AtomicU64 = AtomicU64::new(0);
            let tmp = path.with_extension(format!(
                "tmp{}-{}",
                std::process::id(),
                UNIQUE.fetch_add(1, Ordering::Relaxed)
            ));
            let mut file = std::fs::File::create(&tmp)?;
            file.write_all(bytes)?;
            file.sync_all()?;
            std::fs::rename(&tmp, path)
        };
        let result = write(&cwasm, compiled)
            .and_then(|()| write(&sum, hex::encode(Sha256::digest(compiled)).as_bytes()));
        if let Err(e) = result {
            tracing::warn!(file = %cwasm.display(), error = %e, "cannot write the compiled component cache");
        }
        Ok(())
    }
}

/// `$XDG_CACHE_HOME/taskpod/components`, `~/.cache/taskpod/components`, else
/// `<temp dir>/taskpod-<user>/components`.
fn default_dir() -> PathBuf {
    if let Some(xdg) = std::env::var_os("XDG_CACHE_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(xdg).join("taskpod/components");
    }
    if let Some(home) = std::env::var_os("HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(home).join(".cache/taskpod/components");
    }
    let user = std::env::var("USER").unwrap_or_else(|_| "user".to_owned());
    std::env::temp_dir().join(format!("taskpod-{user}/components"))
}

/// Creates `dir` (and parents) with mode 0700 and refuses a directory others can access.
fn create_private_dir(dir: &Path) -> Result<(), CacheError> {
    let io = |error| CacheError::Io {
        path: dir.to_path_buf(),
        error,
    };
    #[cfg(unix)]
    {
        use std::os::unix::fs::{DirBuilderExt as _, PermissionsExt as _};
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(io)?;
        let mode = std::fs::metadata(dir).map_err(io)?.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(CacheError::NotPrivate {
                path: dir.to_path_buf(),
                mode,
            });
        }
    }
    #[cfg(not(unix))]
    std::fs::create_dir_all(dir).map_err(io)?;
    Ok(())
}
