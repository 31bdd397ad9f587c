//! `airlock man`: manual pages generated from the clap definitions, so they say what
//! `--help` says.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::CommandFactory as _;

/// Arguments of `airlock man`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  airlock man | man -l -\n  airlock man --dir ~/.local/share/man/man1    (then: man airlock-key-new)"
)]
pub struct Args {
    /// Write airlock.1 and one page per subcommand (airlock-key-new.1, ...) into DIR
    /// (created if missing), instead of printing airlock.1 to stdout.
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
}

/// Print or write the pages.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let command = crate::cli::Cli::command();
    match args.dir {
        None => {
            let mut page = Vec::new();
            clap_mangen::Man::new(command).render(&mut page)?;
            super::write_stdout(&page)?;
        }
        Some(dir) => {
            std::fs::create_dir_all(&dir)
                .and_then(|()| clap_mangen::generate_to(command, &dir))
                .map_err(|e| {
                    anyhow::anyhow!(
                        "cannot write the manual pages into {}: {}",
                        dir.display(),
                        super::io_reason(&e)
                    )
                })?;
            eprintln!("airlock: wrote the manual pages into {}", dir.display());
        }
    }
    Ok(ExitCode::SUCCESS)
}
