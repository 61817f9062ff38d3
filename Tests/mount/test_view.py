"""The shape of the view and its metadata: names, mag.json, ls/find/stat/du/df, .wkfs/."""

from __future__ import annotations

import errno
import json
import os
import stat
from pathlib import Path

import pytest

import mounthelp as mh


def expected_tree(dataset: Path, mountpoint: Path) -> set[str]:
    """Every path the view must show outside `.wkfs` (relative to the mount point)."""
    props = mh.load_properties(dataset)
    paths = {"datasource-properties.json"}
    for layer in props["dataLayers"]:
        name = layer["name"]
        layer_dir = dataset / name
        paths.add(name)
        if layer_dir.is_symlink():
            continue  # find does not follow the link; its content is under .wkfs/links
        for mag_dir in mh.mag_dirs(layer_dir):
            m = f"{name}/{mag_dir.name}"
            # The mag's generated views: the volume, its NRRD header, one slice image per plane.
            paths |= {m, f"{m}/mag.json", f"{m}/volume.raw", f"{m}/volume.nhdr", f"{m}/slices"}
            planes = json.loads((mountpoint / m / "mag.json").read_text())["volume"]["shape"][0]
            width = len(str(planes - 1))
            paths |= {f"{m}/slices/z{str(i).zfill(width)}.tif" for i in range(planes)}
            for x, y, z in mh.cube_files(mag_dir):
                paths |= {f"{m}/z{z}", f"{m}/z{z}/y{y}", f"{m}/z{z}/y{y}/x{x}.raw", f"{m}/z{z}/y{y}/x{x}.nhdr"}
    return paths


def test_find_lists_exactly_the_view(fixture_copies, mounted, mountpoint):
    dataset = fixture_copies / "wk433_color_uint8_raw"
    with mounted(dataset):
        r = mh.run(["find", mountpoint])
        assert r.returncode == 0, mh.describe(r)
        found = {os.path.relpath(p, mountpoint) for p in r.stdout.decode().splitlines()}
        found.discard(".")
        outside_control = {p for p in found if p != ".wkfs" and not p.startswith(".wkfs/")}
        assert outside_control == expected_tree(dataset, mountpoint)
        assert {".wkfs", ".wkfs/errors", ".wkfs/links", ".wkfs/stats"} <= found
        assert not any(p.endswith(".wkw") for p in found), "WKW files leak into the view"


def test_find_with_symlinked_layer(fixture_copies, mounted, mountpoint):
    dataset = fixture_copies / "wk433_with_symlink_layer"
    with mounted(dataset):
        r = mh.run(["find", mountpoint, "-type", "l"])
        assert r.returncode == 0, mh.describe(r)
        assert r.stdout.decode().split() == [str(mountpoint / "segmentation")]
        r = mh.run(["find", "-L", mountpoint / "segmentation", "-name", "x*.raw"])
        assert r.returncode == 0, mh.describe(r)
        target = fixture_copies / "wk433_segmentation_uint32" / "segmentation"
        n = sum(len(mh.cube_files(m)) for m in mh.mag_dirs(target))
        assert len(r.stdout.split()) == n


def test_ls_lR_and_stat(fixture_copies, mounted, mountpoint):
    dataset = fixture_copies / "wk433_color_uint16"
    with mounted(dataset):
        r = mh.run(["ls", "-lR", mountpoint])
        assert r.returncode == 0, mh.describe(r)
        text = r.stdout.decode()
        assert "datasource-properties.json" in text and "mag.json" in text and "x0.raw" in text

        root = os.lstat(mountpoint)
        assert stat.S_ISDIR(root.st_mode) and root.st_nlink >= 2
        props = os.stat(mountpoint / "datasource-properties.json")
        assert stat.S_ISREG(props.st_mode)
        assert props.st_size == (dataset / "datasource-properties.json").stat().st_size
        assert props.st_mode & stat.S_IWUSR, "the properties file must be writable"
        assert (mountpoint / "datasource-properties.json").read_bytes() == (
            dataset / "datasource-properties.json"
        ).read_bytes()

        for mag_dir in mh.mag_dirs(dataset / "color"):
            h = mh.read_header(mag_dir / "header.wkw")
            vmag = mountpoint / "color" / mag_dir.name
            st = os.stat(vmag)
            assert stat.S_ISDIR(st.st_mode) and st.st_nlink >= 2, vmag
            mj = os.stat(vmag / "mag.json")
            assert stat.S_ISREG(mj.st_mode) and mj.st_mode & 0o222 == 0, "mag.json must be read-only"
            assert mj.st_size == len((vmag / "mag.json").read_bytes()), "mag.json size != content"
            for x, y, z in mh.cube_files(mag_dir):
                cube = vmag / mh.cube_rel(x, y, z)
                st = os.stat(cube)
                assert stat.S_ISREG(st.st_mode) and st.st_nlink == 1, cube
                assert st.st_size == mh.cube_bytes(h), cube
                assert st.st_mode & stat.S_IRUSR
                wkw_file = mag_dir / mh.cube_rel(x, y, z, "wkw")
                assert abs(st.st_mtime - wkw_file.stat().st_mtime) < 1.01, (
                    f"{cube}: mtime {st.st_mtime} does not follow {wkw_file} ({wkw_file.stat().st_mtime})"
                )
            r = mh.run(["stat", "-c", "%s %F", vmag / mh.cube_rel(*mh.cube_files(mag_dir)[0])])
            assert r.returncode == 0, mh.describe(r)
            assert r.stdout.decode().split()[0] == str(mh.cube_bytes(h))
        # Names that are not there.
        assert mh.oserror_errno(os.stat, mountpoint / "nope") == errno.ENOENT
        assert mh.oserror_errno(os.stat, mountpoint / "color" / "3") == errno.ENOENT
        assert mh.oserror_errno(os.stat, mountpoint / "color" / "1" / "z99" / "y0" / "x0.raw") == errno.ENOENT


