//! Logs go to stderr through `tracing`; `-v` raises the level, `RUST_LOG` overrides it.

use tracing_subscriber::EnvFilter;

/// Installs the stderr subscriber. `verbosity` counts `-v` flags; `colour` is the printer's decision for stderr.
pub fn init(verbosity: u8, colour: bool) {
    let default_level = match verbosity {
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level));
    // A second init (tests calling twice) is harmless: keep the first subscriber.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(colour)
        .with_target(false)
        .try_init();
}
