//! `airlock ssh-config`: the `ssh -G` differential corpus, `check` findings one by one, and
//! `add-host` edits verified with the real `ssh -G`.
//!
//! `ssh` reads `~` and `~/.ssh/config` from the password database, not `$HOME`, so each run
//! gets a temporary home through nss_wrapper (`libnss-wrapper`): a fake passwd entry for the
//! current uid whose home is a temp dir. Both `ssh` and `airlock` run under it. Cases that
//! need the fake home are skipped with a message when nss_wrapper is missing, except under
//! `CI=true`, where that is a failure.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "test code: a failed setup step should fail the test"
)]

use airlock_test_support::{nss_wrapper, nss_wrapper_env};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

const CORPUS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/ssh_config_corpus");

fn require_nss_wrapper(what: &str) -> Option<PathBuf> {
    let found = nss_wrapper();
    if found.is_none() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "{what} needs nss_wrapper: apt-get install libnss-wrapper"
        );
        eprintln!("SKIPPED {what}: nss_wrapper not installed (apt-get install libnss-wrapper)");
    }
    found
}

/// A temp dir with a fake home and the environment that makes `ssh` and `airlock` see it.
struct Sandbox {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    home: PathBuf,
    env: Vec<(String, String)>,
}

impl Sandbox {
    fn new() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().to_path_buf();
        let home = root.join("home");
        std::fs::create_dir_all(home.join(".ssh")).unwrap();
        set_mode(&home.join(".ssh"), 0o700);
        let mut env = vec![
            ("HOME".to_owned(), home.display().to_string()),
            (
                "XDG_CONFIG_HOME".to_owned(),
                root.join("xdg-config").display().to_string(),
            ),
            (
                "XDG_RUNTIME_DIR".to_owned(),
                root.join("xdg-run").display().to_string(),
            ),
            (
                "AIRLOCK_TEST_DIR".to_owned(),
                root.join("dir").display().to_string(),
            ),
        ];
        if let Some(lib) = nss_wrapper() {
            let vars = nss_wrapper_env(&lib, &root, "airtest", &home).unwrap();
            env.extend(
                vars.into_iter()
                    .map(|(k, v)| (k.to_owned(), v.display().to_string())),
            );
        }
        Self {
            _tmp: tmp,
            root,
            home,
            env,
        }
    }

    fn command(&self, program: &str) -> Command {
        let mut c = Command::new(program);
        c.envs(self.env.iter().map(|(k, v)| (k, v)))
            .env_remove("SSH_AUTH_SOCK")
            .env_remove("AIRLOCK_POLICY")
            .env_remove("AIRLOCK_AGENT_SOCK")
            .env_remove("AIRLOCK_KEYS_DIR")
            .stdin(Stdio::null());
        c
    }

    fn ssh_g(&self, args: &[&str]) -> Output {
        self.command("ssh").arg("-G").args(args).output().unwrap()
    }

    fn airlock(&self, args: &[&str]) -> Output {
        self.command(env!("CARGO_BIN_EXE_airlock"))
            .args(args)
            .output()
            .unwrap()
    }
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn copy_tree(from: &Path, to: &Path, subst: &dyn Fn(&str) -> String) {
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            std::fs::create_dir_all(&target).unwrap();
            copy_tree(&entry.path(), &target, subst);
        } else {
            let text = std::fs::read_to_string(entry.path()).unwrap();
            std::fs::write(&target, subst(&text)).unwrap();
            set_mode(&target, 0o600);
        }
    }
}

struct Query {
    args: Vec<String>,
    with_file: bool,
}

fn queries(text: &str) -> (bool, Vec<Query>) {
    let mut needs_home = false;
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.trim_end_matches('\r');
        if line == "#@needs-home" {
            needs_home = true;
        } else if let Some(q) = line.strip_prefix("#@ ") {
            out.push(Query {
                args: q.split_whitespace().map(str::to_owned).collect(),
                with_file: true,
            });
        } else if let Some(q) = line.strip_prefix("#@nof ") {
            out.push(Query {
                args: q.split_whitespace().map(str::to_owned).collect(),
                with_file: false,
            });
        }
    }
    (needs_home, out)
}

