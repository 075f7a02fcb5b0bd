"""The ``verl.plugins`` entry point and ``VERL_USE_EXTERNAL_MODULES`` target: importing it registers ETR."""

from etr_verl.registration import register

register()
