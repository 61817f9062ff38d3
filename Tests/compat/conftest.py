"""Shared fixtures of the compat suite."""

from __future__ import annotations

import json
import os
import shutil
import warnings
from pathlib import Path

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


@pytest.fixture(scope="session")
def fixtures_dir(tmp_path_factory) -> Path:
    """A private, writable copy of Tests/fixtures, so a wkfs bug cannot harm the originals.

    Each manifest's `files[]` entry `{"path", "symlink_to"}` names a symbolic link the reference
    wrote; the copy must carry it as a link with that text.
    """
    assert h.FIXTURES.is_dir(), f"fixtures not found at {h.FIXTURES} (set WKFS_FIXTURES)"
    root = tmp_path_factory.mktemp("fixtures") / "fixtures"
    shutil.copytree(h.FIXTURES, root, symlinks=True)
    for dirpath, dirnames, filenames in os.walk(root):
        os.chmod(dirpath, 0o755)
        for name in filenames:
            p = os.path.join(dirpath, name)
            if not os.path.islink(p):
                os.chmod(p, 0o644)
    for manifest in root.glob("*.manifest.json"):
        m = json.loads(manifest.read_text())
        for f in m.get("files", []):
            if "symlink_to" in f:
                link = root / m["dataset_dir"] / f["path"]
                assert link.is_symlink() and os.readlink(link) == f["symlink_to"], (
                    f"{link}: not a symbolic link to {f['symlink_to']!r} as the manifest says"
                )
    return root
