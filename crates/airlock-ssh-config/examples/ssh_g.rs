//! `ssh_g [-F FILE] [-l USER] [-p PORT] HOST`: print what `ssh -G` would, using the library.

use airlock_ssh_config::{ConfigSource, ResolveOptions, resolve};

fn main() -> std::process::ExitCode {
    let mut args = std::env::args().skip(1);
    let Ok(mut options) = ResolveOptions::for_current_user() else {
        return std::process::ExitCode::from(2);
    };
    let mut host = None;
    while let Some(a) = args.next() {
        match a.as_str() {
            "-F" => {
                let f = args.next().unwrap_or_default();
                options.config = if f == "none" {
                    ConfigSource::None
                } else {
                    ConfigSource::File(f.into())
                };
            }
            "-l" => options.user = args.next(),
            "-p" => options.port = args.next().and_then(|p| p.parse().ok()),
            _ => host = Some(a),
        }
    }
    match resolve(&host.unwrap_or_default(), &options) {
        Ok(c) => {
            print!("{}", c.to_ssh_g());
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::from(255)
        }
    }
}
