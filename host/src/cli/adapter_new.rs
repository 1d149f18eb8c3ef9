//! `taskpod adapter new NAME --lang rust|python|js [--dir DIR]`: scaffolds an adapter project.
//!
//! The templates are embedded in the binary (`adapter_templates/`), together with this
//! taskpod's `wit/adapter.wit` and the Python and JavaScript SDKs, so a project is created
//! offline and is built against the contract version of the taskpod that created it. Every
//! project holds a starter adapter (one container running the configured image), a
//! `config.yaml` and a test case that passes, so `taskpod adapter test` works right away:
//!
//! - Rust: a crate depending on `taskpod-adapter-sdk` by path (the `adapters/sdk` of the
//!   checkout this taskpod was built from, or `--sdk DIR`), with this workspace's `Cargo.lock`
//!   and `rust-toolchain.toml` so it builds with the versions taskpod is tested with;
//!   `cargo build --target wasm32-wasip2 --release --target-dir target`.
//! - Python: `app.py`, the SDK module `taskpod_adapter.py` and `wit/`; built with componentize-py.
//! - JavaScript: `app.js`, the SDK module `taskpod-adapter.js`, `wit/` and a `package.json`
//!   pinning componentize-js; `npm install && npm run build`.

use std::io::Write;
use std::path::{Path, PathBuf};

use clap::{Args, ValueEnum};

use super::CliError;

/// The componentize-js version scaffolded JavaScript projects pin (the one CI builds with).
pub const COMPONENTIZE_JS_VERSION: &str = "0.23.0";
/// The componentize-py version the Python projects' instructions name (the one CI builds with).
pub const COMPONENTIZE_PY_VERSION: &str = "0.25.1";

/// The language of a new adapter project.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Lang {
    /// Rust with the taskpod adapter SDK (`cargo build --target wasm32-wasip2`).
    Rust,
    /// Python with componentize-py.
    Python,
    /// JavaScript with componentize-js.
    Js,
}

/// `taskpod adapter new`.
#[derive(Debug, Args)]
pub struct NewArgs {
    /// The adapter's name: a DNS-1123 label (lowercase letters, digits, `-`), e.g. `my-adapter`.
    pub name: String,
    /// The language.
    #[arg(long, value_enum)]
    pub lang: Lang,
    /// Where to create the project (default `./NAME`); must not exist or be empty.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// Rust only: the `adapters/sdk` directory of a taskpod checkout to depend on (default: the
    /// checkout this taskpod was built from).
    #[arg(long, value_name = "DIR")]
    pub sdk: Option<PathBuf>,
}

const WIT: &str = include_str!("../../../wit/adapter.wit");
const WORKSPACE_LOCK: &str = include_str!("../../../Cargo.lock");
const TOOLCHAIN: &str = include_str!("../../../rust-toolchain.toml");
const PYTHON_SDK: &str = include_str!("../../../adapters/sdk-python/taskpod_adapter.py");
const JS_SDK: &str = include_str!("../../../adapters/sdk-js/taskpod-adapter.js");
const CONFIG: &str = include_str!("adapter_templates/common/config.yaml");
const CASE_TASK: &str = include_str!("adapter_templates/common/cases/example.json");
const CASE_EXPECTED: &str = include_str!("adapter_templates/common/cases/example.contains.yaml");

/// The SDK directory of the checkout this binary was built from.
const BUILT_FROM_SDK: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../adapters/sdk");

/// `(path in the project, template text)` of each language's own files.
fn templates(lang: Lang) -> &'static [(&'static str, &'static str)] {
    match lang {
        Lang::Rust => &[
            (
                "Cargo.toml",
                include_str!("adapter_templates/rust/Cargo.toml"),
            ),
            (
                "src/lib.rs",
                include_str!("adapter_templates/rust/src/lib.rs"),
            ),
            (
                ".gitignore",
                include_str!("adapter_templates/rust/gitignore"),
            ),
        ],
        Lang::Python => &[
            ("app.py", include_str!("adapter_templates/python/app.py")),
            (
                "test_app.py",
                include_str!("adapter_templates/python/test_app.py"),
            ),
            (
                ".gitignore",
                include_str!("adapter_templates/python/gitignore"),
            ),
        ],
        Lang::Js => &[
            ("app.js", include_str!("adapter_templates/js/app.js")),
            (
                "package.json",
                include_str!("adapter_templates/js/package.json"),
            ),
            (".gitignore", include_str!("adapter_templates/js/gitignore")),
        ],
    }
}

fn usage(message: String) -> CliError {
    CliError::Usage(message)
}

fn write(dir: &Path, file: &str, text: &str) -> Result<(), CliError> {
    let path = dir.join(file);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|error| CliError::Write {
            what: parent.display().to_string(),
            error,
        })?;
    }
    std::fs::write(&path, text).map_err(|error| CliError::Write {
        what: path.display().to_string(),
        error,
    })
}

