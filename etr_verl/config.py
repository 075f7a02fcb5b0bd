"""ETR's configuration classes, as verl's Hydra configs name them; importing this module registers ETR.

``actor_rollout_ref.actor.policy_loss._target_=etr_verl.config.EtrPolicyLossConfig`` makes verl import this module
wherever it builds the actor config (the driver's validation, every actor worker's ``init_model``), so this import
is a loading path of its own: it registers ETR into verl's registries, loudly (an unsupported verl or a broken
install fails here, at start-up, not at the first update). The classes are defined in
:mod:`etr_verl.adapters.loss_config`.
"""

from etr_verl.adapters.loss_config import (
    DEFAULT_POLICY_LOSS_CONFIG,
    LOSS_MODE,
    POLICY_LOSS_TARGET,
    EtrAlgorithmConfig,
    EtrPolicyLossConfig,
    InertReadingWarning,
    driver_copy_of_reading,
    etr_policy_loss_config,
)
from etr_verl.registration import register

__all__ = [
    "DEFAULT_POLICY_LOSS_CONFIG",
    "LOSS_MODE",
    "POLICY_LOSS_TARGET",
    "EtrAlgorithmConfig",
    "EtrPolicyLossConfig",
    "InertReadingWarning",
    "driver_copy_of_reading",
    "etr_policy_loss_config",
]

register()
