"""Shared fixtures of the compat suite."""

from __future__ import annotations

import warnings

import pytest

import wkfs_helpers as h

# webknossos warns about optional image readers and small chunk shapes on import/use.
warnings.filterwarnings("ignore", category=UserWarning)


def pytest_report_header(config):
    return [f"wkfs binary: {h.WKFS_BIN}", f"fixtures: {h.FIXTURES}"]


@pytest.fixture(scope="session", autouse=True)
def _wkfs_binary_present():
    if not h.WKFS_BIN.exists():
        pytest.fail(
            f"wkfs binary not found at {h.WKFS_BIN}: build it with `swift build -c release` "
            "or point WKFS_BIN at it",
            pytrace=False,
        )
