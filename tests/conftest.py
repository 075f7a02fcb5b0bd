"""Test set-up: tests/ on sys.path for etr_testkit; Ray, when a test starts it, binds loopback only."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

# Ray binds all interfaces unless this is 0 before it starts (VERL_NOTES); every test here stays on loopback.
os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