/// Every corpus config, every query: `airlock ssh-config resolve` prints exactly what
/// `ssh -G` prints (all lines, in order), or both refuse the config.
#[test]
fn corpus_agrees_with_ssh_g() {
    let mut configs: Vec<PathBuf> = std::fs::read_dir(CORPUS)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "conf"))
        .collect();
    configs.sort();
    assert!(configs.len() >= 40, "corpus has {} configs", configs.len());
    let have_nss = require_nss_wrapper("the corpus cases that use ~/.ssh").is_some();
    let (mut agree, mut total, mut skipped) = (0, 0, 0);
    let mut report = String::new();
    for cfg in &configs {
        let name = cfg.file_stem().unwrap().to_string_lossy().into_owned();
        let text = std::fs::read_to_string(cfg).unwrap();
        let (needs_home, qs) = queries(&text);
        assert!(
            qs.len() >= 2,
            "{name}: want several hosts, found {}",
            qs.len()
        );
        if needs_home && !have_nss {
            skipped += qs.len();
            continue;
        }
        let sb = Sandbox::new();
        let dir = sb.root.join("dir");
        std::fs::create_dir_all(&dir).unwrap();
        let (d, h) = (dir.display().to_string(), sb.home.display().to_string());
        let subst = |s: &str| s.replace("@DIR@", &d).replace("@HOME@", &h);
        let aux = Path::new(CORPUS).join(format!("{name}.d"));
        if aux.is_dir() {
            copy_tree(&aux, &dir, &subst);
        }
        let home_aux = Path::new(CORPUS).join(format!("{name}.home"));
        if home_aux.is_dir() {
            copy_tree(&home_aux, &sb.home, &subst);
        }
        for line in text.lines() {
            if let Some(spec) = line.strip_prefix("#@chmod ") {
                let mut it = spec.split_whitespace();
                let (file, mode) = (it.next().unwrap(), it.next().unwrap());
                set_mode(&dir.join(file), u32::from_str_radix(mode, 8).unwrap());
            }
        }
        let config = dir.join("config");
        std::fs::write(&config, subst(&text)).unwrap();
        let user_config = sb.home.join(".ssh/config");
        std::fs::write(&user_config, subst(&text)).unwrap();
        set_mode(&user_config, 0o600);
        let config_s = config.display().to_string();
        for q in &qs {
            total += 1;
            let mut args: Vec<&str> = Vec::new();
            if q.with_file {
                args.extend(["-F", config_s.as_str()]);
            }
            args.extend(q.args.iter().map(String::as_str));
            let ssh = sb.ssh_g(&args);
            let mut al_args = vec!["ssh-config", "resolve"];
            al_args.extend(&args);
            let ours = sb.airlock(&al_args);
            let ssh_out = String::from_utf8_lossy(&ssh.stdout);
            let our_out = String::from_utf8_lossy(&ours.stdout);
            let same = if ssh.status.success() && ours.status.success() {
                ssh_out == our_out
            } else {
                ssh.status.success() == ours.status.success()
            };
            if same {
                agree += 1;
            } else {
                let _ = writeln!(
                    report,
                    "--- {name} {:?}: ssh {} / airlock {}\nssh stderr: {}\nairlock stderr: {}",
                    q.args,
                    ssh.status,
                    ours.status,
                    String::from_utf8_lossy(&ssh.stderr).trim(),
                    String::from_utf8_lossy(&ours.stderr).trim()
                );
                let s: Vec<&str> = ssh_out.lines().collect();
                let o: Vec<&str> = our_out.lines().collect();
                for l in &s {
                    if !o.contains(l) {
                        let _ = writeln!(report, "  ssh only:     {l}");
                    }
                }
                for l in &o {
                    if !s.contains(l) {
                        let _ = writeln!(report, "  airlock only: {l}");
                    }
                }
            }
        }
    }
    eprintln!(
        "ssh -G corpus: {} configs, {agree}/{total} queries agree, {skipped} skipped",
        configs.len()
    );
    assert!(report.is_empty(), "disagreements with ssh -G:\n{report}");
}

