//! Structured logging: one asynchronous slog drain (human-readable or JSON) shared by
//! per-component loggers, each filtered at its own level.

use std::sync::Arc;

use slog::{Drain, Level, Logger, o};

use crate::config::{Config, LogFormat};

type SharedDrain = Arc<
    dyn Drain<Ok = (), Err = slog::Never>
        + Send
        + Sync
        + std::panic::RefUnwindSafe
        + std::panic::UnwindSafe,
>;

/// Hands out loggers for components (`server`, `raft`, `log_store`, ...), each filtered at the
/// level configured for it in `log.levels`, or `log.level` otherwise.
#[derive(Clone)]
pub struct Logging {
    drain: SharedDrain,
    default_level: Level,
    component_levels: Arc<Vec<(String, Level)>>,
    root: Logger,
    node_id: u64,
    guard: Arc<parking_lot::Mutex<Option<slog_async::AsyncGuard>>>,
}

impl Logging {
    /// Builds the drain described by the configuration, writing to standard error.
    pub fn new(config: &Config) -> Logging {
        let (drain, guard) = match config.log_format {
            LogFormat::Human => {
                let decorator = slog_term::PlainSyncDecorator::new(std::io::stderr());
                async_drain(slog_term::FullFormat::new(decorator).build().fuse())
            }
            LogFormat::Json => async_drain(
                slog_json::Json::new(std::io::stderr())
                    .add_default_keys()
                    .set_flush(true)
                    .build()
                    .fuse(),
            ),
        };
        let drain: SharedDrain = Arc::new(drain.fuse());
        let root = Logger::root(
            slog::LevelFilter::new(drain.clone(), config.log_level).fuse(),
            o!("node_id" => config.node_id),
        );
        Logging {
            drain,
            default_level: config.log_level,
            component_levels: Arc::new(config.component_levels.clone()),
            root,
            node_id: config.node_id,
            guard: Arc::new(parking_lot::Mutex::new(Some(guard))),
        }
    }

    /// Writes out every queued record; call once before the process exits.
    pub fn flush(&self) {
        drop(self.guard.lock().take());
    }

    /// The broker-wide logger at `log.level`.
    pub fn root(&self) -> &Logger {
        &self.root
    }

    /// A logger for one component, tagged `component=NAME` and filtered at its level.
    pub fn component(&self, name: &'static str) -> Logger {
        let level = self
            .component_levels
            .iter()
            .find(|(c, _)| c == name)
            .map(|(_, l)| *l)
            .unwrap_or(self.default_level);
        let filtered = slog::LevelFilter::new(self.drain.clone(), level).fuse();
        Logger::root(filtered, o!("node_id" => self.node_id, "component" => name))
    }
}

fn async_drain<D>(drain: D) -> (slog_async::Async, slog_async::AsyncGuard)
where
    D: Drain<Ok = (), Err = slog::Never> + Send + 'static,
{
    slog_async::Async::new(drain)
        .chan_size(8192)
        .overflow_strategy(slog_async::OverflowStrategy::DropAndReport)
        .thread_name("sluice-log".into())
        .build_with_guard()
}
