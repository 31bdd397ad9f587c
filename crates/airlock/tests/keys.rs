//! `airlock key` end to end: the real binary, in an isolated home, against the real `ssh-keygen`,
//! `ssh-agent`, `ssh-add`, `ssh` and `sshd`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs
)]

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use airlock_test_support::{
    Home, KeyType, OpenSshAgent, Sshd, client_defaults, generate_key_with_passphrase, ssh_keygen,
};

const PASSPHRASE: &str = "correct horse battery";

/// The binary with only the home's environment (no `SSH_AUTH_SOCK`, no `AIRLOCK_*`) and no
/// terminal on stdin.
fn airlock(home: &Home) -> Command {
    let mut command = home.command(env!("CARGO_BIN_EXE_airlock"));
    command.stdin(Stdio::null());
    command
}

fn run(command: &mut Command) -> Output {
    command.output().expect("run the command")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Run, require success, return stdout.
fn ok(command: &mut Command) -> String {
    let output = run(command);
    assert!(
        output.status.success(),
        "{command:?} failed: {}\nstdout: {}\nstderr: {}",
        output.status,
        stdout(&output),
        stderr(&output)
    );
    stdout(&output)
}

/// Run, require failure with a clean message (no panic, no backtrace), return stderr.
fn fails(command: &mut Command) -> String {
    let output = run(command);
    let err = stderr(&output);
    assert!(
        !output.status.success(),
        "{command:?} should fail\nstdout: {}\nstderr: {err}",
        stdout(&output)
    );
    // 1 for airlock's own errors, 2 for clap's usage errors.
    assert!(
        matches!(output.status.code(), Some(1 | 2)),
        "{command:?}: {err}"
    );
    assert!(
        !err.contains("panicked") && !err.contains("RUST_BACKTRACE"),
        "{err}"
    );
    err
}

fn keys_dir(home: &Home) -> PathBuf {
    home.path().join(".ssh").join("airlock")
}

fn passphrase_file(home: &Home, text: &str) -> PathBuf {
    home.write_file(format!("pass-{}", text.len()), format!("{text}\n"))
        .unwrap()
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// `key show`: (public key line, fingerprint).
fn show(home: &Home, name: &str) -> (String, String) {
    let out = ok(airlock(home).args(["key", "show", name]));
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    (lines[0].to_owned(), lines[1].to_owned())
}

/// `algorithm base64` of a public key line, without the comment.
fn key_part(line: &str) -> String {
    line.split_whitespace()
        .take(2)
        .collect::<Vec<_>>()
        .join(" ")
}

/// The fingerprint column of `ssh-keygen -l -f FILE`: `256 SHA256:... comment (ED25519)`.
fn ssh_keygen_fingerprint(file: &Path) -> String {
    let out = ssh_keygen([Path::new("-l"), Path::new("-f"), file]).unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .nth(1)
        .unwrap()
        .to_owned()
}

/// `ssh-keygen -y -f FILE -P PASS`: the public key it derives from the private key file.
fn ssh_keygen_public(file: &Path, passphrase: &str) -> Result<String, String> {
    let out = Command::new("ssh-keygen")
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .arg("-y")
        .arg("-f")
        .arg(file)
        .arg("-P")
        .arg(passphrase)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// Rewrite the `expires` line of a key's metadata: the way to get an expired key without
/// waiting.
fn set_expiry(home: &Home, name: &str, expires: &str) {
    let path = keys_dir(home).join(format!("{name}.toml"));
    let text = fs::read_to_string(&path).unwrap();
    let mut lines: Vec<String> = text
        .lines()
        .filter(|l| !l.starts_with("expires"))
        .map(str::to_owned)
        .collect();
    lines.push(format!("expires = \"{expires}\""));
    fs::write(&path, lines.join("\n") + "\n").unwrap();
}

#[test]
fn new_keys_of_every_type_are_read_by_ssh_keygen() {
    let home = Home::new().unwrap();
    let pass = passphrase_file(&home, PASSPHRASE);
    let cases: [(&str, &[&str], &str); 7] = [
        ("ed", &["--type", "ed25519"], "ssh-ed25519"),
        ("p256", &["--type", "ecdsa"], "ecdsa-sha2-nistp256"),
        (
            "p384",
            &["--type", "ecdsa", "--bits", "384"],
            "ecdsa-sha2-nistp384",
        ),
        (
            "p521",
            &["--type", "ecdsa", "--bits", "521"],
            "ecdsa-sha2-nistp521",
        ),
        ("rsa", &["--type", "rsa"], "ssh-rsa"),
        ("rsa2k", &["--type", "rsa", "--bits", "2048"], "ssh-rsa"),
        ("default", &[], "ssh-ed25519"),
    ];
    for (i, (name, type_args, algorithm)) in cases.iter().enumerate() {
        // Alternate: half the keys encrypted, half not, every family both ways across the runs.
        for encrypted in [true, false] {
            if *name == "rsa" && !encrypted || *name == "rsa2k" && encrypted {
                continue; // RSA generation is slow; cover each mode once.
            }
            let key_name = format!("{name}-{}", if encrypted { "enc" } else { "plain" });
            let mut cmd = airlock(&home);
            cmd.args(["key", "new", &key_name]).args(*type_args);
            if encrypted {
                cmd.arg("--passphrase-file").arg(&pass);
            } else {
                cmd.arg("--no-passphrase");
            }
            let out = ok(&mut cmd);
            let (line, fingerprint) = show(&home, &key_name);
            assert_eq!(
                out.lines().next(),
                Some(line.as_str()),
                "new prints the key"
            );
            assert!(line.starts_with(&format!("{algorithm} AAAA")), "{line}");
            assert!(line.ends_with(&format!(" {key_name}@airlock")), "{line}");

            let private = keys_dir(&home).join(&key_name);
            let public = keys_dir(&home).join(format!("{key_name}.pub"));
            let text = fs::read_to_string(&private).unwrap();
            assert!(text.starts_with("-----BEGIN OPENSSH PRIVATE KEY-----"));
            if encrypted {
                assert_eq!(
                    ssh_keygen_public(&private, PASSPHRASE).map(|l| key_part(&l)),
                    Ok(key_part(&line)),
                    "case {i}: {key_name}"
                );
                let err = ssh_keygen_public(&private, "wrong passphrase").unwrap_err();
                assert!(err.contains("incorrect passphrase"), "{err}");
            } else {
                // -P is ignored for an unencrypted key.
                assert_eq!(
                    ssh_keygen_public(&private, "").map(|l| key_part(&l)),
                    Ok(key_part(&line))
                );
            }
            assert_eq!(ssh_keygen_fingerprint(&public), fingerprint);
            assert_eq!(fs::read_to_string(&public).unwrap(), format!("{line}\n"));
        }
    }
    assert_eq!(mode(&keys_dir(&home)), 0o700);
    assert_eq!(mode(&keys_dir(&home).join("ed-enc")), 0o600);
    assert_eq!(mode(&keys_dir(&home).join("ed-enc.pub")), 0o644);
    assert_eq!(mode(&keys_dir(&home).join("ed-enc.toml")), 0o600);
}

#[test]
fn encrypted_key_uses_bcrypt_and_aes256_ctr_like_ssh_keygen() {
    let home = Home::new().unwrap();
    let pass = passphrase_file(&home, PASSPHRASE);
    ok(airlock(&home)
        .args(["key", "new", "k", "--passphrase-file"])
        .arg(&pass));
    let private = ssh_key::PrivateKey::read_openssh_file(&keys_dir(&home).join("k")).unwrap();
    assert!(private.is_encrypted());
    assert_eq!(private.cipher(), ssh_key::Cipher::Aes256Ctr);
    assert_eq!(private.kdf().algorithm(), ssh_key::KdfAlg::Bcrypt);
    let meta = fs::read_to_string(keys_dir(&home).join("k.toml")).unwrap();
    for field in [
        "type = \"ed25519\"",
        "fingerprint = \"SHA256:",
        "created = \"",
        "encrypted = true",
        "comment = \"k@airlock\"",
    ] {
        assert!(meta.contains(field), "{field} missing from\n{meta}");
    }
}

#[test]
fn metadata_records_comment_and_expiry() {
    let home = Home::new().unwrap();
    ok(airlock(&home).args([
        "key",
        "new",
        "proj",
        "--no-passphrase",
        "--comment",
        "deploy key for proj",
        "--expires",
        "90d",
    ]));
    let (line, _) = show(&home, "proj");
    assert!(line.ends_with(" deploy key for proj"), "{line}");
    let json: serde_json::Value =
        serde_json::from_str(&ok(airlock(&home).args(["key", "list", "--json"]))).unwrap();
    let entry = &json[0];
    assert_eq!(entry["name"], "proj");
    assert_eq!(entry["type"], "ed25519");
    assert_eq!(entry["comment"], "deploy key for proj");
    assert_eq!(entry["expired"], false);
    assert_eq!(entry["encrypted"], false);
    assert_eq!(
        entry["loaded"],
        serde_json::Value::Null,
        "no agent: unknown"
    );
    let created = entry["created"].as_str().unwrap();
    let expires = entry["expires"].as_str().unwrap();
    let parse = |s| airlock_keys::parse_time(s).unwrap();
    assert_eq!(
        (parse(expires) - parse(created)).whole_seconds(),
        90 * 86_400
    );
}

#[test]
fn without_a_terminal_new_needs_a_passphrase_flag() {
    let home = Home::new().unwrap();
    let err = fails(airlock(&home).args(["key", "new", "k"]));
    assert!(err.contains("--passphrase-file"), "{err}");
    assert!(err.contains("--no-passphrase"), "{err}");
    assert!(!keys_dir(&home).join("k").exists());

    let err = fails(
        airlock(&home)
            .args(["key", "new", "k", "--no-passphrase", "--passphrase-file"])
            .arg(passphrase_file(&home, PASSPHRASE)),
    );
    assert!(err.contains("cannot be used with"), "{err}");

    let short = passphrase_file(&home, "abc");
    let err = fails(
        airlock(&home)
            .args(["key", "new", "k", "--passphrase-file"])
            .arg(&short),
    );
    assert!(err.contains("passphrase too short"), "{err}");
}

#[test]
fn existing_name_is_refused_unless_forced() {
    let home = Home::new().unwrap();
    ok(airlock(&home).args(["key", "new", "k", "--no-passphrase"]));
    let (first, _) = show(&home, "k");
    let err = fails(airlock(&home).args(["key", "new", "k", "--no-passphrase"]));
    assert!(
        err.contains("already exists") && err.contains("--force"),
        "{err}"
    );
    assert_eq!(show(&home, "k").0, first, "untouched");
    ok(airlock(&home).args(["key", "new", "k", "--no-passphrase", "--force"]));
    assert_ne!(show(&home, "k").0, first, "replaced");
}

#[test]
fn bad_names_types_and_durations_are_explained() {
    let home = Home::new().unwrap();
    for (args, needle) in [
        (vec!["../evil"], "slash"),
        (vec![".hidden"], "dot"),
        (vec!["a b"], "character"),
        (vec!["x.pub"], ".pub"),
        (
            vec!["k", "--type", "ed25519", "--bits", "4096"],
            "fixed size",
        ),
        (
            vec!["k", "--type", "ecdsa", "--bits", "512"],
            "256, 384 or 521",
        ),
        (
            vec!["k", "--type", "rsa", "--bits", "1024"],
            "at least 2048",
        ),
        (vec!["k", "--expires", "soon"], "invalid duration"),
    ] {
        let err = fails(
            airlock(&home)
                .args(["key", "new"])
                .args(&args)
                .arg("--no-passphrase"),
        );
        assert!(err.contains(needle), "{args:?}: {err}");
    }
    assert!(!keys_dir(&home).join("k").exists());
    assert!(!home.path().join(".ssh/evil").exists());
}

#[test]
fn unknown_names_give_a_clear_error() {
    let home = Home::new().unwrap();
    for sub in [&["show"][..], &["load"], &["rm", "--yes"]] {
        let err = fails(airlock(&home).arg("key").args(sub).arg("nope"));
        assert!(err.contains("no key named \"nope\""), "{sub:?}: {err}");
        assert!(err.contains("airlock key list"), "{err}");
    }
}

#[test]
fn imports_keys_made_by_ssh_keygen_of_every_type() {
    let home = Home::new().unwrap();
    let source_dir = home.path().join("src");
    fs::create_dir(&source_dir).unwrap();
    let pass = passphrase_file(&home, PASSPHRASE);
    for key_type in KeyType::ALL {
        for encrypted in [false, true] {
            let name = format!(
                "{}-{}",
                key_type.short_name(),
                if encrypted { "enc" } else { "plain" }
            );
            let pair = generate_key_with_passphrase(
                &source_dir,
                &name,
                key_type,
                if encrypted { PASSPHRASE } else { "" },
            )
            .unwrap();
            let mut cmd = airlock(&home);
            cmd.args(["key", "import"]).arg(&pair.private_key);
            if encrypted {
                // Without a terminal and without the flag, an encrypted key cannot be checked.
                let err = fails(
                    airlock(&home)
                        .args(["key", "import"])
                        .arg(&pair.private_key),
                );
                assert!(err.contains("--passphrase-file"), "{err}");
                cmd.arg("--passphrase-file").arg(&pass);
            }
            let out = ok(&mut cmd);
            let (line, fingerprint) = show(&home, &name);
            assert_eq!(out.lines().next(), Some(line.as_str()));
            assert_eq!(line, pair.public_key_line().unwrap(), "{name}");
            assert_eq!(fingerprint, pair.fingerprint().unwrap());
            let stored = keys_dir(&home).join(&name);
            assert_eq!(
                fs::read(&stored).unwrap(),
                fs::read(&pair.private_key).unwrap(),
                "stored as is"
            );
            assert_eq!(mode(&stored), 0o600);
            assert_eq!(
                ssh_keygen_fingerprint(&keys_dir(&home).join(format!("{name}.pub"))),
                fingerprint
            );
        }
    }
    let listed = ok(airlock(&home).args(["key", "list"]));
    assert_eq!(
        listed.lines().count(),
        1 + 2 * KeyType::ALL.len(),
        "{listed}"
    );
    assert!(listed.contains("rsa-3072"), "{listed}");
    assert!(listed.contains("ecdsa-p521"), "{listed}");
}

#[test]
fn import_errors_wrong_passphrase_malformed_unreadable_public() {
    let home = Home::new().unwrap();
    let source_dir = home.path().join("src");
    fs::create_dir(&source_dir).unwrap();
    let pair =
        generate_key_with_passphrase(&source_dir, "id_ed25519", KeyType::Ed25519, PASSPHRASE)
            .unwrap();
    let wrong = passphrase_file(&home, "not the passphrase");
    let err = fails(
        airlock(&home)
            .args(["key", "import"])
            .arg(&pair.private_key)
            .arg("--passphrase-file")
            .arg(&wrong),
    );
    assert!(err.contains("wrong passphrase for"), "{err}");
    assert!(!err.contains(PASSPHRASE) && !err.contains("not the passphrase"));
    assert!(!keys_dir(&home).join("id_ed25519").exists());

    let garbage = home.write_file("garbage", "this is not a key\n").unwrap();
    let err = fails(airlock(&home).args(["key", "import"]).arg(&garbage));
    assert!(err.contains("not a readable OpenSSH private key"), "{err}");

    let missing = home.path().join("missing");
    let err = fails(airlock(&home).args(["key", "import"]).arg(&missing));
    assert!(
        err.contains("cannot read") && err.contains("missing"),
        "{err}"
    );

    let err = fails(airlock(&home).args(["key", "import"]).arg(&source_dir));
    assert!(err.contains("cannot read"), "{err}");

    let err = fails(airlock(&home).args(["key", "import"]).arg(&pair.public_key));
    assert!(err.contains("public key"), "{err}");

    // An old PEM key: say how to convert it.
    let pem = source_dir.join("pem");
    let mut args: Vec<std::ffi::OsString> =
        ["-q", "-t", "rsa", "-b", "2048", "-m", "PEM", "-N", "", "-f"]
            .iter()
            .map(Into::into)
            .collect();
    args.push(pem.clone().into());
    ssh_keygen(args).unwrap();
    let err = fails(
        airlock(&home)
            .args(["key", "import"])
            .arg(source_dir.join("pem")),
    );
    assert!(err.contains("ssh-keygen -p -f"), "{err}");
}

#[test]
fn damaged_key_files_in_the_store_are_reported() {
    let home = Home::new().unwrap();
    ok(airlock(&home).args(["key", "new", "k", "--no-passphrase"]));
    fs::write(
        keys_dir(&home).join("k"),
        "-----BEGIN OPENSSH PRIVATE KEY-----\nxx\n",
    )
    .unwrap();
    let err = fails(airlock(&home).args(["key", "load", "k", "--socket", "/nonexistent"]));
    assert!(
        err.contains("agent"),
        "connects before reading the key: {err}"
    );

    let agent = OpenSshAgent::start(&home).unwrap();
    let err = fails(
        airlock(&home)
            .args(["key", "load", "k", "--socket"])
            .arg(agent.socket()),
    );
    assert!(err.contains("not a readable OpenSSH private key"), "{err}");

    fs::write(keys_dir(&home).join("k.toml"), "garbage = [").unwrap();
    let err = fails(airlock(&home).args(["key", "show", "k"]));
    assert!(err.contains("not valid key metadata"), "{err}");
    let output = run(airlock(&home).args(["key", "list"]));
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr(&output).contains("not valid key metadata"));
}

#[test]
fn list_warns_a_week_ahead_and_for_expired_keys() {
    let home = Home::new().unwrap();
    ok(airlock(&home).args(["key", "new", "soon", "--no-passphrase", "--expires", "3d"]));
    ok(airlock(&home).args(["key", "new", "later", "--no-passphrase", "--expires", "30d"]));
    ok(airlock(&home).args(["key", "new", "old", "--no-passphrase", "--expires", "30d"]));
    ok(airlock(&home).args(["key", "new", "forever", "--no-passphrase"]));
    set_expiry(&home, "old", "2020-01-01T00:00:00Z");

    let output = run(airlock(&home).args(["key", "list"]));
    assert!(output.status.success());
    let (out, err) = (stdout(&output), stderr(&output));
    assert!(
        err.contains("key soon expires in 2d 23h") || err.contains("key soon expires in 3d"),
        "{err}"
    );
    assert!(
        err.contains("key old expired on 2020-01-01T00:00:00Z"),
        "{err}"
    );
    assert!(!err.contains("later") && !err.contains("forever"), "{err}");
    let header = out.lines().next().unwrap();
    for column in [
        "NAME",
        "TYPE",
        "FINGERPRINT",
        "CREATED",
        "EXPIRES",
        "LOADED",
    ] {
        assert!(header.contains(column), "{header}");
    }
    let row = |name: &str| {
        out.lines()
            .find(|l| l.starts_with(&format!("{name} ")))
            .unwrap()
            .to_owned()
    };
    assert!(row("old").contains("EXPIRED 2020-01-01"), "{out}");
    assert!(row("forever").contains("never"), "{out}");
    assert!(row("forever").trim_end().ends_with('?'), "no agent: {out}");

    let output = run(airlock(&home).args(["key", "show", "old"]));
    assert!(output.status.success());
    assert!(stderr(&output).contains("expired"));

    let json: serde_json::Value =
        serde_json::from_str(&ok(airlock(&home).args(["key", "list", "--json"]))).unwrap();
    let names: Vec<_> = json
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(names, ["forever", "later", "old", "soon"]);
    assert_eq!(json[2]["expired"], true);
}

#[test]
fn expired_key_is_refused_by_load() {
    let home = Home::new().unwrap();
    let agent = OpenSshAgent::start(&home).unwrap();
    ok(airlock(&home).args(["key", "new", "old", "--no-passphrase", "--expires", "30d"]));
    set_expiry(&home, "old", "2020-01-01T00:00:00Z");
    let err = fails(
        airlock(&home)
            .args(["key", "load", "old", "--socket"])
            .arg(agent.socket()),
    );
    assert!(
        err.contains("key \"old\" expired on 2020-01-01T00:00:00Z"),
        "{err}"
    );
    assert!(err.contains("airlock key new"), "{err}");
    let listed = run(home.command_with_agent("ssh-add", agent.socket()).arg("-l"));
    assert!(
        stdout(&listed).contains("no identities"),
        "{}",
        stdout(&listed)
    );
}

#[test]
fn load_into_openssh_agent_then_rm_unloads() {
    let home = Home::new().unwrap();
    let agent = OpenSshAgent::start(&home).unwrap();
    let pass = passphrase_file(&home, PASSPHRASE);
    ok(airlock(&home)
        .args([
            "key",
            "new",
            "proj",
            "--expires",
            "90d",
            "--passphrase-file",
        ])
        .arg(&pass));
    ok(airlock(&home).args(["key", "new", "other", "--type", "ecdsa", "--no-passphrase"]));
    let (line, fingerprint) = show(&home, "proj");

    // Encrypted and no terminal: says how to give the passphrase.
    let err = fails(
        airlock(&home)
            .args(["key", "load", "proj", "--socket"])
            .arg(agent.socket()),
    );
    assert!(err.contains("--passphrase-file"), "{err}");

    // Wrong passphrase.
    let wrong = passphrase_file(&home, "wrong passphrase!");
    let err = fails(
        airlock(&home)
            .args(["key", "load", "proj", "--passphrase-file"])
            .arg(&wrong)
            .arg("--socket")
            .arg(agent.socket()),
    );
    assert!(err.contains("wrong passphrase for"), "{err}");
    assert!(
        !err.contains("wrong passphrase!"),
        "never echo the passphrase: {err}"
    );

    // SSH_AUTH_SOCK is the default socket, as for ssh-add.
    let output = run(home
        .command_with_agent(env!("CARGO_BIN_EXE_airlock"), agent.socket())
        .stdin(Stdio::null())
        .args(["key", "load", "proj", "--passphrase-file"])
        .arg(&pass));
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("until the key expires"),
        "{}",
        stderr(&output)
    );
    ok(airlock(&home)
        .args(["key", "load", "other", "--lifetime", "1h", "--socket"])
        .arg(agent.socket()));

    let listed = ok(home.command_with_agent("ssh-add", agent.socket()).arg("-l"));
    assert!(listed.contains(&fingerprint), "{listed}");
    let public = ok(home.command_with_agent("ssh-add", agent.socket()).arg("-L"));
    assert!(
        public.lines().any(|l| l == line),
        "ssh-add -L:\n{public}\nshow: {line}"
    );

    // The LOADED column.
    let table = ok(home
        .command_with_agent(env!("CARGO_BIN_EXE_airlock"), agent.socket())
        .args(["key", "list"]));
    let proj_row = table.lines().find(|l| l.starts_with("proj ")).unwrap();
    assert!(proj_row.trim_end().ends_with("yes"), "{table}");
    let json: serde_json::Value = serde_json::from_str(&ok(airlock(&home)
        .args(["key", "list", "--json", "--socket"])
        .arg(agent.socket())))
    .unwrap();
    assert_eq!(json[0]["name"], "other");
    assert_eq!(json[0]["loaded"], true);
    assert_eq!(json[1]["loaded"], true);

    // rm: needs --yes without a terminal; then unloads and deletes.
    let err = fails(
        airlock(&home)
            .args(["key", "rm", "proj", "--socket"])
            .arg(agent.socket()),
    );
    assert!(err.contains("--yes"), "{err}");
    assert!(keys_dir(&home).join("proj").exists());
    ok(airlock(&home)
        .args(["key", "rm", "proj", "--yes", "--socket"])
        .arg(agent.socket()));
    let listed = ok(home.command_with_agent("ssh-add", agent.socket()).arg("-l"));
    assert!(!listed.contains(&fingerprint), "{listed}");
    for file in ["proj", "proj.pub", "proj.toml"] {
        assert!(!keys_dir(&home).join(file).exists(), "{file}");
    }
    let json: serde_json::Value = serde_json::from_str(&ok(airlock(&home)
        .args(["key", "list", "--json", "--socket"])
        .arg(agent.socket())))
    .unwrap();
    assert_eq!(json.as_array().unwrap().len(), 1);
    assert_eq!(json[0]["loaded"], true);
}

/// `ssh-agent -d` logs each add with its constraints: the way to see the lifetime it was given.
struct DebugAgent {
    child: Child,
    socket: PathBuf,
    log: PathBuf,
}

impl DebugAgent {
    fn start(home: &Home) -> DebugAgent {
        let socket = home.runtime_dir().join("debug-agent.sock");
        let log = home.path().join("agent.log");
        let child = home
            .command("ssh-agent")
            .arg("-d")
            .arg("-a")
            .arg(&socket)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while UnixStream::connect(&socket).is_err() {
            assert!(Instant::now() < deadline, "ssh-agent -d did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        DebugAgent { child, socket, log }
    }

    /// The `(life: N) (confirm: C)` of the add for `fingerprint`, waiting for the log line.
    fn add_line(&self, fingerprint: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let log = fs::read_to_string(&self.log).unwrap();
            if let Some(line) = log
                .lines()
                .find(|l| l.contains("process_add_identity: add") && l.contains(fingerprint))
            {
                return line.to_owned();
            }
            assert!(Instant::now() < deadline, "no add line in\n{log}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for DebugAgent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn life_of(line: &str) -> u64 {
    let start = line.find("(life: ").unwrap() + "(life: ".len();
    line[start..].split(')').next().unwrap().parse().unwrap()
}

#[test]
fn lifetime_is_capped_at_expiry_and_confirm_is_passed() {
    let home = Home::new().unwrap();
    let agent = DebugAgent::start(&home);
    ok(airlock(&home).args(["key", "new", "exp", "--no-passphrase", "--expires", "2d"]));
    ok(airlock(&home).args(["key", "new", "free", "--no-passphrase"]));
    let fp = |name| show(&home, name).1;

    // No --lifetime: the key's remaining validity becomes the lifetime.
    ok(airlock(&home)
        .args(["key", "load", "exp", "--socket"])
        .arg(&agent.socket));
    let line = agent.add_line(&fp("exp"));
    let life = life_of(&line);
    assert!((2 * 86_400 - 120..=2 * 86_400).contains(&life), "{line}");
    assert!(line.contains("(confirm: 0)"), "{line}");

    // A longer --lifetime is capped at the expiry; a shorter one is kept.
    ok(airlock(&home)
        .args(["key", "rm", "exp", "--yes", "--socket"])
        .arg(&agent.socket));
    ok(airlock(&home).args(["key", "new", "exp2", "--no-passphrase", "--expires", "1h"]));
    ok(airlock(&home)
        .args(["key", "load", "exp2", "--lifetime", "1w", "--socket"])
        .arg(&agent.socket));
    let life = life_of(&agent.add_line(&fp("exp2")));
    assert!((3600 - 120..=3600).contains(&life), "{life}");

    ok(airlock(&home)
        .args([
            "key",
            "load",
            "free",
            "--lifetime",
            "90m",
            "--confirm",
            "--socket",
        ])
        .arg(&agent.socket));
    let line = agent.add_line(&fp("free"));
    assert_eq!(life_of(&line), 5400, "{line}");
    assert!(line.contains("(confirm: 1)"), "{line}");
}

#[test]
fn ssh_logs_in_with_the_generated_key() {
    let home = Home::new().unwrap();
    let sshd = Sshd::start().unwrap();
    ok(airlock(&home).args(["key", "new", "login", "--no-passphrase"]));
    let (line, _) = show(&home, "login");
    sshd.authorize(&line).unwrap();
    let known_hosts = home
        .write_known_hosts(&sshd.known_hosts_line("node"))
        .unwrap();
    let mut config = sshd.ssh_config_block("node", None);
    config.push_str(&client_defaults(&known_hosts));
    let config = home.write_ssh_config(&config).unwrap();
    let out = ok(home
        .command("ssh")
        .arg("-F")
        .arg(&config)
        .arg("-i")
        .arg(keys_dir(&home).join("login"))
        .args(["-o", "IdentitiesOnly=yes", "node", "echo", "logged-in"])
        .stdin(Stdio::null()));
    assert_eq!(out.trim(), "logged-in");

    // A passphrase-protected key, loaded into an agent: ssh -i finds the agent's copy through
    // the .pub next to the private key.
    let agent = OpenSshAgent::start(&home).unwrap();
    let pass = passphrase_file(&home, PASSPHRASE);
    ok(airlock(&home)
        .args(["key", "new", "secret", "--passphrase-file"])
        .arg(&pass));
    sshd.authorize(&show(&home, "secret").0).unwrap();
    ok(airlock(&home)
        .args(["key", "load", "secret", "--passphrase-file"])
        .arg(&pass)
        .arg("--socket")
        .arg(agent.socket()));
    let out = ok(home
        .command_with_agent("ssh", agent.socket())
        .arg("-F")
        .arg(&config)
        .arg("-i")
        .arg(keys_dir(&home).join("secret"))
        .args(["-o", "IdentitiesOnly=yes", "node", "echo", "via-agent"])
        .stdin(Stdio::null()));
    assert_eq!(out.trim(), "via-agent");
}

#[test]
fn keys_dir_is_overridden_by_airlock_keys_dir() {
    let home = Home::new().unwrap();
    let dir = home.path().join("elsewhere").join("keys");
    ok(airlock(&home)
        .env("AIRLOCK_KEYS_DIR", &dir)
        .args(["key", "new", "k", "--no-passphrase"]));
    assert!(dir.join("k").exists());
    assert_eq!(mode(&dir), 0o700);
    assert!(!keys_dir(&home).exists());
}

/// Run `airlock ARGS` on a pseudo-terminal, answering each prompt in `dialogue` once it
/// appears. Returns the exit code and everything the terminal showed.
fn on_terminal(home: &Home, args: &[&str], dialogue: &[(&str, &str)]) -> (Option<i32>, String) {
    let mut words = vec![env!("CARGO_BIN_EXE_airlock")];
    words.extend(args);
    airlock_test_support::on_terminal(home.command("script"), &words, dialogue)
}

#[test]
fn on_a_terminal_new_asks_twice_and_rm_asks_for_confirmation() {
    let home = Home::new().unwrap();
    let (code, shown) = on_terminal(
        &home,
        &["key", "new", "tty"],
        &[
            ("Enter passphrase for new key tty", PASSPHRASE),
            ("Enter the same passphrase again", PASSPHRASE),
        ],
    );
    assert_eq!(code, Some(0), "{shown}");
    let (line, _) = show(&home, "tty");
    let private = keys_dir(&home).join("tty");
    assert_eq!(
        ssh_keygen_public(&private, PASSPHRASE).map(|l| key_part(&l)),
        Ok(key_part(&line))
    );

    let (code, shown) = on_terminal(
        &home,
        &["key", "new", "mismatch"],
        &[
            ("Enter passphrase for new key", "first passphrase"),
            ("Enter the same passphrase again", "second passphrase"),
        ],
    );
    assert_eq!(code, Some(1), "{shown}");
    assert!(shown.contains("the passphrases do not match"), "{shown}");
    assert!(!keys_dir(&home).join("mismatch").exists());

    // Both empty: an unencrypted key, said so.
    let (code, shown) = on_terminal(
        &home,
        &["key", "new", "plain"],
        &[
            ("Enter passphrase for new key", ""),
            ("Enter the same passphrase again", ""),
        ],
    );
    assert_eq!(code, Some(0), "{shown}");
    assert!(shown.contains("stored unencrypted"), "{shown}");

    // load asks for the passphrase.
    let agent = OpenSshAgent::start(&home).unwrap();
    let socket = agent.socket().to_str().unwrap().to_owned();
    let (code, shown) = on_terminal(
        &home,
        &["key", "load", "tty", "--socket", &socket],
        &[("Enter passphrase for", PASSPHRASE)],
    );
    assert_eq!(code, Some(0), "{shown}");
    assert!(ok(home.command_with_agent("ssh-add", agent.socket()).arg("-L")).contains(&line));

    let (code, shown) = on_terminal(
        &home,
        &["key", "rm", "tty", "--socket", &socket],
        &[("[y/N]", "n")],
    );
    assert_eq!(code, Some(1), "{shown}");
    assert!(shown.contains("Nothing deleted"), "{shown}");
    assert!(private.exists());

    let (code, shown) = on_terminal(
        &home,
        &["key", "rm", "tty", "--socket", &socket],
        &[("[y/N]", "y")],
    );
    assert_eq!(code, Some(0), "{shown}");
    assert!(!private.exists());
    let listed = run(home.command_with_agent("ssh-add", agent.socket()).arg("-l"));
    assert!(stdout(&listed).contains("no identities"), "unloaded on rm");
}

#[test]
fn every_key_type_loads_into_ssh_agent_and_signs() {
    let home = Home::new().unwrap();
    let agent = OpenSshAgent::start(&home).unwrap();
    let source_dir = home.path().join("src");
    fs::create_dir(&source_dir).unwrap();
    let pass = passphrase_file(&home, PASSPHRASE);
    let message = home
        .write_file("message", "signed through the agent\n")
        .unwrap();
    // Made by ssh-keygen and imported, and made by airlock (RSA is the one whose private
    // encoding has the most parts: n e d iqmp p q).
    let mut names: Vec<String> = Vec::new();
    for key_type in KeyType::ALL {
        let name = key_type.short_name();
        let pair = generate_key_with_passphrase(&source_dir, name, key_type, PASSPHRASE).unwrap();
        ok(airlock(&home)
            .args(["key", "import"])
            .arg(&pair.private_key)
            .arg("--passphrase-file")
            .arg(&pass));
        names.push(name.to_owned());
    }
    for (name, type_args) in [
        ("gen-rsa", ["--type", "rsa", "--bits", "2048"]),
        ("gen-p521", ["--type", "ecdsa", "--bits", "521"]),
    ] {
        ok(airlock(&home)
            .args(["key", "new", name])
            .args(type_args)
            .arg("--passphrase-file")
            .arg(&pass));
        names.push(name.to_owned());
    }
    for name in &names {
        let name = name.as_str();
        ok(airlock(&home)
            .args(["key", "load", name, "--passphrase-file"])
            .arg(&pass)
            .arg("--socket")
            .arg(agent.socket()));
        let (line, _) = show(&home, name);
        let held = ok(home.command_with_agent("ssh-add", agent.socket()).arg("-L"));
        assert!(held.lines().any(|l| l == line), "{name}: {held}");

        // The agent signs with what was loaded: the private half really matches.
        let public = keys_dir(&home).join(format!("{name}.pub"));
        let signature = message.with_extension("sig");
        let _ = fs::remove_file(&signature);
        ok(home
            .command_with_agent("ssh-keygen", agent.socket())
            .args(["-Y", "sign", "-n", "test", "-f"])
            .arg(&public)
            .arg(&message)
            .stdin(Stdio::null()));
        ok(home
            .command("ssh-keygen")
            .args(["-Y", "check-novalidate", "-n", "test", "-s"])
            .arg(&signature)
            .stdin(fs::File::open(&message).unwrap()));
    }
}

/// OpenSSH writes the ECDSA scalar as a minimal mpint: for one P-521 key in two it is shorter
/// than 66 bytes, which ssh-key 0.6.7 alone refuses ("length invalid"). Twelve keys each way
/// make it all but certain that both kinds are covered.
#[test]
fn p521_keys_from_ssh_keygen_with_short_scalars_import_and_load() {
    let home = Home::new().unwrap();
    let agent = OpenSshAgent::start(&home).unwrap();
    let source_dir = home.path().join("src");
    fs::create_dir(&source_dir).unwrap();
    let pass = passphrase_file(&home, PASSPHRASE);
    for i in 0..12 {
        for encrypted in [false, true] {
            let name = format!("p521-{i}-{}", if encrypted { "enc" } else { "plain" });
            let pair = generate_key_with_passphrase(
                &source_dir,
                &name,
                KeyType::EcdsaP521,
                if encrypted { PASSPHRASE } else { "" },
            )
            .unwrap();
            ok(airlock(&home)
                .args(["key", "import"])
                .arg(&pair.private_key)
                .arg("--passphrase-file")
                .arg(&pass));
            ok(airlock(&home)
                .args(["key", "load", &name, "--passphrase-file"])
                .arg(&pass)
                .arg("--socket")
                .arg(agent.socket()));
            if encrypted {
                let wrong = passphrase_file(&home, "definitely wrong");
                let err = fails(
                    airlock(&home)
                        .args(["key", "load", &name, "--passphrase-file"])
                        .arg(&wrong)
                        .arg("--socket")
                        .arg(agent.socket()),
                );
                assert!(err.contains("wrong passphrase"), "{err}");
            }
        }
    }
    let held = ok(home.command_with_agent("ssh-add", agent.socket()).arg("-l"));
    assert_eq!(held.lines().count(), 24, "{held}");
}

/// `airlock agent -D -a SOCKET`, killed on drop.
struct AirlockAgent {
    child: Child,
    socket: PathBuf,
}

impl AirlockAgent {
    fn start(home: &Home) -> AirlockAgent {
        let socket = home.runtime_dir().join("airlock-agent.sock");
        let child = home
            .command(env!("CARGO_BIN_EXE_airlock"))
            .args(["agent", "-D", "-a"])
            .arg(&socket)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut agent = AirlockAgent { child, socket };
        let deadline = Instant::now() + Duration::from_secs(20);
        while UnixStream::connect(&agent.socket).is_err() {
            assert!(
                agent.child.try_wait().unwrap().is_none(),
                "airlock agent exited"
            );
            assert!(Instant::now() < deadline, "airlock agent did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        agent
    }
}

impl Drop for AirlockAgent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn load_list_and_rm_against_the_airlock_agent() {
    let home = Home::new().unwrap();
    let agent = AirlockAgent::start(&home);
    let pass = passphrase_file(&home, PASSPHRASE);
    ok(airlock(&home)
        .args([
            "key",
            "new",
            "proj",
            "--expires",
            "30d",
            "--passphrase-file",
        ])
        .arg(&pass));
    ok(airlock(&home).args([
        "key",
        "new",
        "rsa",
        "--type",
        "rsa",
        "--bits",
        "2048",
        "--no-passphrase",
    ]));
    for name in ["proj", "rsa"] {
        ok(airlock(&home)
            .args(["key", "load", name, "--lifetime", "8h", "--passphrase-file"])
            .arg(&pass)
            .arg("--socket")
            .arg(&agent.socket));
    }
    let held = ok(home.command_with_agent("ssh-add", &agent.socket).arg("-L"));
    for name in ["proj", "rsa"] {
        let (line, _) = show(&home, name);
        assert!(held.lines().any(|l| l == line), "{name}: {held}");
    }
    // The agent signs with the loaded key.
    let message = home.write_file("message", "hello\n").unwrap();
    ok(home
        .command_with_agent("ssh-keygen", &agent.socket)
        .args(["-Y", "sign", "-n", "test", "-f"])
        .arg(keys_dir(&home).join("proj.pub"))
        .arg(&message)
        .stdin(Stdio::null()));

    let json: serde_json::Value = serde_json::from_str(&ok(home
        .command_with_agent(env!("CARGO_BIN_EXE_airlock"), &agent.socket)
        .args(["key", "list", "--json"])))
    .unwrap();
    assert_eq!(json[0]["loaded"], true);
    assert_eq!(json[1]["loaded"], true);

    ok(airlock(&home)
        .args(["key", "rm", "proj", "--yes", "--socket"])
        .arg(&agent.socket));
    let held = ok(home.command_with_agent("ssh-add", &agent.socket).arg("-L"));
    assert_eq!(held.lines().count(), 1, "{held}");
    assert!(held.starts_with("ssh-rsa "), "{held}");
}

/// `key list --json`'s entry for `name`.
fn listed(home: &Home, name: &str) -> serde_json::Value {
    let json: serde_json::Value =
        serde_json::from_str(&ok(airlock(home).args(["key", "list", "--json"]))).unwrap();
    json.as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == name)
        .unwrap_or_else(|| panic!("no {name} in {json}"))
        .clone()
}

#[test]
fn passwd_checks_the_old_passphrase_and_ssh_keygen_reads_the_new_one() {
    const NEW: &str = "a new and longer passphrase";
    let home = Home::new().unwrap();
    let old = passphrase_file(&home, PASSPHRASE);
    let new = passphrase_file(&home, NEW);
    let wrong = passphrase_file(&home, "wrong passphrase");
    ok(airlock(&home)
        .args(["key", "new", "proj", "--passphrase-file"])
        .arg(&old));
    let (line, fingerprint) = show(&home, "proj");
    let private = keys_dir(&home).join("proj");
    let before = fs::read(&private).unwrap();

    // The current passphrase is checked first; a wrong one changes nothing.
    let err = fails(
        airlock(&home)
            .args(["key", "passwd", "proj", "--passphrase-file"])
            .arg(&wrong)
            .arg("--new-passphrase-file")
            .arg(&new),
    );
    assert!(err.contains("wrong passphrase"), "{err}");
    assert_eq!(fs::read(&private).unwrap(), before);
    // Without a terminal and without a file for the new one: nothing is asked or changed.
    let err = fails(
        airlock(&home)
            .args(["key", "passwd", "proj", "--passphrase-file"])
            .arg(&old),
    );
    assert!(err.contains("--new-passphrase-file"), "{err}");
    assert_eq!(fs::read(&private).unwrap(), before);

    ok(airlock(&home)
        .args(["key", "passwd", "proj", "--passphrase-file"])
        .arg(&old)
        .arg("--new-passphrase-file")
        .arg(&new));
    assert_eq!(
        ssh_keygen_public(&private, NEW).map(|l| key_part(&l)),
        Ok(key_part(&line))
    );
    assert!(ssh_keygen_public(&private, PASSPHRASE).is_err());
    assert_eq!(show(&home, "proj").1, fingerprint);
    assert_eq!(mode(&private), 0o600);
    assert_eq!(listed(&home, "proj")["encrypted"], true);

    // --no-passphrase: unencrypted from now on, and said so in the metadata.
    ok(airlock(&home)
        .args([
            "key",
            "passwd",
            "proj",
            "--no-passphrase",
            "--passphrase-file",
        ])
        .arg(&new));
    assert_eq!(
        ssh_keygen_public(&private, "").map(|l| key_part(&l)),
        Ok(key_part(&line))
    );
    assert_eq!(listed(&home, "proj")["encrypted"], false);
}

#[test]
fn on_a_terminal_passwd_asks_the_old_passphrase_then_the_new_one_twice() {
    const NEW: &str = "typed on the terminal";
    let home = Home::new().unwrap();
    ok(airlock(&home)
        .args(["key", "new", "tty", "--passphrase-file"])
        .arg(passphrase_file(&home, PASSPHRASE)));
    let (line, _) = show(&home, "tty");
    let private = keys_dir(&home).join("tty");
    let (code, shown) = on_terminal(
        &home,
        &["key", "passwd", "tty"],
        &[
            ("Enter passphrase for", PASSPHRASE),
            ("Enter new passphrase for key tty", NEW),
            ("Enter the same passphrase again", "something else"),
        ],
    );
    assert_eq!(code, Some(1), "{shown}");
    assert!(shown.contains("the passphrases do not match"), "{shown}");
    assert!(ssh_keygen_public(&private, PASSPHRASE).is_ok());

    let (code, shown) = on_terminal(
        &home,
        &["key", "passwd", "tty"],
        &[
            ("Enter passphrase for", PASSPHRASE),
            ("Enter new passphrase for key tty", NEW),
            ("Enter the same passphrase again", NEW),
        ],
    );
    assert_eq!(code, Some(0), "{shown}");
    assert!(!shown.contains(NEW), "the passphrase was echoed:\n{shown}");
    assert_eq!(
        ssh_keygen_public(&private, NEW).map(|l| key_part(&l)),
        Ok(key_part(&line))
    );
}

#[test]
fn expire_extends_shortens_and_removes_the_expiry() {
    let home = Home::new().unwrap();
    let agent = OpenSshAgent::start(&home).unwrap();
    ok(airlock(&home).args(["key", "new", "proj", "--no-passphrase", "--expires", "30d"]));
    // Within a minute of `days` from now (the commands ran just before).
    let expires_in_days = |home: &Home, days: i64| {
        let entry = listed(home, "proj");
        let expires = airlock_keys::parse_time(entry["expires"].as_str().unwrap()).unwrap();
        let left = (expires - airlock_keys::now()).whole_seconds();
        assert!(
            (days * 86_400 - 60..=days * 86_400).contains(&left),
            "expires in {left}s, not {days} days"
        );
    };
    expires_in_days(&home, 30);

    // An expired key comes back with a new expiry.
    set_expiry(&home, "proj", "2020-01-01T00:00:00Z");
    fails(
        airlock(&home)
            .args(["key", "load", "proj", "--socket"])
            .arg(agent.socket()),
    );
    let out = run(airlock(&home).args(["key", "expire", "proj", "--in", "90d"]));
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("Key proj expires "),
        "{}",
        stderr(&out)
    );
    expires_in_days(&home, 90);
    ok(airlock(&home)
        .args(["key", "load", "proj", "--socket"])
        .arg(agent.socket()));

    // Sooner: and the agent that holds it is named, since it keeps the old lifetime.
    let out = run(airlock(&home)
        .args(["key", "expire", "proj", "--in", "2d", "--socket"])
        .arg(agent.socket()));
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("holds proj with the lifetime it was loaded with"),
        "{}",
        stderr(&out)
    );
    expires_in_days(&home, 2);

    ok(airlock(&home).args(["key", "expire", "proj", "--never"]));
    assert_eq!(listed(&home, "proj")["expires"], serde_json::Value::Null);

    // One of --in or --never, and a real duration.
    let err = fails(airlock(&home).args(["key", "expire", "proj"]));
    assert!(err.contains("--in") && err.contains("--never"), "{err}");
    let err = fails(airlock(&home).args(["key", "expire", "proj", "--in", "soon"]));
    assert!(err.contains("soon"), "{err}");
    let err = fails(airlock(&home).args(["key", "expire", "nope", "--never"]));
    assert!(err.contains("no key named \"nope\""), "{err}");
}
