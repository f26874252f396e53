"""The Debian programs some tests run, looked up once, and the one mark those tests carry.

Where a program is missing the test is skipped, except in CI (`CI` set, as `.ci/run` does), where
it runs and fails: CI installs every program here, so a missing one is a broken CI setup.
"""

from __future__ import annotations

import os
import shutil

import pytest

PROMETHEUS = shutil.which("prometheus")
PROMTOOL = shutil.which("promtool")
AMTOOL = shutil.which("amtool")
# Debian's prometheus-alertmanager installs the server as /usr/bin/prometheus-alertmanager;
# upstream's tarball names it alertmanager.
ALERTMANAGER = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")

# Each program's path (None when missing) and the Debian package that ships it.
_PROGRAMS = {
    "prometheus": (PROMETHEUS, "prometheus"),
    "promtool": (PROMTOOL, "prometheus"),
    "amtool": (AMTOOL, "prometheus-alertmanager"),
    "alertmanager": (ALERTMANAGER, "prometheus-alertmanager"),
}


def needs(*programs: str) -> pytest.MarkDecorator:
    """Skip the test where one of `programs` is missing, unless in CI."""
    missing = [name for name in programs if _PROGRAMS[name][0] is None]
    packages = " ".join(sorted({_PROGRAMS[name][1] for name in programs}))
    return pytest.mark.skipif(
        bool(missing) and not os.environ.get("CI"),
        reason=f"{', '.join(missing)} not installed here (Debian: apt-get install {packages}); "
        "CI installs it",
    )
