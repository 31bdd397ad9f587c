//! [`Sshd`]: a real OpenSSH server on 127.0.0.1 for one test.

use std::ffi::OsStr;
use std::fmt::Write as _;
use std::fs;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use tempfile::TempDir;

use crate::error::{Error, Result, io};
use crate::home::write_private;
use crate::keygen::{KeyType, generate_key};
use crate::process::{self, terminate_tree, wait_for};

/// Where Debian puts the server. sshd re-executes itself for every connection and insists on an
/// absolute path for that.
pub const SSHD_PATH: &str = "/usr/sbin/sshd";

/// Privilege separation directory that sshd checks at startup (Debian's `UsePrivilegeSeparation`
/// chroot). `/run` is a tmpfs, so on a fresh boot or container it does not exist.
const PRIVSEP_DIR: &str = "/run/sshd";

/// How many ports to try when another process takes the one we picked before sshd binds it.
const BIND_ATTEMPTS: usize = 5;

/// The `sshd_config` every server gets, before the host keys and listen address. See the crate
/// docs for why each line is there.
const BASE_CONFIG: &str = "\
# Written by airlock-test-support. Root logs in with keys only; PAM, DNS and user rc files are off
# so nothing of the machine's login setup runs.
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
HostbasedAuthentication no
UsePAM no
StrictModes no
PidFile none
LogLevel DEBUG3
UseDNS no
PrintMotd no
PrintLastLog no
PermitUserEnvironment no
PermitUserRC no
ChrootDirectory none
X11Forwarding no
AllowAgentForwarding yes
AllowTcpForwarding yes
AllowStreamLocalForwarding yes
StreamLocalBindUnlink yes
Subsystem sftp internal-sftp
MaxStartups 100:30:200
MaxSessions 50
";

/// Options for [`Sshd::builder`]. The default is one ed25519 host key and the base config.
#[derive(Debug, Clone)]
pub struct SshdBuilder {
    host_key_types: Vec<KeyType>,
    extra_config: Vec<String>,
    /// `(CA private key, principals)`: certify every host key with this CA.
    host_certificate: Option<(PathBuf, String)>,
    /// Tried before any port from the kernel; lets the unit test exercise the retry.
    first_port: Option<u16>,
}

impl Default for SshdBuilder {
    fn default() -> Self {
        SshdBuilder {
            host_key_types: vec![KeyType::Ed25519],
            extra_config: Vec::new(),
            host_certificate: None,
            first_port: None,
        }
    }
}

impl SshdBuilder {
    /// Also give the server a host key of this type (ed25519 is always there and comes first).
    /// `Rsa3072` takes a moment to generate.
    #[must_use]
    pub fn host_key(mut self, key_type: KeyType) -> Self {
        if !self.host_key_types.contains(&key_type) {
            self.host_key_types.push(key_type);
        }
        self
    }

    /// Add a line to `sshd_config`, e.g. `TrustedUserCAKeys /tmp/.../ca.pub` or
    /// `PubkeyAcceptedAlgorithms rsa-sha2-256`. Extra lines go *before* the base config, and
    /// sshd keeps the first value it reads, so they override it. `Match` blocks are not supported.
    #[must_use]
    pub fn config_line(mut self, line: impl Into<String>) -> Self {
        self.extra_config.push(line.into());
        self
    }

    /// Certify every host key with the CA `ca_private_key` for `principals` (comma-separated
    /// host names) as `ssh-keygen -s CA -h` does by default (valid forever), and serve the
    /// certificates (`HostCertificate`). Clients then need an `@cert-authority` line.
    #[must_use]
    pub fn host_certificate(mut self, ca_private_key: &Path, principals: &str) -> Self {
        self.host_certificate = Some((ca_private_key.to_path_buf(), principals.to_owned()));
        self
    }

    /// Generate the host keys, write the config and start sshd; returns once it listens.
    pub fn start(self) -> Result<Sshd> {
        Sshd::start_with(self)
    }
}

