"""The ``verl.plugins`` entry point and ``VERL_USE_EXTERNAL_MODULES`` target: importing it registers ETR.

With ``VERL_PLATFORM=cpu`` it first activates the local CPU backend (``etr_verl.local_cpu``; smoke runs only):
first, because some verl modules read the platform when they are imported.
"""

from etr_verl import local_cpu
from etr_verl.registration import register

if local_cpu.is_requested():
    local_cpu.activate()
register()
