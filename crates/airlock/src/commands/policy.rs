//! `airlock policy`: check, explain and init the forwarding policy.
//!
//! Flags and environment are resolved here into plain values; the work is in `airlock-policy`.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use airlock_agent::policy::{Decision, Operation};
use airlock_policy::compiled::Hop;
use airlock_policy::starter::{forwarding_hosts, starter_policy};
use airlock_policy::{CompiledPolicy, HostNaming, PolicySources, unrestricted_message};
use anyhow::{Context, bail};

use crate::paths;

/// `SSH_AUTH_SOCK`, OpenSSH's agent socket variable: `init` lists the keys loaded there.
const ENV_SSH_AUTH_SOCK: &str = "SSH_AUTH_SOCK";

/// Arguments of `airlock policy`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The policy file (default: $XDG_CONFIG_HOME/airlock/policy.toml).
    #[arg(long, global = true, value_name = "FILE", env = paths::ENV_POLICY)]
    policy: Option<PathBuf>,
    #[command(subcommand)]
    command: PolicyCommand,
}

#[derive(Debug, clap::Subcommand)]
enum PolicyCommand {
    /// Validate the policy and show which hosts and host keys each pattern matches.
    Check(CheckArgs),
    /// Say whether a key may be used through a chain of hosts, and why. Exit status: 0
    /// allowed (or allowed after confirmation), 1 denied, 2 unknown key or host.
    Explain(ExplainArgs),
    /// Write a starter policy from your ssh config and keys, for you to review.
    Init(InitArgs),
}

/// The fields of `policy check --json`, said in its help.
const CHECK_JSON_HELP: &str = "With --json, one object on stdout:
  policy        the policy file
  unrestricted  true when there is no policy file (every key usable everywhere)
  defaults      {forward: \"deny\"|\"allow\", confirm}, null when unrestricted
  keys          one object per [[key]] rule, in file order:
                key, line, fingerprints, forward_through, use_for, sign (lists as
                written, null when absent), confirm, lifetime_seconds (null: none),
                patterns: [{field, pattern, hosts: [{name, host_keys, cas}]}]
  warnings      what to fix, as the text output says it";

#[derive(Debug, clap::Args)]
#[command(after_help = CHECK_JSON_HELP)]
struct CheckArgs {
    /// The policy file to check (default: --policy, or the usual place).
    file: Option<PathBuf>,
    /// Print one JSON object (fields below) instead of the text.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  airlock policy explain -k ai-project --to github.com\n  airlock policy explain -k ai-project --via gpu --to github.com\n  airlock policy explain -k ai-project --via gpu --sshsig git"
)]
struct ExplainArgs {
    /// The key: an airlock key name, an agent key comment, or SHA256:... fingerprint.
    #[arg(long, short = 'k', value_name = "KEY")]
    key: String,
    /// A host the agent is forwarded through, first hop first (repeat).
    #[arg(long, value_name = "HOST")]
    via: Vec<String>,
    /// The destination that receives the login signature (omit for a signature made on the
    /// last --via host, e.g. with --sshsig).
    #[arg(long, value_name = "HOST")]
    to: Option<String>,
    /// The remote user of the login.
    #[arg(long, value_name = "USER", default_value = "git")]
    user: String,
    /// Explain an SSHSIG signature in this namespace (e.g. git) instead of a login.
    #[arg(long, value_name = "NAMESPACE", conflicts_with = "list")]
    sshsig: Option<String>,
    /// Explain whether the key is listed to the client instead of a signature.
    #[arg(long)]
    list: bool,
}

#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  airlock policy init && airlock policy check\n  airlock policy init -o /tmp/policy.toml    (a draft to compare with yours)"
)]
struct InitArgs {
    /// Where to write (default: --policy, or the usual place).
    #[arg(long, short = 'o', value_name = "FILE")]
    output: Option<PathBuf>,
    /// Replace an existing file.
    #[arg(long)]
    force: bool,
}

/// Plain settings: where things are.
struct Settings {
    policy: PathBuf,
    home: PathBuf,
    keys_dir: PathBuf,
}

impl Settings {
    fn sources(&self) -> PolicySources {
        PolicySources::for_user(&self.home, self.policy.clone(), self.keys_dir.clone())
    }
}

/// Run `airlock policy`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let settings = Settings {
        policy: args.policy.clone().unwrap_or_else(paths::policy_file),
        home: paths::home(),
        keys_dir: paths::keys_dir(),
    };
    match args.command {
        PolicyCommand::Check(a) => check(&settings, a),
        PolicyCommand::Explain(a) => explain(&settings, &a),
        PolicyCommand::Init(a) => init(&settings, &a),
    }
}

