"""How long the command line takes to answer, whole process, against an earlier version.

Each command runs as a user runs it (``python -m openfrt …`` in a fresh process); with
``--against REV`` the same commands also run from that git revision's ``src`` (exported into a
temporary folder, same interpreter and packages), in turn with this checkout's — A B A B … — so
the ratio is taken pair by pair on a machine whose load drifts. Prints medians of wall and CPU
seconds (CPU: user + system of the child, less sensitive to other jobs than wall time).

    python benchmarks/cli_startup.py --against 8467890 --runs 10
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from io import BytesIO
from pathlib import Path

from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
COMMANDS = (("--help",), ("subject", "add", "--help"), ("live", "--help"), ("alerts", "list"))


def export_source(revision: str, into: Path) -> Path:
    """``revision``'s ``src`` folder, written under ``into``."""
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", revision, "src"], check=True, capture_output=True).stdout
    with tarfile.open(fileobj=BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    return into / "src"


def run_once(arguments: tuple[str, ...], env: dict[str, str]) -> tuple[float, float]:
    """Wall and CPU seconds of one ``python -m openfrt ARGUMENTS``."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "openfrt", *arguments], env=env, check=True, capture_output=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--against", help="git revision to compare with (e.g. main, or a commit)")
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        base = {key: value for key, value in os.environ.items() if not key.startswith("OPENFRT_")}
        base["OPENFRT_HOME"] = str(Path(scratch) / "home")
        versions = {"this checkout": {**base, "PYTHONPATH": str(ROOT / "src")}}
        if args.against:
            versions[args.against] = {**base, "PYTHONPATH": str(export_source(args.against, Path(scratch) / "against"))}
        table = Table(title=f"whole-process seconds, median of {args.runs} runs (load average {os.getloadavg()[0]:.1f})",
                      title_justify="left")
        table.add_column("command")
        for version in versions:
            table.add_column(f"{version}: wall / CPU", justify="right")
        if args.against:
            table.add_column("ratio (pair by pair): wall / CPU", justify="right")
        for arguments in COMMANDS:
            for env in versions.values():
                run_once(arguments, env)  # warm-up: file cache, and the data directory for `alerts list`
            times: dict[str, list[tuple[float, float]]] = {version: [] for version in versions}
            for _ in range(args.runs):
                for version, env in versions.items():
                    times[version].append(run_once(arguments, env))
            cells = [f"{statistics.median(w for w, _ in runs):.3f} / {statistics.median(c for _, c in runs):.3f}" for runs in times.values()]
            if args.against:
                mine, theirs = times["this checkout"], times[args.against]
                cells.append(f"{statistics.median(a[0] / b[0] for a, b in zip(mine, theirs)):.3f} / "
                             f"{statistics.median(a[1] / b[1] for a, b in zip(mine, theirs)):.3f}")
            table.add_row(f"openfrt {' '.join(arguments)}", *cells)
        Console(width=160).print(table)


if __name__ == "__main__":
    main()
