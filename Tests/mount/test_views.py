"""The generated views of a mag (issue 15): `volume.raw` (the bounding box as one array),
`volume.nhdr` and a NRRD header beside each cube, `slices/z{N}.tif` (one TIFF per z plane),
over WKW and Zarr3 layers, read by numpy, tifffile, Pillow and pynrrd and compared with the
reference's read of the same bounding box."""

from __future__ import annotations

import errno
import gc
import json
import os
import shutil

import numpy as np
import pytest

import mounthelp as mh

#: (fixture, layer): WKW raw and LZ4HC, 3 channels, uint16 with an anisotropic mag, float32, Zarr3.
VIEWS = [
    ("wk433_color_uint8_lz4hc", "color"),
    ("wk433_color_uint8x3", "color"),
    ("wk433_color_uint16", "color"),
    ("wk433_color_float32", "color"),
    ("wk433z_color_uint8x3_zstd", "color"),
    ("wk433z_dtype_int16", "color"),
]
#: Every voxel type, for the volume (Zarr3 fixtures of each dtype, 64-bit ones as segmentation).
DTYPES = [(f"wk433z_dtype_{t}", "segmentation" if t in ("uint64", "int64") else "color")
          for t in ("uint8", "uint16", "uint32", "uint64", "int8", "int16", "int32", "int64", "float32")] + [
    ("wk433_segmentation_uint64", "segmentation"), ("wk433_segmentation_uint32", "segmentation")]


def _reference(dataset, layer, mag_name):
    """The reference's read of the mag's bounding box (snapped outward), as (z, y, x, c)."""
    import webknossos as wk

    mag = wk.Dataset.open(dataset).get_layer(layer).get_mag(mag_name)
    return np.ascontiguousarray(mag.read().transpose(3, 2, 1, 0))