fn check(settings: &Settings, args: CheckArgs) -> anyhow::Result<ExitCode> {
    let explicit = args.file.is_some();
    let mut sources = settings.sources();
    if let Some(f) = args.file {
        sources.policy_file = f;
    }
    if explicit && !sources.policy_file.exists() {
        bail!("{}: no such file", sources.policy_file.display());
    }
    let policy = CompiledPolicy::load(&sources)?;
    if args.json {
        let mut text = serde_json::to_string_pretty(&check_json(&policy))?;
        text.push('\n');
        print(&text)?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut out = String::new();
    if policy.is_unrestricted() {
        let _ = writeln!(out, "{}.", unrestricted_message(policy.path()));
        let _ = writeln!(
            out,
            "Any key in the agent can be used by anyone who can reach a forwarded agent socket, for any host.\n\
             `airlock policy init` writes a starter policy from your ssh config and keys for you to review."
        );
        print(&out)?;
        return Ok(ExitCode::SUCCESS);
    }
    let Some(file) = policy.file() else {
        return Ok(ExitCode::SUCCESS);
    };
    let forward = match file.defaults.forward {
        airlock_policy::ForwardDefault::Deny => "deny",
        airlock_policy::ForwardDefault::Allow => "allow",
    };
    let _ = writeln!(out, "policy {}: valid", policy.path().display());
    let _ = writeln!(
        out,
        "defaults: keys without a rule are {} through forwarded agents; confirm = {:?}",
        if forward == "deny" {
            "not usable"
        } else {
            "usable (OpenSSH behaviour)"
        },
        file.defaults.confirm.as_str()
    );
    for rule in policy.rules() {
        let r = &rule.rule;
        let fps = if rule.fingerprints.is_empty() {
            "matched by comment only".to_owned()
        } else {
            rule.fingerprints.join(", ")
        };
        let _ = writeln!(out, "\nkey {} (line {}): {fps}", rule.label(), r.line);
        if r.forward_through.is_none() {
            let _ = writeln!(
                out,
                "  forward-through: (none: not usable through forwarded agents)"
            );
        }
        if r.use_for.is_none() {
            let _ = writeln!(out, "  use-for: (any host)");
        }
        for p in policy.pattern_reports(rule) {
            let verb = if p.pattern.starts_with('!') {
                "excludes"
            } else {
                "matches"
            };
            if p.hosts.is_empty() {
                let _ = writeln!(out, "  {} {}: no known host key", p.field, p.pattern);
                continue;
            }
            let _ = writeln!(out, "  {} {} {verb}:", p.field, p.pattern);
            for (name, keys) in &p.hosts {
                let mut what: Vec<String> = keys.keys.keys().cloned().collect();
                what.extend(
                    keys.cas
                        .keys()
                        .map(|ca| format!("certificates from CA {ca}")),
                );
                let _ = writeln!(out, "    {name}  {}", what.join(", "));
            }
        }
        let confirm = r.confirm.unwrap_or(file.defaults.confirm).as_str();
        let sign = r.sign.as_ref().map_or_else(
            || "ssh-auth, any namespace locally".to_owned(),
            |s| s.join(", "),
        );
        let lifetime = r
            .lifetime
            .map_or_else(|| "none".to_owned(), |d| format!("{}s", d.as_secs()));
        let _ = writeln!(
            out,
            "  sign: {sign}; confirm: {confirm}; lifetime: {lifetime}"
        );
    }
    if !policy.warnings().is_empty() {
        out.push('\n');
        for w in policy.warnings() {
            let _ = writeln!(out, "warning: {w}");
        }
    }
    print(&out)?;
    Ok(ExitCode::SUCCESS)
}

/// What `check` says, as JSON ([`CHECK_JSON_HELP`] names the fields).
fn check_json(policy: &CompiledPolicy) -> serde_json::Value {
    use serde_json::json;
    let Some(file) = policy.file() else {
        return json!({
            "policy": policy.path(),
            "unrestricted": true,
            "defaults": null,
            "keys": [],
            "warnings": policy.warnings(),
        });
    };
    let keys: Vec<serde_json::Value> = policy
        .rules()
        .iter()
        .map(|rule| {
            let r = &rule.rule;
            let patterns: Vec<serde_json::Value> = policy
                .pattern_reports(rule)
                .into_iter()
                .map(|p| {
                    let hosts: Vec<serde_json::Value> = p
                        .hosts
                        .iter()
                        .map(|(name, keys)| {
                            json!({
                                "name": name,
                                "host_keys": keys.keys.keys().collect::<Vec<_>>(),
                                "cas": keys.cas.keys().collect::<Vec<_>>(),
                            })
                        })
                        .collect();
                    json!({"field": p.field, "pattern": p.pattern, "hosts": hosts})
                })
                .collect();
            json!({
                "key": rule.label(),
                "line": r.line,
                "fingerprints": rule.fingerprints,
                "forward_through": r.forward_through,
                "use_for": r.use_for,
                "sign": r.sign,
                "confirm": r.confirm.unwrap_or(file.defaults.confirm).as_str(),
                "lifetime_seconds": r.lifetime.map(|d| d.as_secs()),
                "patterns": patterns,
            })
        })
        .collect();
    json!({
        "policy": policy.path(),
        "unrestricted": false,
        "defaults": {
            "forward": match file.defaults.forward {
                airlock_policy::ForwardDefault::Deny => "deny",
                airlock_policy::ForwardDefault::Allow => "allow",
            },
            "confirm": file.defaults.confirm.as_str(),
        },
        "keys": keys,
        "warnings": policy.warnings(),
    })
}

fn print(text: &str) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(text.as_bytes())?;
    stdout.flush()?;
    Ok(())
}

