//! Running helper programs and tearing down process trees.

use std::ffi::OsStr;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;

use crate::error::{Error, Result};

/// How long any wait in this crate may last before it is reported as an error. A bound, not a
/// measurement: nothing here asserts on how fast something happened.
pub(crate) const WAIT_LIMIT: Duration = Duration::from_secs(20);

/// The interval between two polls while waiting.
pub(crate) const POLL: Duration = Duration::from_millis(5);

/// The Debian package that provides `program`, for "install it" messages.
pub(crate) fn package_of(program: &str) -> &'static str {
    match program.rsplit('/').next().unwrap_or(program) {
        "sshd" => "openssh-server",
        "git" => "git",
        _ => "openssh-client",
    }
}

/// Spawn `command`, turning "not found" into [`Error::Missing`].
pub(crate) fn spawn(command: &mut Command) -> Result<Child> {
    command
        .spawn()
        .map_err(|source| spawn_error(command, source))
}

fn spawn_error(command: &Command, source: std::io::Error) -> Error {
    let program = command.get_program().to_string_lossy().into_owned();
    if source.kind() == std::io::ErrorKind::NotFound {
        let package = package_of(&program);
        Error::Missing { program, package }
    } else {
        Error::Spawn { program, source }
    }
}

/// Run `command` to completion with stdin closed; an unsuccessful exit is an [`Error::Failed`]
/// carrying its stderr.
pub(crate) fn run(command: &mut Command) -> Result<Output> {
    let output = command
        .stdin(Stdio::null())
        .output()
        .map_err(|source| spawn_error(command, source))?;
    if output.status.success() {
        Ok(output)
    } else {
        Err(Error::Failed {
            command: describe(command),
            status: output.status,
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        })
    }
}

/// `program arg arg ...`, for error messages.
pub(crate) fn describe(command: &Command) -> String {
    std::iter::once(command.get_program())
        .chain(command.get_args())
        .map(OsStr::to_string_lossy)
        .collect::<Vec<_>>()
        .join(" ")
}

/// Stop `child` (started with `process_group(0)`), its process group and every descendant:
/// SIGTERM, a bounded wait, then SIGKILL.
///
/// The group alone is not enough for sshd: each connection's sshd calls `setsid()`, so it and the
/// session it runs leave the listener's group. They are still its descendants, found through
/// `/proc` on Linux.
pub(crate) fn terminate_tree(child: &mut Child) {
    if matches!(child.try_wait(), Ok(Some(_))) {
        return;
    }
    let Ok(raw) = i32::try_from(child.id()) else {
        return;
    };
    let pid = Pid::from_raw(raw);
    let descendants = descendants(raw);
    let _ = killpg(pid, Signal::SIGTERM);
    for &other in &descendants {
        let _ = kill(Pid::from_raw(other), Signal::SIGTERM);
    }
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline {
        if matches!(child.try_wait(), Ok(Some(_))) {
            break;
        }
        std::thread::sleep(POLL);
    }
    // Whatever is left (a session that ignored SIGTERM, a child born meanwhile) gets SIGKILL.
    let mut rest = descendants;
    rest.extend(self::descendants(raw));
    let _ = killpg(pid, Signal::SIGKILL);
    for other in rest {
        let _ = kill(Pid::from_raw(other), Signal::SIGKILL);
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// Every live descendant of `root`, from `/proc/<pid>/stat`.
#[cfg(target_os = "linux")]
fn descendants(root: i32) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut parent_of = Vec::new();
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // `pid (comm) state ppid ...`; comm may contain spaces and parentheses, so split after
        // the last ')'.
        let Some((_, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let mut fields = rest.split_whitespace();
        let state = fields.next();
        let ppid = fields.next().and_then(|p| p.parse::<i32>().ok());
        if let (Some(state), Some(ppid)) = (state, ppid)
            && state != "Z"
        {
            parent_of.push((pid, ppid));
        }
    }
    let mut found = vec![root];
    let mut index = 0;
    while let Some(&parent) = found.get(index) {
        for &(pid, ppid) in &parent_of {
            if ppid == parent && !found.contains(&pid) {
                found.push(pid);
            }
        }
        index += 1;
    }
    found.remove(0);
    found
}

/// Without `/proc`, only the process group is signalled.
#[cfg(not(target_os = "linux"))]
fn descendants(_root: i32) -> Vec<i32> {
    Vec::new()
}

/// Poll `ready` until it returns `Some`, or fail with [`Error::Timeout`] after [`WAIT_LIMIT`].
pub(crate) fn wait_for<T>(what: &str, mut ready: impl FnMut() -> Result<Option<T>>) -> Result<T> {
    let deadline = Instant::now() + WAIT_LIMIT;
    loop {
        if let Some(value) = ready()? {
            return Ok(value);
        }
        if Instant::now() >= deadline {
            return Err(Error::Timeout {
                what: what.to_owned(),
                seconds: WAIT_LIMIT.as_secs(),
            });
        }
        std::thread::sleep(POLL);
    }
}

/// Spawn `command` (an agent in the foreground) and wait until `socket` accepts connections.
/// If it exits first or never listens, it is stopped and the error names `what`.
pub(crate) fn spawn_listening(
    command: &mut Command,
    socket: &std::path::Path,
    what: &str,
) -> Result<Child> {
    let mut child = spawn(command)?;
    let ready = wait_for(&format!("{what} to listen on {}", socket.display()), || {
        if std::os::unix::net::UnixStream::connect(socket).is_ok() {
            return Ok(Some(true));
        }
        Ok(matches!(child.try_wait(), Ok(Some(_))).then_some(false))
    });
    match ready {
        Ok(true) => Ok(child),
        Ok(false) => Err(Error::Usage(format!(
            "{what} exited before listening on {}",
            socket.display()
        ))),
        Err(error) => {
            terminate_tree(&mut child);
            Err(error)
        }
    }
}
