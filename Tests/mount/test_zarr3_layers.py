"""The mount over Zarr3 layers, beyond reading and writing cubes (test_read.py, test_write.py):
properties edits, `mkdir`/`rmdir` of mags and of z/y directories, linked layers. What the user
sees is what a WKW layer shows; the files on disk stay a Zarr3 dataset webknossos and
tensorstore read."""

from __future__ import annotations

import errno
import json
import os

import numpy as np
import pytest

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


def _declare_zarr_python_layer(ds, dtype, size):
    """Writes the properties of a dataset whose one layer 'color' (mag 1, 1 channel, box `size`
    from the origin) is the zarr-python array at ds/color/1."""
    layer = {"name": "color", "category": "color", "dataFormat": "zarr3", "elementClass": dtype, "numChannels": 1,
             "boundingBox": {"topLeft": [0, 0, 0], "width": size[0], "height": size[1], "depth": size[2]},
             "mags": [{"mag": [1, 1, 1], "path": "./color/1", "axisOrder": {"c": 0, "x": 1, "y": 2, "z": 3}}]}
    (ds / PROPS).write_text(json.dumps({"id": {"name": ds.name, "team": ""}, "version": 1, "dataLayers": [layer],
                                        "scale": {"factor": [1.0, 1.0, 1.0], "unit": "nanometer"}}))


def _fill9_dataset(root):
    """A dataset whose layer 'color' is a zarr-python array (40³ uint8, 16³ shards of 8³ chunks)
    with fill value 9 and data only in its [0:10]³ corner: most shards were never written."""
    import zarr

    ds = root / "fill9"
    (ds / "color").mkdir(parents=True)
    data = np.full((1, 40, 40, 40), 9, np.uint8)
    data[0, :10, :10, :10] = 100
    zarr.create_array(ds / "color" / "1", shape=data.shape, chunks=(1, 8, 8, 8), shards=(1, 16, 16, 16),
                      dtype="uint8", fill_value=9, dimension_names=["c", "x", "y", "z"])[...] = data
    _declare_zarr_python_layer(ds, "uint8", (40, 40, 40))
    return ds, data


@pytest.mark.parametrize("codec", ["blosc", "gzip"])
def test_blosc_and_gzip_arrays_read_and_write_through_the_mount(tmp_path, mounted, mountpoint, codec):
    """Arrays zarr-python compressed with blosc (bit-shuffled) or gzip: a cube and volume.raw
    read every voxel, and writes through both land in the array's own codec, read back by
    zarr-python."""
    import zarr
    from zarr.codecs import BloscCodec, GzipCodec

    ds = tmp_path / codec
    (ds / "color").mkdir(parents=True)
    compressor = BloscCodec(cname="lz4", clevel=5, shuffle="bitshuffle") if codec == "blosc" else GzipCodec(level=5)
    data = np.random.default_rng(4).integers(0, 4000, (1, 32, 32, 32)).astype(np.uint16)
    zarr.create_array(ds / "color" / "1", shape=data.shape, chunks=(1, 8, 8, 8), shards=(1, 32, 32, 32), dtype="uint16",
                      compressors=[compressor], dimension_names=["c", "x", "y", "z"])[...] = data
    before = (ds / "color" / "1" / "zarr.json").read_bytes()
    _declare_zarr_python_layer(ds, "uint16", (32, 32, 32))
    cube = mountpoint / "color" / "1" / "z0" / "y0" / "x0.raw"
    with mounted(ds):
        zyx = np.frombuffer(cube.read_bytes(), np.uint16).reshape(32, 32, 32)
        assert np.array_equal(zyx, data[0].transpose(2, 1, 0))
        plane = np.full((32, 32), 7, np.uint16)  # z = 5, through the cube
        r = mh.run(["dd", f"of={cube}", "bs=2048", "seek=5", "conv=notrunc,fsync", "status=none"], input=plane.tobytes())
        assert r.returncode == 0, mh.describe(r)
        volume = np.memmap(mountpoint / "color" / "1" / "volume.raw", dtype=np.uint16, mode="r+", shape=(32, 32, 32))
        volume[20:22, 3:9, 30:32] = 9  # z, y, x: across chunks
        volume.flush()
        del volume
    data[0, :, :, 5] = 7
    data[0, 30:32, 3:9, 20:22] = 9
    assert (ds / "color" / "1" / "zarr.json").read_bytes() == before
    assert np.array_equal(zarr.open_array(ds / "color" / "1", mode="r")[...], data)


