//! `airlock key`: per-project SSH keys (new, list, show, load, rm, import, passwd, expire).
//!
//! Flags and environment are resolved here into plain values; the work is in `airlock-keys`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use airlock_keys::passphrase::is_interactive;
use airlock_keys::{
    Agent, ExpiryStatus, ImportKey, KeyError, KeyFamily, KeyName, KeySpec, KeyStore, NewKey,
    OffsetDateTime, Passphrase, StoredKey, format_duration, format_time, parse_duration,
};
use anyhow::Context;
use ssh_key::PublicKey;
use tracing::{debug, warn};

use crate::paths;

/// Arguments of `airlock key`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: KeyCommand,
}

#[derive(Debug, clap::Subcommand)]
enum KeyCommand {
    /// Make a new key in ~/.ssh/airlock (or $AIRLOCK_KEYS_DIR).
    New(NewArgs),
    /// List keys: type, fingerprint, dates and whether the agent holds them.
    List(ListArgs),
    /// Print the public key line (to paste as a deploy key) and its SHA256 fingerprint.
    Show(ShowArgs),
    /// Decrypt a key and add it to the running agent, with a lifetime capped at its expiry.
    Load(LoadArgs),
    /// Unload a key from the agent and delete its files.
    Rm(RmArgs),
    /// Copy an existing OpenSSH private key (e.g. made by ssh-keygen) into the keys directory.
    Import(ImportArgs),
    /// Change a key's passphrase (the current one is checked first), as `ssh-keygen -p`.
    Passwd(PasswdArgs),
    /// Change when a key expires: DURATION from now (later or sooner than before), or never.
    Expire(ExpireArgs),
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum TypeArg {
    Ed25519,
    Ecdsa,
    Rsa,
}

impl From<TypeArg> for KeyFamily {
    fn from(value: TypeArg) -> Self {
        match value {
            TypeArg::Ed25519 => Self::Ed25519,
            TypeArg::Ecdsa => Self::Ecdsa,
            TypeArg::Rsa => Self::Rsa,
        }
    }
}

#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  airlock key new ai-project --expires 90d\n  airlock key new ci-deploy --no-passphrase --expires 30d\n  airlock key new old-server -t rsa -b 4096"
)]
struct NewArgs {
    /// Key name: letters, digits, '.', '_', '-'.
    name: String,
    /// Key type.
    #[arg(long = "type", short = 't', value_enum, default_value = "ed25519")]
    key_type: TypeArg,
    /// Size: the curve for ecdsa (256, 384, 521), the modulus for rsa (default 3072, min 2048).
    #[arg(long, short = 'b')]
    bits: Option<u32>,
    /// Comment stored in the key (default NAME@airlock).
    #[arg(long, short = 'C')]
    comment: Option<String>,
    /// Expire after this long, e.g. 90d, 12w, 1y; `key load` refuses the key afterwards.
    #[arg(long, value_name = "DURATION")]
    expires: Option<String>,
    /// Read the passphrase from the first line of FILE instead of asking.
    #[arg(long, value_name = "FILE", conflicts_with = "no_passphrase")]
    passphrase_file: Option<PathBuf>,
    /// Write the private key unencrypted.
    #[arg(long)]
    no_passphrase: bool,
    /// Replace an existing key of the same name.
    #[arg(long)]
    force: bool,
}

