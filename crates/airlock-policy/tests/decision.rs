//! Table tests of the pure policy decision: real host keys, known_hosts files in temp dirs
//! (plain, hashed, `@cert-authority`, `@revoked`, negated patterns), no sockets.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use airlock_agent::destination::{Binding, HostKey};
use airlock_agent::policy::{Decision, Operation, Policy, Query};
use airlock_policy::{
    CompiledPolicy, HostKeyAlias, KnownHosts, PolicyFile, PolicyHandle, PolicySources,
};
use base64::Engine as _;
use hmac::{Hmac, Mac};
use ssh_key::{Algorithm, HashAlg, PrivateKey, certificate};

fn new_key() -> PrivateKey {
    PrivateKey::random(&mut rand::rngs::OsRng, Algorithm::Ed25519).unwrap()
}

fn openssh(key: &PrivateKey) -> String {
    key.public_key().to_openssh().unwrap()
}

fn fp(key: &PrivateKey) -> String {
    key.public_key().fingerprint(HashAlg::Sha256).to_string()
}

fn hashed(name: &str) -> String {
    let salt: [u8; 20] = rand::random();
    let mut mac = Hmac::<sha1::Sha1>::new_from_slice(&salt).unwrap();
    mac.update(name.as_bytes());
    let b64 = base64::engine::general_purpose::STANDARD;
    format!(
        "|1|{}|{}",
        b64.encode(salt),
        b64.encode(mac.finalize().into_bytes())
    )
}

fn host_cert(ca: &PrivateKey, subject: &PrivateKey, principal: &str) -> HostKey {
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let mut b = certificate::Builder::new(
        vec![7u8; 16],
        subject.public_key().key_data().clone(),
        now - 3600,
        now + 3600,
    )
    .unwrap();
    b.cert_type(certificate::CertType::Host).unwrap();
    b.valid_principal(principal).unwrap();
    let cert = b.sign(ca).unwrap();
    let key = HostKey::from_blob(&cert.to_bytes().unwrap()).unwrap();
    assert!(matches!(key, HostKey::Certificate(_)));
    key
}

const POLICY: &str = r#"
[defaults]
forward = "deny"
confirm = "never"

[[key]]
name = "ai-project"
forward-through = ["gpu-node-*", "bastion", "*.cluster", "!gpu-node-99", "!quarantine.lab"]
use-for = ["github.com", "gpu-node-*", "secret.lab", "*.lab.internal", "[10.0.0.5]:2222", "revoked.example"]
confirm = "forwarded"
lifetime = "8h"
sign = ["ssh-auth", "git"]

[[key]]
fingerprint = "@DEPLOY@"
use-for = ["github.com"]

[[key]]
name = "local-only"
confirm = "always"

[[key]]
name = "sshsig-only"
forward-through = ["gpu-node-*"]
sign = ["git"]
"#;

struct Fixture {
    _dir: tempfile::TempDir,
    hosts: BTreeMap<&'static str, HostKey>,
    policy: CompiledPolicy,
    ai: String,
    deploy: String,
}

const HOSTS: [&str; 12] = [
    "gpu-node-01",
    "gpu-node-02",
    "gpu-node-99",
    "gpu-node-77",
    "bastion",
    "github.com",
    "evil.example",
    "secret.lab",
    "port",
    "revoked.example",
    "n1.cluster",
    "bad.cluster",
];

impl Fixture {
    fn new() -> Self {
        Self::with_policy(POLICY)
    }