#[test]
fn resolve_reports_match_exec_unsupported() {
    let sb = Sandbox::new();
    let cfg = sb.root.join("config");
    std::fs::write(&cfg, "Match exec \"true\"\n  User x\n").unwrap();
    let out = sb.airlock(&["ssh-config", "resolve", "-F", cfg.to_str().unwrap(), "h"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("config:1: Match exec is not supported"),
        "{err}"
    );
}

#[test]
fn resolve_names_file_and_line_of_bad_option() {
    let sb = Sandbox::new();
    let cfg = sb.root.join("config");
    std::fs::write(&cfg, "Host a\n  User x\n  Bogus 1\n").unwrap();
    let out = sb.airlock(&["ssh-config", "resolve", "-F", cfg.to_str().unwrap(), "a"]);
    assert_eq!(out.status.code(), Some(255));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("config:3: Bad configuration option: bogus"),
        "{err}"
    );
}

// ---------------------------------------------------------------------------------------
// check

struct CheckRun {
    code: Option<i32>,
    findings: Vec<serde_json::Value>,
}

fn run_check(sb: &Sandbox, config: &str, extra: &[&str]) -> CheckRun {
    let cfg = sb.home.join(".ssh/config");
    std::fs::write(&cfg, config).unwrap();
    set_mode(&cfg, 0o600);
    let mut args = vec!["ssh-config", "check", "--json", "-F", cfg.to_str().unwrap()];
    args.extend(extra);
    let out = sb.airlock(&args);
    let findings = if out.stdout.is_empty() {
        Vec::new()
    } else {
        serde_json::from_slice(&out.stdout).unwrap()
    };
    CheckRun {
        code: out.status.code(),
        findings,
    }
}

fn ids(run: &CheckRun) -> Vec<String> {
    run.findings
        .iter()
        .map(|f| f["id"].as_str().unwrap().to_owned())
        .collect()
}

fn write_key(sb: &Sandbox, name: &str, mode: u32) -> PathBuf {
    let p = sb.home.join(".ssh").join(name);
    std::fs::write(
        &p,
        "-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA\n-----END OPENSSH PRIVATE KEY-----\n",
    )
    .unwrap();
    set_mode(&p, mode);
    p
}

fn with_home(what: &str) -> Option<Sandbox> {
    require_nss_wrapper(what).map(|_| Sandbox::new())
}

#[test]
fn check_clean_config_has_no_findings() {
    let Some(sb) = with_home("check_clean_config_has_no_findings") else {
        return;
    };
    write_key(&sb, "id_lab", 0o600);
    let run = run_check(
        &sb,
        "Host gpu\n  HostName gpu.lab\n  IdentityFile ~/.ssh/id_lab\n  IdentitiesOnly yes\n  ProxyJump bastion\n\nHost *\n  ForwardAgent no\n  StrictHostKeyChecking accept-new\n",
        &[],
    );
    assert_eq!(run.code, Some(0), "{:?}", run.findings);
    assert!(run.findings.is_empty());
}

#[test]
fn check_forward_agent_to_host_star() {
    let Some(sb) = with_home("check_forward_agent_to_host_star") else {
        return;
    };
    let run = run_check(&sb, "Host a\n  User x\nHost *\n  ForwardAgent yes\n", &[]);
    assert_eq!(run.code, Some(1));
    let f = &run.findings[0];
    assert_eq!(f["id"], "forward-agent-wildcard");
    assert_eq!(f["severity"], "error");
    assert_eq!(f["line"], 4);
    assert!(f["file"].as_str().unwrap().ends_with(".ssh/config"));
    assert!(f["fix"].as_str().unwrap().contains("ForwardAgent no"));
}