#[derive(Debug, clap::Args)]
struct ListArgs {
    /// One JSON array on stdout.
    #[arg(long)]
    json: bool,
    /// Agent socket for the "loaded" column (default $SSH_AUTH_SOCK, else the airlock agent's).
    #[arg(long, value_name = "SOCK")]
    socket: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
struct ShowArgs {
    /// Key name.
    name: String,
}

#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  airlock key load ai-project\n  airlock key load ai-project -t 8h -c    (gone after 8 hours; confirm each use)\n  airlock key load ai-project --socket /tmp/agent.sock"
)]
struct LoadArgs {
    /// Key name.
    name: String,
    /// Drop the key from the agent after this long (capped at the key's expiry), e.g. 8h.
    #[arg(long, short = 't', value_name = "DURATION")]
    lifetime: Option<String>,
    /// Ask for confirmation in the agent before each use of the key.
    #[arg(long, short = 'c')]
    confirm: bool,
    /// Read the passphrase from the first line of FILE instead of asking.
    #[arg(long, value_name = "FILE")]
    passphrase_file: Option<PathBuf>,
    /// Agent socket (default $SSH_AUTH_SOCK, else the airlock agent's).
    #[arg(long, value_name = "SOCK")]
    socket: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
struct RmArgs {
    /// Key name.
    name: String,
    /// Do not ask for confirmation (required without a terminal).
    #[arg(long, short = 'y')]
    yes: bool,
    /// Agent socket to unload the key from (default $SSH_AUTH_SOCK, else the airlock agent's).
    #[arg(long, value_name = "SOCK")]
    socket: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
struct ImportArgs {
    /// The OpenSSH private key file (not the .pub).
    path: PathBuf,
    /// Name in the keys directory (default: the file's name).
    #[arg(long)]
    name: Option<String>,
    /// Expire after this long, e.g. 90d.
    #[arg(long, value_name = "DURATION")]
    expires: Option<String>,
    /// Read the passphrase (used only to verify the key) from the first line of FILE.
    #[arg(long, value_name = "FILE")]
    passphrase_file: Option<PathBuf>,
    /// Replace an existing key of the same name.
    #[arg(long)]
    force: bool,
}

#[derive(Debug, clap::Args)]
#[command(
    after_help = "Passphrases are asked on the terminal (the new one twice; empty both times stores the key unencrypted) or read from the first line of a file, never taken from the command line.\n\nExamples:\n  airlock key passwd ai-project\n  airlock key passwd ai-project --passphrase-file old.txt --new-passphrase-file new.txt"
)]
struct PasswdArgs {
    /// Key name.
    name: String,
    /// Read the current passphrase from the first line of FILE instead of asking.
    #[arg(long, value_name = "FILE")]
    passphrase_file: Option<PathBuf>,
    /// Read the new passphrase from the first line of FILE instead of asking.
    #[arg(long, value_name = "FILE", conflicts_with = "no_passphrase")]
    new_passphrase_file: Option<PathBuf>,
    /// Store the key unencrypted from now on.
    #[arg(long)]
    no_passphrase: bool,
}

#[derive(Debug, clap::Args)]
#[command(
    group(clap::ArgGroup::new("when").required(true).args(["expires_in", "never"])),
    after_help = "A key already in an agent keeps the lifetime it was loaded with; `airlock key load` again gives it the new one.\n\nExamples:\n  airlock key expire ai-project --in 30d    (30 days from now)\n  airlock key expire ai-project --never"
)]
struct ExpireArgs {
    /// Key name.
    name: String,
    /// Expire this long from now, e.g. 12h, 30d, 12w, 1y.
    #[arg(long = "in", value_name = "DURATION")]
    expires_in: Option<String>,
    /// Never expire.
    #[arg(long)]
    never: bool,
    /// Agent socket, to say whether it holds the key (default $SSH_AUTH_SOCK, else the airlock
    /// agent's).
    #[arg(long, value_name = "SOCK")]
    socket: Option<PathBuf>,
}

/// Run `airlock key`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let store = KeyStore::new(paths::keys_dir());
    match args.command {
        KeyCommand::New(args) => new(&store, &args),
        KeyCommand::List(args) => list(&store, &args),
        KeyCommand::Show(args) => show(&store, &args),
        KeyCommand::Load(args) => load(&store, &args),
        KeyCommand::Rm(args) => rm(&store, &args),
        KeyCommand::Import(args) => import(&store, &args),
        KeyCommand::Passwd(args) => passwd(&store, &args),
        KeyCommand::Expire(args) => expire(&store, &args),
    }
}

/// `--socket`, else the agent the user's shell names ([`paths::user_agent_socket`]).
fn agent_socket(flag: Option<&Path>) -> PathBuf {
    flag.map_or_else(paths::user_agent_socket, Path::to_owned)
}

/// How to get the passphrase of an existing encrypted key: the file if given, else the
/// terminal, else an error that names `--passphrase-file`.
fn existing_passphrase(file: Option<&Path>) -> impl FnOnce(&Path) -> Result<Passphrase, KeyError> {
    move |key_path| {
        if let Some(file) = file {
            return Passphrase::from_file(file);
        }
        if !is_interactive() {
            return Err(KeyError::PassphraseRequired {
                path: key_path.to_owned(),
            });
        }
        Passphrase::prompt(&format!("Enter passphrase for {}: ", key_path.display()))?.ok_or_else(
            || KeyError::WrongPassphrase {
                path: key_path.to_owned(),
            },
        )
    }
}

