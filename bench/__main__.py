"""Run the benchmark suite, print one table per benchmark and write JSON.

`python -m bench` runs every benchmark at full size; `--quick` runs short,
single runs; `--smoke` runs tiny sizes, a second or two per benchmark, that
only prove every benchmark still runs (no timing is judged in either). The
exit status is 1 when a benchmark failed, and its row contains the error.
"""

import argparse
import functools
import json
import os
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import (
    http_commands,
    many_labours,
    peer,
    realtime,
    throughput,
)
from bench.machine import describe_machine
from bench.runs import Mode, guarded

RESULTS_DIR = Path(__file__).parent / "results"
THROUGHPUT_TITLE = "per-labour commands in process"
MANY_LABOURS_CAPTION = (
    "In a child process, through the registry: each labour is planned and gets"
    " BeginLabour and one or two status updates, from concurrent client tasks."
    " Labours hibernate hibernate_after seconds after their last command. Peak"
    " RSS is the kernel's high-water mark (VmHWM); open files are counted in"
    " /proc/self/fd during the run and after every labour has hibernated."
)


def _http_caption(generator: str) -> str:
    return (
        "32 keep-alive connections send the command mix as POST /api/v1/command"
        " with a bearer token. The reference, in the same run and from the same"
        " load generator, is quart-trio on hypercorn with fernd's hypercorn"
        " settings, which replies with an empty 204. The generator runs in its own"
        f" process{'es' if generator == 'python' else ''}, but on this"
        f" {os.cpu_count()}-core machine it shares the cores with the server it"
        " drives."
    )


def _print_table(title: str, rows: list[dict[str, object]], caption: str) -> None:
    """Print `rows` as one table whose columns are the union of their keys."""
    columns: list[str] = []
    for row in rows:
        columns += [key for key in row if key not in columns and key != "benchmark"]
    widths = {
        key: max(len(key), *(len(str(row.get(key, ""))) for row in rows))
        for key in columns
    }
    print(f"\n{title}")
    if caption:
        print(textwrap.fill(caption, width=88))
    print("  ".join(key.ljust(widths[key]) for key in columns))
    for row in rows:
        print("  ".join(str(row.get(key, "")).ljust(widths[key]) for key in columns))


def _parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    sizes = parser.add_mutually_exclusive_group()
    sizes.add_argument(
        "--quick",
        action="store_true",
        help="short single runs at small sizes (about two minutes in all)",
    )
    sizes.add_argument(
        "--smoke",
        action="store_true",
        help="tiny sizes, a second or two per benchmark, under a minute in all",
    )
    parser.add_argument(
        "--results-dir",
        type=Path,
        default=RESULTS_DIR,
        help=f"directory the JSON results are written to (default {RESULTS_DIR})",
    )
    parser.add_argument(
        "--http-generator",
        choices=("auto", "wrk", "python"),
        default="auto",
        help="load generator of the HTTP benchmark; auto uses wrk when it is"
        " installed and the Python generator otherwise",
    )
    return parser.parse_args()


def main() -> None:
    args = _parse_arguments()
    mode: Mode = "full"
    if args.smoke:
        mode = "smoke"
    elif args.quick:
        mode = "quick"
    http_generator = args.http_generator
    if http_generator == "auto":
        http_generator = "wrk" if http_commands.wrk_installed() else "python"

    machine = describe_machine()
    print(
        f"machine: {machine['cpu']}, {machine['cores']} cores, Python "
        f"{machine['python']}, SQLite {machine['sqlite']}, commit {machine['commit']}"
    )
    results: dict[str, list[dict[str, Any]]] = {}
    captions: dict[str, str] = {}

    def record(title: str, measure: Callable[[Mode], Any], caption: str = "") -> None:
        rows = guarded(title, measure, mode)
        results[title] = rows
        captions[title] = caption
        _print_table(title, rows, caption)

    record(THROUGHPUT_TITLE, throughput.run)
    record(peer.TITLE, peer.run, peer.CAPTION)
    for row in realtime.run(mode):
        results.setdefault(str(row["benchmark"]), []).append(row)
    for title, rows in results.items():
        if title not in captions:
            captions[title] = ""
            _print_table(title, rows, "")
    record(
        http_commands.TITLE,
        functools.partial(http_commands.run, generator=http_generator),
        _http_caption(http_generator),
    )
    record(many_labours.TITLE, many_labours.run, MANY_LABOURS_CAPTION)

    args.results_dir.mkdir(parents=True, exist_ok=True)
    path = args.results_dir / f"bench-{time.strftime('%Y%m%dT%H%M%S')}.json"
    path.write_text(
        json.dumps(
            {
                "machine": machine,
                "mode": mode,
                "quick": mode == "quick",
                "results": results,
                "captions": captions,
            },
            indent=2,
        )
    )
    print(f"results written to {path}")

    failed = [
        title for title, rows in results.items() if any("error" in row for row in rows)
    ]
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
