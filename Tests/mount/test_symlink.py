"""Symlinked layers in the mount (SPEC.md section 5) and mags added or removed with mkdir/rmdir."""

from __future__ import annotations

import errno
import json
import os
import shutil

import numpy as np

import mounthelp as mh

PROPS = "datasource-properties.json"


def test_existing_link(dataset_copy, mounted, mountpoint):
    ds = dataset_copy("wk433_with_symlink_layer")
    target = ds.parent / "wk433_segmentation_uint32" / "segmentation"
    target_before = mh.snapshot(target)
    with mounted(ds):
        link = mountpoint / "segmentation"
        assert link.is_symlink()
        assert os.readlink(link) == ".wkfs/links/segmentation"
        r = mh.run(["readlink", "-f", link])
        assert r.returncode == 0 and r.stdout.decode().strip() == str(mountpoint / ".wkfs/links/segmentation")
        assert sorted(os.listdir(link)) == sorted(m.name for m in mh.mag_dirs(target))
        assert os.listdir(mountpoint / ".wkfs" / "links") == ["segmentation"]
        r = mh.run(["ls", "-l", mountpoint])
        assert r.returncode == 0, mh.describe(r)
        assert "segmentation -> .wkfs/links/segmentation" in r.stdout.decode()
        # Writes through the link go to the target dataset.
        mag = target / "1"
        xyz = mh.cube_files(mag)[0]
        h = mh.read_header(mag / "header.wkw")
        orig = mh.wkw_read_cube(mag, xyz)
        new = orig.copy()
        new[0, 0, :8, 0] = np.arange(1, 9, dtype=new.dtype)
        mm = np.memmap(link / "1" / mh.cube_rel(*xyz), dtype=h["dtype"], mode="r+",
                       shape=(h["side"],) * 3 + (h["channels"],))
        mm[0, 0, :8, 0] = np.arange(1, 9)
        mm.flush()
        del mm
    assert np.array_equal(mh.wkw_read_cube(mag, xyz), new)
    assert ds.joinpath("segmentation").is_symlink()
    after = mh.snapshot(target)
    changed = {k for k in after if after[k] != target_before.get(k)}
    assert changed == {f"1/{mh.cube_rel(*xyz, 'wkw')}"}


def test_ln_s_adds_and_rm_removes(dataset_copy, mounted, mountpoint):
    ds = dataset_copy("wk433_color_uint8_lz4hc")
    other = dataset_copy("wk433_color_uint16")
    target = other / "color"
    target_before = mh.snapshot(other)
    with mounted(ds):
        r = mh.run(["ln", "-s", target, mountpoint / "other_color"])
        assert r.returncode == 0, mh.describe(r)
        link = mountpoint / "other_color"
        assert link.is_symlink() and os.readlink(link) == ".wkfs/links/other_color"
        # On disk: a link to the target and a properties entry copied from the target's.
        assert (ds / "other_color").is_symlink()
        assert (ds / "other_color").resolve() == target.resolve()
        entry = mh.layer_entry(mh.load_properties(ds), "other_color")
        assert entry is not None, "no properties entry for the new symlinked layer"
        src_entry = mh.layer_entry(mh.load_properties(other), "color")
        assert entry["category"] == src_entry["category"]
        assert entry["elementClass"] == src_entry["elementClass"]
        assert json.loads((mountpoint / PROPS).read_text()) == mh.load_properties(ds)
        # Its content is the target's.
        for mag in mh.mag_dirs(target):
            for xyz in mh.cube_files(mag)[:2]:
                got = (link / mag.name / mh.cube_rel(*xyz)).read_bytes()
                assert got == mh.wkw_read_cube(mag, xyz).tobytes()
        # rm removes the link and the entry, never the target's data.
        r = mh.run(["rm", link])
        assert r.returncode == 0, mh.describe(r)
        assert not os.path.lexists(link)
        assert not os.path.lexists(ds / "other_color")
        assert mh.layer_entry(mh.load_properties(ds), "other_color") is None
        assert "other_color" not in os.listdir(mountpoint / ".wkfs" / "links")
    assert mh.snapshot(other) == target_before
    import webknossos as wk

    assert [layer for layer in wk.Dataset.open(ds).layers] == ["color"]


def test_ln_s_refused_for_a_non_layer(dataset_copy, mounted, mountpoint, tmp_path):
    ds = dataset_copy("wk433_color_uint8_raw")
    not_a_layer = tmp_path / "empty"
    not_a_layer.mkdir()
    before = mh.snapshot(ds)
    with mounted(ds):
        for name, target in [("bad1", not_a_layer), ("bad2", tmp_path / "missing"),
                             ("bad3", ds / "color" / "1")]:
            code = mh.oserror_errno(os.symlink, str(target), mountpoint / name)
            assert code is not None, f"ln -s {target} {name} succeeded"
        # A name that exists already.
        code = mh.oserror_errno(os.symlink, str(ds / "color"), mountpoint / "color")
        assert code == errno.EEXIST, mh.errno_name(code)
    assert mh.snapshot(ds) == before


