//! The `taskpod` binary: parses the command line, sets up logging and runs the command through
//! the library ([`taskpod::cli::run`]). Errors print their whole chain and exit non-zero.

use clap::Parser as _;
use tracing_subscriber::EnvFilter;

fn main() -> std::process::ExitCode {
    let cli = taskpod::cli::Cli::parse();
    let filter = EnvFilter::try_new(&cli.log).unwrap_or_else(|e| {
        eprintln!("taskpod: ignoring invalid --log filter {:?}: {e}", cli.log);
        EnvFilter::new("warn")
    });
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let mut stdout = std::io::stdout().lock();
    match taskpod::cli::run(cli, &mut stdout) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            let err = anyhow::Error::from(err);
            eprintln!("error: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
