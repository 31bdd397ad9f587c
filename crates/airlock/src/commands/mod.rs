//! One module per command; each has an `Args` struct and a `run` function.

pub mod agent;
pub mod approve;
pub mod audit;
pub mod completions;
pub mod connect;
pub mod demo;
pub mod env;
pub mod guard;
pub mod jupyter;
pub mod key;
pub mod man;
pub mod policy;
pub mod policy_setup;
pub mod remote;
pub mod ssh_config;

use std::process::ExitCode;

use crate::cli::Command;

/// Write generated text to stdout. A reader that stops early (`| head`) is not an error, as
/// for the programs that die of SIGPIPE there.
pub fn write_stdout(bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(anyhow::anyhow!(
            "cannot write to standard output: {}",
            io_reason(&e)
        )),
        _ => Ok(()),
    }
}

/// Ask a yes/no question on the terminal (stdin and stderr), `no` unless answered `y` or
/// `yes`. `Ok(None)`: there is no terminal to ask on, so the caller refuses and names `--yes`.
pub fn confirm(question: &str) -> anyhow::Result<Option<bool>> {
    use std::io::{BufRead as _, Write as _};
    if !airlock_keys::passphrase::is_interactive() {
        return Ok(None);
    }
    eprint!("{question} [y/N] ");
    std::io::stderr().flush()?;
    let mut answer = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut answer)
        .map_err(|e| anyhow::anyhow!("cannot read the answer: {}", io_reason(&e)))?;
    Ok(Some(matches!(
        answer.trim().to_ascii_lowercase().as_str(),
        "y" | "yes"
    )))
}

/// An I/O error in the user's words: the system's message without Rust's `(os error N)`.
pub fn io_reason(error: &std::io::Error) -> String {
    plain(&error.to_string())
}

/// Text in the user's words: the standard library's `(os error N)` suffixes and `entity not
/// found` are Rust's, not the user's.
pub fn plain(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(at) = rest.find(" (os error ") {
        let (before, after) = rest.split_at(at);
        out.push_str(before);
        rest = after
            .find(')')
            .map_or("", |end| after.get(end + 1..).unwrap_or(""));
    }
    out.push_str(rest);
    out.replace("entity not found", "not found")
}

/// An error and its causes as one line, in the user's words, each cause said once (a cause
/// whose text the message already holds is left out).
pub fn error_text(error: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in error.chain() {
        let text = plain(&cause.to_string());
        if text.is_empty() || out.contains(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
}

/// Dispatch a parsed command.
pub fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Agent(args) => agent::run(args),
        Command::Guard(args) => guard::run(args),
        Command::Key(args) => key::run(args),
        Command::SshConfig(args) => ssh_config::run(args),
        Command::Env(args) => env::run(args),
        Command::Demo(args) => demo::run(args),
        Command::Policy(args) => policy::run(args),
        Command::Audit(args) => audit::run(args),
        Command::Approve(args) => approve::run(args),
        Command::Connect(args) => connect::run(args),
        Command::Remote(args) => remote::run(args),
        Command::Jupyter(args) => jupyter::run(args),
        Command::Completions(args) => completions::run(args),
        Command::Man(args) => man::run(args),
    }
}
