"""Where the paper's experiment configs are: the repository's top-level ``hydra_configs/`` on Hydra's search path.

The package ships the entry point's primary config and its presets (``etr_verl/hydra_configs/``: ``algo``,
``backend``). The reproduction experiments (``experiment``, ``profile``, ``validation``) live at the repository
root, next to the launchers that run them, because they describe clusters and datasets rather than the package.
They are found, in this order:

1. ``$ETR_VERL_HYDRA_CONFIGS`` (the Docker image sets it to ``/opt/etr-verl/hydra_configs``);
2. ``hydra_configs/`` beside the imported ``etr_verl`` package: a checkout, an editable install, or the working
   directory ``ray job submit`` uploads.

``python -m etr_verl.main`` adds the directory to ``hydra.searchpath`` (:func:`search_path_override`) unless the
command line sets ``hydra.searchpath`` itself.
"""

from __future__ import annotations

import os
from pathlib import Path

CONFIGS_ENV = "ETR_VERL_HYDRA_CONFIGS"
VERL_CONFIG_SEARCH_PATH = "pkg://verl.trainer.config"
EXPERIMENT_GROUPS = ("experiment", "profile", "validation")


class ExperimentConfigsNotFound(FileNotFoundError):
    """An experiment was asked for, but no ``hydra_configs/`` directory holding experiments was found."""


def find_experiment_configs() -> Path | None:
    """The directory holding ``experiment/``, ``profile/`` and ``validation/``, or None outside a checkout."""
    configured = os.environ.get(CONFIGS_ENV)
    if configured:
        path = Path(configured).expanduser().resolve()
        if not (path / "experiment").is_dir():
            raise ExperimentConfigsNotFound(
                f"{CONFIGS_ENV}={configured}: no experiment/ directory there. Point it at the repository's "
                "hydra_configs/ (the Docker image's is /opt/etr-verl/hydra_configs), or unset it in a checkout."
            )
        return path
    beside_package = Path(__file__).resolve().parent.parent / "hydra_configs"
    return beside_package if (beside_package / "experiment").is_dir() else None


def search_path_override(configs: Path | None = None) -> str:
    """The ``hydra.searchpath=[...]`` override that adds the experiment configs after verl's own config."""
    configs = configs or find_experiment_configs()
    if configs is None:
        raise ExperimentConfigsNotFound(
            "experiment=... needs the repository's hydra_configs/ directory, which was not found beside the "
            f"installed etr_verl package. Run from a checkout of etr-verl, or set {CONFIGS_ENV} to its "
            "hydra_configs/ directory (in the Docker image: /opt/etr-verl/hydra_configs)."
        )
    return f"hydra.searchpath=[{VERL_CONFIG_SEARCH_PATH},file://{configs}]"


def asks_for_experiment_configs(overrides: list[str]) -> bool:
    """Whether a command line selects an experiment, profile or validation config."""
    return any(arg.lstrip("+~").split("=", 1)[0] in EXPERIMENT_GROUPS for arg in overrides if "=" in arg)


def with_experiment_search_path(overrides: list[str]) -> list[str]:
    """``overrides`` plus the search path of the experiment configs when they are found (or asked for); a
    command line that sets ``hydra.searchpath`` itself is left alone."""
    if any(arg.lstrip("+~").startswith("hydra.searchpath") for arg in overrides):
        return overrides
    configs = find_experiment_configs()
    if configs is None and not asks_for_experiment_configs(overrides):
        return overrides  # an installed package outside a checkout: the package's presets only
    return [*overrides, search_path_override(configs)]


def describe_experiment_groups() -> str:
    """``group: option, ...`` for each experiment config group found (``--help``'s list; Hydra's own list of
    groups leaves out those a search-path override adds), or where they would be found."""
    try:
        configs = find_experiment_configs()
    except ExperimentConfigsNotFound as error:
        return str(error)
    if configs is None:
        return (f"{', '.join(EXPERIMENT_GROUPS)}: the paper's runs, not found here (run from a checkout of "
                f"etr-verl, or set {CONFIGS_ENV} to its hydra_configs/)")
    return "\n".join(f"{group}: {', '.join(sorted(p.stem for p in (configs / group).glob('*.yaml')))}"
                     for group in EXPERIMENT_GROUPS)
