"""etr-verl: ETR (Elastic Trust Regions, arXiv 2601.03723) for verl.

``etr_verl.elastic`` is the math (pure torch). Importing ``etr_verl.plugin`` (done by verl's plugin loader)
registers ``loss_mode=etr`` and ``adv_estimator=etr_grpo`` into verl; ``python -m etr_verl.main`` runs verl's own
trainers (legacy or V1, any trainer mode) with ETR's loss function installed. ``etr_verl.adapters`` holds one
module per verl extension point. This package's ``__init__`` imports nothing heavy, so the math can be used
without verl.
"""

__version__ = "0.1.0"
