"""The mount over Zarr3 layers, beyond reading and writing cubes (test_read.py, test_write.py):
properties edits, `mkdir`/`rmdir` of mags and of z/y directories, linked layers. What the user
sees is what a WKW layer shows; the files on disk stay a Zarr3 dataset webknossos and
tensorstore read."""

from __future__ import annotations

import errno
import json
import os

import numpy as np

import mounthelp as mh

NAME = "wk433z_color_uint8x3_zstd"  # mags 1 and 2, chunk 8, shard 32, zstd, 3 channels
PROPS = "datasource-properties.json"


def _tensorstore(mag_dir):
    import tensorstore as ts

    return ts.open({"driver": "zarr3", "kvstore": {"driver": "file", "path": str(mag_dir)}}).result()


def test_sed_growing_the_box_grows_the_arrays(dataset_copy, mounted, mountpoint):
    ds = dataset_copy(NAME)
    with mounted(ds):
        props = json.loads((mountpoint / PROPS).read_text())
        box = props["dataLayers"][0]["boundingBox"]
        r = mh.run(["sed", "-i", f's/"width": {box["width"]}/"width": 500/', mountpoint / PROPS])
        assert r.returncode == 0, mh.describe(r)
        assert json.loads((ds / PROPS).read_text())["dataLayers"][0]["boundingBox"]["width"] == 500
    end = box["topLeft"][0] + 500
    assert _tensorstore(ds / "color" / "1").shape[1] >= end
    assert _tensorstore(ds / "color" / "2").shape[1] >= (end + 1) // 2


def test_a_new_zarr3_layer_cannot_be_declared_by_hand(dataset_copy, mounted, mountpoint):
    ds = dataset_copy(NAME)
    before = (ds / PROPS).read_bytes()
    with mounted(ds):
        props = json.loads((mountpoint / PROPS).read_text())
        layer = dict(props["dataLayers"][0], name="other", mags=[])
        props["dataLayers"].append(layer)
        f = open(mountpoint / PROPS, "w")
        f.write(json.dumps(props, indent=4))
        code = mh.oserror_errno(f.close)
        assert code in mh.BAD_PROPERTIES_ERRNOS, f"close of the edit: {mh.errno_name(code)}"
        assert "must be a wkw layer" in (mountpoint / ".wkfs" / "errors").read_text()
    assert (ds / PROPS).read_bytes() == before


def test_mkdir_adds_a_zarr3_mag_like_the_first_and_rmdir_removes_it(dataset_copy, mounted, mountpoint):
    ds = dataset_copy(NAME)
    first = json.loads((ds / "color" / "1" / "zarr.json").read_text())
    with mounted(ds):
        os.mkdir(mountpoint / "color" / "4")
        meta = json.loads((ds / "color" / "4" / "zarr.json").read_text())
        assert meta["codecs"] == first["codecs"] and meta["chunk_grid"] == first["chunk_grid"]
        info = json.loads((mountpoint / "color" / "4" / "mag.json").read_text())
        assert info["format"] == "zarr3" and info["shardShape"] == [32, 32, 32]
        # z/y directories of a Zarr3 mag live in the view only; a cube written there lands as a shard.
        (mountpoint / "color" / "4" / "z0" / "y1").mkdir(parents=True)
        assert not (ds / "color" / "4" / "z0").exists()
        data = np.random.default_rng(9).integers(0, 255, size=32 ** 3 * 3, dtype=np.uint8)
        (mountpoint / "color" / "4" / "z0" / "y1" / "x0.raw").write_bytes(data.tobytes())
        assert (ds / "color" / "4" / "c" / "0" / "0" / "1" / "0").is_file()
        # An empty made directory goes; one with a cube does not.
        (mountpoint / "color" / "4" / "z3").mkdir()
        os.rmdir(mountpoint / "color" / "4" / "z3")
        assert mh.oserror_errno(os.rmdir, mountpoint / "color" / "4" / "z0") == errno.ENOTEMPTY
        os.mkdir(mountpoint / "color" / "8")
        os.rmdir(mountpoint / "color" / "8")
        assert not (ds / "color" / "8").exists()
        group = json.loads((ds / "color" / "zarr.json").read_text())
        paths = [d["path"] for d in group["attributes"]["ome"]["multiscales"][0]["datasets"]]
        assert paths == ["1", "2", "4"]
    got = _tensorstore(ds / "color" / "4")[:, 0:32, 32:64, 0:32].read().result()
    assert np.array_equal(got, data.reshape(32, 32, 32, 3).transpose(3, 2, 1, 0))
    import webknossos as wk

    assert {m.to_layer_name() for m in wk.Dataset.open(ds).get_layer("color").mags} == {"1", "2", "4"}


def test_ln_s_links_a_zarr3_layer(dataset_copy, mounted, mountpoint):
    ds = dataset_copy("wk433_color_uint8_lz4hc")
    other = dataset_copy(NAME)
    before = mh.snapshot(other)
    with mounted(ds):
        r = mh.run(["ln", "-s", other / "color", mountpoint / "zcolor"])
        assert r.returncode == 0, mh.describe(r)
        entry = mh.layer_entry(mh.load_properties(ds), "zcolor")
        assert entry["dataFormat"] == "zarr3"
        xyz = mh.zarr3_cube_files(other / "color" / "1")[0]
        got = (mountpoint / "zcolor" / "1" / mh.cube_rel(*xyz)).read_bytes()
        assert got == mh.zarr3_read_cube(other / "color" / "1", xyz).tobytes()
    assert mh.snapshot(other) == before