@pytest.mark.parametrize("name,layer", VIEWS + DTYPES)
def test_volume_raw_is_the_bounding_box(name, layer, fixture_copies, mounted, mountpoint):
    dataset = fixture_copies / name
    with mounted(dataset):
        for mag_dir in mh.mag_dirs(dataset / layer):
            want = _reference(dataset, layer, mag_dir.name)
            view = mountpoint / layer / mag_dir.name
            info = json.loads((view / "mag.json").read_text())
            volume = np.memmap(view / "volume.raw", dtype=want.dtype, mode="r", shape=want.shape)
            assert np.array_equal(volume, want), f"{view}/volume.raw differs from the reference"
            del volume  # a mapping left open would keep the mount busy at unmount
            # Partial, unaligned reads give the same bytes as the whole.
            raw = want.tobytes()
            with open(view / "volume.raw", "rb", buffering=0) as f:
                for start, count in ((0, 1), (1234, 100_003), (len(raw) // 3, 4096), (len(raw) - 7, 100)):
                    f.seek(start)
                    assert f.read(count) == raw[start:start + count]
            box = info["boundingBox"]
            assert os.path.getsize(view / "volume.raw") == len(raw)
            cli = mh.run([mh.WKFS_BIN, "read", dataset, layer, mag_dir.name])
            assert cli.returncode == 0 and cli.stdout == raw, "cp volume.raw and wkfs read of the box differ"
            assert box["size"] == list(want.shape[2::-1])


@pytest.mark.parametrize("name,layer", VIEWS)
def test_slices_are_the_planes(name, layer, fixture_copies, mounted, mountpoint):
    import tifffile
    from PIL import Image

    dataset = fixture_copies / name
    with mounted(dataset):
        mag_dir = mh.mag_dirs(dataset / layer)[0]
        want = _reference(dataset, layer, mag_dir.name)
        slices = mountpoint / layer / mag_dir.name / "slices"
        names = sorted(os.listdir(slices))
        assert len(names) == want.shape[0] and names == sorted(names, key=lambda n: int(n[1:-4]))
        props = json.loads((mountpoint / "datasource-properties.json").read_text())
        voxel = props["scale"]["factor"] if isinstance(props["scale"], dict) else props["scale"]
        for z in range(len(names)):
            path = slices / names[z]
            image = tifffile.imread(path)
            plane = want[z] if want.shape[3] > 1 else want[z, :, :, 0]
            assert image.shape == plane.shape and image.dtype == plane.dtype
            assert np.array_equal(image, plane), f"{path} differs from plane {z}"
            with tifffile.TiffFile(path) as tif:
                page = tif.pages[0]
                x_res = page.tags["XResolution"].value
                assert abs(x_res[1] / x_res[0] - voxel[0] * int(mag_dir.name.split("-")[0])) < 1e-3
                assert tif.imagej_metadata and "unit" in tif.imagej_metadata
            assert os.path.getsize(path) == len(path.read_bytes())
            if plane.dtype in (np.uint8, np.uint16, np.int16, np.float32) and (plane.ndim == 2 or plane.shape[2] == 3):
                with Image.open(path) as pil:
                    pixels = np.array(pil)
                del pil
                gc.collect()  # Pillow maps uncompressed files: unmapped before the unmount
                assert np.array_equal(pixels, plane), f"Pillow reads {path} differently"


@pytest.mark.parametrize("name,layer", VIEWS[:3] + VIEWS[4:5])
def test_nrrd_headers_give_array_and_geometry(name, layer, fixture_copies, mounted, mountpoint):
    import nrrd

    dataset = fixture_copies / name
    props = mh.load_properties(dataset)
    voxel = props["scale"]["factor"] if isinstance(props["scale"], dict) else props["scale"]
    with mounted(dataset):
        mag_dir = mh.mag_dirs(dataset / layer)[0]
        mag = mh.mag_vector(mag_dir.name)
        spacing = [voxel[i] * mag[i] for i in range(3)]
        view = mountpoint / layer / mag_dir.name
        want = _reference(dataset, layer, mag_dir.name)
        data, header = nrrd.read(str(view / "volume.nhdr"), index_order="C")
        channels = want.shape[3]
        assert np.array_equal(data, want if channels > 1 else want[..., 0])
        directions = np.asarray(header["space directions"][-3:], dtype=float)
        assert np.allclose(np.diag(directions), spacing)
        info = json.loads((view / "mag.json").read_text())
        assert np.allclose(header["space origin"], [info["boundingBox"]["topLeft"][i] * spacing[i] for i in range(3)])
        # A cube's header, beside it.
        cube = next(view.glob("z*/y*/x*.raw"))
        cube_data, cube_header = nrrd.read(str(cube.with_suffix(".nhdr")), index_order="C")
        assert cube_data.tobytes() == cube.read_bytes()


def test_simpleitk_reads_the_volume_header(fixture_copies, mounted, mountpoint):
    sitk = pytest.importorskip("SimpleITK")
    dataset = fixture_copies / "wk433_color_uint16"
    with mounted(dataset):
        view = mountpoint / "color" / "2-2-1"
        image = sitk.ReadImage(str(view / "volume.nhdr"))
        want = _reference(dataset, "color", "2-2-1")[..., 0]
        assert np.array_equal(sitk.GetArrayFromImage(image), want)
        props = mh.load_properties(dataset)
        voxel = props["scale"]["factor"]
        assert np.allclose(image.GetSpacing(), [voxel[0] * 2, voxel[1] * 2, voxel[2]])


def test_views_are_read_only_and_listings_stay_plain(fixture_copies, mounted, mountpoint):
    dataset = fixture_copies / "wk433_color_uint8_lz4hc"
    with mounted(dataset):
        view = mountpoint / "color" / "1"
        slice_path = next((view / "slices").iterdir())
        for path in (view / "volume.nhdr", slice_path):
            assert mh.oserror_errno(open, path, "r+b") in (errno.EACCES, errno.EPERM)
        names = os.listdir(view)
        assert {"mag.json", "volume.raw", "volume.nhdr", "slices"} <= set(names)


@pytest.mark.parametrize("name", ["wk433_color_uint8x3", "wk433z_color_uint8x3_zstd", "wk433_color_uint16"])
def test_volume_memmap_writes_land_in_the_data_files(name, dataset_copy, mounted, mountpoint):
    """numpy.memmap mode r+ of volume.raw: writes at unaligned offsets, across data files, land
    in the data files (read back by the reference after unmount); cubes show them at once."""
    dataset = dataset_copy(name)
    mag_dir = mh.mag_dirs(dataset / "color")[0]
    want = _reference(dataset, "color", mag_dir.name).copy()
    rng = np.random.default_rng(11)
    with mounted(dataset):
        view = mountpoint / "color" / mag_dir.name
        volume = np.memmap(view / "volume.raw", dtype=want.dtype, mode="r+", shape=want.shape)
        z, y, x, c = want.shape
        patches = [((1, 2, 3), (min(5, z - 1), min(7, y - 2), min(20, x - 3))), ((z // 2, 0, x // 3), (1, y, x - x // 3))]
        for (oz, oy, ox), (sz, sy, sx) in patches:
            part = rng.integers(0, 200, size=(sz, sy, sx, c)).astype(want.dtype)
            volume[oz:oz + sz, oy:oy + sy, ox:ox + sx] = part
            want[oz:oz + sz, oy:oy + sy, ox:ox + sx] = part
        volume.flush()
        del volume
        again = np.memmap(view / "volume.raw", dtype=want.dtype, mode="r", shape=want.shape)
        assert np.array_equal(again, want), "the volume does not read back what was written"
        del again
        # dd conv=notrunc of a few bytes in the middle.
        raw = bytearray(want.tobytes())
        middle = len(raw) // 2 + 3
        r = mh.run(["dd", f"of={view / 'volume.raw'}", "bs=1", f"seek={middle}", "conv=notrunc", "status=none"], input=b"\x07\x08\x09")
        assert r.returncode == 0, mh.describe(r)
        raw[middle:middle + 3] = b"\x07\x08\x09"
        assert (view / "volume.raw").read_bytes() == bytes(raw)
        assert mh.oserror_errno(open, view / "volume.raw", "wb") == errno.EINVAL
        assert mh.oserror_errno(open, view / "volume.raw", "ab") == errno.EINVAL
        assert (view / "volume.raw").stat().st_mode & 0o200, "volume.raw must show as writable"
        assert not (view / "volume.nhdr").stat().st_mode & 0o222
    after = _reference(dataset, "color", mag_dir.name)
    assert after.tobytes() == bytes(raw), "the reference reads other voxels after unmount"
    r = mh.wkfs("check", dataset)
    assert r.returncode == 0, mh.describe(r)


def _peak_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))


@pytest.mark.limit(180)
def test_streaming_the_views_stays_within_the_cache_bound(tmp_path, mounted, mountpoint):
    """`cat volume.raw` and `cat slices/*` of a 64 MiB volume with cache_size=16M: the daemon's
    peak memory stays near the bound (its own ~40 MiB plus the cache), not the volume's size."""
    dataset = tmp_path / "ds"
    for args in (("create", dataset, "--voxel-size", "1,1,1"),
                 ("add-layer", dataset, "color", "--category", "color", "--dtype", "uint8"),
                 ("add-mag", dataset, "color", "1", "--block-len", "32", "--file-len", "4", "--compress")):
        r = mh.wkfs(*args)
        assert r.returncode == 0, mh.describe(r)
    data = np.random.default_rng(2).integers(0, 255, size=512 * 512 * 256, dtype=np.uint8).tobytes()
    r = mh.run([mh.WKFS_BIN, "write", dataset, "color", "1", "--offset", "0,0,0", "--size", "512,512,256"], input=data, timeout=300)
    assert r.returncode == 0, mh.describe(r)
    with mounted(dataset, options="cache_size=16M") as m:
        view = mountpoint / "color" / "1"
        r = mh.sh(f"cat '{view}/volume.raw' | md5sum; cat '{view}'/slices/*.tif | wc -c", timeout=150)
        assert r.returncode == 0, mh.describe(r)
        import hashlib

        assert r.stdout.decode().split()[0] == hashlib.md5(data).hexdigest()
        peak = _peak_kib(m.proc.pid) >> 10
        assert peak < 16 + 80, f"the daemon peaked at {peak} MiB streaming 64 MiB of views with cache_size=16M"


@pytest.mark.parametrize("data_format", ["wkw", "zarr3"])
def test_the_views_follow_a_box_that_another_program_grew(tmp_path, data_format, mounted, mountpoint):
    """`wkfs write` beside the mount grows the bounding box: `mag.json`, `volume.raw` (its size
    and voxels) and `volume.nhdr` show the new box at the next open or stat (they kept the box
    of the mount's start until it was restarted)."""
    import time

    ds = tmp_path / "ds"
    for args in (["create", ds, "--voxel-size", "1,1,1"],
                 ["add-layer", ds, "color", "--category", "color", "--dtype", "uint8", "--data-format", data_format],
                 ["add-mag", ds, "color", "1", "--block-len", "8", "--file-len", "8", "--compress"]):
        r = mh.wkfs(*args)
        assert r.returncode == 0, mh.describe(r)
    first = np.full((64, 64, 64), 3, np.uint8)
    r = mh.wkfs("write", ds, "color", "1", "--offset", "0,0,0", "--size", "64,64,64", input=first.tobytes())
    assert r.returncode == 0, mh.describe(r)
    with mounted(ds):
        view = mountpoint / "color" / "1"
        assert json.loads((view / "mag.json").read_text())["volume"]["shape"] == [64, 64, 64, 1]
        assert (view / "volume.raw").stat().st_size == 64 ** 3
        more = np.full((8, 8, 8), 9, np.uint8)
        r = mh.wkfs("write", ds, "color", "1", "--offset", "100,0,0", "--size", "8,8,8", input=more.tobytes())
        assert r.returncode == 0, mh.describe(r)
        time.sleep(1.5)  # what the kernel keeps of names and sizes, for a second
        assert json.loads((view / "mag.json").read_text())["volume"]["shape"] == [64, 64, 108, 1]
        assert "sizes: 108 64 64\n" in (view / "volume.nhdr").read_text()
        assert (view / "volume.raw").stat().st_size == 108 * 64 * 64
        volume = np.fromfile(view / "volume.raw", dtype=np.uint8).reshape(64, 64, 108)
        assert (volume[:64, :64, :64] == 3).all() and (volume[:8, :8, 100:108] == 9).all()
        assert (volume[:, :, 64:100] == 0).all()
