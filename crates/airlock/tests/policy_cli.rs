//! `airlock policy` and `airlock audit`: the real binary in an isolated home (HOME and XDG_*),
//! with known_hosts and keys written here, and a fixture audit log.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs
)]

use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Output, Stdio};

use airlock_test_support::{Home, KeyType, OpenSshAgent, generate_key};
use ssh_key::{Algorithm, HashAlg, PrivateKey};

const EXE: &str = env!("CARGO_BIN_EXE_airlock");

fn airlock(home: &Home) -> Command {
    let mut c = home.command(EXE);
    c.stdin(Stdio::null());
    c
}

fn run(c: &mut Command) -> Output {
    c.output().unwrap()
}

/// `policy explain` on a denied request: exit status 1, the explanation on stdout.
fn denied(c: &mut Command) -> String {
    let out = run(c);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{c:?}\nstdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn ok(c: &mut Command) -> String {
    let out = run(c);
    assert!(
        out.status.success(),
        "{c:?}: {}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn fails(c: &mut Command) -> String {
    let out = run(c);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{c:?}: stdout {}",
        String::from_utf8_lossy(&out.stdout)
    );
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(!err.contains("panicked"), "{err}");
    err
}

fn key() -> PrivateKey {
    PrivateKey::random(&mut rand::rngs::OsRng, Algorithm::Ed25519).unwrap()
}

fn line(k: &PrivateKey) -> String {
    k.public_key().to_openssh().unwrap()
}

fn fp(k: &PrivateKey) -> String {
    k.public_key().fingerprint(HashAlg::Sha256).to_string()
}

struct Lab {
    home: Home,
    gpu: PrivateKey,
}

const POLICY: &str = r#"[defaults]
forward = "deny"

[[key]]
name = "ai-project"
forward-through = ["gpu-node-*"]
use-for = ["github.com", "gpu-node-*", "gitlab.nowhere"]
sign = ["ssh-auth", "git"]
"#;

fn lab() -> Lab {
    let home = Home::new().unwrap();
    let gpu = key();
    let github = key();
    let evil = key();
    home.write_known_hosts(&format!(
        "gpu-node-01 {}\ngithub.com {}\nevil.example {}\n",
        line(&gpu),
        line(&github),
        line(&evil)
    ))
    .unwrap();
    let user_key = key();
    home.write_file(".ssh/airlock/ai-project.pub", line(&user_key))
        .unwrap();
    home.write_file(".config/airlock/policy.toml", POLICY)
        .unwrap();
    Lab { home, gpu }
}

#[test]
fn check_good_policy() {
    let lab = lab();
    let out = ok(airlock(&lab.home).args(["policy", "check"]));
    assert!(out.contains("valid"), "{out}");
    assert!(out.contains("key ai-project"), "{out}");
    assert!(out.contains("gpu-node-01"), "{out}");
    assert!(out.contains(&fp(&lab.gpu)), "{out}");
    assert!(
        out.contains("warning:") && out.contains("\"gitlab.nowhere\" matches no known host key"),
        "{out}"
    );
}

#[test]
fn check_broken_policy_names_file_line_and_field() {
    let lab = lab();
    let bad = lab
        .home
        .write_file(
            "bad.toml",
            "[[key]]\nname = \"ai-project\"\n\nuse_for = [\"x\"]\n",
        )
        .unwrap();
    let err = fails(airlock(&lab.home).args(["policy", "check"]).arg(&bad));
    assert!(
        err.contains(&format!("{}:4: key.use_for: unknown field", bad.display())),
        "{err}"
    );
    let err = fails(
        airlock(&lab.home)
            .args(["policy", "check"])
            .env("AIRLOCK_POLICY", &bad),
    );
    assert!(err.contains(":4: key.use_for"), "{err}");
    let err = fails(airlock(&lab.home).args(["policy", "check", "nonexistent.toml"]));
    assert!(err.contains("no such file"), "{err}");
}

#[test]
fn check_without_policy_says_unrestricted() {
    let home = Home::new().unwrap();
    let out = ok(airlock(&home).args(["policy", "check"]));
    assert!(out.contains("no policy file"), "{out}");
    assert!(out.contains("unrestricted (OpenSSH behaviour)"), "{out}");
    assert!(out.contains("airlock policy init"), "{out}");
}

#[test]
fn explain_allow_and_deny() {
    let lab = lab();
    let out = ok(airlock(&lab.home).args([
        "policy",
        "explain",
        "--key",
        "ai-project",
        "--via",
        "gpu-node-01",
        "--to",
        "github.com",
    ]));
    assert!(out.contains("decision: allow"), "{out}");
    assert!(out.contains("gpu-node-01"), "{out}");
    let out = denied(airlock(&lab.home).args([
        "policy",
        "explain",
        "--key",
        "ai-project",
        "--via",
        "gpu-node-01",
        "--to",
        "evil.example",
    ]));
    assert!(out.contains("decision: deny"), "{out}");
    assert!(out.contains("evil.example is not in use-for"), "{out}");
    let out = denied(airlock(&lab.home).args([
        "policy",
        "explain",
        "--key",
        "ai-project",
        "--via",
        "evil.example",
        "--to",
        "github.com",
    ]));
    assert!(
        out.contains("decision: deny") && out.contains("not in forward-through"),
        "{out}"
    );
    let out = ok(airlock(&lab.home).args([
        "policy",
        "explain",
        "--key",
        "ai-project",
        "--via",
        "gpu-node-01",
        "--sshsig",
        "git",
    ]));
    assert!(out.contains("decision: allow"), "{out}");
    // A key by fingerprint with no rule: [defaults] apply (forward = "deny").
    let out = denied(airlock(&lab.home).args([
        "policy",
        "explain",
        "--key",
        "SHA256:uO5mR8hPZ0aI8o8FvBLPHSNq0UeOTj5G2ZEEzZUo7LA",
        "--via",
        "gpu-node-01",
        "--to",
        "github.com",
    ]));
    assert!(
        out.contains("no rule") && out.contains("decision: deny"),
        "{out}"
    );
    // A name that is neither an airlock key nor in a rule is refused, not explained.
    let out = run(airlock(&lab.home).args([
        "policy",
        "explain",
        "--key",
        "other",
        "--via",
        "gpu-node-01",
        "--to",
        "github.com",
    ]));
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown key other"));
    // A host never connected to: exit 2, saying to connect once.
    let out = run(airlock(&lab.home).args([
        "policy",
        "explain",
        "--key",
        "ai-project",
        "--via",
        "mystery-host",
        "--to",
        "github.com",
    ]));
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("host mystery-host has no host key in known_hosts")
            && err.contains("connect to it once"),
        "{err}"
    );
}

