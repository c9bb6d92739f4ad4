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
