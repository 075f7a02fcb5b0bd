"""etr-verl: ETR (Elastic Trust Regions, arXiv 2601.03723) for verl 0.9.1.

``etr_verl.elastic`` is the math (pure torch). Importing ``etr_verl.plugin`` (done by verl's plugin loader)
registers ``loss_mode=etr``, ``adv_estimator=etr_grpo`` and ``trainer.v1.trainer_mode=etr_sync`` into verl.
This package's ``__init__`` imports nothing heavy, so the math can be used without verl.
"""

__version__ = "0.1.0"
