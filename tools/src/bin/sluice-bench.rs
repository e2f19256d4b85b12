//! `sluice-bench`: produce, consume and end-to-end load against any Kafka-compatible broker.

use clap::Parser;

fn main() {
    let cli = sluice_tools::bench::Cli::parse();
    std::process::exit(sluice_tools::bench::main(cli));
}