#[test]
fn check_forward_agent_to_broad_wildcard() {
    let Some(sb) = with_home("check_forward_agent_to_broad_wildcard") else {
        return;
    };
    let run = run_check(&sb, "Host *.example.org\n  ForwardAgent yes\n", &[]);
    assert_eq!(ids(&run), ["forward-agent-wildcard"]);
    assert_eq!(run.findings[0]["severity"], "warning");
}

#[test]
fn check_forward_agent_not_in_policy() {
    let Some(sb) = with_home("check_forward_agent_not_in_policy") else {
        return;
    };
    let policy = sb.root.join("policy.toml");
    std::fs::write(
        &policy,
        "[[key]]\nname = \"lab\"\nforward-through = [\"gpu-node-*\"]\n",
    )
    .unwrap();
    let config = "Host gpu-node-01\n  ForwardAgent yes\nHost devbox\n  ForwardAgent yes\n";
    let run = run_check(&sb, config, &["--policy", policy.to_str().unwrap()]);
    assert_eq!(ids(&run), ["forward-agent-not-in-policy"]);
    assert_eq!(run.findings[0]["line"], 4);
    assert!(
        run.findings[0]["message"]
            .as_str()
            .unwrap()
            .contains("devbox")
    );
    // No policy file: the finding is skipped.
    let missing = sb.root.join("no-such-policy.toml");
    let run = run_check(&sb, config, &["--policy", missing.to_str().unwrap()]);
    assert_eq!(run.code, Some(0), "{:?}", run.findings);
}

#[test]
fn check_shadowed_setting() {
    let Some(sb) = with_home("check_shadowed_setting") else {
        return;
    };
    let run = run_check(
        &sb,
        "Host *\n  User everyone\n  Port 2222\nHost gpu\n  User researcher\n",
        &[],
    );
    assert_eq!(ids(&run), ["shadowed-setting"]);
    let f = &run.findings[0];
    assert_eq!(f["line"], 5);
    assert!(f["message"].as_str().unwrap().contains("config:2"), "{f}");
}

#[test]
fn check_strict_host_key_checking_no() {
    let Some(sb) = with_home("check_strict_host_key_checking_no") else {
        return;
    };
    let run = run_check(&sb, "Host lab\n  StrictHostKeyChecking no\n", &[]);
    assert_eq!(ids(&run), ["host-key-checking-disabled"]);
    assert_eq!(run.findings[0]["line"], 2);
    let run = run_check(&sb, "Host lab\n  UserKnownHostsFile /dev/null\n", &[]);
    assert_eq!(ids(&run), ["host-key-checking-disabled"]);
}

#[test]
fn check_many_identities_without_identities_only() {
    let Some(sb) = with_home("check_many_identities_without_identities_only") else {
        return;
    };
    write_key(&sb, "id_a", 0o600);
    write_key(&sb, "id_b", 0o600);
    let run = run_check(
        &sb,
        "Host gpu\n  IdentityFile ~/.ssh/id_a\n  IdentityFile ~/.ssh/id_b\n",
        &[],
    );
    assert_eq!(ids(&run), ["identities-without-identitiesonly"]);
    assert_eq!(run.findings[0]["line"], 2);
}

#[test]
fn check_identity_file_missing_or_loose() {
    let Some(sb) = with_home("check_identity_file_missing_or_loose") else {
        return;
    };
    let run = run_check(
        &sb,
        "Host gpu\n  IdentityFile ~/.ssh/nope\n  IdentitiesOnly yes\n",
        &[],
    );
    assert_eq!(ids(&run), ["identity-file-missing"]);
    write_key(&sb, "id_loose", 0o640);
    let run = run_check(
        &sb,
        "Host gpu\n  IdentityFile ~/.ssh/id_loose\n  IdentitiesOnly yes\n",
        &[],
    );
    assert_eq!(ids(&run), ["identity-file-permissions"]);
    assert!(
        run.findings[0]["fix"]
            .as_str()
            .unwrap()
            .starts_with("chmod 600")
    );
}

