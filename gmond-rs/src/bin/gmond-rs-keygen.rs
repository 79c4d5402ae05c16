//! `gmond-rs-keygen FILE`: adds a new random key to a gmond-rs key file (creating it with
//! mode 0600), for authenticated datagrams. A program of its own rather than a gmond-rs flag:
//! gmond-rs's command line stays gmond's, and making a secret is an administrator's one-off
//! act, run as the key file's owner, never part of the daemon's unit.
use clap::Parser;
use std::path::PathBuf;
use std::process::ExitCode;

/// Add a new random 32-byte key to a gmond-rs key file (created with mode 0600 if missing).
/// The key itself is never printed. Run as the user gmond-rs runs as: the daemon refuses a
/// key file owned by anyone else or readable by group or others.
///
/// Rotation: add the new key on every host (all verify both, the first key still signs);
/// then add a line "sign ID" naming it; when every host signs with it, remove the old key.
#[derive(Parser, Debug)]
#[command(name = "gmond-rs-keygen", version)]
struct Args {
    /// Id of the new key (default: one more than the highest in the file, 1 in a new file)
    #[arg(long = "id", value_name = "N")]
    id: Option<u32>,
    /// The key file
    #[arg(value_name = "FILE")]
    file: PathBuf,
}

fn main() -> ExitCode {
    let args = Args::parse();
    match gmond_rs::auth::add_key(&args.file, args.id) {
        Ok(id) => {
            println!(
                "{}: added key {id}; copy the file to every host (mode 0600, owned by the \
                 user gmond-rs runs as)",
                args.file.display()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("gmond-rs-keygen: {e}");
            ExitCode::from(1)
        }
    }
}
