//! Algorithm lists of OpenSSH 9.2 as built by Debian 12 (`ssh -Q ...` and the `-G` defaults),
//! and `kex_assemble_names` from `kex.c`, which turns `+list`, `-list`, `^list` and explicit
//! pattern lists into the effective list.

use crate::pattern::{ListMatch, match_pattern_list};

/// `ssh -Q cipher`.
pub const ALL_CIPHERS: &str = "3des-cbc,aes128-cbc,aes192-cbc,aes256-cbc,aes128-ctr,aes192-ctr,aes256-ctr,aes128-gcm@openssh.com,aes256-gcm@openssh.com,chacha20-poly1305@openssh.com";
/// `ssh -Q mac`.
pub const ALL_MACS: &str = "hmac-sha1,hmac-sha1-96,hmac-sha2-256,hmac-sha2-512,hmac-md5,hmac-md5-96,umac-64@openssh.com,umac-128@openssh.com,hmac-sha1-etm@openssh.com,hmac-sha1-96-etm@openssh.com,hmac-sha2-256-etm@openssh.com,hmac-sha2-512-etm@openssh.com,hmac-md5-etm@openssh.com,hmac-md5-96-etm@openssh.com,umac-64-etm@openssh.com,umac-128-etm@openssh.com";
/// `ssh -Q kex`.
pub const ALL_KEX: &str = "diffie-hellman-group1-sha1,diffie-hellman-group14-sha1,diffie-hellman-group14-sha256,diffie-hellman-group16-sha512,diffie-hellman-group18-sha512,diffie-hellman-group-exchange-sha1,diffie-hellman-group-exchange-sha256,ecdh-sha2-nistp256,ecdh-sha2-nistp384,ecdh-sha2-nistp521,curve25519-sha256,curve25519-sha256@libssh.org,sntrup761x25519-sha512,sntrup761x25519-sha512@openssh.com";
/// `ssh -Q key-sig`: every key and signature algorithm, certificates included.
pub const ALL_KEYS: &str = "ssh-ed25519,ssh-ed25519-cert-v01@openssh.com,sk-ssh-ed25519@openssh.com,sk-ssh-ed25519-cert-v01@openssh.com,ecdsa-sha2-nistp256,ecdsa-sha2-nistp256-cert-v01@openssh.com,ecdsa-sha2-nistp384,ecdsa-sha2-nistp384-cert-v01@openssh.com,ecdsa-sha2-nistp521,ecdsa-sha2-nistp521-cert-v01@openssh.com,sk-ecdsa-sha2-nistp256@openssh.com,sk-ecdsa-sha2-nistp256-cert-v01@openssh.com,webauthn-sk-ecdsa-sha2-nistp256@openssh.com,ssh-dss,ssh-dss-cert-v01@openssh.com,ssh-rsa,ssh-rsa-cert-v01@openssh.com,rsa-sha2-256,rsa-sha2-256-cert-v01@openssh.com,rsa-sha2-512,rsa-sha2-512-cert-v01@openssh.com";
/// Plain (non-certificate) signature algorithms, for `CASignatureAlgorithms`.
pub const ALL_SIGS: &str = "ssh-ed25519,sk-ssh-ed25519@openssh.com,ecdsa-sha2-nistp256,ecdsa-sha2-nistp384,ecdsa-sha2-nistp521,sk-ecdsa-sha2-nistp256@openssh.com,webauthn-sk-ecdsa-sha2-nistp256@openssh.com,ssh-dss,ssh-rsa,rsa-sha2-256,rsa-sha2-512";

/// Default `Ciphers`.
pub const DEFAULT_CIPHERS: &str = "chacha20-poly1305@openssh.com,aes128-ctr,aes192-ctr,aes256-ctr,aes128-gcm@openssh.com,aes256-gcm@openssh.com";
/// Default `MACs`.
pub const DEFAULT_MACS: &str = "umac-64-etm@openssh.com,umac-128-etm@openssh.com,hmac-sha2-256-etm@openssh.com,hmac-sha2-512-etm@openssh.com,hmac-sha1-etm@openssh.com,umac-64@openssh.com,umac-128@openssh.com,hmac-sha2-256,hmac-sha2-512,hmac-sha1";
/// Default `KexAlgorithms`.
pub const DEFAULT_KEX: &str = "sntrup761x25519-sha512,sntrup761x25519-sha512@openssh.com,curve25519-sha256,curve25519-sha256@libssh.org,ecdh-sha2-nistp256,ecdh-sha2-nistp384,ecdh-sha2-nistp521,diffie-hellman-group-exchange-sha256,diffie-hellman-group16-sha512,diffie-hellman-group18-sha512,diffie-hellman-group14-sha256";
/// Default `HostKeyAlgorithms`, `PubkeyAcceptedAlgorithms`, `HostbasedAcceptedAlgorithms`.
pub const DEFAULT_KEY_ALGS: &str = "ssh-ed25519-cert-v01@openssh.com,ecdsa-sha2-nistp256-cert-v01@openssh.com,ecdsa-sha2-nistp384-cert-v01@openssh.com,ecdsa-sha2-nistp521-cert-v01@openssh.com,sk-ssh-ed25519-cert-v01@openssh.com,sk-ecdsa-sha2-nistp256-cert-v01@openssh.com,rsa-sha2-512-cert-v01@openssh.com,rsa-sha2-256-cert-v01@openssh.com,ssh-ed25519,ecdsa-sha2-nistp256,ecdsa-sha2-nistp384,ecdsa-sha2-nistp521,sk-ssh-ed25519@openssh.com,sk-ecdsa-sha2-nistp256@openssh.com,rsa-sha2-512,rsa-sha2-256";
/// Default `CASignatureAlgorithms`.
pub const DEFAULT_CA_SIGS: &str = "ssh-ed25519,ecdsa-sha2-nistp256,ecdsa-sha2-nistp384,ecdsa-sha2-nistp521,sk-ssh-ed25519@openssh.com,sk-ecdsa-sha2-nistp256@openssh.com,rsa-sha2-512,rsa-sha2-256";
/// Default `GSSAPIKexAlgorithms` (Debian's GSSAPI key exchange patch).
pub const DEFAULT_GSS_KEX: &str = "gss-group14-sha256-,gss-group16-sha512-,gss-nistp256-sha256-,gss-curve25519-sha256-,gss-group14-sha1-,gss-gex-sha1-";