/// The fingerprint and comment the agent would see for `--key`.
fn key_identity(settings: &Settings, key: &str) -> (String, String) {
    if key.starts_with("SHA256:") {
        return (key.to_owned(), String::new());
    }
    let pub_path = settings.keys_dir.join(format!("{key}.pub"));
    let fp = fs_err::read_to_string(&pub_path)
        .ok()
        .and_then(|t| ssh_key::PublicKey::from_openssh(t.trim()).ok())
        .map(|k| k.fingerprint(ssh_key::HashAlg::Sha256).to_string())
        .unwrap_or_default();
    (fp, key.to_owned())
}

fn hop_text(h: &Hop) -> String {
    let names = if h.names.is_empty() {
        "(no name)".to_owned()
    } else {
        h.names.join(", ")
    };
    format!(
        "{names} [{}]{}",
        h.fingerprint,
        if h.forwarded { " forwarded" } else { "" }
    )
}

fn explain(settings: &Settings, args: &ExplainArgs) -> anyhow::Result<ExitCode> {
    let policy = CompiledPolicy::load(&settings.sources())?;
    let (fingerprint, comment) = key_identity(settings, &args.key);
    let known = !fingerprint.is_empty() || policy.rule_for(&fingerprint, &comment).is_some();
    if !known {
        eprintln!(
            "airlock: error: unknown key {}: no {} and no rule in {} names it (give an airlock \
             key name, the comment a rule names, or a SHA256: fingerprint)",
            airlock_protocol::text::printable(&args.key, 200),
            settings
                .keys_dir
                .join(format!("{}.pub", args.key))
                .display(),
            policy.path().display()
        );
        return Ok(ExitCode::from(2));
    }
    let mut hops = Vec::new();
    let named = args
        .via
        .iter()
        .map(|v| (v, true))
        .chain(args.to.iter().map(|t| (t, false)));
    for (name, forwarded) in named {
        if policy.is_unrestricted() {
            hops.push(Hop {
                names: vec![name.clone()],
                fingerprint: "?".to_owned(),
                forwarded,
                revoked: false,
            });
            continue;
        }
        let Some(hop) = policy.hop_for_name(name, forwarded) else {
            let looked = policy.known_hosts_name(name);
            let as_name = if looked == name.to_lowercase() {
                String::new()
            } else {
                format!(" (looked up as {looked}, from your ssh config)")
            };
            let name = airlock_protocol::text::printable(name, 200);
            eprintln!(
                "airlock: error: host {name} has no host key in known_hosts{as_name}; connect to it once \
                 with `ssh {name}` to record its key, or check the name (read: ~/.ssh/known_hosts, \
                 /etc/ssh/ssh_known_hosts and [defaults] known-hosts)"
            );
            return Ok(ExitCode::from(2));
        };
        hops.push(hop);
    }
    let operation = match (&args.sshsig, args.list) {
        (Some(ns), _) => Operation::SignSshSig { namespace: ns },
        (None, true) => Operation::List,
        (None, false) => Operation::SignUserAuth { user: &args.user },
    };
    let decision = policy.decide_hops(&fingerprint, &comment, operation, &hops, false);
    let mut out = String::new();
    let rule = policy.rule_for(&fingerprint, &comment);
    let key_line = match rule {
        Some(r) => format!(
            "{} (rule at {}:{})",
            args.key,
            policy.path().display(),
            r.rule.line
        ),
        None if policy.is_unrestricted() => format!("{} (no policy file)", args.key),
        None => format!("{} (no rule: [defaults] apply)", args.key),
    };
    let _ = writeln!(out, "key:      {key_line}");
    let request = match operation {
        Operation::List => "list the key".to_owned(),
        Operation::SignUserAuth { user } => format!("login signature for user {user}"),
        Operation::SignSshSig { namespace } => {
            format!("SSHSIG signature in namespace {namespace:?}")
        }
        Operation::SignOther => "other signature".to_owned(),
    };
    let _ = writeln!(out, "request:  {request}");
    if hops.is_empty() {
        let _ = writeln!(out, "chain:    (local connection, no session bind)");
    } else {
        let _ = writeln!(out, "chain:    this machine");
        for h in &hops {
            let _ = writeln!(out, "          -> {}", hop_text(h));
        }
    }
    let verb = match &decision {
        Decision::Allow(_) => "allow",
        Decision::Confirm(_) => "confirm (allowed after you approve it)",
        Decision::Deny(_) => "deny",
    };
    let _ = writeln!(out, "decision: {verb}");
    let _ = writeln!(out, "reason:   {}", decision.reason());
    print(&out)?;
    Ok(match decision {
        Decision::Deny(_) => ExitCode::FAILURE,
        Decision::Allow(_) | Decision::Confirm(_) => ExitCode::SUCCESS,
    })
}