/// A running `sshd -D` on 127.0.0.1 with its own host keys, `authorized_keys` and log, killed
/// (with every session it spawned) on drop.
///
/// ```no_run
/// use airlock_test_support::{Home, KeyType, Sshd, generate_key};
/// let home = Home::new()?;
/// let sshd = Sshd::start()?;
/// let key = generate_key(&home.ssh_dir(), "id", KeyType::Ed25519)?;
/// sshd.authorize(&key.public_key_line()?)?;
/// let known_hosts = home.write_known_hosts(&sshd.known_hosts_line("node-a"))?;
/// let mut config = sshd.ssh_config_block("node-a", Some(&key.private_key));
/// config.push_str(&airlock_test_support::client_defaults(&known_hosts));
/// let config = home.write_ssh_config(&config)?;
/// let status = home.command("ssh").arg("-F").arg(&config).args(["node-a", "true"]).status();
/// # Ok::<(), airlock_test_support::Error>(())
/// ```
#[derive(Debug)]
pub struct Sshd {
    child: Child,
    port: u16,
    /// `(type, "algorithm base64")` of each host key, ed25519 first.
    host_keys: Vec<(KeyType, String)>,
    config: PathBuf,
    log: PathBuf,
    authorized_keys: PathBuf,
    user: String,
    // Last, so the files outlive the process on drop.
    dir: TempDir,
}

impl Sshd {
    /// Start a server with the default options (one ed25519 host key).
    pub fn start() -> Result<Sshd> {
        SshdBuilder::default().start()
    }

    /// Options: more host key types, extra config lines.
    pub fn builder() -> SshdBuilder {
        SshdBuilder::default()
    }

