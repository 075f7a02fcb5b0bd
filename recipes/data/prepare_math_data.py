"""Prepare the reproduction's data in verl's parquet schema, graded by verl 0.9.1's own ``default_compute_score``.

Train: DAPO-Math-17k (``dapo``) and MATH (``math``). Validation: AIME 2024 (``aime24``), AIME 2025 (``aime25``),
MATH-500 (``math500``). Each dataset is read from the Hugging Face hub, or from a local file for offline clusters
(``--local-path NAME=FILE``, FILE: .parquet, .jsonl, .json or .csv with the hub's columns), and written to
``<out>/<NAME>_train.parquet`` (train sets) or ``<out>/<NAME>.parquet`` (validation sets).

    python recipes/data/prepare_math_data.py --out ~/data/etr                      # all five, from the hub
    python recipes/data/prepare_math_data.py --out ~/data/etr --datasets aime24,math500 \\
        --local-path aime24=/mnt/aime_2024.jsonl --local-path math500=/mnt/math500.parquet

Every row: ``data_source`` (picks verl's grader), ``prompt`` (one user message: the problem, then the instruction
below), ``ability``, ``reward_model = {"style": "rule", "ground_truth": <answer>}``, ``extra_info`` (split, index,
dataset, original id). One instruction for every dataset, so the answer format the policy learns is the one every
grader reads: ``\\boxed{}`` — verl's ``math_dapo`` grader (DAPO-Math, AIME) takes ``Answer: x`` first and falls back
to ``\\boxed{x}``; its ``math_reward`` grader (MATH, MATH-500) reads ``\\boxed{x}`` only.

| name   | hub id                             | split | data_source                        | verl grader | scores  |
|--------|------------------------------------|-------|------------------------------------|-------------|---------|
| dapo   | BytedTsinghua-SIA/DAPO-Math-17k    | train | math_dapo                          | math_dapo   | -1 / +1 |
| math   | DigitalLearningGmbH/MATH-lighteval | train | DigitalLearningGmbH/MATH-lighteval | math_reward | 0 / 1   |
| aime24 | HuggingFaceH4/aime_2024            | train | aime24                             | math_dapo   | -1 / +1 |
| aime25 | math-ai/aime25                     | test  | aime25                             | math_dapo   | -1 / +1 |
| math500| HuggingFaceH4/MATH-500             | test  | HuggingFaceH4/MATH-500             | math_reward | 0 / 1   |

Validation metrics are the graders' ``acc`` (0/1 for both), logged by verl as ``val-core/<data_source>/acc/mean@k``.
ETR's macro signal needs the train set's score range: ``algorithm.etr.reward_low=-1`` for ``dapo``, ``0`` for
``math``: each experiment config sets it for its training set (``hydra_configs/experiment/*_dapo17k.yaml``: -1,
``*_math.yaml``: 0).
"""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass
from pathlib import Path

INSTRUCTION = "Please reason step by step, and put your final answer within \\boxed{}."
# DAPO-Math-17k ships its problems wrapped in its own "Answer: $Answer" instruction; we keep the problem only
DAPO_PREFIX = (
    "Solve the following math problem step by step. The last line of your response should be of the form "
    "Answer: $Answer (without quotes) where $Answer is the answer to the problem.\n\n"
)
DAPO_SUFFIX = '\n\nRemember to put your answer on its own line after "Answer:".'


@dataclass(frozen=True)
class Source:
    name: str
    hub_id: str
    split: str
    data_source: str
    role: str  # "train" or "val"

    def output(self, out_dir: Path) -> Path:
        return out_dir / (f"{self.name}_train.parquet" if self.role == "train" else f"{self.name}.parquet")


SOURCES = {s.name: s for s in (
    Source("dapo", "BytedTsinghua-SIA/DAPO-Math-17k", "train", "math_dapo", "train"),
    Source("math", "DigitalLearningGmbH/MATH-lighteval", "train", "DigitalLearningGmbH/MATH-lighteval", "train"),
    Source("aime24", "HuggingFaceH4/aime_2024", "train", "aime24", "val"),
    Source("aime25", "math-ai/aime25", "test", "aime25", "val"),
    Source("math500", "HuggingFaceH4/MATH-500", "test", "HuggingFaceH4/MATH-500", "val"),
)}


