//! Command-line flags of the `sluice` binary and how they layer over the config file and the
//! environment: defaults < config file < `SLUICE_*` variables < flags.

use std::path::PathBuf;

use clap::Parser;

use crate::config::{Config, ConfigError, KEYS};

/// Sluice: a Kafka-protocol-compatible broker. With no arguments it runs a single-node cluster
/// with data in ./sluice-data, the Kafka listener on 0.0.0.0:9092 (advertised as
/// localhost:9092) and Prometheus metrics on 0.0.0.0:9464.
#[derive(Debug, Parser)]
#[command(name = "sluice", version, after_help = keys_help())]
pub struct Cli {
    /// TOML config file with Kafka-style keys (`log.dirs = "/data"`).
    #[arg(long, short = 'c', value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Data directory (`log.dirs`).
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Kafka listener address (`listeners`); port 0 picks a free port.
    #[arg(long, value_name = "HOST:PORT")]
    pub listen: Option<String>,
    /// Address advertised to clients (`advertised.listeners`).
    #[arg(long, value_name = "HOST:PORT")]
    pub advertise: Option<String>,
    /// Prometheus metrics listener (`metrics.listen`); an empty value disables it.
    #[arg(long, value_name = "HOST:PORT")]
    pub metrics_listen: Option<String>,
    /// This broker's id (`node.id`).
    #[arg(long, value_name = "ID")]
    pub node_id: Option<u64>,
    /// Raft transport listener (`raft.listen`).
    #[arg(long, value_name = "HOST:PORT")]
    pub raft_listen: Option<String>,
    /// Raft voters (`controller.quorum.voters`), e.g. 1@10.0.0.1:9095,2@10.0.0.2:9095.
    #[arg(long, value_name = "ID@HOST:PORT,...")]
    pub voters: Option<String>,
    /// Log format (`log.format`): human or json.
    #[arg(long, value_name = "FORMAT")]
    pub log_format: Option<String>,
    /// Default log level (`log.level`).
    #[arg(long, value_name = "LEVEL")]
    pub log_level: Option<String>,
    /// Set any configuration key, as in Kafka's `--override`; may be repeated.
    #[arg(long = "override", short = 'o', value_name = "KEY=VALUE")]
    pub overrides: Vec<String>,
    /// Print the effective configuration and exit.
    #[arg(long)]
    pub print_config: bool,
}

fn keys_help() -> String {
    let mut text = String::from("Configuration keys (file, SLUICE_* environment, --override):\n");
    for key in KEYS {
        let default = if key.default.is_empty() {
            "(none)"
        } else {
            key.default
        };
        text.push_str(&format!(
            "  {:<28} {}  [default: {}]\n",
            key.name, key.doc, default
        ));
    }
    text
}

impl Cli {
    /// Builds the effective configuration from defaults, the file, the environment and flags.
    pub fn to_config(
        &self,
        env: impl Iterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let mut config = Config::default();
        if let Some(path) = &self.config {
            let text = std::fs::read_to_string(path).map_err(|e| ConfigError::File {
                path: path.clone(),
                reason: e.to_string(),
            })?;
            config.apply_toml(&text, &path.display().to_string())?;
        }
        config.apply_env(env)?;
        let flags: [(&str, Option<String>); 9] = [
            (
                "log.dirs",
                self.data_dir.as_ref().map(|p| p.display().to_string()),
            ),
            ("listeners", self.listen.clone()),
            ("advertised.listeners", self.advertise.clone()),
            ("metrics.listen", self.metrics_listen.clone()),
            ("node.id", self.node_id.map(|n| n.to_string())),
            ("raft.listen", self.raft_listen.clone()),
            ("controller.quorum.voters", self.voters.clone()),
            ("log.format", self.log_format.clone()),
            ("log.level", self.log_level.clone()),
        ];
        for (key, value) in flags {
            if let Some(value) = value {
                config.set(key, &value, "command line")?;
            }
        }
        for item in &self.overrides {
            let (key, value) = item
                .split_once('=')
                .ok_or_else(|| ConfigError::InvalidValue {
                    key: item.clone(),
                    value: String::new(),
                    source_name: "--override".into(),
                    reason: "expected KEY=VALUE".into(),
                })?;
            config.set(key.trim(), value, "--override")?;
        }
        config.validate()?;
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_win_over_environment_and_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("sluice.toml");
        std::fs::write(&file, "num.partitions = 3\nlog.dirs = \"/file\"\n").unwrap();
        let cli = Cli::parse_from([
            "sluice",
            "--config",
            file.to_str().unwrap(),
            "--data-dir",
            "/flag",
            "-o",
            "message.max.bytes=2000",
        ]);
        let env = [("SLUICE_NUM_PARTITIONS".to_string(), "5".to_string())];
        let config = cli.to_config(env.into_iter()).unwrap();
        assert_eq!(config.data_dir, PathBuf::from("/flag"));
        assert_eq!(config.num_partitions, 5);
        assert_eq!(config.message_max_bytes, 2000);
    }

    #[test]
    fn bad_override_names_the_key() {
        let cli = Cli::parse_from(["sluice", "-o", "pchannels=0"]);
        let err = cli.to_config(std::iter::empty()).unwrap_err().to_string();
        assert!(err.contains("pchannels"), "{err}");
    }
}
