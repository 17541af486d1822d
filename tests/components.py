"""Optional components of the test machine (Chromium, poppler, SoftHSM, Node.js).

A test that needs one skips with the reason and the install command, except in
CI (``SOCIALJOUR_REQUIRE_COMPONENTS`` set by ``.ci/run``), where a missing
component is a failure: CI must skip none of them.
"""

from __future__ import annotations

import os
from typing import NoReturn

import pytest


def unavailable(reason: str) -> NoReturn:
    if os.environ.get("SOCIALJOUR_REQUIRE_COMPONENTS"):
        pytest.fail(f"{reason} (required in CI: SOCIALJOUR_REQUIRE_COMPONENTS is set)")
    pytest.skip(reason)
