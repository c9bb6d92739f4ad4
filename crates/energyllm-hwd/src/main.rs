//! `energyllm-hwd --config /etc/energyllm/hwd.toml`: serve until SIGTERM or SIGINT, then reset
//! every device's clocks and remove the socket.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

use energyllm_hwd::config::DaemonConfig;
use energyllm_hwd::server::Server;

/// The energyllm clock daemon: the one process that changes GPU clocks.
#[derive(Parser)]
#[command(name = "energyllm-hwd", version)]
struct Args {
    /// The daemon's TOML config (socket, allowed peers, devices and their clock ranges).
    #[arg(long, default_value = "/etc/energyllm/hwd.toml")]
    config: PathBuf,
    /// Check the config and open the devices, then exit.
    #[arg(long)]
    check: bool,
}

fn run(args: &Args) -> Result<(), String> {
    energyllm_hwd::link();
    let config = DaemonConfig::load(&args.config).map_err(|e| e.to_string())?;
    let devices = config.device.len();
    let socket = config.socket.clone();
    let server = Server::bind(config).map_err(|e| e.to_string())?;
    if args.check {
        println!("{}: {devices} device(s) open; socket {} bound", args.config.display(), socket.display());
        return Ok(());
    }
    let stop = server.stop_handle();
    let mut signals =
        Signals::new([SIGTERM, SIGINT]).map_err(|e| format!("installing signal handlers: {e}"))?;
    std::thread::spawn(move || {
        if let Some(sig) = signals.forever().next() {
            eprintln!("energyllm-hwd: signal {sig}: resetting every device and stopping");
            stop.stop();
        }
    });
    eprintln!("energyllm-hwd: serving {devices} device(s) on {}", socket.display());
    server.run().map_err(|e| e.to_string())
}

fn main() -> ExitCode {
    match run(&Args::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("energyllm-hwd: {e}");
            ExitCode::from(2)
        }
    }
}

#[cfg(test)]
#[path = "../../../deploy/k8s/commands.rs"]
#[allow(dead_code)]
mod k8s_commands;

/// The Kubernetes DaemonSet (deploy/k8s/) runs this binary: its command line parses with these
/// flags, and the hwd.toml its ConfigMap carries loads.
#[cfg(test)]
mod manifests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::k8s_commands as commands;

    use clap::Parser as _;

    #[test]
    fn the_daemonset_command_line_and_config_parse() {
        let dir = commands::manifests_dir(env!("CARGO_MANIFEST_DIR"));
        let lines: Vec<_> = commands::command_lines(&dir)
            .into_iter()
            .filter(|c| c.argv.first().is_some_and(|p| p == "energyllm-hwd"))
            .collect();
        assert!(!lines.is_empty(), "no energyllm-hwd container in {}", dir.display());
        for c in &lines {
            super::Args::try_parse_from(&c.argv).unwrap_or_else(|e| {
                panic!("{}, container {}: `{}` does not parse:\n{e}", c.file, c.container, c.argv.join(" "))
            });
        }
        let configs: Vec<_> =
            commands::config_files(&dir).into_iter().filter(|f| f.key == "hwd.toml").collect();
        assert!(!configs.is_empty());
        for f in configs {
            energyllm_hwd::config::DaemonConfig::parse(&f.text)
                .unwrap_or_else(|e| panic!("{}: ConfigMap {} key {}: {e}", f.file, f.config_map, f.key));
        }
    }
}