def test_du_apparent_size(fixture_copies, mounted, mountpoint):
    dataset = fixture_copies / "wk433_sparse"
    with mounted(dataset):
        for layer in ("color_raw", "color_lz4hc"):
            for mag_dir in mh.mag_dirs(dataset / layer):
                h = mh.read_header(mag_dir / "header.wkw")
                vmag = mountpoint / layer / mag_dir.name
                cubes = [vmag / mh.cube_rel(*xyz) for xyz in mh.cube_files(mag_dir)]
                r = mh.run(["du", "-c", "-b", "--apparent-size", *cubes])
                assert r.returncode == 0, mh.describe(r)
                total = int(r.stdout.decode().splitlines()[-1].split()[0])
                assert total == len(cubes) * mh.cube_bytes(h), r.stdout.decode()
                r = mh.run(["du", "-s", "-b", "--apparent-size", vmag])
                assert r.returncode == 0, mh.describe(r)
                walked = sum(os.lstat(p).st_size for p in mh.iter_tree(vmag)) + os.lstat(vmag).st_size
                assert int(r.stdout.split()[0]) == walked
        # The sparse layer shows only the files that exist.
        missing = mountpoint / "color_raw" / "1" / "z5" / "y9" / "x9.raw"
        assert not missing.exists()


def test_df_and_statfs(fixture_copies, mounted, mountpoint):
    dataset = fixture_copies / "wk433_color_float32"
    with mounted(dataset):
        r = mh.run(["df", "-P", mountpoint])
        assert r.returncode == 0, mh.describe(r)
        last = r.stdout.decode().splitlines()[-1].split()
        assert last[-1] == str(mountpoint), r.stdout.decode()
        sv = os.statvfs(mountpoint)
        assert sv.f_bsize > 0 and sv.f_frsize > 0
        assert sv.f_blocks >= sv.f_bfree >= sv.f_bavail >= 0
        assert sv.f_namemax >= 255


