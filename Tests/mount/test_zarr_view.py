"""`wkfs mount DATASET MNT -o zarr`: any dataset as a Zarr v3 dataset of uncompressed shards,
read-only. webknossos, zarr-python, tensorstore and the ome-zarr reader open it and read every
voxel as the reference reads the dataset itself; a small read decodes only the blocks it
touches."""

from __future__ import annotations

import errno
import json
import os

import numpy as np
import pytest

import mounthelp as mh

#: WKW datasets (raw and LZ4HC, 1 and 3 channels, uint16 anisotropic mags, float32) and a Zarr3 one.
DATASETS = ["wk433_color_uint8_lz4hc", "wk433_color_uint8x3", "wk433_color_uint16", "wk433_color_float32",
            "wk433z_color_uint8_zstd"]


def _reference(dataset):
    import webknossos as wk

    return wk.Dataset.open(dataset)


@pytest.mark.parametrize("name", DATASETS)
def test_zarr_readers_read_every_voxel(name, fixture_copies, mounted, mountpoint):
    import tensorstore as ts
    import webknossos as wk
    import zarr
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Reader

    dataset = fixture_copies / name
    before = mh.snapshot(dataset)
    ref = _reference(dataset)
    with mounted(dataset, options="zarr"):
        props = json.loads((mountpoint / "datasource-properties.json").read_text())
        assert all(layer["dataFormat"] == "zarr3" for layer in props["dataLayers"])
        assert json.loads((mountpoint / "zarr.json").read_text()) == {"zarr_format": 3, "node_type": "group"}
        view = wk.Dataset.open(mountpoint)
        for ref_layer in ref.layers.values():
            layer = view.get_layer(ref_layer.name)
            assert layer.data_format == wk.DataFormat.Zarr3
            box = ref_layer.bounding_box
            for mag_name, ref_mag in ref_layer.mags.items():
                want = ref_mag.read()
                assert np.array_equal(layer.get_mag(mag_name).read(), want), f"webknossos, mag {mag_name}"
                in_mag = box.align_with_mag(ref_mag.mag, ceil=True).in_mag(ref_mag.mag)
                lo, size = in_mag.topleft, in_mag.size
                assert tuple(size) == want.shape[1:]
                region = (slice(None), slice(lo.x, lo.x + size.x), slice(lo.y, lo.y + size.y), slice(lo.z, lo.z + size.z))
                path = mountpoint / ref_layer.name / ref_mag.path.name
                assert np.array_equal(zarr.open_array(str(path), mode="r")[region], want), f"zarr-python, mag {mag_name}"
                array = ts.open({"driver": "zarr3", "kvstore": {"driver": "file", "path": str(path)}}).result()
                assert np.array_equal(array[region].read().result(), want), f"tensorstore, mag {mag_name}"
            # The OME-Zarr reader (napari's) finds the multiscales and reads level 0.
            nodes = list(Reader(parse_url(str(mountpoint / ref_layer.name)))())
            level0 = nodes[0].data[0]
            first = next(iter(ref_layer.mags.values()))
            in_mag = box.align_with_mag(first.mag, ceil=True).in_mag(first.mag)
            lo, size = in_mag.topleft, in_mag.size
            got = np.asarray(level0[:, lo.x:lo.x + size.x, lo.y:lo.y + size.y, lo.z:lo.z + size.z])
            assert np.array_equal(got, first.read()), "ome-zarr"
    assert mh.snapshot(dataset) == before, "the zarr view changed files"


def test_a_small_read_decodes_only_its_blocks(tmp_path, mounted, mountpoint):
    """A 16³ box of a mag with 16³ blocks in 128³ files (2 MiB decoded): tensorstore reads the
    shard index and one chunk; the mount decodes that block's cache group (64 KiB), not the file."""
    import tensorstore as ts

    dataset = tmp_path / "ds"
    for args in (("create", dataset, "--voxel-size", "1,1,1"),
                 ("add-layer", dataset, "color", "--category", "color", "--dtype", "uint8"),
                 ("add-mag", dataset, "color", "1", "--block-len", "16", "--file-len", "8", "--compress")):
        r = mh.wkfs(*args)
        assert r.returncode == 0, mh.describe(r)
    data = np.random.default_rng(5).integers(0, 255, size=128 ** 3, dtype=np.uint8).tobytes()
    r = mh.run([mh.WKFS_BIN, "write", dataset, "color", "1", "--offset", "0,0,0", "--size", "128,128,128"], input=data)
    assert r.returncode == 0, mh.describe(r)
    with mounted(dataset, options="zarr"):
        def decoded():
            stats = (mountpoint / ".wkfs" / "stats").read_text()
            return int(stats.split("blocks decoded: ")[1].split(" groups, ")[1].split(" bytes")[0])

        start = decoded()
        array = ts.open({"driver": "zarr3", "kvstore": {"driver": "file", "path": str(mountpoint / "color" / "1")},
                         "context": {"cache_pool": {"total_bytes_limit": 0}}}).result()
        got = array[:, 32:48, 48:64, 16:32].read().result()
        want = np.frombuffer(data, np.uint8).reshape(128, 128, 128)[16:32, 48:64, 32:48].transpose(2, 1, 0)
        assert np.array_equal(got[0], want)
        assert 0 < decoded() - start <= 64 << 10, f"decoded {decoded() - start} bytes for one 4 KiB block"


def test_the_zarr_view_is_read_only(fixture_copies, mounted, mountpoint):
    dataset = fixture_copies / "wk433_color_uint8_lz4hc"
    with mounted(dataset, options="zarr"):
        shard = next(p for p in (mountpoint / "color" / "1" / "c").rglob("*") if p.is_file())
        for attempt in (lambda: open(shard, "r+b"), lambda: (mountpoint / "new").write_bytes(b"x"),
                        lambda: os.mkdir(mountpoint / "color" / "9")):
            with pytest.raises(OSError) as failure:
                attempt()
            assert failure.value.errno == errno.EROFS
