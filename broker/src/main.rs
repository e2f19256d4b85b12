//! The `sluice` binary: parses flags and configuration, sets up logging, runs the broker.

use std::process::ExitCode;

use clap::Parser;
use sluice_broker::cli::Cli;
use sluice_broker::logging::Logging;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = match cli.to_config(std::env::vars()) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("sluice: {e}");
            return ExitCode::from(2);
        }
    };
    if cli.print_config {
        print!("{}", config.render());
        return ExitCode::SUCCESS;
    }
    let logging = Logging::new(&config);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("sluice-worker")
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("sluice: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(sluice_broker::run(config, logging.clone()));
    let code = match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            slog::crit!(logging.root(), "broker stopped on an error"; "error" => format!("{e:#}"));
            ExitCode::FAILURE
        }
    };
    drop(runtime);
    logging.flush();
    code
}