    fn with_policy(policy_text: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut keys: BTreeMap<&'static str, PrivateKey> =
            HOSTS.iter().map(|h| (*h, new_key())).collect();
        let ca = new_key();
        let ci = new_key();
        let rogue = new_key();
        let k = |n: &str| openssh(&keys[n]);
        let known_hosts = format!(
            "# a comment\n\
             gpu-node-01,10.0.0.1 {}\n\
             gpu-node-02 {}\n\
             gpu-node-99 {}\n\
             gpu-node-77,quarantine.lab {}\n\
             bastion {}\n\
             github.com {}\n\
             evil.example {}\n\
             {} {}\n\
             [10.0.0.5]:2222 {}\n\
             revoked.example {}\n\
             @revoked * {}\n\
             *.cluster,!bad.cluster {}\n\
             bad.cluster\t{}\n\
             @cert-authority *.lab.internal {}\n\
             this line is broken\n",
            k("gpu-node-01"),
            k("gpu-node-02"),
            k("gpu-node-99"),
            k("gpu-node-77"),
            k("bastion"),
            k("github.com"),
            k("evil.example"),
            hashed("secret.lab"),
            k("secret.lab"),
            k("port"),
            k("revoked.example"),
            k("revoked.example"),
            k("n1.cluster"),
            k("bad.cluster"),
            openssh(&ca),
        );
        let kh_path = dir.path().join("known_hosts");
        std::fs::write(&kh_path, known_hosts).unwrap();
        let keys_dir = dir.path().join("keys");
        std::fs::create_dir(&keys_dir).unwrap();
        let ai = new_key();
        std::fs::write(keys_dir.join("ai-project.pub"), openssh(&ai)).unwrap();
        let deploy = new_key();
        let text = policy_text.replace("@DEPLOY@", &fp(&deploy));
        let file = PolicyFile::parse(&text, Path::new("/cfg/policy.toml")).unwrap();
        let kh = KnownHosts::load(&[kh_path, dir.path().join("missing")]);
        let names = vec!["n1.cluster".to_owned(), "bad.cluster".to_owned()];
        let aliases = vec![HostKeyAlias {
            host: "gpu".into(),
            alias: "gpu-node-01".into(),
        }];
        let policy = CompiledPolicy::compile(file, &kh, Some(&keys_dir), &names, &aliases);
        let mut hosts: BTreeMap<&'static str, HostKey> = std::mem::take(&mut keys)
            .into_iter()
            .map(|(n, k)| (n, HostKey::Plain(k.public_key().key_data().clone())))
            .collect();
        hosts.insert("ci.lab.internal", host_cert(&ca, &ci, "ci.lab.internal"));
        hosts.insert("rogue-cert", host_cert(&ca, &rogue, "rogue.example"));
        hosts.insert(
            "self-signed-cert",
            host_cert(&rogue, &ci, "ci.lab.internal"),
        );
        hosts.insert(
            "unknown",
            HostKey::Plain(new_key().public_key().key_data().clone()),
        );
        Self {
            _dir: dir,
            hosts,
            policy,
            ai: fp(&ai),
            deploy: fp(&deploy),
        }
    }

    fn chain(&self, spec: &str) -> Vec<Binding> {
        // "a> b> c" : '>' marks a forwarding hop.
        spec.split_whitespace()
            .map(|h| {
                let (name, forwarded) = match h.strip_suffix('>') {
                    Some(n) => (n, true),
                    None => (h, false),
                };
                let host_key = self
                    .hosts
                    .get(name)
                    .unwrap_or_else(|| panic!("no host {name}"))
                    .clone();
                Binding::new(host_key, vec![1; 32], forwarded)
            })
            .collect()
    }

    fn decide(&self, key: &str, op: Operation<'_>, chain: &str) -> Decision {
        self.decide_with(&self.policy, key, op, chain, false)
    }

    fn decide_with(
        &self,
        policy: &dyn Policy,
        key: &str,
        op: Operation<'_>,
        chain: &str,
        bind_failed: bool,
    ) -> Decision {
        let (fingerprint, comment) = match key {
            "ai" => (self.ai.clone(), "alice@laptop".to_owned()),
            "ai-by-comment" => ("SHA256:none".to_owned(), "ai-project".to_owned()),
            "deploy" => (self.deploy.clone(), String::new()),
            "local-only" | "sshsig-only" => ("SHA256:x".to_owned(), key.to_owned()),
            "unruled" => ("SHA256:unruled".to_owned(), "someone".to_owned()),
            other => panic!("no key {other}"),
        };
        let chain = self.chain(chain);
        policy.decide(&Query {
            fingerprint: &fingerprint,
            comment: &comment,
            operation: op,
            chain: &chain,
            bind_failed,
        })
    }
}

