"""py-rattler side of `bench_env`: solve + install the same specs from the same local channel.

Usage: python bench_py_rattler.py CHANNEL_URL SPECS_FILE WORK_DIR PREFIX_NAME cold|warm

Installs into WORK_DIR/PREFIX_NAME with the package cache WORK_DIR/pkgs (emptied first for
`cold`) and prints one JSON object: `seconds` and `version`. The time is taken in-process
around `solve` and `install`, as `bench_env` does for airlock, so interpreter start-up and
imports are not counted.
py-rattler runs with its defaults (package cache validation `Skip`), without its progress bar.
"""

import asyncio
import json
import shutil
import sys
import time
from pathlib import Path

import rattler


async def solve_install(channel: str, specs: list[str], prefix: Path, cache: Path) -> float:
    start = time.perf_counter()
    records = await rattler.solve(
        [rattler.Channel(channel)],
        specs,
        platforms=[rattler.Subdir.current(), rattler.Subdir("noarch")],
        virtual_packages=rattler.VirtualPackage.detect(),
    )
    await rattler.install(records, prefix, cache_dir=cache, show_progress=False)
    return time.perf_counter() - start


async def main() -> None:
    channel, specs_file, work, name, mode = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3]), sys.argv[4], sys.argv[5]
    specs = specs_file.read_text().split()
    cache = work / "pkgs"
    if mode == "cold":
        shutil.rmtree(cache, ignore_errors=True)
    seconds = await solve_install(channel, specs, work / name, cache)
    print(json.dumps({"version": getattr(rattler, "__version__", ""), "seconds": seconds}))


asyncio.run(main())
