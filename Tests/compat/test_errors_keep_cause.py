"""Errors a damaged dataset causes are clear, immediate and never hidden.

- A FIFO where a data file, `header.wkw` or the properties file should be: `read`, `check` and
  `info` fail at once with a message naming the file (they used to block forever).
- The properties file is a directory: said in words, not "NSCocoaErrorDomain error 256".
- A mag whose `path` names something that is not a mag (`/etc`, `./color/999`): an error naming
  the layer, the mag and the path, never a silent fallback to `LAYER/MAG`.
- `check` reports a `z*`/`y*` name that is a regular file (its data would be missed) and accepts a
  layer that refers to another dataset's mags by path (webknossos `add_layer_as_ref`).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import wkfs_helpers as h

QUICK = 20  # seconds: these must fail at once, not block


def _dataset(root: Path, name: str = "ds") -> Path:
    ds = root / name
    h.wkfs_ok("create", ds, "--voxel-size", "1,1,1")
    h.wkfs_ok("add-layer", ds, "color", "--category", "color", "--dtype", "uint8")
    h.wkfs_ok("add-mag", ds, "color", "1", "--block-len", "8", "--file-len", "2")
    data = np.arange(32 * 32 * 32, dtype=np.uint32).astype(np.uint8).tobytes()
    h.wkfs_ok("write", ds, "color", "1", "--offset", "0,0,0", "--size", "32,32,32", input=data)
    return ds


def _fails(*args) -> str:
    proc = h.run_wkfs(*args, timeout=QUICK)
    h.assert_no_crash(proc)
    assert proc.returncode != 0, h.describe(proc)
    return proc.stdout.decode(errors="replace") + proc.stderr.decode(errors="replace")


@pytest.mark.parametrize("victim", ["color/1/z0/y0/x0.wkw", "color/1/header.wkw"])
def test_fifo_in_place_of_a_file_is_refused_at_once(tmp_path, victim):
    ds = _dataset(tmp_path)
    path = ds / victim
    path.unlink()
    os.mkfifo(path)
    out = _fails("read", ds, "color", "1", "--offset", "0,0,0", "--size", "16,16,16", "--output", tmp_path / "out.raw")
    assert str(path) in out and "not a regular file" in out, out
    out = _fails("check", ds)
    assert str(path) in out, out


def test_fifo_as_properties_file_is_refused_at_once(tmp_path):
    ds = _dataset(tmp_path)
    props = ds / "datasource-properties.json"
    props.unlink()
    os.mkfifo(props)
    out = _fails("info", ds)
    assert str(props) in out and "not a regular file" in out, out


def test_properties_file_that_is_a_directory_is_said_in_words(tmp_path):
    ds = _dataset(tmp_path)
    props = ds / "datasource-properties.json"
    props.unlink()
    props.mkdir()
    out = _fails("info", ds)
    assert str(props) in out and "is a directory" in out and "NSCocoaErrorDomain" not in out, out


@pytest.mark.parametrize("bad_path", ["/etc", "./color/999", "/dev/zero"])
def test_mag_path_that_is_not_a_mag_is_an_error(tmp_path, bad_path):
    ds = _dataset(tmp_path)
    props = json.loads((ds / "datasource-properties.json").read_text())
    props["dataLayers"][0]["mags"][0]["path"] = bad_path
    (ds / "datasource-properties.json").write_text(json.dumps(props, indent=2))
    before = h.snapshot(ds)
    out = _fails("read", ds, "color", "1", "--offset", "0,0,0", "--size", "8,8,8", "--output", tmp_path / "out.raw")
    assert "layer 'color'" in out and "mag 1" in out and bad_path in out, out
    out = _fails("check", ds)
    assert bad_path.lstrip("./") in out, out
    h.assert_unchanged(ds, before)


def test_check_reports_a_row_directory_replaced_by_a_file(tmp_path):
    ds = _dataset(tmp_path)
    row = ds / "color" / "1" / "z1" / "y1"
    shutil.rmtree(row)
    row.write_bytes(b"not a directory")
    out = _fails("check", ds)
    assert str(row) in out and "not a directory" in out, out
    out = _fails("copy", ds, tmp_path / "copy")
    assert str(row) in out, out


def test_check_accepts_a_layer_of_references_to_another_datasets_mags(tmp_path):
    src = _dataset(tmp_path, "src")
    code = f"""
import webknossos as wk
if __name__ == "__main__":
    other = wk.Dataset.open({str(src)!r})
    ds = wk.Dataset({str(tmp_path / 'refs')!r}, voxel_size=(1, 1, 1))
    ds.add_layer_as_ref(other.get_layer("color"), "color")
"""
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120,
                   capture_output=True)
    refs = tmp_path / "refs"
    assert not (refs / "color").exists(), "the reference wrote a layer directory after all"
    h.wkfs_ok("check", refs)
    got = h.wkfs_ok("read", refs, "color", "1", "--offset", "0,0,0", "--size", "32,32,32")
    assert got == np.arange(32 * 32 * 32, dtype=np.uint32).astype(np.uint8).tobytes()
