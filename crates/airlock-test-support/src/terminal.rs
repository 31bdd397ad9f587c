//! Running a command on a pseudo-terminal (util-linux `script`) and answering its prompts, for
//! the paths a command takes only when it can ask someone.

use std::io::{Read as _, Write as _};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::chain::shell_word;

/// Run `words` (a program and its arguments) on a pseudo-terminal: `script` is the `Command`
/// for the `script` program, set up with the environment and directory the program should
/// have (e.g. `home.command("script")`). Each prompt in `dialogue` is awaited (up to 30 s, a
/// bound and not a measurement) and answered with its line. Returns the exit code and
/// everything the terminal showed.
pub fn on_terminal(
    mut script: Command,
    words: &[&str],
    dialogue: &[(&str, &str)],
) -> (Option<i32>, String) {
    let line = words
        .iter()
        .map(|w| shell_word(w))
        .collect::<Vec<_>>()
        .join(" ");
    let mut child = script
        .args(["-q", "-e", "-c", &line, "/dev/null"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("util-linux script");
    let shown = Arc::new(Mutex::new(Vec::new()));
    let reader = {
        let shown = Arc::clone(&shown);
        let mut out = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n @ 1..) = out.read(&mut buf) {
                shown
                    .lock()
                    .unwrap()
                    .extend_from_slice(buf.get(..n).unwrap_or_default());
            }
        })
    };
    let mut stdin = child.stdin.take().unwrap();
    let mut seen = 0;
    for (prompt, answer) in dialogue {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let text = String::from_utf8_lossy(&shown.lock().unwrap()).into_owned();
            if let Some(at) = text.get(seen..).and_then(|rest| rest.find(prompt)) {
                seen += at + prompt.len();
                break;
            }
            assert!(Instant::now() < deadline, "no prompt {prompt:?} in\n{text}");
            std::thread::sleep(Duration::from_millis(20));
        }
        // Give the prompt a moment to turn echo off; correctness does not depend on it.
        std::thread::sleep(Duration::from_millis(100));
        stdin.write_all(answer.as_bytes()).unwrap();
        stdin.write_all(b"\n").unwrap();
        stdin.flush().unwrap();
    }
    let status = child.wait().unwrap();
    drop(stdin);
    reader.join().unwrap();
    let text = String::from_utf8_lossy(&shown.lock().unwrap()).into_owned();
    (status.code(), text)
}
