//! The `taskpod` binary: parses the command line, sets up logging and runs the command through
//! the library ([`taskpod::cli::run`]). Errors print their whole chain and exit non-zero.

use clap::Parser as _;

fn main() -> std::process::ExitCode {
    let cli = taskpod::cli::Cli::parse();
    taskpod::cli::logging::init_stderr(&cli.log, cli.log_format);
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