def test_mkdir_of_a_mag_copies_the_first_arrays_chunks_and_codecs(tmp_path, mounted, mountpoint):
    """A layer zarr-python made with blosc, non-cubic chunks and fill value 5: a mag made with
    mkdir has the same chunk grid, inner chunks, codecs and fill value (it became zstd with cubic
    chunks and lost the blosc settings), and holds what is written into it."""
    import zarr
    from zarr.codecs import BloscCodec

    ds = tmp_path / "ds"
    (ds / "color").mkdir(parents=True)
    zarr.create_array(ds / "color" / "1", shape=(1, 64, 64, 32), chunks=(1, 8, 16, 4), shards=(1, 32, 32, 16), dtype="uint16",
                      fill_value=5, compressors=[BloscCodec(cname="zstd", clevel=2, shuffle="shuffle")],
                      dimension_names=["c", "x", "y", "z"], attributes={"mine": 1})[...] = 7
    _declare_zarr_python_layer(ds, "uint16", (64, 64, 32))
    first = json.loads((ds / "color" / "1" / "zarr.json").read_text())
    with mounted(ds):
        os.mkdir(mountpoint / "color" / "2")
        made = json.loads((ds / "color" / "2" / "zarr.json").read_text())
        for key in ("chunk_grid", "codecs", "fill_value", "data_type", "chunk_key_encoding", "dimension_names"):
            assert made[key] == first[key], (key, made[key], first[key])
        assert made["shape"] == [1, 32, 32, 16] and "mine" not in made.get("attributes", {})
        volume = mountpoint / "color" / "2" / "volume.raw"
        assert np.all(np.frombuffer(volume.read_bytes(), np.uint16) == 5)
        zyx = np.full((16, 32, 32), 5, np.uint16)
        zyx[3] = np.arange(32 * 32, dtype=np.uint16).reshape(32, 32)
        (mountpoint / "color" / "2" / "z0" / "y0").mkdir(parents=True)
        (mountpoint / "color" / "2" / "z0" / "y0" / "x0.raw").write_bytes(zyx.tobytes())
    assert np.array_equal(zarr.open_array(ds / "color" / "2", mode="r")[...], zyx.transpose(2, 1, 0)[np.newaxis])


def test_missing_shards_of_a_fill_value_array_read_and_write_as_that_value(tmp_path, mounted, mountpoint):
    """volume.raw shows the fill value where no shard exists, and one voxel written there
    changes that voxel only (the rest of its new shard still reads as 9 for zarr-python)."""
    import zarr

    ds, data = _fill9_dataset(tmp_path)
    with mounted(ds):
        volume = np.memmap(mountpoint / "color" / "1" / "volume.raw", dtype=np.uint8, mode="r+", shape=(40, 40, 40))
        assert np.array_equal(volume, data[0].transpose(2, 1, 0))
        volume[35, 35, 35] = 1  # z, y, x: a shard that does not exist
        volume.flush()
        del volume
    data[0, 35, 35, 35] = 1
    assert np.array_equal(zarr.open_array(ds / "color" / "1", mode="r")[...], data)


def test_zeros_a_sparse_copy_skips_stay_zeros_in_a_fill_value_array(tmp_path, mounted, mountpoint):
    """`dd conv=sparse` truncates the cube and seeks over the zeros it copies: they are zeros of
    the new cube, not missing data (they read as the fill value 9)."""
    import zarr

    ds, data = _fill9_dataset(tmp_path)
    zyx = np.full((16, 16, 16), 50, np.uint8)
    zyx[8:] = 0  # a whole layer of chunks of zeros: skipped, not written
    source = tmp_path / "cube.raw"
    source.write_bytes(zyx.tobytes())
    cube = mountpoint / "color" / "1" / "z0" / "y0" / "x0.raw"
    with mounted(ds):
        r = mh.run(["dd", f"if={source}", f"of={cube}", "bs=2048", "conv=sparse", "status=none"])
        assert r.returncode == 0, mh.describe(r)
        assert cube.read_bytes() == zyx.tobytes()
    data[0, :16, :16, :16] = zyx.transpose(2, 1, 0)
    assert np.array_equal(zarr.open_array(ds / "color" / "1", mode="r")[...], data)


def test_zarr_view_of_a_fill_value_array_says_its_fill_value(tmp_path, mounted, mountpoint):
    import zarr

    ds, data = _fill9_dataset(tmp_path)
    with mounted(ds, options="zarr"):
        view = zarr.open_array(mountpoint / "color" / "1", mode="r")
        assert view.fill_value == 9
        assert np.array_equal(view[:, :40, :40, :40], data)


def test_a_broken_path_to_a_shard_is_eio_not_zeros(dataset_copy, mounted, mountpoint):
    """A shard that is a symbolic link loop, or a file where its directory belongs: reading the
    cube or volume.raw fails with EIO (and says why in .wkfs/errors); nothing reads as zeros."""
    import shutil

    ds = dataset_copy(NAME)
    shard = next(p for p in sorted((ds / "color" / "1" / "c").rglob("*")) if p.is_file())
    cube = mountpoint / "color" / "1" / "z0" / "y0" / "x0.raw"
    for breakage in ("loop", "dangling", "file"):
        if breakage == "loop":
            shard.unlink()
            shard.symlink_to(shard.name)
        elif breakage == "dangling":
            shard.unlink()
            shard.symlink_to("/nonexistent/elsewhere")
        else:
            shard.unlink()
            shutil.rmtree(shard.parent)
            shard.parent.write_bytes(b"junk")
        with mounted(ds):
            targets = [mountpoint / "color" / "1" / "volume.raw", cube]
            for target in targets:
                with pytest.raises(OSError) as caught:
                    with open(target, "rb") as f:
                        f.read()
                assert caught.value.errno == errno.EIO, (breakage, target, caught.value)
            assert str(shard if breakage != "file" else shard.parent) in (mountpoint / ".wkfs" / "errors").read_text()
