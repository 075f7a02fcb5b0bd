"""Every file, module and object the documentation and the docstrings name exists in this repository: nothing
points outside it or at something renamed away."""

from __future__ import annotations

import importlib
import importlib.util
import re
from pathlib import Path

import pytest

# not run on the other verl releases by `make test-versions`: docs
pytestmark = pytest.mark.verl_independent

ROOT = Path(__file__).resolve().parents[1]
SOURCES = sorted([ROOT / "README.md", *(ROOT / "docs").rglob("*.md"), *(ROOT / "etr_verl").rglob("*.py"),
                  *(ROOT / "recipes").rglob("*.py"), *(ROOT / "recipes").rglob("*.sh"),
                  *(ROOT / "benchmarks").glob("*.py"), *(ROOT / "scripts").glob("*.py"), ROOT / "Makefile",
                  *(ROOT / "docker").glob("*")])
TOP_DIRS = ("etr_verl", "docs", "tests", "recipes", "benchmarks", "scripts", "docker", "requirements", ".ci")
PATH = re.compile(r"(?<![\w./-])((?:%s)/[^\s`'\"),;\]]+)" % "|".join(re.escape(d) for d in TOP_DIRS))
MARKDOWN_LINK = re.compile(r"\]\((?!https?://|#)([^)#\s]+)")
MODULE = re.compile(r"(?<![\w./])(etr_verl(?:\.\w+)+)")
GENERATED = ("outputs/", "docs/learning/", "docs/learning_carry/sweep")  # written by runs (the sweep: not yet)


NEEDS_VLLM = ("etr_verl.local_cpu.vllm_weight_sync",)


def _references(pattern: re.Pattern) -> list[tuple[str, str]]:
    found = []
    for source in SOURCES:
        if source.is_file():
            text = source.read_text(errors="replace")
            found += [(str(source.relative_to(ROOT)), m.group(1)) for m in pattern.finditer(text)]
    return found


def _is_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:  # a name below a module that is not a package: an attribute, not a module
        return False


def test_the_scan_sees_references():
    assert len(_references(PATH)) > 50 and len(_references(MODULE)) > 50


def test_every_named_path_exists():
    missing = []
    for source, ref in _references(PATH):
        ref = ref.split("::", 1)[0].rstrip(".:")  # a pytest node id names its file before "::"
        if ref.startswith(GENERATED) or any(c in ref for c in "*<>{}$%"):
            continue
        if not (ROOT / ref).exists():
            missing.append(f"{source}: {ref}")
    assert not missing, "\n".join(missing)


def test_every_markdown_link_resolves():
    missing = []
    for source, ref in _references(MARKDOWN_LINK):
        if not (ROOT / source).parent.joinpath(ref).exists():
            missing.append(f"{source}: {ref}")
    assert not missing, "\n".join(missing)


def test_every_named_module_and_object_exists():
    missing = []
    for source, ref in sorted(set(_references(MODULE))):
        parts = ref.rstrip(".").split(".")
        needs_vllm = next((m for m in NEEDS_VLLM if ref.startswith(m)), None)
        if needs_vllm and importlib.util.find_spec("vllm") is None:
            # importing it imports verl's vLLM rollout, which needs vLLM (not in this venv): its file must exist
            if importlib.util.find_spec(needs_vllm) is None:
                missing.append(f"{source}: {ref}")
            continue
        for cut in range(len(parts), 0, -1):  # the longest importable prefix, then attributes
            module_name = ".".join(parts[:cut])
            if _is_module(module_name):
                break
        else:
            missing.append(f"{source}: {ref}")
            continue
        if parts[cut:] and parts[cut:][0] in ("py", "yaml", "md"):
            continue  # a file name such as etr_verl.py is a path, checked above
        target = importlib.import_module(module_name)
        for attribute in parts[cut:]:
            if not hasattr(target, attribute):
                missing.append(f"{source}: {ref}")
                break
            target = getattr(target, attribute)
    assert not missing, "\n".join(missing)


@pytest.mark.parametrize("name", ["ETR_SPEC.md", "VERL_NOTES.md", "VERL_VERSIONS.md", "../shared"])
def test_nothing_points_outside_the_repository(name):
    offenders = [str(s.relative_to(ROOT)) for s in SOURCES if s.is_file() and name in s.read_text(errors="replace")]
    assert not offenders, offenders


EXPERIMENT_SOURCES = [*SOURCES, *(ROOT / "hydra_configs").rglob("*.yaml"), *(ROOT / "etr_verl").rglob("*.yaml")]
EXPERIMENT_NAMED = re.compile(r"(?:\+?experiment=|bash \S*(?:train|submit|evaluate_checkpoint)\.sh )([A-Za-z_][\w.]*)")
ALGO_NAMED = re.compile(r"(?<![\w.])algo=([A-Za-z_]\w*)")


def _named(pattern: re.Pattern) -> list[tuple[str, str]]:
    found = []
    for source in EXPERIMENT_SOURCES:
        text = source.read_text(errors="replace")
        found += [(str(source.relative_to(ROOT)), m.group(1)) for m in pattern.finditer(text)]
    return found


def test_every_experiment_and_algo_preset_a_command_names_exists():
    """The commands printed in the docs, help texts and config headers name real experiments and presets."""
    experiments = {p.stem for p in (ROOT / "hydra_configs" / "experiment").glob("*.yaml")}
    presets = {p.stem for p in (ROOT / "etr_verl" / "hydra_configs" / "algo").glob("*.yaml")}
    placeholders = {"EXPERIMENT", "NAME", "X", "ALGO"}
    named_experiments = _named(EXPERIMENT_NAMED)
    assert len(named_experiments) > 10
    missing = [(where, name) for where, name in named_experiments if name not in experiments | placeholders]
    assert not missing, f"commands naming experiments that do not exist: {missing}"
    named_presets = _named(ALGO_NAMED)
    missing = [(where, name) for where, name in named_presets if name not in presets | placeholders]
    assert not missing, f"commands naming algo presets that do not exist: {missing}"
