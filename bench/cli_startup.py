"""Start-up time of the `aslora` program at two commits, measured side by side in one run.

`python -m bench.cli_startup --before REV [--after REV] [--repeats N] --out bench/results/cli_startup.json`:
each commit's packages are extracted (`git archive`) and imported under their installed names
(pyproject.toml's package-dir), with this environment's libraries; the commits alternate within each
repeat, so both see the same machine load. Per command: the median wall time of a fresh interpreter that
runs it, and the median `-X importtime` of `import aslora_cli.main`.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import socket
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
import tomllib
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parents[1]
RUN_APP = "import sys; from aslora_cli.main import app; sys.argv[0] = 'aslora'; app()"
APP_MODULE = "aslora_cli.main"
MICROSECONDS = 1e6
COMMAND_TIMEOUT_SECONDS = 600
DEFAULT_REPEATS = 5
HEAVY_MODULES = ("torch", "transformers", "peft", "opacus")
LIST_HEAVY = (
    "import json, sys, aslora_cli.main; "
    f"print(json.dumps([name for name in {HEAVY_MODULES!r} if name in sys.modules]))"
)


def _commands() -> dict[str, list[str]]:
    """What is timed; the last runs the admin client against a loopback port nothing listens on (bound, then
    released), so it fails at once."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{probe.getsockname()[1]}"
    return {
        "aslora --help": ["--help"],
        "aslora coordinator status --help": ["coordinator", "status", "--help"],
        "aslora coordinator status, no coordinator": [
            "coordinator",
            "status",
            "--insecure",
            "--address",
            address,
        ],
    }


def _commit(revision: str) -> str:
    """The abbreviated hash `revision` names, for the record."""
    command = ["git", "-C", str(REPOSITORY), "rev-parse", "--short", revision]
    return subprocess.run(command, capture_output=True, text=True, check=True).stdout.strip()


def _import_root(revision: str, folder: Path) -> Path:
    """`revision`'s files under `folder`, and a folder of links that gives its packages their import names."""
    archive = subprocess.run(
        ["git", "-C", str(REPOSITORY), "archive", revision], capture_output=True, check=True
    ).stdout
    tree = folder / "tree"
    with tarfile.open(fileobj=io.BytesIO(archive)) as files:
        files.extractall(tree, filter="data")
    setuptools = tomllib.loads((tree / "pyproject.toml").read_text())["tool"]["setuptools"]
    mapped: dict[str, str] = setuptools["package-dir"]
    root = folder / "import-root"
    root.mkdir()
    for package in (name for name in setuptools["packages"] if "." not in name):
        (root / package).symlink_to(tree / mapped.get(package, package))
    return root


def _python(root: Path, arguments: list[str], check: bool = True) -> subprocess.CompletedProcess[str]:
    """This interpreter run in `root` (so that neither the working folder nor the editable install shadows
    the commit's packages)."""
    return subprocess.run(
        [sys.executable, *arguments],
        cwd=root,
        env={**os.environ, "PYTHONPATH": str(root), "HF_HUB_OFFLINE": "1"},
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT_SECONDS,
        check=check,
    )


def _wall_seconds(root: Path, arguments: list[str]) -> float:
    start = time.perf_counter()
    _python(root, ["-c", RUN_APP, *arguments], check=False)
    return time.perf_counter() - start


def _import_seconds(root: Path) -> float:
    """The cumulative `-X importtime` of aslora_cli.main (lines read `import time: self | total | name`)."""
    lines = _python(root, ["-X", "importtime", "-c", f"import {APP_MODULE}"]).stderr.splitlines()
    fields = next(line.split("|") for line in lines if line.split("|")[-1].strip() == APP_MODULE)
    return int(fields[1]) / MICROSECONDS


def _heavy_modules(root: Path) -> list[str]:
    loaded: list[str] = json.loads(_python(root, ["-c", LIST_HEAVY]).stdout)
    return loaded


def main() -> None:
    """Measure both commits, print a markdown table of medians, write JSON."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--before", required=True, help="the commit to compare against")
    parser.add_argument("--after", default="HEAD", help="the commit measured (default HEAD)")
    parser.add_argument("--repeats", type=int, default=DEFAULT_REPEATS)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    revisions = {"before": _commit(args.before), "after": _commit(args.after)}
    with tempfile.TemporaryDirectory(prefix="aslora-cli-startup-") as folder:
        roots = {name: _import_root(rev, Path(folder) / name) for name, rev in revisions.items()}
        heavy = {name: _heavy_modules(root) for name, root in roots.items()}  # also compiles the .pyc files
        samples: dict[str, dict[str, list[float]]] = {name: {} for name in roots}
        commands = _commands()
        for _ in range(args.repeats):
            for name, root in roots.items():
                samples[name].setdefault("import aslora_cli.main", []).append(_import_seconds(root))
                for label, arguments in commands.items():
                    samples[name].setdefault(label, []).append(_wall_seconds(root, arguments))
    rows = [
        {
            "measure": label,
            "before_median_s": round(statistics.median(samples["before"][label]), 3),
            "after_median_s": round(statistics.median(samples["after"][label]), 3),
        }
        for label in samples["before"]
    ]
    loads = {name: ", ".join(modules) or "none" for name, modules in heavy.items()}
    print(
        f"before {revisions['before']} (loads {loads['before']}), after {revisions['after']} "
        f"(loads {loads['after']}); medians of {args.repeats}, cpus {os.cpu_count()}"
    )
    print("| measure | before s | after s |")
    print("| --- | ---: | ---: |")
    for row in rows:
        print(f"| {row['measure']} | {row['before_median_s']} | {row['after_median_s']} |")
    if args.out is not None:
        document = {"revisions": revisions, "heavy_modules": heavy, "repeats": args.repeats, "rows": rows}
        args.out.write_text(json.dumps(document, indent=2) + "\n")


if __name__ == "__main__":
    main()