def test_mag_json(fixture_copies, mounted, mountpoint):
    """dtype, channels, cube shape, voxel order, mag and bounding box, for every mag."""
    cases = [("wk433_color_uint8x3", "color"), ("wk433_color_uint16", "color"),
             ("wk433_segmentation_uint64", "segmentation")]
    for name, layer_name in cases:
        dataset = fixture_copies / name
        layer = mh.layer_entry(mh.load_properties(dataset), layer_name)
        with mounted(dataset):
            for mag_dir in mh.mag_dirs(dataset / layer_name):
                h = mh.read_header(mag_dir / "header.wkw")
                path = mountpoint / layer_name / mag_dir.name / "mag.json"
                text = path.read_text()
                info = json.loads(text)
                assert isinstance(info, dict), f"{path}: {text}"
                assert mh.mag_json_dtype(info) == h["dtype"], f"{path}: {text}"
                assert mh.mag_json_int(info, "channel") == h["channels"], f"{path}: {text}"
                assert mh.mag_json_side(info) == h["side"], f"{path}: {text}"
                # Voxel order: z, y, x, channel (C order).
                orders = [v for _k, v in mh.find_key(info, "order", "layout")]
                flat = ["".join(ch for ch in (v if isinstance(v, str) else "".join(map(str, v))).lower()
                                if ch.isalpha()) for v in orders if isinstance(v, (str, list))]
                assert any("zyx" in f for f in flat), f"{path}: no z, y, x voxel order: {text}"
                # The mag.
                mags = [v for k, v in mh.find_key(info, "mag") if k.lower() == "mag"]
                want = list(mh.mag_vector(mag_dir.name))
                assert any(v == want or v == mag_dir.name or (isinstance(v, int) and [v] * 3 == want)
                           for v in mags), f"{path}: mag {want} missing: {text}"
                # The bounding box: the layer's numbers (mag 1) or the same box in this mag.
                boxes = mh.find_key(info, "bound", "bbox")
                assert boxes, f"{path}: no bounding box: {text}"
                nums = set(_ints(boxes))
                (tl, size) = mh.bbox_of(layer)
                in_mag = [t // m for t, m in zip(tl, want)]
                assert set(tl) <= nums or set(in_mag) <= nums, f"{path}: box {tl}+{size}: {text}"
                # Read-only.
                assert mh.oserror_errno(lambda: open(path, "w").close()) in {
                    errno.EACCES, errno.EPERM, errno.EROFS}
                assert path.read_text() == text


def _ints(obj):
    if isinstance(obj, bool):
        return
    if isinstance(obj, int):
        yield obj
    elif isinstance(obj, dict):
        for v in obj.values():
            yield from _ints(v)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            yield from _ints(v)


def test_control_directory(fixture_copies, mounted, mountpoint):
    dataset = fixture_copies / "wk433_color_uint8_raw"
    with mounted(dataset):
        ctl = mountpoint / ".wkfs"
        assert ctl.is_dir()
        assert (ctl / "links").is_dir()
        assert stat.S_ISREG(os.stat(ctl / "errors").st_mode)
        (ctl / "errors").read_text()  # text, possibly empty
        assert os.listdir(ctl / "links") == []
        # The control directory never reaches the dataset.
        assert not (dataset / ".wkfs").exists()


def _stats(mountpoint: Path) -> dict[str, str]:
    text = (mountpoint / ".wkfs" / "stats").read_text()
    return dict(line.split(": ", 1) for line in text.splitlines() if line and not line.startswith("#"))


def test_stats_count_what_the_mount_did(dataset_copy, mounted, mountpoint):
    """`.wkfs/stats`: read-only counters of requests, cube bytes, commits and the block cache."""
    dataset = dataset_copy("wk433_color_uint8_lz4hc")
    mag = dataset / "color" / "1"
    xyz = mh.cube_files(mag)[0]
    with mounted(dataset):
        ctl = mountpoint / ".wkfs"
        assert "stats" in os.listdir(ctl)
        assert stat.S_IMODE(os.stat(ctl / "stats").st_mode) == 0o444
        with pytest.raises(OSError):
            open(ctl / "stats", "w")
        before = _stats(mountpoint)
        assert before["dataset"] == str(dataset)
        cube = mountpoint / "color" / "1" / mh.cube_rel(*xyz)
        data = mh.read_file_through_mount(cube)
        after_read = _stats(mountpoint)
        assert int(after_read["cube_bytes_read"]) >= len(data)
        assert int(after_read["cache_group_misses"]) >= 1
        assert int(after_read["decoded_bytes"]) >= 1
        assert int(after_read["requests_read"]) >= 1
        assert int(after_read["requests_open"]) > int(before.get("requests_open", "0"))
        with open(cube, "r+b", buffering=0) as f:
            f.write(b"\x01")
        with pytest.raises(OSError):  # a cube of the wrong size is refused at close
            with open(cube, "wb") as f:
                f.write(b"short")
        after_write = _stats(mountpoint)
        assert int(after_write["cube_bytes_written"]) >= 6
        assert int(after_write["cubes_committed"]) == int(after_read["cubes_committed"]) + 1
        assert int(after_write["cube_commits_refused"]) == int(after_read["cube_commits_refused"]) + 1
        assert int(after_write.get("requests_flush_failed", "0")) >= 1


def test_mount_options(fixture_copies, mounted, mountpoint):
    dataset = fixture_copies / "wkw_raw_uint8_b8_f2"
    if not mh.allow_other_ok():
        pytest.skip("allow_other needs root or user_allow_other in /etc/fuse.conf")
    with mounted(dataset, options="allow_other,cache_size=16M") as m:
        entry = mh.mount_entry(mountpoint)
        assert "allow_other" in entry["options"], entry
        assert entry["fstype"].startswith("fuse"), entry
        mag_dir = dataset / "color" / "1"
        xyz = mh.cube_files(mag_dir)[0]
        assert (mountpoint / "color" / "1" / mh.cube_rel(*xyz)).read_bytes() == \
            mh.wkw_read_cube(mag_dir, xyz).tobytes()
    with mounted(dataset, options="debug,cache_size=1M") as m:
        xyz = mh.cube_files(dataset / "color" / "1")[-1]
        assert (mountpoint / "color" / "1" / mh.cube_rel(*xyz)).read_bytes() == \
            mh.wkw_read_cube(dataset / "color" / "1", xyz).tobytes()
    # Without allow_other the mount is private (the kernel option is absent).
    with mounted(dataset):
        assert "allow_other" not in mh.mount_entry(mountpoint)["options"]
