"""Hypothesis profiles for the fuzz suite.

CI runs the short, deterministic ``ci`` profile (the whole suite well under a minute). A long
local run: ``SURICATE_FUZZ=long pytest tests/fuzz --hypothesis-show-statistics`` (examples per
test from ``SURICATE_FUZZ_EXAMPLES``, 20000 by default; new seeds every run).
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci", max_examples=60, deadline=None, derandomize=True, print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.register_profile(
    "long", max_examples=int(os.environ.get("SURICATE_FUZZ_EXAMPLES", "20000")), deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.load_profile("long" if os.environ.get("SURICATE_FUZZ") == "long" else "ci")
