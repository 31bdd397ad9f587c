//! The starter policy `airlock policy init` writes for the user to review.

use std::fmt::Write as _;

use airlock_ssh_config::HostBlock;

/// What the user's ssh config says about agent forwarding.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ForwardingHosts {
    /// `Host` patterns whose block sets `ForwardAgent yes` (or a socket path).
    pub forward: Vec<String>,
    /// Every `Host` name or pattern but the catch-all `*` (destinations the user connects to).
    pub hosts: Vec<String>,
    /// `Host *` (or another catch-all) forwards the agent everywhere: left out, but said.
    pub forwards_everywhere: bool,
}

/// The `Host` blocks (from [`airlock_ssh_config::host_blocks`], so `Include`d files count)
/// with `ForwardAgent` other than `no`. `Match` blocks are left out (the user reviews the
/// result).
pub fn forwarding_hosts(blocks: &[HostBlock]) -> ForwardingHosts {
    let mut out = ForwardingHosts::default();
    for block in blocks.iter().filter(|b| !b.is_match) {
        for h in &block.patterns {
            let catch_all = h.chars().all(|c| c == '*' || c == '?');
            if !h.starts_with('!') && !catch_all && !out.hosts.contains(h) {
                out.hosts.push(h.clone());
            }
        }
        let Some(value) = block.get("forwardagent") else {
            continue;
        };
        if value.eq_ignore_ascii_case("no") || value.is_empty() {
            continue;
        }
        for h in &block.patterns {
            if h == "*" {
                out.forwards_everywhere = true;
            } else if !h.starts_with('!') && !out.forward.contains(h) {
                out.forward.push(h.clone());
            }
        }
    }
    out
}

fn toml_list(items: &[String]) -> String {
    let quoted: Vec<String> = items.iter().map(|s| format!("{s:?}")).collect();
    format!("[{}]", quoted.join(", "))
}

/// The text of a starter policy: one `[[key]]` per key name (airlock keys) and per
/// `(fingerprint, comment)` (other keys), each forwarded through the hosts that forward the
/// agent today and usable for the config's hosts. Every field is explained in a comment.
pub fn starter_policy(
    fwd: &ForwardingHosts,
    key_names: &[String],
    other_keys: &[(String, String)],
) -> String {
    let mut s = String::new();
    s.push_str(
        "# airlock forwarding policy: which keys may be used through which forwarded agents,\n\
         # for which destinations. Written by `airlock policy init`: review it, then run\n\
         # `airlock policy check` to see which host keys each pattern matches.\n\
         # Host patterns follow OpenSSH (`*`, `?`, `!negation`); names are tied to host keys\n\
         # through known_hosts, so a host you never connected to matches nothing.\n\n",
    );
    s.push_str(
        "[defaults]\n\
         # Keys without a [[key]] rule: \"deny\" = never usable through a forwarded agent;\n\
         # \"allow\" = OpenSSH behaviour.\n\
         forward = \"deny\"\n\
         # Ask before signing: \"never\", \"forwarded\" (requests through a forwarded agent) or \"always\".\n\
         confirm = \"never\"\n\
         # known_hosts files read besides ~/.ssh/known_hosts{,2} and /etc/ssh/ssh_known_hosts{,2}.\n\
         known-hosts = []\n",
    );
    if fwd.forwards_everywhere {
        s.push_str(
            "\n# Your ssh config forwards the agent to every host (`Host *` with ForwardAgent): that\n\
             # was left out here. List the servers you really work on in forward-through.\n",
        );
    }
    let mut rule = |selector: String, note: &str| {
        s.push_str("\n[[key]]\n");
        if !note.is_empty() {
            let _ = writeln!(s, "# {note}");
        }
        s.push_str(&selector);
        s.push_str(
            "# Hosts whose forwarded agent may use this key (ssh -A to them, then ssh onward).\n\
             # From the Host blocks of your ssh config that set ForwardAgent.\n",
        );
        let _ = writeln!(s, "forward-through = {}", toml_list(&fwd.forward));
        s.push_str(
            "# Hosts that may receive a login signature from this key, directly or through the\n\
             # hosts above. Add the git servers you clone from, e.g. \"github.com\".\n",
        );
        let _ = writeln!(s, "use-for = {}", toml_list(&fwd.hosts));
        s.push_str(
            "# Signatures: \"ssh-auth\" for logins, other entries are SSHSIG namespaces (\"git\"\n\
             # for commit signing, \"file\" for ssh-keygen -Y sign).\n\
             sign = [\"ssh-auth\", \"git\"]\n\
             # Ask before each use through a forwarded agent: uncomment.\n\
             # confirm = \"forwarded\"\n\
             # Remove the key from the agent after this long: uncomment.\n\
             # lifetime = \"8h\"\n",
        );
    };
    for name in key_names {
        rule(format!("name = {name:?}\n"), "");
    }
    for (fp, comment) in other_keys {
        let note = if comment.is_empty() {
            String::new()
        } else {
            format!("key in the agent: {comment}")
        };
        rule(format!("fingerprint = {fp:?}\n"), &note);
    }
    if key_names.is_empty() && other_keys.is_empty() {
        s.push_str(
            "\n# No keys found (none in ~/.ssh/airlock, none in the agent). A rule looks like:\n\
             # [[key]]\n\
             # name = \"ai-project\"              # or fingerprint = \"SHA256:...\"\n\
             # forward-through = [\"gpu-node-*\"]\n\
             # use-for = [\"github.com\", \"gpu-node-*\"]\n\
             # sign = [\"ssh-auth\", \"git\"]\n",
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::PolicyFile;

    #[test]
    fn from_ssh_config() {
        let cfg = "Host gpu-node-01 gpu-node-02\n  ForwardAgent yes\nHost bastion\n  ForwardAgent=/tmp/sock\n\
                   Host laptop-only\n  ForwardAgent no\nHost *\n  ForwardAgent yes\nMatch host x\n  ForwardAgent yes\n";
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("config");
        std::fs::write(&file, cfg).unwrap();
        let options = airlock_ssh_config::ResolveOptions {
            config: airlock_ssh_config::ConfigSource::File(file),
            user: None,
            port: None,
            context: airlock_ssh_config::LocalContext::with_home(dir.path()),
        };
        let f = forwarding_hosts(&airlock_ssh_config::host_blocks(&options).unwrap().blocks);
        assert_eq!(f.forward, ["gpu-node-01", "gpu-node-02", "bastion"]);
        assert_eq!(
            f.hosts,
            ["gpu-node-01", "gpu-node-02", "bastion", "laptop-only"]
        );
        assert!(f.forwards_everywhere);
        let text = starter_policy(
            &f,
            &["ai-project".to_owned()],
            &[(
                "SHA256:uO5mR8hPZ0aI8o8FvBLPHSNq0UeOTj5G2ZEEzZUo7LA".to_owned(),
                "me@laptop".to_owned(),
            )],
        );
        let p = PolicyFile::parse(&text, std::path::Path::new("/p.toml")).unwrap();
        assert_eq!(p.keys.len(), 2);
        assert_eq!(
            p.keys[0].forward_through.as_deref().unwrap(),
            ["gpu-node-01", "gpu-node-02", "bastion"]
        );
        assert!(text.contains("`Host *`"));
        let empty = starter_policy(&ForwardingHosts::default(), &[], &[]);
        assert!(
            PolicyFile::parse(&empty, std::path::Path::new("/p.toml"))
                .unwrap()
                .keys
                .is_empty()
        );
    }
}
