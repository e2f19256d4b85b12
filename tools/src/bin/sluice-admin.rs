//! `sluice-admin`: topics, configs, offsets, produce and consume over the Kafka protocol.

use clap::Parser;

fn main() {
    let cli = sluice_tools::admin::Cli::parse();
    std::process::exit(sluice_tools::admin::main(cli));
}