    fn start_with(mut options: SshdBuilder) -> Result<Sshd> {
        if !Path::new(SSHD_PATH).exists() {
            return Err(Error::Missing {
                program: SSHD_PATH.to_owned(),
                package: "openssh-server",
            });
        }
        ensure_privsep_dir()?;
        let dir = tempfile::Builder::new()
            .prefix("airlock-sshd-")
            .tempdir()
            .map_err(io(std::env::temp_dir()))?;
        let mut host_keys = Vec::new();
        let mut host_key_paths = Vec::new();
        for key_type in options.host_key_types {
            let pair = generate_key(dir.path(), &format!("host-{key_type}"), key_type)?;
            let line = pair.public_key_line()?;
            let mut fields = line.split_whitespace();
            let public = match (fields.next(), fields.next()) {
                (Some(algorithm), Some(base64)) => format!("{algorithm} {base64}"),
                _ => {
                    return Err(Error::Usage(format!(
                        "{}: not a public key line: {line}",
                        pair.public_key.display()
                    )));
                }
            };
            host_keys.push((key_type, public));
            if let Some((ca, principals)) = &options.host_certificate {
                crate::keygen::ssh_keygen([
                    OsStr::new("-q"),
                    OsStr::new("-s"),
                    ca.as_os_str(),
                    OsStr::new("-h"),
                    OsStr::new("-I"),
                    OsStr::new("airlock-test-host"),
                    OsStr::new("-n"),
                    OsStr::new(principals),
                    pair.public_key.as_os_str(),
                ])?;
                let mut cert = pair.private_key.clone().into_os_string();
                cert.push("-cert.pub");
                options
                    .extra_config
                    .push(format!("HostCertificate {}", PathBuf::from(cert).display()));
            }
            host_key_paths.push(pair.private_key);
        }
        let authorized_keys = dir.path().join("authorized_keys");
        write_private(&authorized_keys, "")?;
        let config = dir.path().join("sshd_config");
        let log = dir.path().join("sshd.log");
        let user = current_user();

        let mut last_log = String::new();
        let mut first_port = options.first_port;
        for _ in 0..BIND_ATTEMPTS {
            let port = match first_port.take() {
                Some(port) => port,
                None => free_port()?,
            };
            let mut text = String::new();
            for line in &options.extra_config {
                let _ = writeln!(text, "{line}");
            }
            text.push_str(BASE_CONFIG);
            let _ = writeln!(text, "ListenAddress 127.0.0.1:{port}");
            let _ = writeln!(text, "AuthorizedKeysFile {}", authorized_keys.display());
            for path in &host_key_paths {
                let _ = writeln!(text, "HostKey {}", path.display());
            }
            write_private(&config, text)?;
            let _ = fs::remove_file(&log);

            let stderr = fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&log)
                .map_err(io(&log))?;
            let mut command = Command::new(SSHD_PATH);
            command
                .arg("-D")
                .arg("-e")
                .arg("-f")
                .arg(&config)
                .arg("-E")
                .arg(&log)
                .env_clear()
                .env("PATH", "/usr/local/bin:/usr/bin:/bin")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                // Errors from before sshd opens its -E log land in the same file.
                .stderr(stderr)
                // Its own group, so drop can signal the listener and anything still in its group.
                .process_group(0);
            let mut child = process::spawn(&mut command)?;
            match wait_until_listening(&mut child, port, &log) {
                Ok(()) => {
                    return Ok(Sshd {
                        child,
                        port,
                        host_keys,
                        config,
                        log,
                        authorized_keys,
                        user,
                        dir,
                    });
                }
                Err(Listening::PortTaken(text)) => {
                    terminate_tree(&mut child);
                    last_log = text;
                }
                Err(Listening::Failed(reason)) => {
                    terminate_tree(&mut child);
                    return Err(Error::SshdStart {
                        config,
                        reason,
                        log: read_lossy(&log),
                    });
                }
            }
        }
        Err(Error::SshdStart {
            config,
            reason: format!(
                "every one of {BIND_ATTEMPTS} free ports was taken before sshd bound it"
            ),
            log: last_log,
        })
    }

    /// The TCP port it listens on (127.0.0.1 only).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:port`.
    pub fn address(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.port))
    }

    /// The listener's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The user to log in as: whoever runs the tests (root here, which is why the config has
    /// `PermitRootLogin prohibit-password`).
    pub fn user(&self) -> &str {
        &self.user
    }

    /// The server's temp directory: config, host keys, `authorized_keys`, log.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The `sshd_config` it runs with.
    pub fn config_path(&self) -> &Path {
        &self.config
    }

    /// The `AuthorizedKeysFile` (for every user).
    pub fn authorized_keys_path(&self) -> &Path {
        &self.authorized_keys
    }

    /// The `-E` log file.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// Append a public key line (`ssh-ed25519 AAAA... comment`, options allowed in front, such
    /// as `command="..."` or `restrict`) to `authorized_keys`. sshd rereads the file for each
    /// login, so this works while it runs.
    pub fn authorize(&self, public_key_line: &str) -> Result<()> {
        use std::io::Write as _;
        let mut file = fs::OpenOptions::new()
            .append(true)
            .open(&self.authorized_keys)
            .map_err(io(&self.authorized_keys))?;
        writeln!(file, "{}", public_key_line.trim_end()).map_err(io(&self.authorized_keys))
    }

    /// Everything sshd and its per-connection children have logged so far (`LogLevel DEBUG3`).
    /// For instance `debug3: mm_answer_keyverify: publickey RSA ... signature using
    /// rsa-sha2-512 verified` shows which RSA algorithm the client used.
    pub fn log(&self) -> String {
        read_lossy(&self.log)
    }

    /// Wait (bounded, see [`Error::Timeout`]) until the log contains `needle`, then return the
    /// log. The connection's sshd may still be writing when the client has already exited.
    pub fn wait_for_log(&self, needle: &str) -> Result<String> {
        wait_for(&format!("`{needle}` in {}", self.log.display()), || {
            let log = self.log();
            Ok(log.contains(needle).then_some(log))
        })
    }

    /// The ed25519 host public key as `ssh-ed25519 AAAA...` (no comment).
    pub fn host_key_public(&self) -> String {
        self.host_keys
            .first()
            .map(|(_, line)| line.clone())
            .unwrap_or_default()
    }

    /// The host public key of `key_type`, if the server has one (see [`SshdBuilder::host_key`]).
    pub fn host_key_of(&self, key_type: KeyType) -> Option<&str> {
        self.host_keys
            .iter()
            .find(|(kind, _)| *kind == key_type)
            .map(|(_, line)| line.as_str())
    }

    /// `known_hosts` lines naming this server `name` (one per host key, each ending in a
    /// newline). Use the same name as the `HostKeyAlias` in the ssh config; it is also the name
    /// `ssh-add -h` looks up in the `-H` file.
    pub fn known_hosts_line(&self, name: &str) -> String {
        self.host_keys
            .iter()
            .fold(String::new(), |mut text, (_, key)| {
                let _ = writeln!(text, "{name} {key}");
                text
            })
    }

    /// `known_hosts` lines for the address itself, `[127.0.0.1]:PORT algorithm base64`, which
    /// is what ssh looks up when no `HostKeyAlias` is set.
    pub fn known_hosts_line_for_address(&self) -> String {
        self.known_hosts_line(&format!("[127.0.0.1]:{}", self.port))
    }

    /// A `Host` block for the client config:
    ///
    /// ```text
    /// Host ALIAS
    ///     HostName 127.0.0.1
    ///     Port PORT
    ///     User USER
    ///     HostKeyAlias ALIAS
    ///     IdentityFile FILE      # only with Some(file)
    /// ```
    ///
    /// Follow the blocks with [`crate::client_defaults`] (a `Host *` block), since ssh keeps the
    /// first value it reads for most options.
    pub fn ssh_config_block(&self, alias: &str, identity_file: Option<&Path>) -> String {
        let mut block = format!(
            "Host {alias}\n    HostName 127.0.0.1\n    Port {}\n    User {}\n    HostKeyAlias {alias}\n",
            self.port, self.user
        );
        if let Some(file) = identity_file {
            let _ = writeln!(block, "    IdentityFile {}", file.display());
        }
        block
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        terminate_tree(&mut self.child);
    }
}

