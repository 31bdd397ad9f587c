//! Benchmark: install an environment of 200 generated packages from a warm cache, against
//! `cp -al` of the same files (the floor). Writes the figures and the command that reproduces
//! them under "## Environments" in `docs/BENCHMARKS.md`.
//!
//! `cargo run -p airlock-env --example bench_env -- [docs/BENCHMARKS.md]` (the dev profile
//! builds dependencies at opt-level 2, so rattler runs optimised).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    reason = "a benchmark: failing loudly is the right outcome"
)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use airlock_env::config::{Settings, Verify};
use airlock_env::install::{self, InstallOptions};
use airlock_env::solve::{self, SolveRequest};
use airlock_env::testchannel::{PackageBuild, PackageFile, build_channel};

const PACKAGES: usize = 200;
const FILES_PER_PACKAGE: usize = 20;
const RUNS: usize = 5;

fn settings(root: &Path, verify: Verify) -> Settings {
    Settings {
        default_channels: vec!["bench".to_owned()],
        channel_alias: url::Url::from_directory_path(root.join("channels")).unwrap(),
        envs_dir: root.join("envs"),
        extra_envs_dirs: Vec::new(),
        pkgs_dir: root.join("pkgs"),
        pkgs_layers: Vec::new(),
        offline: true,
        verify,
        environments_txt: root.join("environments.txt"),
        repodata_cache: root.join("repodata"),
        cwd: root.to_path_buf(),
    }
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    let out_file = std::env::args()
        .nth(1)
        .map_or_else(|| PathBuf::from("docs/BENCHMARKS.md"), PathBuf::from);
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let packages: Vec<PackageBuild> = (0..PACKAGES)
        .map(|i| {
            let mut p = PackageBuild::new(&format!("bench-pkg-{i:03}"), "1.0");
            for f in 0..FILES_PER_PACKAGE {
                p = p.file(PackageFile::data(
                    &format!("lib/bench-{i:03}/file-{f:02}.txt"),
                    format!("package {i} file {f}\n").repeat(64),
                ));
            }
            p
        })
        .collect();
    build_channel(&root.join("channels").join("bench"), &packages).unwrap();
    let specs: Vec<String> = packages.iter().map(|p| p.name.clone()).collect();

    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut rows = Vec::new();
    for verify in [Verify::Full, Verify::Fast] {
        let s = settings(root, verify);
        let t = Instant::now();
        let solution = rt
            .block_on(solve::solve(
                &s,
                &SolveRequest {
                    specs: specs.clone(),
                    channels: Vec::new(),
                    platform: solve::current_platform(),
                    cuda: None,
                    locked: Vec::new(),
                },
            ))
            .unwrap();
        let solve_time = t.elapsed();
        let options = InstallOptions::default();
        // Cold: the first install also extracts every package into the cache.
        let _ = std::fs::remove_dir_all(root.join("pkgs"));
        let t = Instant::now();
        rt.block_on(install::create(
            &s,
            &root.join("envs").join(format!("cold-{verify:?}")),
            solution.records.clone(),
            &options,
            false,
        ))
        .unwrap();
        let cold = t.elapsed();
        let mut warm = Vec::new();
        let mut copy = Vec::new();
        for run in 0..RUNS {
            let target = root.join("envs").join(format!("warm-{verify:?}-{run}"));
            let t = Instant::now();
            rt.block_on(install::create(
                &s,
                &target,
                solution.records.clone(),
                &options,
                false,
            ))
            .unwrap();
            warm.push(t.elapsed());
            let copy_target = root.join(format!("copy-{verify:?}-{run}"));
            let t = Instant::now();
            let status = std::process::Command::new("cp")
                .arg("-al")
                .arg(&target)
                .arg(&copy_target)
                .status()
                .unwrap();
            copy.push(t.elapsed());
            assert!(status.success());
        }
        let (warm, copy) = (median(warm), median(copy));
        rows.push(format!(
            "| `{}` | {:.1} ms | {:.1} ms | {:.1} ms | {:.1} ms | {:.2}x |",
            format!("{verify:?}").to_lowercase(),
            solve_time.as_secs_f64() * 1e3,
            cold.as_secs_f64() * 1e3,
            warm.as_secs_f64() * 1e3,
            copy.as_secs_f64() * 1e3,
            warm.as_secs_f64() / copy.as_secs_f64()
        ));
    }
    let cpus = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    let section = format!(
        "## Environments\n\n\
         Install of an environment of {PACKAGES} generated `noarch` packages ({FILES_PER_PACKAGE} \
         files each, {} files in all) from a local `file://` channel, into a new prefix through \
         the staging directory (atomic create). `cold` includes extracting every package into \
         an empty cache; `warm` is the median of {RUNS} installs from the warm cache; the floor \
         is `cp -al` of the finished environment (same files, hard links), median of {RUNS}. \
         `verify` is the cache check before linking (`full`: size and SHA-256 of every file, \
         the default; `fast`: existence only). Machine: {cpus} CPU(s), shared with other builds, \
         `$TMPDIR` on the local disk.\n\n\
         | verify | solve | cold install | warm install | `cp -al` | warm / `cp -al` |\n\
         |---|---|---|---|---|---|\n{}\n\n\
         Reproduce: `cargo run -p airlock-env --example bench_env -- docs/BENCHMARKS.md` (dev profile; \
         the workspace builds dependencies, rattler included, at opt-level 2)\n\n\
         Not measured yet: solve + install against py-rattler on the same channel (py-rattler \
         is not installed on the build machines).\n",
        PACKAGES * FILES_PER_PACKAGE,
        rows.join("\n")
    );
    println!("{section}");
    let existing = std::fs::read_to_string(&out_file).unwrap_or_default();
    let updated = match existing.find("## Environments") {
        Some(start) => {
            let rest = &existing[start + 2..];
            let end = rest
                .find("\n## ")
                .map_or(existing.len(), |i| start + 2 + i + 1);
            format!("{}{section}{}", &existing[..start], &existing[end..])
        }
        None if existing.is_empty() => format!("# Benchmarks\n\n{section}"),
        None => format!(
            "{}\n{section}",
            existing.trim_end_matches('\n').to_owned() + "\n"
        ),
    };
    if let Some(dir) = out_file.parent() {
        std::fs::create_dir_all(dir).unwrap();
    }
    std::fs::write(&out_file, updated).unwrap();
}