def read_local(path: Path) -> list[dict]:
    import pandas as pd

    suffix = path.suffix.lower()
    if suffix == ".parquet":
        frame = pd.read_parquet(path)
    elif suffix == ".jsonl":
        frame = pd.read_json(path, lines=True)
    elif suffix == ".json":
        frame = pd.read_json(path)
    elif suffix == ".csv":
        frame = pd.read_csv(path)
    else:
        raise ValueError(f"--local-path {path}: unsupported file type {suffix!r}; use .parquet, .jsonl, .json or .csv")
    return frame.to_dict("records")


def hub_unreachable_reason(timeout: float = 3.0) -> str | None:
    """Why the dataset hub cannot be reached (one TCP connection to ``HF_ENDPOINT``, default huggingface.co), or
    None: an offline machine then fails in seconds instead of after the hub client's retries."""
    import os
    import socket
    from urllib.parse import urlparse

    if os.environ.get("HF_HUB_OFFLINE", "") == "1" or os.environ.get("HF_DATASETS_OFFLINE", "") == "1":
        return "HF_HUB_OFFLINE / HF_DATASETS_OFFLINE is set"
    endpoint = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    port = endpoint.port or (443 if endpoint.scheme == "https" else 80)
    try:
        socket.create_connection((endpoint.hostname, port), timeout=timeout).close()
    except OSError as error:
        return f"{endpoint.hostname}:{port} does not answer ({error})"
    return None


def read_hub(source: Source) -> list[dict]:
    unreachable = hub_unreachable_reason()
    if unreachable:
        raise SystemExit(
            f"cannot read {source.hub_id} from the hub: {unreachable}. Offline? Download it elsewhere and pass "
            f"--local-path {source.name}=FILE (or --offline with a --local-path for every dataset)."
        )
    try:
        import datasets
    except ImportError as error:  # pragma: no cover - datasets comes with verl
        raise SystemExit(f"reading {source.hub_id} from the hub needs `pip install datasets` ({error})") from error
    try:
        return list(datasets.load_dataset(source.hub_id, split=source.split))
    except Exception as error:
        raise SystemExit(
            f"could not read {source.hub_id} (split {source.split}) from the hub: {error}\n"
            f"Offline? Download it elsewhere and pass --local-path {source.name}=FILE."
        ) from error


class InputFileError(ValueError):
    """A dataset whose rows lack the columns its conversion needs."""


def field(row: dict, names: tuple[str, ...], source: Source):
    for name in names:
        if name in row and row[name] is not None:
            return row[name]
    raise InputFileError(f"{source.name}: a row has none of the columns {names}; columns present: {sorted(row)}")


def boxed_answer(solution: str) -> str:
    """The last ``\\boxed{...}`` of a MATH solution, with verl's own parser (what its grader compares against)."""
    from verl.utils.reward_score.math_reward import last_boxed_only_string, remove_boxed

    boxed = last_boxed_only_string(solution)
    if boxed is None:
        raise ValueError(f"no \\boxed{{}} answer in solution: {solution[:120]!r}")
    return remove_boxed(boxed)


def problem_and_answer(row: dict, source: Source) -> tuple[str, str]:
    if source.name == "dapo":
        try:
            content = field(row, ("prompt",), source)[0]["content"]
            truth = field(row, ("reward_model",), source)["ground_truth"]
        except (KeyError, IndexError, TypeError) as error:
            raise InputFileError(
                f"dapo: expected DAPO-Math-17k's columns prompt=[{{'content': ...}}] and reward_model="
                f"{{'ground_truth': ...}}; this row has {sorted(row)} ({error!r})"
            ) from None
        problem = content.removeprefix(DAPO_PREFIX).removesuffix(DAPO_SUFFIX)
        return problem, str(truth)
    problem = field(row, ("problem", "Problem", "question", "Question"), source)
    if source.name == "math":
        return problem, boxed_answer(field(row, ("solution",), source))
    answer = field(row, ("answer", "Answer"), source)
    if source.name.startswith("aime"):
        answer = str(int(answer)) if re.fullmatch(r"\s*0*\d+\s*", str(answer)) else str(answer).strip()
    return problem, str(answer)


