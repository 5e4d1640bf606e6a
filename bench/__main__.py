"""Run the benchmark suite, print one table and write JSON to bench/results/.

`python -m bench` runs every benchmark at full size; `--quick` runs short,
single runs that prove the suite still works (no timing is asserted).
"""

import argparse
import json
import time
from pathlib import Path

from bench import realtime, throughput
from bench.machine import describe_machine

RESULTS_DIR = Path(__file__).parent / "results"


def _print_table(title: str, rows: list[dict[str, object]]) -> None:
    """Print `rows` as one table whose columns are the union of their keys."""
    columns: list[str] = []
    for row in rows:
        columns += [key for key in row if key not in columns and key != "benchmark"]
    widths = {
        key: max(len(key), *(len(str(row.get(key, ""))) for row in rows))
        for key in columns
    }
    print(f"\n{title}")
    print("  ".join(key.ljust(widths[key]) for key in columns))
    for row in rows:
        print("  ".join(str(row.get(key, "")).ljust(widths[key]) for key in columns))


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument(
        "--quick",
        action="store_true",
        help="short single runs at small sizes (about a minute in all)",
    )
    args = parser.parse_args()

    machine = describe_machine()
    print(
        f"machine: {machine['cpu']}, {machine['cores']} cores, Python "
        f"{machine['python']}, SQLite {machine['sqlite']}, commit {machine['commit']}"
    )
    results: dict[str, list[dict[str, object]]] = {}
    results["per-labour commands in process"] = throughput.run(quick=args.quick)
    _print_table(
        "Per-labour commands in process", results["per-labour commands in process"]
    )
    for row in realtime.run(quick=args.quick):
        results.setdefault(str(row["benchmark"]), []).append(row)
    for title, rows in results.items():
        if title != "per-labour commands in process":
            _print_table(title, rows)

    RESULTS_DIR.mkdir(exist_ok=True)
    path = RESULTS_DIR / f"bench-{time.strftime('%Y%m%dT%H%M%S')}.json"
    path.write_text(
        json.dumps(
            {"machine": machine, "quick": args.quick, "results": results}, indent=2
        )
    )
    print(f"results written to {path}")


if __name__ == "__main__":
    main()