#[test]
fn init_writes_a_policy_that_checks() {
    let home = Home::new().unwrap();
    home.write_ssh_config("Host gpu-node-01\n  ForwardAgent yes\nHost github.com\n  User git\nHost *\n  ForwardAgent yes\n").unwrap();
    home.write_file(".ssh/airlock/ai-project.pub", line(&key()))
        .unwrap();
    home.write_known_hosts(&format!(
        "gpu-node-01 {}\ngithub.com {}\n",
        line(&key()),
        line(&key())
    ))
    .unwrap();
    let out = run(airlock(&home).args(["policy", "init"]));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let path = home.config_dir().join("airlock/policy.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains("name = \"ai-project\""), "{text}");
    assert!(
        text.contains("forward-through = [\"gpu-node-01\"]"),
        "{text}"
    );
    assert!(
        text.contains("use-for = [\"gpu-node-01\", \"github.com\"]"),
        "{text}"
    );
    assert!(
        text.contains("# Hosts whose forwarded agent may use this key"),
        "{text}"
    );
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let checked = ok(airlock(&home).args(["policy", "check"]));
    assert!(
        checked.contains("valid") && !checked.contains("warning:"),
        "{checked}"
    );
    // No overwrite without --force.
    let err = fails(airlock(&home).args(["policy", "init"]));
    assert!(err.contains("--force"), "{err}");
    ok(airlock(&home).args(["policy", "init", "--force"]));
    let other = home.path().join("elsewhere/p.toml");
    ok(airlock(&home).args(["policy", "init", "-o"]).arg(&other));
    assert!(other.exists());
}

