"""Print the validation results of a verl run: ``val-core/<data_source>/acc/mean@k`` from verl's file logger.

    python recipes/eval/summarize.py EVAL_DIR/metrics.jsonl            # last validation of the run
    python recipes/eval/summarize.py metrics.jsonl --markdown           # a row for docs/evaluation.md

verl's validation loop writes ``val-core/<data_source>/acc/mean@k`` (the mean over problems of the per-problem
mean accuracy over k samples: avg@k) for the largest k it drew, next to ``val-aux/...`` metrics.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

CORE = re.compile(r"^val-core/(?P<source>.+)/acc/mean@(?P<k>\d+)$")


def last_validation(path: Path) -> tuple[int, dict[str, tuple[int, float]]]:
    """(step, {data_source: (k, avg@k)}) of the last line of verl's JSONL that holds validation metrics."""
    found: tuple[int, dict[str, tuple[int, float]]] | None = None
    for line in Path(path).read_text().splitlines():
        if not line.strip():
            continue
        record = json.loads(line)
        results = {}
        for key, value in record["data"].items():
            match = CORE.match(key)
            if match:
                results[match["source"]] = (int(match["k"]), float(value))
        if results:
            found = (record["step"], results)
    if found is None:
        raise SystemExit(f"{path}: no val-core/<data_source>/acc/mean@k metric (did validation run?)")
    return found


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("metrics", type=Path, help="verl file-logger JSONL (VERL_FILE_LOGGER_PATH)")
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args(argv)
    step, results = last_validation(args.metrics)
    if args.markdown:
        print("| " + " | ".join(f"{s} avg@{k}" for s, (k, _) in sorted(results.items())) + " |")
        print("|" + "---|" * len(results))
        print("| " + " | ".join(f"{100 * v:.1f}" for _, (_, v) in sorted(results.items())) + " |")
        return
    print(f"validation at step {step} ({args.metrics}):")
    for source, (k, value) in sorted(results.items()):
        print(f"  {source:40s} avg@{k:<3d} {100 * value:6.2f} %")


if __name__ == "__main__":
    sys.exit(main())