/// Which family a list keyword belongs to, for validation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// `Ciphers`.
    Cipher,
    /// `MACs`.
    Mac,
    /// `KexAlgorithms`.
    Kex,
    /// Key types (`HostKeyAlgorithms`, `PubkeyAcceptedAlgorithms`, ...).
    Key,
}

/// Whether a configured list is acceptable, as `ciphers_valid`, `mac_valid`,
/// `kex_names_valid`, `sshkey_names_valid2` check it (a leading `-` skips the check).
pub fn valid(family: Family, arg: &str) -> bool {
    if arg.starts_with('-') {
        return true;
    }
    let list = arg.strip_prefix(['+', '^']).unwrap_or(arg);
    let all = match family {
        Family::Cipher => ALL_CIPHERS,
        Family::Mac => ALL_MACS,
        Family::Kex => ALL_KEX,
        Family::Key => ALL_KEYS,
    };
    if list.is_empty() {
        return false;
    }
    list.split(',').all(|name| {
        if family == Family::Key && name.contains(['*', '?']) {
            return true;
        }
        all.split(',').any(|a| a == name)
    })
}

fn contains(list: &str, name: &str) -> bool {
    !list.is_empty() && list.split(',').any(|n| n == name)
}

/// `kex_names_cat`: `a` then the names of `b` not already in `a`.
fn names_cat(a: &str, b: &str) -> String {
    if a.is_empty() {
        return b.to_owned();
    }
    let mut out = a.to_owned();
    for p in b.split(',') {
        if p.is_empty() {
            break;
        }
        if contains(&out, p) {
            continue;
        }
        out.push(',');
        out.push_str(p);
    }
    out
}

/// `match_filter_allowlist`: the names of `proposal` matching `filter`, in `proposal` order.
fn filter_allow(proposal: &str, filter: &str) -> String {
    proposal
        .split(',')
        .filter(|n| match_pattern_list(n, filter, false) == ListMatch::Matched)
        .collect::<Vec<_>>()
        .join(",")
}

/// `match_filter_denylist`: the names of `proposal` not matching `filter`.
fn filter_deny(proposal: &str, filter: &str) -> String {
    proposal
        .split(',')
        .filter(|n| match_pattern_list(n, filter, false) != ListMatch::Matched)
        .collect::<Vec<_>>()
        .join(",")
}

/// `kex_assemble_names`: the effective list for a configured value (or the default).
/// `None` when the result would be empty or the list uses `!`, which OpenSSH rejects.
pub fn assemble(configured: Option<&str>, default: &str, all: &str) -> Option<String> {
    let list = match configured {
        None | Some("") => return Some(default.to_owned()),
        Some(l) => l,
    };
    let list = if let Some(rest) = list.strip_prefix('+') {
        names_cat(default, rest)
    } else if let Some(rest) = list.strip_prefix('-') {
        return Some(filter_deny(default, rest));
    } else if let Some(rest) = list.strip_prefix('^') {
        names_cat(rest, default)
    } else {
        list.to_owned()
    };
    let mut ret = String::new();
    for pattern in list.split(',') {
        if pattern.starts_with('!') {
            return None;
        }
        let matching = filter_allow(all, pattern);
        ret = names_cat(&ret, &matching);
    }
    if ret.is_empty() { None } else { Some(ret) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assemble_forms() {
        assert_eq!(assemble(None, "a,b", "a,b,c").as_deref(), Some("a,b"));
        assert_eq!(
            assemble(Some("+c"), "a,b", "a,b,c").as_deref(),
            Some("a,b,c")
        );
        assert_eq!(assemble(Some("-a"), "a,b", "a,b,c").as_deref(), Some("b"));
        assert_eq!(
            assemble(Some("^c"), "a,b", "a,b,c").as_deref(),
            Some("c,a,b")
        );
        assert_eq!(
            assemble(Some("c,a*"), "a,b", "a,b,c,ab").as_deref(),
            Some("c,a,ab")
        );
    }
}