#[test]
fn init_lists_keys_loaded_in_the_agent() {
    let home = Home::new().unwrap();
    let agent = OpenSshAgent::start(&home).unwrap();
    let pair = generate_key(&home.ssh_dir(), "laptop", KeyType::Ed25519).unwrap();
    let added = run(home
        .command_with_agent("ssh-add", agent.socket())
        .arg(&pair.private_key));
    assert!(
        added.status.success(),
        "{}",
        String::from_utf8_lossy(&added.stderr)
    );
    let out = run(home
        .command_with_agent(EXE, agent.socket())
        .args(["policy", "init"]));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(home.config_dir().join("airlock/policy.toml")).unwrap();
    assert!(
        text.contains(&format!(
            "fingerprint = \"{}\"",
            pair.fingerprint().unwrap()
        )),
        "{text}"
    );
}

const FIXTURE_LOG: &str = r#"{"time":"2020-01-01T10:00:00Z","connection":1,"peer":{"uid":1000,"pid":10,"exe":"/usr/bin/ssh"},"operation":"sign","fingerprint":"SHA256:aaa","key":"ai-project","chain":[{"names":["gpu-node-01"],"fingerprint":"SHA256:g","forwarded":true},{"names":["github.com"],"fingerprint":"SHA256:h","forwarded":false}],"user":"git","decision":"allow","reason":"ssh auth as git to github.com through gpu-node-01"}
{"time":"2020-01-01T10:00:05Z","connection":2,"peer":{"uid":1000,"pid":11,"exe":"/usr/bin/ssh"},"operation":"sign","fingerprint":"SHA256:aaa","key":"ai-project","chain":[{"names":["gpu-node-01"],"fingerprint":"SHA256:g","forwarded":true},{"names":["evil.example"],"fingerprint":"SHA256:e","forwarded":false}],"user":"git","decision":"deny","reason":"evil.example is not in use-for of key ai-project"}
not json at all
{"time":"2020-01-01T10:00:09Z","connection":3,"peer":{},"operation":"list","fingerprint":"SHA256:bbb","key":"laptop","chain":[],"decision":"allow","reason":"no rule for this key; not forwarded"}
{"time":"2020-01-01T10:00:10Z","connection":4,"peer":{},"operation":"sign","fingerprint":"SHA256:aaa","key":"ai-project","chain":[{"names":["gpu-node-01"],"fingerprint":"SHA256:g","forwarded":true}],"namespace":"git","decision":"confirm-deny","reason":"user said no"}
"#;

fn audit_lab() -> Home {
    let home = Home::new().unwrap();
    // The oldest line in a rotated file, the rest in the live one.
    let (first, rest) = FIXTURE_LOG.split_once('\n').unwrap();
    home.write_file(".local/state/airlock/audit.jsonl.1", format!("{first}\n"))
        .unwrap();
    home.write_file(".local/state/airlock/audit.jsonl", rest)
        .unwrap();
    home
}

#[test]
fn audit_table() {
    let home = audit_lab();
    let out = ok(airlock(&home).arg("audit"));
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 5, "{out}");
    assert!(
        lines[0].starts_with("TIME") && lines[0].contains("DECISION"),
        "{out}"
    );
    assert!(lines[1].starts_with("2020-01-01 10:00:00Z"), "{out}");
    assert!(
        lines[1].contains("gpu-node-01> github.com") && lines[1].contains("allow"),
        "{out}"
    );
    assert!(
        lines[2].contains("evil.example") && lines[2].contains("deny"),
        "{out}"
    );
    assert!(
        lines[3].contains("(local)") && lines[3].contains("laptop"),
        "{out}"
    );
    assert!(
        lines[4].contains("sshsig:git") && lines[4].contains("confirm-deny"),
        "{out}"
    );
}

