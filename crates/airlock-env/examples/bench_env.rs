//! Benchmark: install an environment of 200 generated packages from a warm cache, against
//! `cp -al` of the same files (the floor). Writes the figures and the command that reproduces
//! them under "## Environments" in `docs/BENCHMARKS.md`, with solve + install against py-rattler
//! (cold and warm cache) when a Python with py-rattler is found.
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
const RUNS: usize = 9;
const COLD_RUNS: usize = 3;

/// The shape of the generated environment: files per package, spread over this many
/// directories per package.
#[derive(Clone, Copy)]
struct Shape {
    files: usize,
    dirs: usize,
}

const SHAPES: [Shape; 2] = [
    Shape { files: 20, dirs: 1 },
    Shape {
        files: 150,
        dirs: 10,
    },
];

fn settings(root: &Path, verify: Verify) -> Settings {
    airlock_env::testchannel::offline_settings(root, "bench", verify).unwrap()
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn median_f(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

fn build(root: &Path, shape: Shape) -> Vec<String> {
    let packages: Vec<PackageBuild> = (0..PACKAGES)
        .map(|i| {
            let mut p = PackageBuild::new(&format!("bench-pkg-{i:03}"), "1.0");
            for f in 0..shape.files {
                p = p.file(PackageFile::data(
                    &format!("lib/bench-{i:03}/d{:02}/file-{f:03}.txt", f % shape.dirs),
                    format!("package {i} file {f}\n").repeat(64),
                ));
            }
            p
        })
        .collect();
    build_channel(&root.join("channels").join("bench"), &packages).unwrap();
    // Flush the channel's archives now, so that their writeback does not land in the first
    // measurement.
    assert!(
        std::process::Command::new("sync")
            .status()
            .unwrap()
            .success()
    );
    packages.iter().map(|p| p.name.clone()).collect()
}

fn solve_request(specs: &[String]) -> SolveRequest {
    SolveRequest {
        specs: specs.to_vec(),
        channels: Vec::new(),
        platform: solve::current_platform(),
        cuda: None,
        locked: Vec::new(),
    }
}

/// Solve + install into a new prefix; returns the time.
fn solve_install(
    rt: &tokio::runtime::Runtime,
    s: &Settings,
    specs: &[String],
    target: &Path,
) -> Duration {
    let t = Instant::now();
    let solution = rt.block_on(solve::solve(s, &solve_request(specs))).unwrap();
    rt.block_on(install::create(
        s,
        target,
        solution.records,
        &InstallOptions::default(),
        false,
    ))
    .unwrap();
    t.elapsed()
}

/// One row per verification mode: cold install, and warm install against `cp -al` of the
/// result. The modes take turns run by run so that they see the same load.
fn against_cp(rt: &tokio::runtime::Runtime, root: &Path, specs: &[String]) -> Vec<String> {
    let modes = [Verify::Stamp, Verify::Full, Verify::Skip];
    let name = |verify: Verify| format!("{verify:?}").to_lowercase();
    let solution = rt
        .block_on(solve::solve(
            &settings(root, Verify::Stamp),
            &solve_request(specs),
        ))
        .unwrap();
    let options = InstallOptions::default();
    let install = |verify: Verify, target: &Path| {
        let t = Instant::now();
        rt.block_on(install::create(
            &settings(root, verify),
            target,
            solution.records.clone(),
            &options,
            false,
        ))
        .unwrap();
        t.elapsed()
    };
    let mut cold = vec![Vec::new(); modes.len()];
    for run in 0..COLD_RUNS {
        for (i, &verify) in modes.iter().enumerate() {
            // Cold: the install also extracts every package into the (emptied) cache.
            let _ = std::fs::remove_dir_all(root.join("pkgs"));
            let target = root
                .join("envs")
                .join(format!("cold-{}-{run}", name(verify)));
            cold[i].push(install(verify, &target));
        }
    }
    let (mut warm, mut copy, mut ratio) = (
        vec![Vec::new(); modes.len()],
        vec![Vec::new(); modes.len()],
        vec![Vec::new(); modes.len()],
    );
    for run in 0..RUNS {
        for (i, &verify) in modes.iter().enumerate() {
            let target = root
                .join("envs")
                .join(format!("warm-{}-{run}", name(verify)));
            let w = install(verify, &target);
            let copy_target = root.join(format!("copy-{}-{run}", name(verify)));
            let t = Instant::now();
            let status = std::process::Command::new("cp")
                .arg("-al")
                .arg(&target)
                .arg(&copy_target)
                .status()
                .unwrap();
            let c = t.elapsed();
            assert!(status.success());
            warm[i].push(w);
            copy[i].push(c);
            ratio[i].push(w.as_secs_f64() / c.as_secs_f64());
        }
    }
    modes
        .iter()
        .enumerate()
        .map(|(i, &verify)| {
            format!(
                "| `{}` | {} | {} | {} | {:.2}x |",
                name(verify),
                ms(median(cold[i].clone())),
                ms(median(warm[i].clone())),
                ms(median(copy[i].clone())),
                median_f(ratio[i].clone())
            )
        })
        .collect()
}

/// The Python with py-rattler: `AIRLOCK_BENCH_PYTHON`, else `target/bench-venv/bin/python`.
fn py_rattler_python() -> Option<PathBuf> {
    let python = std::env::var_os("AIRLOCK_BENCH_PYTHON").map_or_else(
        || PathBuf::from("target/bench-venv/bin/python"),
        PathBuf::from,
    );
    let ok = std::process::Command::new(&python)
        .args(["-c", "import rattler"])
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    ok.then_some(python)
}

/// One py-rattler solve + install (see `bench_py_rattler.py`); returns the time and version.
fn py_rattler_once(python: &Path, root: &Path, name: &str, mode: &str) -> (Duration, String) {
    let work = root.join("py-rattler");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/bench_py_rattler.py");
    let channel = url::Url::from_directory_path(root.join("channels").join("bench")).unwrap();
    let out = std::process::Command::new(python)
        .arg(script)
        .arg(channel.as_str())
        .arg(work.join("specs.txt"))
        .arg(&work)
        .arg(name)
        .arg(mode)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let result: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    (
        Duration::from_secs_f64(result["seconds"].as_f64().unwrap()),
        result["version"].as_str().unwrap_or_default().to_owned(),
    )
}

/// airlock and py-rattler, solve + install, cold and warm, alternating run by run so that
/// both see the same load; each ratio is the median of the per-pair ratios.
fn against_py_rattler(rt: &tokio::runtime::Runtime, root: &Path, specs: &[String]) -> String {
    let Some(python) = py_rattler_python() else {
        return "Not measured: no Python with py-rattler (create `target/bench-venv` as below, \
                or set `AIRLOCK_BENCH_PYTHON`).\n"
            .to_owned();
    };
    let work = root.join("py-rattler");
    std::fs::create_dir_all(&work).unwrap();
    std::fs::write(work.join("specs.txt"), specs.join("\n")).unwrap();
    let s = settings(root, Verify::Stamp);
    let mut version = String::new();
    let mut rows = Vec::new();
    for (mode, runs) in [("cold", COLD_RUNS), ("warm", RUNS)] {
        let (mut ours, mut theirs, mut ratio) = (Vec::new(), Vec::new(), Vec::new());
        for run in 0..runs {
            if mode == "cold" {
                let _ = std::fs::remove_dir_all(root.join("pkgs"));
                let _ = std::fs::remove_dir_all(root.join("repodata"));
            }
            let a = solve_install(
                rt,
                &s,
                specs,
                &root.join("envs").join(format!("py-cmp-{mode}-{run}")),
            );
            let (p, v) = py_rattler_once(&python, root, &format!("{mode}-{run}"), mode);
            version = v;
            ours.push(a);
            theirs.push(p);
            ratio.push(a.as_secs_f64() / p.as_secs_f64());
        }
        let label = if mode == "cold" {
            format!("cold (empty package cache, median of {runs})")
        } else {
            format!("warm (median of {runs})")
        };
        rows.push(format!(
            "| {label} | {} | {} | {:.2}x |",
            ms(median(ours)),
            ms(median(theirs)),
            median_f(ratio)
        ));
    }
    format!(
        "| | airlock | py-rattler {version} | airlock / py-rattler |\n|---|---|---|---|\n{}\n",
        rows.join("\n")
    )
}

fn main() {
    let out_file = std::env::args()
        .nth(1)
        .map_or_else(|| PathBuf::from("docs/BENCHMARKS.md"), PathBuf::from);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut tables = Vec::new();
    let mut comparison = String::new();
    for (i, shape) in SHAPES.into_iter().enumerate() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        let specs = build(root, shape);
        let rows = against_cp(&rt, root, &specs);
        tables.push(format!(
            "{PACKAGES} packages, {} files each in {} directories ({} files):\n\n\
             | verify | cold install | warm install | `cp -al` | warm / `cp -al` |\n\
             |---|---|---|---|---|\n{}\n",
            shape.files,
            shape.dirs,
            PACKAGES * shape.files,
            rows.join("\n")
        ));
        if i == 0 {
            comparison = against_py_rattler(&rt, root, &specs);
        }
    }
    let cpus = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    let section = format!(
        "## Environments\n\n\
         Generated `noarch` packages in a local `file://` channel, installed into a new prefix \
         through the staging directory (atomic create). `cold` includes extracting every \
         package into an empty cache (median of {COLD_RUNS}); `warm` is the median of {RUNS} \
         installs from the warm cache; the floor is `cp -al` of the finished environment (same \
         files and conda-meta, hard links), run right after each warm install; the ratio is the \
         median of the {RUNS} per-pair ratios. The modes take turns run by run. `verify` is the cache check before linking: `stamp` (the default) \
         compares size, mtime and inode of every cached file with a stamp written after the \
         package was hash-checked once; `full` hashes every file on every install; `skip` \
         trusts the cache (rattler's and py-rattler's default). Machine: {cpus} CPU(s), shared \
         with other builds, `$TMPDIR` on ext4 (mounted with `discard`). Absolute times here \
         vary 2–3x from one run to the next with the state of the shared disk (4000 hard \
         links by `cp -al` took 74 ms in one run and 200 ms in another): read the ratios, \
         which compare runs made side by side.\n\n\
         {}\n\
         A new environment is linked by airlock's own loop on rattler's per-package linker \
         (`link_package_sync`, `crates/airlock-env/src/link.rs`), which writes each \
         package's `conda-meta/*.json` once into the staging directory. rattler's \
         `Installer` writes each record through a temp file with an `fsync` and reads them all \
         back at the end; with it, the 200 × 20 case measured 1.5–1.6x here. What remains \
         against `cp -al`: the same directories and hard links on both sides, plus 200 \
         records written where `cp -al` links them. Neither side calls `fsync` (the staging \
         rename is what makes a create atomic).\n\n\
         ### Against py-rattler\n\n\
         Solve + install of the first environment above, in-process on both sides \
         (py-rattler's `solve` + `install` with its defaults and no progress bar; airlock's \
         `solve` + staged `install::create` with the default `stamp` check), same channel and \
         specs, taking turns run by run; the ratio is the median of the per-pair ratios.\n\n{comparison}\n\
         Reproduce (not part of the test suite):\n\n\
         ```\n\
         python3 -m venv target/bench-venv && target/bench-venv/bin/pip install py-rattler\n\
         cargo run -p airlock-env --example bench_env -- docs/BENCHMARKS.md\n\
         ```\n\n\
         (dev profile; the workspace builds dependencies, rattler included, at opt-level 2)\n",
        tables.join("\n")
    );
    println!("{section}");
    let existing = std::fs::read_to_string(&out_file).unwrap_or_default();
    let updated = match existing.find("## Environments") {
        Some(start) => {
            let rest = &existing[start + 2..];
            // Up to the next heading or the next section's marker comment.
            let end = [rest.find("\n## "), rest.find("\n<!--")]
                .into_iter()
                .flatten()
                .min()
                .map_or(existing.len(), |i| start + 2 + i + 1);
            format!("{}{section}\n{}", &existing[..start], &existing[end..])
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