fn warn_expiry(key: &StoredKey, now: OffsetDateTime) {
    match key.metadata.expiry_status(now) {
        ExpiryStatus::Expired { at } => warn!(
            "key {} expired on {}; `airlock key rm {}` and make a new one",
            key.name,
            format_time(at),
            key.name
        ),
        ExpiryStatus::ExpiresSoon { remaining } => warn!(
            "key {} expires in {} ({}); make its successor with `airlock key new`",
            key.name,
            format_duration(remaining),
            key.metadata.expires.map(format_time).unwrap_or_default()
        ),
        ExpiryStatus::Never | ExpiryStatus::Valid { .. } => {}
    }
}

fn print_public(key: &StoredKey) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{}", key.public_line())?;
    writeln!(out, "{}", key.metadata.fingerprint)?;
    Ok(())
}

fn new(store: &KeyStore, args: &NewArgs) -> anyhow::Result<ExitCode> {
    let name = KeyName::new(&args.name)?;
    let spec = KeySpec::new(args.key_type.into(), args.bits)?;
    let expires_in = args.expires.as_deref().map(parse_duration).transpose()?;
    // Refuse before asking for a passphrase that would then be thrown away.
    if !args.force && store.exists(&name) {
        return Err(KeyError::AlreadyExists {
            name: name.to_string(),
            dir: store.dir().to_owned(),
        }
        .into());
    }
    let passphrase = if args.no_passphrase {
        None
    } else if let Some(file) = &args.passphrase_file {
        Some(Passphrase::from_file(file)?)
    } else if is_interactive() {
        let typed = Passphrase::prompt_new(name.as_str())?;
        if typed.is_none() {
            eprintln!("No passphrase given: the private key is stored unencrypted.");
        }
        typed
    } else {
        return Err(KeyError::NoTerminal.into());
    };
    let key = store.create(
        &NewKey {
            name: &name,
            spec,
            comment: args.comment.clone(),
            expires_in,
            passphrase: passphrase.as_ref(),
            force: args.force,
        },
        airlock_keys::now(),
    )?;
    drop(passphrase);
    let expiry = key.metadata.expires.map_or_else(
        || "never expires".to_owned(),
        |at| format!("expires {}", format_time(at)),
    );
    eprintln!(
        "Created {} key {} ({}, {}): {}",
        key.metadata.key_type,
        key.name,
        if key.metadata.encrypted {
            "passphrase-protected"
        } else {
            "no passphrase"
        },
        expiry,
        key.paths.private.display()
    );
    print_public(&key)?;
    Ok(ExitCode::SUCCESS)
}

fn show(store: &KeyStore, args: &ShowArgs) -> anyhow::Result<ExitCode> {
    let key = store.get(&KeyName::new(&args.name)?)?;
    warn_expiry(&key, airlock_keys::now());
    print_public(&key)?;
    Ok(ExitCode::SUCCESS)
}

/// The public keys the agent holds, or `None` when no agent answers (the column shows "?").
fn agent_keys(socket: &Path) -> Option<Vec<PublicKey>> {
    match Agent::connect(socket).and_then(|mut agent| agent.identities()) {
        Ok(keys) => Some(keys.into_iter().map(|(key, _)| key).collect()),
        Err(e) => {
            debug!("not checking which keys are loaded: {e}");
            None
        }
    }
}