fn init(settings: &Settings, args: &InitArgs) -> anyhow::Result<ExitCode> {
    let target = args
        .output
        .clone()
        .unwrap_or_else(|| settings.policy.clone());
    if target.exists() && !args.force {
        bail!(
            "{} exists; review it with `airlock policy check`, or pass --force to replace it",
            target.display()
        );
    }
    let naming = HostNaming::load(HostNaming::options_for_home(&settings.home));
    if let Some(problem) = naming.problem() {
        bail!("{problem}");
    }
    let fwd = forwarding_hosts(naming.blocks());
    let mut names: Vec<String> = match fs_err::read_dir(&settings.keys_dir) {
        Ok(dir) => dir
            .filter_map(Result::ok)
            .filter_map(|e| {
                e.file_name()
                    .to_str()?
                    .strip_suffix(".pub")
                    .map(str::to_owned)
            })
            .collect(),
        Err(_) => Vec::new(),
    };
    names.sort();
    let others = agent_keys(settings, &names);
    let text = starter_policy(&fwd, &names, &others);
    write_atomic(&target, text.as_bytes())?;
    eprintln!(
        "wrote {} ({} key rule(s), forward-through from {} Host block(s) with ForwardAgent); review it, then run `airlock policy check`",
        target.display(),
        names.len() + others.len(),
        fwd.forward.len()
    );
    Ok(ExitCode::SUCCESS)
}

/// Keys loaded in the agent at `$SSH_AUTH_SOCK` that are not airlock keys by name, as
/// `(fingerprint, comment)`; nothing if no agent answers.
fn agent_keys(settings: &Settings, names: &[String]) -> Vec<(String, String)> {
    let Some(socket) = std::env::var_os(ENV_SSH_AUTH_SOCK) else {
        return Vec::new();
    };
    let listed =
        airlock_agent::client::Client::connect(Path::new(&socket)).and_then(|mut c| c.list());
    let Ok(keys) = listed else {
        return Vec::new();
    };
    let named: Vec<String> = names
        .iter()
        .map(|n| key_identity(settings, n).0)
        .filter(|fp| !fp.is_empty())
        .collect();
    let mut out: Vec<(String, String)> = Vec::new();
    for (key, comment) in keys {
        let fp = key.fingerprint(ssh_key::HashAlg::Sha256).to_string();
        if named.contains(&fp) || names.contains(&comment) || out.iter().any(|(f, _)| *f == fp) {
            continue;
        }
        out.push((fp, comment));
    }
    out
}

/// Temp file in the same directory (0600 from creation), fsync, rename; the directory is
/// created 0700 if missing.
fn write_atomic(path: &Path, contents: &[u8]) -> anyhow::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
        _ => PathBuf::from("."),
    };
    if !dir.exists() {
        let mut b = std::fs::DirBuilder::new();
        b.recursive(true);
        std::os::unix::fs::DirBuilderExt::mode(&mut b, 0o700);
        b.create(&dir)
            .with_context(|| format!("creating {}", dir.display()))?;
    }
    let mut tmp = tempfile::Builder::new()
        .prefix(".policy.")
        .suffix(".tmp")
        .tempfile_in(&dir)
        .with_context(|| format!("creating a temporary file in {}", dir.display()))?;
    tmp.write_all(contents)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}