#[test]
fn audit_json_and_filters() {
    let home = audit_lab();
    let out = ok(airlock(&home).args(["audit", "--json"]));
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 4, "{out}");
    assert_eq!(lines[0], FIXTURE_LOG.lines().next().unwrap());
    for l in &lines {
        serde_json::from_str::<serde_json::Value>(l).unwrap();
    }
    let denied = ok(airlock(&home).args(["audit", "--json", "--denied"]));
    let conns: Vec<u64> = denied
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["connection"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert_eq!(conns, [2, 4]);
    let by_key = ok(airlock(&home).args(["audit", "--json", "--key", "laptop"]));
    assert_eq!(by_key.lines().count(), 1, "{by_key}");
    let by_fp = ok(airlock(&home).args(["audit", "--json", "--key", "SHA256:aaa"]));
    assert_eq!(by_fp.lines().count(), 3, "{by_fp}");
    let by_host = ok(airlock(&home).args(["audit", "--json", "--host", "evil.*"]));
    assert_eq!(by_host.lines().count(), 1, "{by_host}");
    let by_host = ok(airlock(&home).args(["audit", "--host", "gpu-node-01", "--denied"]));
    assert_eq!(by_host.lines().count(), 3, "{by_host}");
    // The fixture is from 2020: nothing is newer than an hour.
    let recent = ok(airlock(&home).args(["audit", "--json", "--since", "1h"]));
    assert_eq!(recent, "");
    let err = fails(airlock(&home).args(["audit", "--since", "soon"]));
    assert!(err.contains("--since"), "{err}");
    let other = home
        .write_file("other.jsonl", FIXTURE_LOG.lines().next().unwrap())
        .unwrap();
    let out = ok(airlock(&home)
        .args(["audit", "--json", "--file"])
        .arg(&other));
    assert_eq!(out.lines().count(), 1);
    let out = ok(airlock(&home)
        .args(["audit", "--json"])
        .env("AIRLOCK_AUDIT", &other));
    assert_eq!(out.lines().count(), 1);
}

#[test]
fn audit_without_log() {
    let home = Home::new().unwrap();
    let err = fails(airlock(&home).arg("audit"));
    assert!(err.contains("no audit log"), "{err}");
}

/// `policy check --json`: the same facts as the text, under the field names its help lists.
#[test]
fn check_json_has_the_documented_fields() {
    let lab = lab();
    let out = ok(airlock(&lab.home).args(["policy", "check", "--json"]));
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["unrestricted"], false);
    assert!(
        v["policy"]
            .as_str()
            .unwrap()
            .ends_with("airlock/policy.toml"),
        "{v}"
    );
    assert_eq!(v["defaults"]["forward"], "deny");
    assert_eq!(v["defaults"]["confirm"], "never");
    let keys = v["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 1, "{v}");
    let k = &keys[0];
    assert_eq!(k["key"], "ai-project");
    assert_eq!(k["line"], 4);
    assert_eq!(k["fingerprints"].as_array().unwrap().len(), 1, "{v}");
    assert_eq!(k["forward_through"], serde_json::json!(["gpu-node-*"]));
    assert_eq!(k["sign"], serde_json::json!(["ssh-auth", "git"]));
    assert_eq!(k["lifetime_seconds"], serde_json::Value::Null);
    let gpu = k["patterns"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["field"] == "forward-through" && p["pattern"] == "gpu-node-*")
        .unwrap_or_else(|| panic!("{v}"));
    assert_eq!(gpu["hosts"][0]["name"], "gpu-node-01");
    assert_eq!(
        gpu["hosts"][0]["host_keys"],
        serde_json::json!([fp(&lab.gpu)])
    );
    assert!(
        v["warnings"].as_array().unwrap().iter().any(|w| w
            .as_str()
            .unwrap()
            .contains("\"gitlab.nowhere\" matches no known host key")),
        "{v}"
    );
    // The help names every top-level field.
    let help = ok(airlock(&lab.home).args(["policy", "check", "--help"]));
    for field in v.as_object().unwrap().keys() {
        assert!(
            help.contains(&format!("  {field} ")),
            "help lacks {field}:\n{help}"
        );
    }

    // Without a policy file: unrestricted, and still JSON.
    std::fs::remove_file(lab.home.path().join(".config/airlock/policy.toml")).unwrap();
    let out = ok(airlock(&lab.home).args(["policy", "check", "--json"]));
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["unrestricted"], true);
    assert_eq!(v["keys"], serde_json::json!([]));
}