const LIST: Operation<'static> = Operation::List;
const AUTH: Operation<'static> = Operation::SignUserAuth { user: "git" };
const GIT: Operation<'static> = Operation::SignSshSig { namespace: "git" };
const FILE: Operation<'static> = Operation::SignSshSig { namespace: "file" };
const OTHER: Operation<'static> = Operation::SignOther;

fn check(fx: &Fixture, rows: &[(&str, Operation<'_>, &str, &str, &str)]) {
    let mut failures = Vec::new();
    for (key, op, chain, verb, reason) in rows {
        let d = fx.decide(key, *op, chain);
        if d.verb() != *verb || !d.reason().contains(reason) {
            failures.push(format!(
                "{key} {op:?} [{chain}]: want {verb} ~ {reason:?}, got {d:?}"
            ));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[test]
fn ruled_key_userauth() {
    let fx = Fixture::new();
    check(
        &fx,
        &[
            // 0 hops: unbound; use-for is set, so the destination is unknown.
            ("ai", AUTH, "", "deny", "unbound connection"),
            // 1 hop: a direct login.
            ("ai", AUTH, "github.com", "allow", "to github.com"),
            (
                "ai",
                AUTH,
                "gpu-node-02",
                "allow",
                "gpu-node-02 (gpu-node-*)",
            ),
            (
                "ai",
                AUTH,
                "evil.example",
                "deny",
                "evil.example is not in use-for of key ai-project",
            ),
            (
                "ai",
                AUTH,
                "gpu-node-01>",
                "deny",
                "sign on forwarding hop gpu-node-01",
            ),
            // 2 hops: through a forwarded agent; confirm = "forwarded".
            (
                "ai",
                AUTH,
                "gpu-node-01> github.com",
                "confirm",
                "through gpu-node-01 (gpu-node-*)",
            ),
            (
                "ai",
                AUTH,
                "gpu-node-01> evil.example",
                "deny",
                "evil.example is not in use-for",
            ),
            (
                "ai",
                AUTH,
                "evil.example> github.com",
                "deny",
                "evil.example is not in forward-through of key ai-project",
            ),
            (
                "ai",
                AUTH,
                "gpu-node-99> github.com",
                "deny",
                "gpu-node-99 is excluded by forward-through pattern !gpu-node-99",
            ),
            (
                "ai",
                AUTH,
                "gpu-node-01 github.com",
                "deny",
                "gpu-node-01 is an authentication bind",
            ),
            (
                "ai",
                AUTH,
                "gpu-node-01> gpu-node-02>",
                "deny",
                "sign on forwarding hop gpu-node-02",
            ),
            // 3 hops.
            (
                "ai",
                AUTH,
                "bastion> gpu-node-01> github.com",
                "confirm",
                "through bastion, gpu-node-01",
            ),
            (
                "ai",
                AUTH,
                "bastion> evil.example> github.com",
                "deny",
                "evil.example is not in forward-through",
            ),
            (
                "ai",
                AUTH,
                "bastion> gpu-node-01> gpu-node-02>",
                "deny",
                "sign on forwarding hop",
            ),
            // The key matched by its comment (its .pub fingerprint not loaded).
            (
                "ai-by-comment",
                AUTH,
                "gpu-node-01> github.com",
                "confirm",
                "github.com",
            ),
            (
                "ai-by-comment",
                AUTH,
                "gpu-node-01> evil.example",
                "deny",
                "not in use-for",
            ),
        ],
    );
}

#[test]
fn host_names_from_known_hosts() {
    let fx = Fixture::new();
    check(
        &fx,
        &[
            // Hashed entry.
            (
                "ai",
                AUTH,
                "gpu-node-01> secret.lab",
                "confirm",
                "to secret.lab",
            ),
            // [host]:port entry, matched in its bracketed form.
            ("ai", AUTH, "port", "allow", "[10.0.0.5]:2222"),
            // @cert-authority: a certificate valid for a name the CA line covers.
            (
                "ai",
                AUTH,
                "gpu-node-01> ci.lab.internal",
                "confirm",
                "ci.lab.internal (*.lab.internal)",
            ),
            // Signed by the CA but for a name the CA line does not cover.
            ("ai", AUTH, "rogue-cert", "deny", "unknown host key"),
            // Not signed by a known CA.
            ("ai", AUTH, "self-signed-cert", "deny", "unknown host key"),
            // @revoked wins over the plain line.
            ("ai", AUTH, "revoked.example", "deny", "@revoked"),
            ("unruled", AUTH, "revoked.example", "deny", "@revoked"),
            // A wildcard known_hosts line with a negation: n1.cluster is covered by it,
            // bad.cluster is not (its own line ties it to its own key; see host_names below).
            (
                "ai",
                AUTH,
                "n1.cluster> github.com",
                "confirm",
                "n1.cluster (*.cluster)",
            ),
            (
                "ai",
                AUTH,
                "bad.cluster> github.com",
                "confirm",
                "bad.cluster (*.cluster)",
            ),
            // A host known by two names, one of them negated in the policy: excluded.
            (
                "ai",
                AUTH,
                "gpu-node-77> github.com",
                "deny",
                "quarantine.lab is excluded by forward-through pattern !quarantine.lab",
            ),
            // A host key in no known_hosts file.
            ("ai", AUTH, "unknown", "deny", "unknown host key SHA256:"),
            ("ai", LIST, "unknown>", "deny", "unknown host key"),
        ],
    );
    let names = |h: &str| fx.policy.host_names(&fx.hosts[h]);
    assert_eq!(names("gpu-node-01"), ["10.0.0.1", "gpu", "gpu-node-01"]);
    assert_eq!(names("secret.lab"), ["secret.lab"]);
    assert_eq!(names("port"), ["[10.0.0.5]:2222"]);
    assert_eq!(names("n1.cluster"), ["n1.cluster"]);
    assert_eq!(names("bad.cluster"), ["bad.cluster"]);
    assert_eq!(names("ci.lab.internal"), ["ci.lab.internal"]);
    assert!(names("revoked.example").is_empty());
    assert!(names("rogue-cert").is_empty());
    assert!(names("unknown").is_empty());
}

#[test]
fn listing() {
    let fx = Fixture::new();
    check(
        &fx,
        &[
            ("ai", LIST, "", "allow", "local connection"),
            ("ai", LIST, "github.com", "allow", "github.com"),
            ("ai", LIST, "evil.example", "deny", "not in use-for"),
            (
                "ai",
                LIST,
                "gpu-node-01>",
                "allow",
                "may be used beyond gpu-node-01",
            ),
            (
                "ai",
                LIST,
                "evil.example>",
                "deny",
                "evil.example is not in forward-through",
            ),
            ("ai", LIST, "gpu-node-01> github.com", "allow", "github.com"),
            (
                "ai",
                LIST,
                "gpu-node-01> evil.example",
                "deny",
                "evil.example is not in use-for",
            ),
            (
                "ai",
                LIST,
                "bastion> gpu-node-01>",
                "allow",
                "beyond gpu-node-01",
            ),
            ("ai", LIST, "bastion> gpu-node-99>", "deny", "!gpu-node-99"),
            // Listing never asks for confirmation.
            ("local-only", LIST, "", "allow", "local"),
            (
                "deploy",
                LIST,
                "gpu-node-01>",
                "deny",
                "has no forward-through",
            ),
            ("unruled", LIST, "", "allow", "not forwarded"),
            ("unruled", LIST, "github.com", "allow", "not forwarded"),
            (
                "unruled",
                LIST,
                "gpu-node-01>",
                "deny",
                "forward = \"deny\"",
            ),
        ],
    );
}

#[test]
fn sshsig_and_other_signatures() {
    let fx = Fixture::new();
    check(
        &fx,
        &[
            // sign lists "git": locally, and through permitted forwarding hops.
            (
                "ai",
                GIT,
                "",
                "allow",
                "SSHSIG namespace \"git\" on a local connection",
            ),
            (
                "ai",
                FILE,
                "",
                "deny",
                "\"file\" is not in sign of key ai-project",
            ),
            ("ai", GIT, "gpu-node-01>", "confirm", "through gpu-node-01"),
            (
                "ai",
                GIT,
                "bastion> gpu-node-02>",
                "confirm",
                "through bastion, gpu-node-02",
            ),
            ("ai", GIT, "evil.example>", "deny", "not in forward-through"),
            (
                "ai",
                FILE,
                "gpu-node-01>",
                "deny",
                "needs sign = [\"file\"]",
            ),
            ("ai", GIT, "github.com", "deny", "authentication bind"),
            (
                "ai",
                OTHER,
                "",
                "deny",
                "neither ssh authentication nor SSHSIG",
            ),
            // No sign: any namespace locally, none through forwarding.
            ("deploy", GIT, "", "allow", "local"),
            ("deploy", FILE, "", "allow", "local"),
            ("deploy", GIT, "gpu-node-01>", "deny", "needs sign"),
            ("deploy", OTHER, "", "allow", "local"),
            ("deploy", OTHER, "github.com", "deny", "neither"),
            // sign without "ssh-auth": no user authentication.
            (
                "sshsig-only",
                AUTH,
                "github.com",
                "deny",
                "sign does not list \"ssh-auth\"",
            ),
            ("sshsig-only", AUTH, "", "deny", "ssh-auth"),
            (
                "sshsig-only",
                GIT,
                "gpu-node-01>",
                "allow",
                "through gpu-node-01",
            ),
            // Keys without a rule: local SSHSIG, never through forwarding.
            ("unruled", GIT, "", "allow", "not forwarded"),
            ("unruled", GIT, "gpu-node-01>", "deny", "forward = \"deny\""),
            ("unruled", OTHER, "", "allow", "not forwarded"),
        ],
    );
}

#[test]
fn rules_without_use_for_or_forward_through() {
    let fx = Fixture::new();
    check(
        &fx,
        &[
            ("deploy", AUTH, "", "deny", "unbound"),
            ("deploy", AUTH, "github.com", "allow", "to github.com"),
            (
                "deploy",
                AUTH,
                "gpu-node-01> github.com",
                "deny",
                "key SHA256:",
            ),
            (
                "deploy",
                AUTH,
                "gpu-node-01> github.com",
                "deny",
                "has no forward-through: not usable through gpu-node-01",
            ),
            // No use-for: anywhere, including unbound; confirm = "always".
            ("local-only", AUTH, "", "confirm", "no use-for limit"),
            (
                "local-only",
                AUTH,
                "evil.example",
                "confirm",
                "evil.example (no use-for limit)",
            ),
            (
                "local-only",
                AUTH,
                "gpu-node-01> github.com",
                "deny",
                "no forward-through",
            ),
        ],
    );
}

#[test]
fn defaults_deny() {
    let fx = Fixture::new();
    check(
        &fx,
        &[
            ("unruled", AUTH, "", "allow", "no rule"),
            ("unruled", AUTH, "evil.example", "allow", "no rule"),
            (
                "unruled",
                AUTH,
                "gpu-node-01> github.com",
                "deny",
                "not usable through gpu-node-01",
            ),
            (
                "unruled",
                AUTH,
                "bastion> gpu-node-01> github.com",
                "deny",
                "not usable through bastion",
            ),
            (
                "unruled",
                AUTH,
                "gpu-node-01>",
                "deny",
                "forward = \"deny\"",
            ),
        ],
    );
}

#[test]
fn defaults_allow_and_confirm() {
    let fx = Fixture::with_policy(
        "[defaults]\nforward = \"allow\"\nconfirm = \"forwarded\"\n\n[[key]]\nname = \"local-only\"\nforward-through = [\"gpu-node-*\"]\nconfirm = \"never\"\n",
    );
    check(
        &fx,
        &[
            ("unruled", AUTH, "", "allow", "forward = \"allow\""),
            (
                "unruled",
                AUTH,
                "github.com",
                "allow",
                "forward = \"allow\"",
            ),
            (
                "unruled",
                AUTH,
                "gpu-node-01> github.com",
                "confirm",
                "confirm = \"forwarded\"",
            ),
            (
                "unruled",
                LIST,
                "gpu-node-01>",
                "allow",
                "forward = \"allow\"",
            ),
            ("unruled", GIT, "gpu-node-01>", "confirm", "forwarded"),
            // The key's own confirm overrides the default.
            (
                "local-only",
                AUTH,
                "gpu-node-01> github.com",
                "allow",
                "through gpu-node-01",
            ),
        ],
    );
    let fx = Fixture::with_policy("[defaults]\nconfirm = \"always\"\n");
    check(
        &fx,
        &[
            ("unruled", AUTH, "", "confirm", "confirm = \"always\""),
            ("unruled", LIST, "", "allow", ""),
        ],
    );
}

#[test]
fn failed_bind_denies() {
    let fx = Fixture::new();
    let d = fx.decide_with(&fx.policy, "ai", LIST, "", true);
    assert_eq!(d.verb(), "deny", "{d:?}");
    assert!(d.reason().contains("session bind failed"));
    let d = fx.decide_with(&fx.policy, "unruled", AUTH, "", true);
    assert_eq!(d.verb(), "deny", "{d:?}");
    let allow = Fixture::with_policy("[defaults]\nforward = \"allow\"\n");
    assert_eq!(
        allow
            .decide_with(&allow.policy, "unruled", AUTH, "", true)
            .verb(),
        "allow"
    );
}

#[test]
fn unrestricted_without_policy_file() {
    let fx = Fixture::new();
    let none = CompiledPolicy::unrestricted(Path::new("/nowhere/policy.toml"));
    assert!(none.is_unrestricted());
    for key in ["ai", "unruled"] {
        for op in [LIST, AUTH, GIT, OTHER] {
            for chain in [
                "",
                "evil.example",
                "gpu-node-01>",
                "evil.example> github.com",
            ] {
                let d = fx.decide_with(&none, key, op, chain, false);
                assert_eq!(d.verb(), "allow", "{key} {op:?} {chain}: {d:?}");
            }
        }
    }
}

#[test]
fn lifetimes_and_warnings() {
    let fx = Fixture::new();
    assert_eq!(
        fx.policy.lifetime(&fx.ai, ""),
        Some(Duration::from_hours(8))
    );
    assert_eq!(
        fx.policy.lifetime("SHA256:x", "ai-project"),
        Some(Duration::from_hours(8))
    );
    assert_eq!(fx.policy.lifetime("SHA256:unruled", "x"), None);
    let w = fx.policy.warnings().join("\n");
    // local-only and sshsig-only have no .pub file.
    assert!(w.contains("key local-only: no public key"), "{w}");
    assert!(
        w.contains("this line is broken") || w.contains("known_hosts line skipped"),
        "{w}"
    );
    // Every pattern of the policy matches a host key here (*.lab.internal through its CA),
    // except the revoked one.
    assert!(
        w.contains("use-for pattern \"revoked.example\" matches no known host key"),
        "{w}"
    );
    assert_eq!(w.matches("matches no known host key").count(), 1, "{w}");

    let fx = Fixture::with_policy(
        "[[key]]\nname = \"ai-project\"\nuse-for = [\"github.com\", \"nowhere.example\", \"gitlab-*\"]\n\n[[key]]\nname = \"ai-project\"\n",
    );
    let w = fx.policy.warnings().join("\n");
    assert!(
        w.contains("use-for pattern \"nowhere.example\" matches no known host key"),
        "{w}"
    );
    assert!(
        w.contains("use-for pattern \"gitlab-*\" matches no known host key"),
        "{w}"
    );
    assert!(!w.contains("\"github.com\" matches no"), "{w}");
    assert!(
        w.contains("/cfg/policy.toml:5: key ai-project has an earlier rule"),
        "{w}"
    );
}

#[test]
fn explain_hops_from_names() {
    let fx = Fixture::new();
    let hop = fx.policy.hop_for_name("gpu", true).unwrap();
    assert!(hop.names.contains(&"gpu-node-01".to_owned()), "{hop:?}");
    let dest = fx.policy.hop_for_name("GitHub.com", false).unwrap();
    let d = fx
        .policy
        .decide_hops(&fx.ai, "", AUTH, &[hop.clone(), dest], false);
    assert_eq!(d.verb(), "confirm", "{d:?}");
    // Known only through a CA line: the name alone.
    let ci = fx.policy.hop_for_name("build.lab.internal", false).unwrap();
    assert_eq!(ci.names, ["build.lab.internal"]);
    assert_eq!(
        fx.policy
            .decide_hops(&fx.ai, "", AUTH, &[hop, ci], false)
            .verb(),
        "confirm"
    );
    assert!(fx.policy.hop_for_name("nowhere.example", false).is_none());
}

#[test]
fn real_ssh_keygen_hashed_known_hosts() {
    if std::process::Command::new("ssh-keygen")
        .arg("-?")
        .output()
        .is_err()
    {
        eprintln!("ssh-keygen not found: skipped");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let a = new_key();
    let b = new_key();
    let kh = dir.path().join("known_hosts");
    std::fs::write(
        &kh,
        format!(
            "gpu-node-01 {}\n[127.0.0.1]:2222 {}\n",
            openssh(&a),
            openssh(&b)
        ),
    )
    .unwrap();
    let out = std::process::Command::new("ssh-keygen")
        .arg("-H")
        .arg("-f")
        .arg(&kh)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(&kh).unwrap();
    assert!(
        text.starts_with("|1|") && !text.contains("gpu-node-01"),
        "{text}"
    );
    let file = PolicyFile::parse(
        "[[key]]\nname = \"k\"\nforward-through = [\"gpu-node-01\"]\nuse-for = [\"[127.0.0.1]:2222\"]\n",
        Path::new("/p.toml"),
    )
    .unwrap();
    let policy = CompiledPolicy::compile(file, &KnownHosts::load(&[kh]), None, &[], &[]);
    assert!(policy.warnings().is_empty(), "{:?}", policy.warnings());
    let chain = [
        Binding::new(
            HostKey::Plain(a.public_key().key_data().clone()),
            vec![1],
            true,
        ),
        Binding::new(
            HostKey::Plain(b.public_key().key_data().clone()),
            vec![2],
            false,
        ),
    ];
    let d = policy.decide(&Query {
        fingerprint: "SHA256:k",
        comment: "k",
        operation: AUTH,
        chain: &chain,
        bind_failed: false,
    });
    assert_eq!(d.verb(), "allow", "{d:?}");
}

fn write(path: &PathBuf, text: &str) {
    // A new inode each time, as editors and `airlock policy init` write.
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

#[test]
fn handle_reloads_and_keeps_last_good_policy() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path();
    let host = new_key();
    std::fs::create_dir_all(home.join(".ssh")).unwrap();
    std::fs::write(
        home.join(".ssh/known_hosts"),
        format!("gpu {}\n", openssh(&host)),
    )
    .unwrap();
    let policy_file = home.join("policy.toml");
    let mut sources = PolicySources::for_user(home, policy_file.clone(), home.join("keys"));
    sources.known_hosts.retain(|p| p.starts_with(home));
    // A new text decides alone as soon as it is seen unchanged once more.
    let handle = PolicyHandle::load(sources)
        .unwrap()
        .with_settle(std::time::Duration::ZERO);
    assert!(
        handle
            .unrestricted_notice()
            .unwrap()
            .contains("airlock policy init")
    );

    let chain = [Binding::new(
        HostKey::Plain(host.public_key().key_data().clone()),
        vec![1],
        true,
    )];
    let q = Query {
        fingerprint: "SHA256:k",
        comment: "k",
        operation: LIST,
        chain: &chain,
        bind_failed: false,
    };
    assert_eq!(handle.decide(&q).verb(), "allow");

    write(&policy_file, "[[key]]\nname = \"k\"\n");
    assert!(handle.reload_if_changed(true));
    assert!(handle.unrestricted_notice().is_none());
    assert_eq!(handle.decide(&q).verb(), "deny");
    // Seen unchanged again: settled (the denial above may already have re-checked).
    handle.reload_if_changed(true);

    // A broken edit keeps the last good policy.
    write(
        &policy_file,
        "[[key]]\nname = \"k\"\nforward-thru = [\"gpu\"]\n",
    );
    assert!(!handle.reload_if_changed(true));
    assert_eq!(handle.decide(&q).verb(), "deny");

    write(
        &policy_file,
        "[[key]]\nname = \"k\"\nforward-through = [\"gpu\"]\n",
    );
    assert!(handle.reload_if_changed(true));
    // Settling: the old policy still has a say, and it denies.
    let d = handle.decide(&q);
    assert_eq!(d.verb(), "deny", "{d:?}");
    // Unchanged since: the new text decides alone.
    assert!(handle.reload_if_changed(true), "promoted");
    assert_eq!(handle.decide(&q).verb(), "allow");
    assert!(!handle.reload_if_changed(true), "nothing changed");

    // A host key added to known_hosts after start is picked up at once.
    let other = new_key();
    std::fs::write(
        home.join(".ssh/known_hosts"),
        format!("gpu {}\ngpu {}\n", openssh(&host), openssh(&other)),
    )
    .unwrap();
    let chain2 = [Binding::new(
        HostKey::Plain(other.public_key().key_data().clone()),
        vec![1],
        true,
    )];
    let q2 = Query {
        chain: &chain2,
        ..q
    };
    assert_eq!(handle.decide(&q2).verb(), "allow");

    // Removing the file keeps the last good policy (and says so), never "no policy".
    std::fs::remove_file(&policy_file).unwrap();
    assert!(!handle.reload_if_changed(true));
    assert!(!handle.current().is_unrestricted());
    assert_eq!(handle.decide(&q).verb(), "allow");
    assert_eq!(
        handle
            .decide(&Query {
                operation: LIST,
                ..q2
            })
            .verb(),
        "allow"
    );
    let notices = handle.take_notices();
    assert!(notices.iter().any(|n| n.contains("is gone")), "{notices:?}");
}

#[test]
fn load_reads_ssh_config_host_key_aliases() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path();
    let host = new_key();
    std::fs::create_dir_all(home.join(".ssh")).unwrap();
    std::fs::write(
        home.join(".ssh/known_hosts"),
        format!("gpu-node-01.lab {}\n", openssh(&host)),
    )
    .unwrap();
    std::fs::write(
        home.join(".ssh/config"),
        "Host gpu\n  HostName 10.1.1.1\n  HostKeyAlias gpu-node-01.lab\n  ForwardAgent yes\nHost *\n  User me\n",
    )
    .unwrap();
    let policy_file = home.join("policy.toml");
    std::fs::write(
        &policy_file,
        "[[key]]\nname = \"k\"\nforward-through = [\"gpu\"]\n",
    )
    .unwrap();
    let mut sources = PolicySources::for_user(home, policy_file, home.join("keys"));
    sources.known_hosts.retain(|p| p.starts_with(home));
    let policy = CompiledPolicy::load(&sources).unwrap();
    assert_eq!(
        policy.host_names(&HostKey::Plain(host.public_key().key_data().clone())),
        ["gpu", "gpu-node-01.lab"]
    );
    assert!(
        !policy
            .warnings()
            .iter()
            .any(|w| w.contains("matches no known host key")),
        "{:?}",
        policy.warnings()
    );
    assert!(policy.inputs().contains(&home.join(".ssh/config")));
}