def test_rm_of_the_fixture_link_keeps_target(dataset_copy, mounted, mountpoint):
    ds = dataset_copy("wk433_with_symlink_layer")
    sibling = ds.parent / "wk433_segmentation_uint32"
    sibling_before = mh.snapshot(sibling)
    with mounted(ds):
        os.unlink(mountpoint / "segmentation")
        assert sorted(os.listdir(mountpoint)) == sorted([".wkfs", "color", PROPS])
    assert not os.path.lexists(ds / "segmentation")
    assert [l["name"] for l in mh.load_properties(ds)["dataLayers"]] == ["color"]
    assert mh.snapshot(sibling) == sibling_before


def test_dangling_link_stays_dangling(dataset_copy, mounted, mountpoint):
    ds = dataset_copy("wk433_with_symlink_layer")
    sibling = ds.parent / "wk433_segmentation_uint32"
    shutil.move(sibling, ds.parent / "moved_away")
    before = mh.snapshot(ds)
    with mounted(ds):
        link = mountpoint / "segmentation"
        assert os.path.islink(link), "a dangling layer link is not shown as a link"
        assert not os.path.exists(link), "a dangling layer link resolves"
        assert mh.oserror_errno(os.listdir, link) == errno.ENOENT
        # The rest of the dataset works.
        mag = ds / "color" / "1"
        xyz = mh.cube_files(mag)[0]
        assert (mountpoint / "color" / "1" / mh.cube_rel(*xyz)).read_bytes() == mh.wkw_read_cube(mag, xyz).tobytes()
    assert mh.snapshot(ds) == before
    assert os.readlink(ds / "segmentation") == "../wk433_segmentation_uint32/segmentation"
    r = mh.wkfs("check", ds)
    assert r.returncode != 0 and b"segmentation" in r.stdout + r.stderr, mh.describe(r)


# ------------------------------------------------------------------------------------------
# mkdir / rmdir of mags


def test_mkdir_adds_mag_and_rmdir_removes_it(dataset_copy, mounted, mountpoint):
    ds = dataset_copy("wk433_color_uint8x3")  # mags 1 and 2, LZ4HC, block 16, file 2
    h1 = mh.read_header(ds / "color" / "1" / "header.wkw")
    with mounted(ds):
        for name, vec in [("4", [4, 4, 4]), ("8-8-4", [8, 8, 4])]:
            os.mkdir(mountpoint / "color" / name)
            assert (mountpoint / "color" / name / "mag.json").is_file()
            hdr = ds / "color" / name / "header.wkw"
            assert hdr.is_file(), f"mkdir {name} made no header.wkw"
            h = mh.read_header(hdr)
            assert h["raw"][:8] == h1["raw"][:8], "the new mag does not have the layer's settings"
            mags = [m["mag"] for m in mh.layer_entry(mh.load_properties(ds), "color")["mags"]]
            assert vec in mags or (vec[0] == vec[1] == vec[2] and vec[0] in mags), mags
            assert sorted(os.listdir(mountpoint / "color" / name)) == ["mag.json", "slices", "volume.nhdr", "volume.raw"]
            import wkw

            with wkw.Dataset.open(str(ds / "color" / name)) as w:
                assert w.header.block_type == h1["block_type"]
        # The new mag takes a cube.
        (mountpoint / "color" / "4" / "z0" / "y0").mkdir(parents=True)
        data = np.random.default_rng(3).integers(0, 255, size=mh.cube_bytes(h1), dtype=np.uint8)
        (mountpoint / "color" / "4" / "z0" / "y0" / "x0.raw").write_bytes(data.tobytes())
        assert mh.wkw_read_cube(ds / "color" / "4", (0, 0, 0)).tobytes() == data.tobytes()
        # rmdir of an empty mag removes directory and entry; a mag with data is refused.
        os.rmdir(mountpoint / "color" / "8-8-4")
        assert not (mountpoint / "color" / "8-8-4").exists()
        assert not (ds / "color" / "8-8-4").exists()
        mags = [m["mag"] for m in mh.layer_entry(mh.load_properties(ds), "color")["mags"]]
        assert [8, 8, 4] not in mags
        code = mh.oserror_errno(os.rmdir, mountpoint / "color" / "1")
        assert code in {errno.ENOTEMPTY, errno.EEXIST, errno.EBUSY, errno.EPERM}, mh.errno_name(code)
        assert (ds / "color" / "1" / "header.wkw").is_file()
    import webknossos as wk

    mags = wk.Dataset.open(ds).get_layer("color").mags
    assert {m.to_layer_name() for m in mags} == {"1", "2", "4"}


def test_mkdir_bad_mag_names_refused(dataset_copy, mounted, mountpoint):
    ds = dataset_copy("wk433_color_uint8_raw")
    before = mh.snapshot(ds)
    with mounted(ds):
        for name in ["3", "foo", "0", "2-2", "1-1-1-1", "-1", "2-3-1"]:
            code = mh.oserror_errno(os.mkdir, mountpoint / "color" / name)
            assert code in mh.BAD_NAME_ERRNOS, f"mkdir color/{name}: {mh.errno_name(code)}"
        code = mh.oserror_errno(os.mkdir, mountpoint / "color" / "2")
        assert code == errno.EEXIST, mh.errno_name(code)
    assert mh.snapshot(ds) == before