enum Listening {
    /// sshd exited because the port was taken (someone bound it after we released it).
    PortTaken(String),
    /// Any other reason; the log says more.
    Failed(String),
}

/// Wait until `child` logs that it listens on `port`, or exits.
fn wait_until_listening(child: &mut Child, port: u16, log: &Path) -> Result<(), Listening> {
    let ready = format!("Server listening on 127.0.0.1 port {port}.");
    let outcome = wait_for("sshd to listen", || {
        if read_lossy(log).contains(&ready) {
            return Ok(Some(None));
        }
        match child.try_wait() {
            Ok(Some(status)) => Ok(Some(Some(status))),
            Ok(None) => Ok(None),
            Err(source) => Err(Error::Io {
                path: SSHD_PATH.into(),
                source,
            }),
        }
    });
    match outcome {
        Ok(None) => Ok(()),
        Ok(Some(status)) => {
            let text = read_lossy(log);
            if text.contains("Address already in use") {
                Err(Listening::PortTaken(text))
            } else {
                Err(Listening::Failed(format!("it exited with {status}")))
            }
        }
        Err(error) => Err(Listening::Failed(error.to_string())),
    }
}

fn read_lossy(path: &Path) -> String {
    fs::read(path)
        .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
        .unwrap_or_default()
}

/// The `Host *` block every test client config should end with: `known_hosts` is exactly
/// `known_hosts` (no global file, no updates), host keys are checked strictly, ssh never prompts,
/// and a missing `IdentityFile` stands in for the defaults so that keys in the real
/// `~root/.ssh` (ssh finds `~` through `getpwuid`, not `$HOME`) are never offered. No
/// `ForwardAgent` and no `IdentitiesOnly`: tests choose.
pub fn client_defaults(known_hosts: &Path) -> String {
    format!(
        "Host *\n    UserKnownHostsFile {kh}\n    GlobalKnownHostsFile /dev/null\n    \
         StrictHostKeyChecking yes\n    UpdateHostKeys no\n    CheckHostIP no\n    \
         BatchMode yes\n    ConnectTimeout 20\n    ControlMaster no\n    ControlPath none\n    \
         IdentityFile {none}\n",
        kh = known_hosts.display(),
        none = known_hosts.with_file_name("no-default-identity").display(),
    )
}

/// Bind 127.0.0.1:0 and release it: the kernel's choice is free now, and very likely still free
/// when sshd binds it a few milliseconds later (if not, [`Sshd::start`] tries another).
fn free_port() -> Result<u16> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).map_err(|source| Error::Socket {
        what: "binding 127.0.0.1:0".to_owned(),
        source,
    })?;
    let port = listener
        .local_addr()
        .map_err(|source| Error::Socket {
            what: "reading the bound port".to_owned(),
            source,
        })?
        .port();
    Ok(port)
}

fn ensure_privsep_dir() -> Result<()> {
    let path = Path::new(PRIVSEP_DIR);
    if cfg!(target_os = "linux") && !path.exists() {
        use std::os::unix::fs::DirBuilderExt as _;
        match fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(path)
        {
            Ok(()) => {}
            Err(source) if source.kind() == std::io::ErrorKind::PermissionDenied => {
                return Err(Error::Usage(format!(
                    "{PRIVSEP_DIR} is missing and cannot be created here ({source}); run `mkdir -p {PRIVSEP_DIR}` as root"
                )));
            }
            Err(source) => {
                return Err(Error::Io {
                    path: path.into(),
                    source,
                });
            }
        }
    }
    Ok(())
}

fn current_user() -> String {
    nix::unistd::User::from_uid(nix::unistd::getuid())
        .ok()
        .flatten()
        .map_or_else(|| "root".to_owned(), |user| user.name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_taken_port_is_retried_with_another() {
        let squatter = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let taken = squatter.local_addr().unwrap().port();
        let options = SshdBuilder {
            first_port: Some(taken),
            ..SshdBuilder::default()
        };
        let sshd = options.start().unwrap();
        assert_ne!(sshd.port(), taken);
        assert!(std::net::TcpStream::connect(sshd.address()).is_ok());
    }

    #[test]
    fn a_bad_config_line_is_reported_with_the_log() {
        let error = Sshd::builder()
            .config_line("NoSuchOption yes")
            .start()
            .unwrap_err();
        let text = error.to_string();
        assert!(text.contains("NoSuchOption"), "{text}");
    }
}