def convert(rows: list[dict], source: Source) -> list[dict]:
    """Rows in verl's RL parquet schema; duplicates of a problem are dropped (DAPO-Math-17k repeats each one)."""
    seen, out = set(), []
    for row in rows:
        problem, answer = problem_and_answer(row, source)
        problem = problem.strip()
        if not problem or not answer:
            raise ValueError(f"{source.name}: empty problem or answer in row {row!r:.200}")
        if problem in seen:
            continue
        seen.add(problem)
        original_id = next((row[k] for k in ("id", "ID", "unique_id", "index") if k in row), None)
        out.append({
            "data_source": source.data_source,
            "prompt": [{"role": "user", "content": f"{problem}\n\n{INSTRUCTION}"}],
            "ability": "math",
            "reward_model": {"style": "rule", "ground_truth": answer},
            "extra_info": {"split": source.role, "index": len(out), "dataset": source.name,
                           "original_id": "" if original_id is None else str(original_id)},
        })
    return out


def prepare(name: str, out_dir: Path, local_path: Path | None = None) -> Path:
    import pandas as pd

    source = SOURCES[name]
    rows = read_local(local_path) if local_path else read_hub(source)
    records = convert(rows, source)
    path = source.output(out_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(records).to_parquet(path)
    print(f"[data] {name}: {len(rows)} rows read, {len(records)} written to {path} (data_source {source.data_source})")
    return path


def parse_local_paths(items: list[str]) -> dict[str, Path]:
    paths = {}
    for item in items:
        name, sep, path = item.partition("=")
        if not sep or name not in SOURCES:
            raise ValueError(f"--local-path {item!r}: expected NAME=FILE with NAME in {sorted(SOURCES)}")
        if not Path(path).exists():
            raise ValueError(f"--local-path {item!r}: {path} does not exist")
        paths[name] = Path(path)
    return paths


def graders_missing_boxed(names: list[str]) -> list[str]:
    """The data sources among ``names`` whose grader in the installed verl does not read ``\\boxed{x}`` (verl
    0.9.0's ``math_dapo`` reads ``Answer: x`` only; 0.9.1 added the ``\\boxed{}`` fallback these prompts rely on)."""
    from verl.utils.reward_score import default_compute_score

    missing = []
    for name in names:
        data_source = SOURCES[name].data_source
        result = default_compute_score(data_source, "Some reasoning. The answer is $\\boxed{7}$.", "7")
        if (result["acc"] if isinstance(result, dict) else result) != 1:
            missing.append(data_source)
    return missing


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="output directory (DATA_DIR of the recipes)")
    parser.add_argument("--datasets", default=",".join(SOURCES), help=f"comma-separated, from {sorted(SOURCES)}")
    parser.add_argument("--local-path", action="append", default=[], metavar="NAME=FILE",
                        help="read NAME from a local file instead of the hub (repeatable)")
    parser.add_argument("--offline", action="store_true", help="never touch the hub: every dataset needs --local-path")
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.datasets.split(",") if n.strip()]
    unknown = sorted(set(names) - set(SOURCES))
    if unknown:
        parser.error(f"unknown dataset(s) {unknown}; choose from {sorted(SOURCES)}")
    try:
        local = parse_local_paths(args.local_path)
    except ValueError as error:
        parser.error(str(error))
    missing = [n for n in names if n not in local]
    if args.offline and missing:
        parser.error(f"--offline: no --local-path for {missing}")
    unread = graders_missing_boxed(names)
    if unread:
        import verl

        raise SystemExit(
            f"verl {verl.__version__}'s graders for {sorted(set(unread))} do not read \\boxed{{}} answers, which these "
            "prompts ask for: every response would score as wrong. The reproduction runs on verl 0.9.1 "
            "(recipes/REQUIRED_VERL.txt): pip install 'verl[verl-core]==0.9.1'."
        )
    for name in names:
        try:
            prepare(name, args.out, local.get(name))
        except InputFileError as error:
            raise SystemExit(f"{error} (file: {local.get(name) or 'the hub'})") from None


if __name__ == "__main__":
    sys.exit(main())