#[test]
fn check_private_key_readable_by_others() {
    let Some(sb) = with_home("check_private_key_readable_by_others") else {
        return;
    };
    let key = write_key(&sb, "old_key", 0o644);
    let run = run_check(&sb, "Host a\n  User x\n", &[]);
    assert_eq!(ids(&run), ["private-key-readable"]);
    assert_eq!(run.findings[0]["file"], key.display().to_string());
}

#[test]
fn check_forward_agent_where_proxyjump_would_do() {
    let Some(sb) = with_home("check_forward_agent_where_proxyjump_would_do") else {
        return;
    };
    let run = run_check(
        &sb,
        "Host bastion\n  ForwardAgent yes\nHost inner\n  ProxyCommand ssh bastion -W %h:%p\n",
        &[],
    );
    assert_eq!(ids(&run), ["forward-agent-proxyjump"]);
    assert_eq!(run.findings[0]["line"], 2);
    let run = run_check(
        &sb,
        "Host inner\n  ProxyCommand ssh -A bastion -W %h:%p\n",
        &[],
    );
    assert_eq!(ids(&run), ["forward-agent-proxyjump"]);
}

#[test]
fn check_unreadable_config_exits_2() {
    let sb = Sandbox::new();
    let missing = sb.root.join("missing");
    let out = sb.airlock(&["ssh-config", "check", "-F", missing.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let run = run_check(&sb, "Host a\n  NotAnOption yes\n", &[]);
    assert_eq!(run.code, Some(2));
}

#[test]
fn check_text_output_names_file_line_and_fix() {
    let Some(sb) = with_home("check_text_output_names_file_line_and_fix") else {
        return;
    };
    let cfg = sb.home.join(".ssh/config");
    std::fs::write(&cfg, "Host *\n  ForwardAgent yes\n").unwrap();
    set_mode(&cfg, 0o600);
    let out = sb.airlock(&["ssh-config", "check", "-F", cfg.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(".ssh/config:2: error [forward-agent-wildcard]"),
        "{text}"
    );
    assert!(text.contains("fix: "), "{text}");
}

// ---------------------------------------------------------------------------------------
// add-host

const EXISTING: &str = "# My ssh config\n\n# the bastion, keep first\nHost bastion\n    HostName bastion.lab.example.org # inline note\n    User jdoe\n\n# everything else\nHost *\n    ServerAliveInterval 30\n";

/// The command succeeded; its stderr otherwise.
fn assert_ok(out: &Output) {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The flags of a full `Host gpu` block.
const GPU_BLOCK: &[&str] = &[
    "gpu",
    "--hostname",
    "gpu-node-01.lab",
    "--user",
    "jdoe",
    "--key",
    "lab",
    "--proxy-jump",
    "bastion",
    "--forward-agent",
];

fn add_host(sb: &Sandbox, cfg: &Path, extra: &[&str]) -> Output {
    let mut args = vec!["ssh-config", "add-host", "-F", cfg.to_str().unwrap()];
    args.extend(extra);
    sb.airlock(&args)
}

#[test]
fn add_host_is_idempotent_and_keeps_comments() {
    let sb = Sandbox::new();
    let cfg = sb.home.join(".ssh/config");
    std::fs::write(&cfg, EXISTING).unwrap();
    set_mode(&cfg, 0o600);
    let args = GPU_BLOCK;
    let out = add_host(&sb, &cfg, args);
    assert_ok(&out);
    let first = std::fs::read(&cfg).unwrap();
    let text = String::from_utf8(first.clone()).unwrap();
    for comment in [
        "# My ssh config",
        "# the bastion, keep first",
        "# inline note",
        "# everything else",
    ] {
        assert!(text.contains(comment), "lost {comment:?}:\n{text}");
    }
    // Original lines keep their order; the guard is last.
    let pos = |s: &str| {
        text.find(s)
            .unwrap_or_else(|| panic!("{s:?} missing:\n{text}"))
    };
    assert!(pos("Host bastion") < pos("Host gpu"));
    assert!(pos("Host gpu") < pos("ServerAliveInterval 30"));
    assert!(
        text.trim_end().ends_with("Host *\n    ForwardAgent no"),
        "{text}"
    );
    assert_eq!(
        std::fs::read(sb.home.join(".ssh/config.airlock-bak")).unwrap(),
        EXISTING.as_bytes()
    );
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&cfg).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
    // Twice gives identical bytes.
    let out = add_host(&sb, &cfg, args);
    assert!(out.status.success());
    assert_eq!(std::fs::read(&cfg).unwrap(), first);
    // Updating in place: same block, new values, nothing else moves.
    let out = add_host(
        &sb,
        &cfg,
        &["gpu", "--hostname", "gpu-node-02.lab", "--port", "2222"],
    );
    assert_ok(&out);
    let updated = std::fs::read_to_string(&cfg).unwrap();
    assert_eq!(updated.matches("Host gpu").count(), 1, "{updated}");
    assert!(
        updated.contains("HostName gpu-node-02.lab\n    User jdoe\n"),
        "{updated}"
    );
    assert!(
        updated.contains("ForwardAgent /") && updated.contains("    Port 2222\n"),
        "{updated}"
    );
    assert_eq!(updated.matches("Host *").count(), 2, "{updated}");
}

/// The block a first `add-host` wrote, then a second call naming only `--hostname`: User,
/// IdentityFile, IdentitiesOnly, ProxyJump and ForwardAgent survive (they were dropped
/// before), the diff on stderr shows exactly the one changed line, and `ssh -G` agrees.
#[test]
fn add_host_again_changes_only_what_its_flags_name() {
    let sb = Sandbox::new();
    let cfg = sb.root.join("config");
    std::fs::write(&cfg, EXISTING).unwrap();
    let first = add_host(&sb, &cfg, GPU_BLOCK);
    assert_ok(&first);
    let before = std::fs::read_to_string(&cfg).unwrap();
    let out = add_host(&sb, &cfg, &["gpu", "--hostname", "gpu-node-02.lab"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    let after = std::fs::read_to_string(&cfg).unwrap();
    assert_eq!(
        after,
        before.replace("HostName gpu-node-01.lab", "HostName gpu-node-02.lab")
    );
    assert!(err.contains("changed `Host gpu`"), "{err}");
    let changed: Vec<&str> = err.lines().filter(|l| l.starts_with(['-', '+'])).collect();
    assert_eq!(
        changed,
        [
            "-    HostName gpu-node-01.lab",
            "+    HostName gpu-node-02.lab"
        ],
        "{err}"
    );
    let g = sb.ssh_g(&["-F", cfg.to_str().unwrap(), "gpu"]);
    let g = String::from_utf8(g.stdout).unwrap();
    let socket = sb.root.join("xdg-run/airlock/agent.sock");
    for want in [
        "hostname gpu-node-02.lab".to_owned(),
        "user jdoe".to_owned(),
        "identitiesonly yes".to_owned(),
        "proxyjump bastion".to_owned(),
        format!("forwardagent {}", socket.display()),
    ] {
        assert!(g.lines().any(|l| l == want), "missing {want:?} in:\n{g}");
    }
    // --no-forward-agent takes the one line out, and the guard's `no` applies.
    let out = add_host(&sb, &cfg, &["gpu", "--no-forward-agent"]);
    assert_ok(&out);
    let g = sb.ssh_g(&["-F", cfg.to_str().unwrap(), "gpu"]);
    let g = String::from_utf8(g.stdout).unwrap();
    assert!(g.lines().any(|l| l == "forwardagent no"), "{g}");
    assert!(g.lines().any(|l| l == "user jdoe"), "{g}");
}

/// `--replace` writes the block's settings from the flags alone; the block's comments stay.
#[test]
fn add_host_replace_rewrites_the_block() {
    let sb = Sandbox::new();
    let cfg = sb.root.join("config");
    let original = "Host gpu\n    # my GPU box\n    HostName old.lab\n    User jdoe\n    Compression yes\n\nHost *\n    ForwardAgent no\n";
    std::fs::write(&cfg, original).unwrap();
    let out = add_host(
        &sb,
        &cfg,
        &[
            "gpu",
            "--replace",
            "--hostname",
            "new.lab",
            "--port",
            "2200",
        ],
    );
    assert_ok(&out);
    assert_eq!(
        std::fs::read_to_string(&cfg).unwrap(),
        "Host gpu\n    HostName new.lab\n    Port 2200\n    IdentitiesOnly yes\n    # my GPU box\n\nHost *\n    ForwardAgent no\n"
    );
    // Without --hostname there is nothing to rewrite the block from.
    let out = add_host(&sb, &cfg, &["gpu", "--replace", "--port", "22"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with("airlock: error:") && err.contains("--hostname"),
        "{err}"
    );
}

/// A block the user wrote by hand: its odd spacing, comments and other settings, and every
/// other block, stay byte for byte; only the named line changes and the diff says which.
#[test]
fn add_host_on_a_hand_written_block_changes_one_line() {
    let sb = Sandbox::new();
    let cfg = sb.root.join("config");
    let original = "# mine\nHost gpu\n\t# keep me\n\tHostname=old.lab\n\tuser   jdoe\n\tForwardX11 yes\n\n# others\nHost bastion\n  User x\nHost *\n  ForwardAgent no\n";
    std::fs::write(&cfg, original).unwrap();
    let out = add_host(&sb, &cfg, &["gpu", "--port", "2222"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert_eq!(
        std::fs::read_to_string(&cfg).unwrap(),
        original.replace("\tForwardX11 yes\n", "\tForwardX11 yes\n\tPort 2222\n")
    );
    assert!(err.contains("+\tPort 2222"), "{err}");
    assert_eq!(
        err.lines().filter(|l| l.starts_with(['-', '+'])).count(),
        1,
        "{err}"
    );
    // A second identical call changes nothing.
    let out = add_host(&sb, &cfg, &["gpu", "--port", "2222"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("already up to date"));
    // --dry-run shows the change it would make and writes nothing.
    let before = std::fs::read(&cfg).unwrap();
    let out = add_host(&sb, &cfg, &["gpu", "--user", "other", "--dry-run"]);
    assert_ok(&out);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("would change `Host gpu` (nothing written)")
            && err.contains("-\tuser   jdoe\n+\tUser other\n"),
        "{err}"
    );
    assert_eq!(std::fs::read(&cfg).unwrap(), before);
}

/// ssh expands `~` in its config to the password database's home; airlock keeps keys under
/// `$HOME`. The `IdentityFile` add-host writes must be the file `key new` made, whether the
/// two homes agree (then `~/...`) or not (then the absolute path).
#[test]
fn add_host_identity_file_is_the_key_that_key_new_made() {
    let Some(sb) = with_home("add_host_identity_file_is_the_key_that_key_new_made") else {
        return;
    };
    let other_home = sb.root.join("other-home");
    std::fs::create_dir_all(&other_home).unwrap();
    for (home, expect_tilde) in [(&sb.home, true), (&other_home, false)] {
        let run = |args: &[&str]| {
            sb.command(env!("CARGO_BIN_EXE_airlock"))
                .env("HOME", home)
                .args(args)
                .output()
                .unwrap()
        };
        let out = run(&["key", "new", "lab", "--no-passphrase"]);
        assert_ok(&out);
        let key_file = home.join(".ssh/airlock/lab");
        assert!(key_file.exists());
        let cfg = sb.root.join(format!("config-{expect_tilde}"));
        let out = run(&[
            "ssh-config",
            "add-host",
            "-F",
            cfg.to_str().unwrap(),
            "gpu",
            "--hostname",
            "gpu.lab",
            "--key",
            "lab",
        ]);
        assert_ok(&out);
        // What ssh will open: its own `~` is the password database's home.
        let g = sb.ssh_g(&["-F", cfg.to_str().unwrap(), "gpu"]);
        let g = String::from_utf8(g.stdout).unwrap();
        let written = g
            .lines()
            .find_map(|l| l.strip_prefix("identityfile "))
            .unwrap_or_else(|| panic!("no identityfile in:\n{g}"));
        assert_eq!(written.starts_with("~/"), expect_tilde, "{written}");
        let opened = match written.strip_prefix("~/") {
            Some(rest) => sb.home.join(rest),
            None => PathBuf::from(written),
        };
        assert_eq!(opened, key_file, "ssh would open {written}");
    }
}

#[test]
fn add_host_then_ssh_g_shows_intended_settings() {
    let sb = Sandbox::new();
    let cfg = sb.root.join("config");
    std::fs::write(&cfg, EXISTING).unwrap();
    let out = add_host(
        &sb,
        &cfg,
        &[
            "gpu",
            "--hostname",
            "gpu-node-01.lab",
            "--user",
            "jdoe",
            "--port",
            "2200",
            "--key",
            "lab",
            "--proxy-jump",
            "bastion",
            "--forward-agent",
        ],
    );
    assert_ok(&out);
    let g = sb.ssh_g(&["-F", cfg.to_str().unwrap(), "gpu"]);
    assert_ok(&g);
    let g = String::from_utf8(g.stdout).unwrap();
    let socket = sb.root.join("xdg-run/airlock/agent.sock");
    for want in [
        "hostname gpu-node-01.lab".to_owned(),
        "user jdoe".to_owned(),
        "port 2200".to_owned(),
        "identityfile ~/.ssh/airlock/lab".to_owned(),
        "identitiesonly yes".to_owned(),
        "proxyjump bastion".to_owned(),
        format!("forwardagent {}", socket.display()),
        "serveraliveinterval 30".to_owned(),
    ] {
        assert!(g.lines().any(|l| l == want), "missing {want:?} in:\n{g}");
    }
    // Other hosts get the guard.
    let other = sb.ssh_g(&["-F", cfg.to_str().unwrap(), "elsewhere"]);
    let other = String::from_utf8(other.stdout).unwrap();
    assert!(other.lines().any(|l| l == "forwardagent no"), "{other}");
    // And airlock's resolver agrees with ssh on the edited file.
    let ours = sb.airlock(&["ssh-config", "resolve", "-F", cfg.to_str().unwrap(), "gpu"]);
    assert_eq!(String::from_utf8(ours.stdout).unwrap(), g);
}

#[test]
fn add_host_creates_missing_file() {
    let sb = Sandbox::new();
    let cfg = sb.root.join("newdir/config");
    let out = add_host(&sb, &cfg, &["box", "--hostname", "box.example"]);
    assert_ok(&out);
    assert_eq!(
        std::fs::read_to_string(&cfg).unwrap(),
        "Host box\n    HostName box.example\n    IdentitiesOnly yes\n\n# Added by airlock: no agent forwarding unless a Host block above enables it.\nHost *\n    ForwardAgent no\n"
    );
    assert!(!sb.root.join("newdir/config.airlock-bak").exists());
}

#[test]
fn add_host_where_the_file_cannot_be_written_says_why_in_plain_words() {
    let sb = Sandbox::new();
    let blocker = sb.root.join("blocker");
    std::fs::write(&blocker, "").unwrap();
    let out = add_host(
        &sb,
        &blocker.join("config"),
        &["box", "--hostname", "box.example"],
    );
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        err.trim_end(),
        format!(
            "airlock: error: cannot update {}: Not a directory",
            blocker.join("config").display()
        ),
        "{err}"
    );
}

#[test]
fn add_host_refuses_when_an_earlier_line_would_win() {
    let sb = Sandbox::new();
    let cfg = sb.root.join("config");
    let original = "User everyone\nHost *\n  ForwardAgent no\n";
    std::fs::write(&cfg, original).unwrap();
    let out = add_host(
        &sb,
        &cfg,
        &["box", "--hostname", "box.example", "--user", "me"],
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("User for `box` would not take effect"),
        "{err}"
    );
    assert_eq!(std::fs::read_to_string(&cfg).unwrap(), original);
}