/// The `taskpod-adapter-sdk` dependency line of a Rust project.
fn sdk_dependency(sdk: Option<&Path>) -> Result<String, CliError> {
    let dir = match sdk {
        Some(dir) => {
            if !dir.join("Cargo.toml").is_file() {
                return Err(usage(format!(
                    "--sdk {}: no Cargo.toml there; give the adapters/sdk directory of a taskpod \
                     checkout",
                    dir.display()
                )));
            }
            Some(dir.to_path_buf())
        }
        None => Some(PathBuf::from(BUILT_FROM_SDK)).filter(|d| d.join("Cargo.toml").is_file()),
    };
    let Some(dir) = dir else {
        return Err(usage(format!(
            "the taskpod checkout this binary was built from ({BUILT_FROM_SDK}) is gone: give \
             --sdk DIR, the adapters/sdk directory of a taskpod checkout"
        )));
    };
    let dir = dir
        .canonicalize()
        .map_err(|e| usage(format!("{}: {e}", dir.display())))?;
    Ok(format!(
        "taskpod-adapter-sdk = {{ path = {:?} }}",
        dir.display().to_string()
    ))
}

/// Creates the project; prints what was created and the next commands.
pub fn new(args: &NewArgs, out: &mut dyn Write) -> Result<(), CliError> {
    if !crate::contract::is_dns1123_label(&args.name) {
        return Err(usage(format!(
            "adapter name {:?}: must be a DNS-1123 label (lowercase letters, digits and '-', \
             starting and ending with a letter or digit, at most 63), e.g. my-adapter",
            args.name
        )));
    }
    if args.sdk.is_some() && args.lang != Lang::Rust {
        return Err(usage("--sdk: only for --lang rust".to_owned()));
    }
    let dir = args
        .dir
        .clone()
        .unwrap_or_else(|| PathBuf::from(&args.name));
    if dir.exists()
        && std::fs::read_dir(&dir)
            .map(|mut entries| entries.next().is_some())
            .unwrap_or(true)
    {
        return Err(usage(format!(
            "--dir {}: already exists and is not empty; choose another directory",
            dir.display()
        )));
    }
    let crate_name = args.name.replace('-', "_");
    let sdk = match args.lang {
        Lang::Rust => sdk_dependency(args.sdk.as_deref())?,
        _ => String::new(),
    };
    let fill = |text: &str| {
        text.replace("{{name}}", &args.name)
            .replace("{{crate}}", &crate_name)
            .replace("{{sdk}}", &sdk)
            .replace("{{componentize_js}}", COMPONENTIZE_JS_VERSION)
    };
    for (file, text) in templates(args.lang) {
        write(&dir, file, &fill(text))?;
    }
    write(&dir, "config.yaml", &fill(CONFIG))?;
    write(&dir, "cases/example.json", CASE_TASK)?;
    write(&dir, "cases/example.contains.yaml", CASE_EXPECTED)?;
    let (build, component) = match args.lang {
        Lang::Rust => {
            write(&dir, "Cargo.lock", WORKSPACE_LOCK)?;
            write(&dir, "rust-toolchain.toml", TOOLCHAIN)?;
            (
                "cargo build --target wasm32-wasip2 --release --target-dir target".to_owned(),
                format!("target/wasm32-wasip2/release/{crate_name}.wasm"),
            )
        }
        Lang::Python => {
            write(&dir, "wit/adapter.wit", WIT)?;
            write(&dir, "taskpod_adapter.py", PYTHON_SDK)?;
            (
                format!(
                    "componentize-py -d wit -w pod-adapter componentize app -p . -o {crate_name}.wasm \
                     (pip install componentize-py=={COMPONENTIZE_PY_VERSION} first)"
                ),
                format!("{crate_name}.wasm"),
            )
        }
        Lang::Js => {
            write(&dir, "wit/adapter.wit", WIT)?;
            write(&dir, "taskpod-adapter.js", JS_SDK)?;
            (
                "npm install && npm run build".to_owned(),
                format!("{crate_name}.wasm"),
            )
        }
    };
    let text = format!(
        "created {} ({} adapter `{}`)\nnext:\n  cd {}\n  {build}\n  taskpod adapter test \
         {component} --config config.yaml --cases cases\n",
        dir.display(),
        match args.lang {
            Lang::Rust => "Rust",
            Lang::Python => "Python",
            Lang::Js => "JavaScript",
        },
        args.name,
        dir.display(),
    );
    out.write_all(text.as_bytes())
        .map_err(|error| CliError::Write {
            what: "standard output".to_owned(),
            error,
        })
}
