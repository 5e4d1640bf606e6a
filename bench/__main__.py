"""Run the benchmark suite, print one table and write JSON to bench/results/.

`python -m bench` runs every benchmark at full size; `--quick` runs short,
single runs that prove the suite still works (no timing is asserted).
"""

import argparse
import json
import time
from pathlib import Path

from bench import throughput
from bench.machine import describe_machine

RESULTS_DIR = Path(__file__).parent / "results"


def _print_table(rows: list[dict[str, object]]) -> None:
    columns = [
        ("synchronous", "sync"),
        ("batch_limit", "batch"),
        ("fernd_commands_per_second", "fernd cmd/s"),
        ("reference_rows_per_second", "raw apsw rows/s"),
        ("fernd_over_reference", "fernd/raw"),
    ]
    print("Per-labour command throughput in process (median of runs)")
    print("  ".join(f"{title:>16}" for _, title in columns))
    for row in rows:
        print("  ".join(f"{row[key]!s:>16}" for key, _ in columns))


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument(
        "--quick", action="store_true", help="short single runs (about 10 s in all)"
    )
    args = parser.parse_args()

    machine = describe_machine()
    print(
        f"machine: {machine['cpu']}, {machine['cores']} cores, Python "
        f"{machine['python']}, SQLite {machine['sqlite']}, commit {machine['commit']}"
    )
    rows = throughput.run(quick=args.quick)
    _print_table(rows)

    RESULTS_DIR.mkdir(exist_ok=True)
    path = RESULTS_DIR / f"throughput-{time.strftime('%Y%m%dT%H%M%S')}.json"
    path.write_text(
        json.dumps({"machine": machine, "quick": args.quick, "results": rows}, indent=2)
    )
    print(f"results written to {path}")


if __name__ == "__main__":
    main()