fn list(store: &KeyStore, args: &ListArgs) -> anyhow::Result<ExitCode> {
    let now = airlock_keys::now();
    let mut keys = Vec::new();
    let mut broken = false;
    for entry in store.list()? {
        match entry {
            Ok(key) => keys.push(key),
            Err(e) => {
                warn!("{e}");
                broken = true;
            }
        }
    }
    let loaded_keys = agent_keys(&agent_socket(args.socket.as_deref()));
    let loaded = |key: &StoredKey| {
        loaded_keys.as_ref().map(|held| {
            held.iter()
                .any(|h| h.key_data() == key.public_key.key_data())
        })
    };
    for key in &keys {
        warn_expiry(key, now);
    }

    let mut out = std::io::stdout().lock();
    if args.json {
        let rows: Vec<_> = keys
            .iter()
            .map(|key| {
                let m = &key.metadata;
                serde_json::json!({
                    "name": key.name.as_str(),
                    "type": m.key_type,
                    "fingerprint": m.fingerprint,
                    "comment": m.comment,
                    "created": format_time(m.created),
                    "expires": m.expires.map(format_time),
                    "expired": matches!(m.expiry_status(now), ExpiryStatus::Expired { .. }),
                    "encrypted": m.encrypted,
                    "loaded": loaded(key),
                    "path": key.paths.private,
                })
            })
            .collect();
        serde_json::to_writer_pretty(&mut out, &rows)?;
        writeln!(out)?;
    } else if keys.is_empty() {
        eprintln!(
            "No keys in {}; make one with `airlock key new NAME`.",
            store.dir().display()
        );
    } else {
        let header = [
            "NAME",
            "TYPE",
            "FINGERPRINT",
            "CREATED",
            "EXPIRES",
            "LOADED",
        ]
        .map(String::from);
        let mut rows = vec![header];
        for key in &keys {
            let m = &key.metadata;
            let expires = match m.expiry_status(now) {
                ExpiryStatus::Never => "never".to_owned(),
                ExpiryStatus::Expired { at } => format!("EXPIRED {}", at.date()),
                ExpiryStatus::Valid { .. } | ExpiryStatus::ExpiresSoon { .. } => m
                    .expires
                    .map(|at| at.date().to_string())
                    .unwrap_or_default(),
            };
            let loaded = match loaded(key) {
                Some(true) => "yes",
                Some(false) => "no",
                None => "?",
            };
            rows.push([
                key.name.to_string(),
                m.key_type.clone(),
                m.fingerprint.clone(),
                m.created.date().to_string(),
                expires,
                loaded.to_owned(),
            ]);
        }
        write_table(&mut out, &rows)?;
    }
    Ok(if broken {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

fn write_table<const N: usize>(out: &mut impl Write, rows: &[[String; N]]) -> anyhow::Result<()> {
    use std::fmt::Write as _;

    let mut widths = [0usize; N];
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    for row in rows {
        let mut line = String::new();
        for (i, (cell, width)) in row.iter().zip(widths).enumerate() {
            if i + 1 == N {
                line.push_str(cell);
            } else {
                let _ = write!(line, "{cell:<width$}  ");
            }
        }
        writeln!(out, "{}", line.trim_end())?;
    }
    Ok(())
}

fn load(store: &KeyStore, args: &LoadArgs) -> anyhow::Result<ExitCode> {
    let name = KeyName::new(&args.name)?;
    let key = store.get(&name)?;
    let now = airlock_keys::now();
    let until_expiry = match key.metadata.expiry_status(now) {
        ExpiryStatus::Expired { at } => {
            return Err(KeyError::Expired {
                name: name.to_string(),
                expired: at,
            }
            .into());
        }
        ExpiryStatus::Valid { remaining } | ExpiryStatus::ExpiresSoon { remaining } => {
            Some(remaining)
        }
        ExpiryStatus::Never => None,
    };
    warn_expiry(&key, now);
    let asked = args.lifetime.as_deref().map(parse_duration).transpose()?;
    let lifetime = match (asked, until_expiry) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    let lifetime_secs = lifetime.map(|d| u32::try_from(d.as_secs()).unwrap_or(u32::MAX).max(1));

    let socket = agent_socket(args.socket.as_deref());
    // Connect first: no point asking for a passphrase when there is no agent to give it to.
    let mut agent = Agent::connect(&socket)?;
    let private = store.unlock(&key, existing_passphrase(args.passphrase_file.as_deref()))?;
    agent.add(
        &private,
        key.public_key.comment(),
        lifetime_secs,
        args.confirm,
    )?;
    drop(private);
    let lifetime_note = match (lifetime, until_expiry) {
        (None, _) => "no lifetime".to_owned(),
        (Some(l), Some(e)) if l >= e => {
            format!("lifetime {} (until the key expires)", format_duration(l))
        }
        (Some(l), _) => format!("lifetime {}", format_duration(l)),
    };
    eprintln!(
        "Loaded {} ({}) into the agent at {}: {}{}.",
        key.name,
        key.metadata.fingerprint,
        socket.display(),
        lifetime_note,
        if args.confirm {
            ", confirm each use"
        } else {
            ""
        }
    );
    Ok(ExitCode::SUCCESS)
}

fn rm(store: &KeyStore, args: &RmArgs) -> anyhow::Result<ExitCode> {
    let name = KeyName::new(&args.name)?;
    let key = store.get(&name)?;
    if !args.yes {
        let question = format!(
            "Delete key {name} ({}) and its files in {}?",
            key.metadata.fingerprint,
            store.dir().display()
        );
        match super::confirm(&question)? {
            None => anyhow::bail!(
                "refusing to delete key {name} without confirmation: there is no terminal to ask on; pass --yes"
            ),
            Some(false) => {
                eprintln!("Nothing deleted.");
                return Ok(ExitCode::from(1));
            }
            Some(true) => {}
        }
    }
    let socket = agent_socket(args.socket.as_deref());
    match Agent::connect(&socket) {
        Ok(mut agent) => {
            if agent.holds(&key.public_key)? {
                agent.remove(&key.public_key).with_context(|| {
                    format!("key {name} is loaded and could not be unloaded; nothing deleted")
                })?;
                eprintln!("Removed {name} from the agent at {}.", socket.display());
            }
        }
        Err(e) => debug!("not unloading: {e}"),
    }
    store.remove(&name)?;
    eprintln!("Deleted key {name}.");
    Ok(ExitCode::SUCCESS)
}

fn import(store: &KeyStore, args: &ImportArgs) -> anyhow::Result<ExitCode> {
    let name_text = match &args.name {
        Some(name) => name.clone(),
        None if args.path.extension().is_some_and(|e| e == "pub") => anyhow::bail!(
            "{} is a public key; give the private key file (without .pub)",
            args.path.display()
        ),
        None => args
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .with_context(|| format!("{} has no file name; pass --name", args.path.display()))?,
    };
    let name = KeyName::new(&name_text)?;
    let expires_in = args.expires.as_deref().map(parse_duration).transpose()?;
    let key = store.import(
        &ImportKey {
            source: &args.path,
            name: &name,
            expires_in,
            force: args.force,
        },
        existing_passphrase(args.passphrase_file.as_deref()),
        airlock_keys::now(),
    )?;
    eprintln!(
        "Imported {} as {} key {}: {}",
        args.path.display(),
        key.metadata.key_type,
        key.name,
        key.paths.private.display()
    );
    print_public(&key)?;
    Ok(ExitCode::SUCCESS)
}

fn passwd(store: &KeyStore, args: &PasswdArgs) -> anyhow::Result<ExitCode> {
    let name = KeyName::new(&args.name)?;
    let key = store.get(&name)?;
    // Refuse before asking for the current passphrase when the new one cannot be asked for.
    if !args.no_passphrase && args.new_passphrase_file.is_none() && !is_interactive() {
        anyhow::bail!(
            "no terminal to ask for the new passphrase: pass --new-passphrase-file FILE, or \
             --no-passphrase to store the key unencrypted"
        );
    }
    let private = store.unlock(&key, existing_passphrase(args.passphrase_file.as_deref()))?;
    let passphrase = if args.no_passphrase {
        None
    } else if let Some(file) = &args.new_passphrase_file {
        Some(Passphrase::from_file(file)?)
    } else {
        Passphrase::prompt_twice(&format!(
            "Enter new passphrase for key {name} (empty for no passphrase): "
        ))?
    };
    let updated = store.set_passphrase(&key, &private, passphrase.as_ref())?;
    drop(private);
    drop(passphrase);
    if updated.metadata.encrypted {
        eprintln!(
            "Key {name} has a new passphrase: {}",
            updated.paths.private.display()
        );
    } else {
        eprintln!(
            "Key {name} is stored unencrypted: {}",
            updated.paths.private.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn expire(store: &KeyStore, args: &ExpireArgs) -> anyhow::Result<ExitCode> {
    let name = KeyName::new(&args.name)?;
    let now = airlock_keys::now();
    let expires = match &args.expires_in {
        Some(text) => airlock_keys::store::expires_at(now, Some(parse_duration(text)?))?,
        None => None,
    };
    let key = store.set_expiry(&name, expires)?;
    match expires {
        Some(at) => eprintln!(
            "Key {name} expires {} (in {}).",
            format_time(at),
            format_duration((at - now).unsigned_abs())
        ),
        None => eprintln!("Key {name} never expires."),
    }
    let socket = agent_socket(args.socket.as_deref());
    let held = Agent::connect(&socket).and_then(|mut agent| agent.holds(&key.public_key));
    if matches!(held, Ok(true)) {
        eprintln!(
            "The agent at {} holds {name} with the lifetime it was loaded with; \
             `airlock key load {name}` again gives it the new one.",
            socket.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}
