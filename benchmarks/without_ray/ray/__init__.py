"""A stand-in for Ray, for running ``benchmarks/overhead.py`` on a machine that has verl but not Ray.

Only for the benchmark, and only when named on ``PYTHONPATH`` (``PYTHONPATH=.../benchmarks/without_ray``): nothing
imports it otherwise, and it is no part of the ``etr_verl`` package.

Why: ``import verl`` (0.9.1) imports ``verl.protocol``, which does ``import ray`` and, at import time, uses nothing
of Ray but the name ``ray.ObjectRef`` (an annotation of ``DataProtoFuture``). The benchmark calls verl's loss and
advantage functions directly, in one process, and never touches Ray; the real Ray wheel (~70 MB) is too large to
carry to a GPU machine that has no network. So this module gives that one name, and any other use of Ray fails at
once with an error that names this stand-in, so that a measurement can never run on a fake Ray by accident.
"""

__version__ = "0.0.0+stand-in"


class ObjectRef:
    """Stands for ``ray.ObjectRef`` in annotations and ``isinstance`` checks; no object is ever one."""


def __getattr__(name: str):
    if name.startswith("__"):  # probes of module attributes (getattr(module, "__wrapped__", None), ...)
        raise AttributeError(name)
    raise RuntimeError(f"ray.{name}: Ray is not installed here; this is the stand-in from benchmarks/without_ray, "
                       "which is enough to import verl for benchmarks/overhead.py and nothing more")
