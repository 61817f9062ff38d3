"""(a) Every region of every fixture manifest, read with `wkfs read`, hashes like the reference read.

Fixtures (Tests/fixtures, copied from the reference tools' output) were written by webknossos 0.9.21, webknossos 4.3.3 and wkw
1.1.24. Two manifest kinds:
- "webknossos-dataset": a dataset directory; regions per layers[].mags[].regions, read in place.
- "wkw-lowlevel": the directory is a bare mag directory (header.wkw, no properties). It is copied
  into tmp as `<ds>/layer/1` next to a minimal datasource-properties.json, then read with wkfs.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

import wkfs_helpers as h


def _manifests() -> list[Path]:
    return sorted(h.FIXTURES.glob("*.manifest.json")) if h.FIXTURES.is_dir() else []


def _load(manifest: Path) -> dict:
    return json.loads(manifest.read_text())


def _region_cases():
    cases = []
    for manifest in _manifests():
        m = _load(manifest)
        name = m["dataset_dir"]
        if m["kind"] == "wkw-lowlevel":
            for i, region in enumerate(m["regions"]):
                cases.append(pytest.param(manifest.name, None, None, i, id=f"{name}/{region['name']}"))
        elif m["kind"] == "webknossos-dataset":
            for li, layer in enumerate(m["layers"]):
                for mi, mag in enumerate(layer["mags"]):
                    mag_name = Path(mag["mag_dir"]).name
                    for i, region in enumerate(mag["regions"]):
                        cases.append(
                            pytest.param(
                                manifest.name,
                                li,
                                mi,
                                i,
                                id=f"{name}/{layer['name']}/{mag_name}/{region['name']}",
                            )
                        )
        else:
            cases.append(pytest.param(manifest.name, None, None, None, id=f"{name}/unknown-kind"))
    return cases


def _dataset_cases(kind: str):
    return [
        pytest.param(m.name, id=_load(m)["dataset_dir"])
        for m in _manifests()
        if _load(m)["kind"] == kind
    ]


def test_fixtures_present():
    assert h.FIXTURES.is_dir(), f"fixtures not found at {h.FIXTURES} (set WKFS_FIXTURES)"
    kinds = {_load(m)["kind"] for m in _manifests()}
    assert kinds == {"wkw-lowlevel", "webknossos-dataset"}, kinds


# --------------------------------------------------------------------------------------------
# wkw-lowlevel fixtures get wrapped in a one-layer dataset (built once per session)


@pytest.fixture(scope="session")
def lowlevel_dataset(tmp_path_factory, fixtures_dir):
    cache: dict[str, Path] = {}

    def build(manifest_name: str) -> Path:
        if manifest_name in cache:
            return cache[manifest_name]
        m = _load(fixtures_dir / manifest_name)
        hdr = m["header"]
        ds = tmp_path_factory.mktemp("lowlevel") / m["dataset_dir"]
        shutil.copytree(fixtures_dir / m["dataset_dir"], ds / "layer" / "1")
        bbox = None
        for r in m["regions"]:
            bbox = h.box_union(bbox, (tuple(r["offset_mag"]), tuple(r["size_mag"])))
        entry = h.layer_entry(
            "layer",
            hdr["voxel_type"],
            hdr["num_channels"],
            bbox,
            [((1, 1, 1), hdr["file_shape_voxels"])],
        )
        h.write_properties(ds, [entry])
        cache[manifest_name] = ds
        return ds

    return build


@pytest.mark.parametrize("manifest_name", [pytest.param(m.name, id=m.name) for m in _manifests()])
def test_fixture_files_intact(manifest_name, fixtures_dir):
    """The copy under test is what the manifest recorded (so a failure below is wkfs's)."""
    m = _load(fixtures_dir / manifest_name)
    base = fixtures_dir / m["dataset_dir"]
    for f in m["files"]:
        p = base / f["path"]
        if "symlink_to" in f:
            assert p.is_symlink() and os.readlink(p) == f["symlink_to"], p
        else:
            assert h.sha256(p.read_bytes()) == f["sha256"], p


def _region_of(m: dict, li, mi, i):
    if m["kind"] == "wkw-lowlevel":
        return "layer", "1", m["regions"][i], None
    layer = m["layers"][li]
    mag = layer["mags"][mi]
    return layer["name"], Path(mag["mag_dir"]).name, mag["regions"][i], mag


def _explain_mismatch(mag_dir: Path, region: dict, got: bytes) -> str:
    """On a hash mismatch, say how far off wkfs is from libwkw's read of the same region."""
    try:
        ref = h.to_bytes(h.wkw_read(mag_dir, region["offset_mag"], region["size_mag"]))
    except Exception as e:  # pragma: no cover - diagnostics only
        return f"(reference read failed: {e})"
    return f"vs libwkw read: {h.first_difference(got, ref)}; ref sha256 {h.sha256(ref)}"


@pytest.mark.parametrize("manifest_name,li,mi,i", _region_cases())
def test_region_hash(manifest_name, li, mi, i, lowlevel_dataset, fixtures_dir):
    m = _load(fixtures_dir / manifest_name)
    assert i is not None, f"unknown manifest kind {m['kind']!r}"
    if m["kind"] == "wkw-lowlevel":
        ds = lowlevel_dataset(manifest_name)
    else:
        ds = fixtures_dir / m["dataset_dir"]
    layer, mag_name, region, _ = _region_of(m, li, mi, i)
    got = h.wkfs_read(ds, layer, mag_name, region["offset_mag"], region["size_mag"])
    assert len(got) == region["num_bytes"]
    if h.sha256(got) != region["sha256"]:
        pytest.fail(
            f"sha256 mismatch for {ds} {layer} {mag_name} {region['offset_mag']}+{region['size_mag']}: "
            + _explain_mismatch(ds / layer / mag_name, region, got)
        )


def _default_read_cases():
    """Regions that are exactly the layer bounding box snapped to the mag: `read` without a box."""
    out = []
    for p in _region_cases():
        manifest_name, li, mi, i = p.values
        m = _load(h.FIXTURES / manifest_name)
        if m["kind"] != "webknossos-dataset":
            continue
        mag = m["layers"][li]["mags"][mi]
        region = mag["regions"][i]
        bb = mag.get("bounding_box_in_mag")
        if region["name"] == "layer_bbox" and bb and (
            bb["topleft"] == region["offset_mag"] and bb["size"] == region["size_mag"]
        ):
            out.append(pytest.param(manifest_name, li, mi, i, id=p.id))
    return out


@pytest.mark.parametrize("manifest_name,li,mi,i", _default_read_cases())
def test_default_read_is_layer_bbox(manifest_name, li, mi, i, fixtures_dir):
    m = _load(fixtures_dir / manifest_name)
    ds = fixtures_dir / m["dataset_dir"]
    layer, mag_name, region, _ = _region_of(m, li, mi, i)
    got = h.wkfs_read(ds, layer, mag_name)
    assert len(got) == region["num_bytes"]
    assert h.sha256(got) == region["sha256"]


@pytest.mark.parametrize("manifest_name", _dataset_cases("webknossos-dataset"))
def test_check_and_info_on_fixture(manifest_name, fixtures_dir):
    """A healthy reference dataset passes `check`, and `info --json` lists its layers and mags."""
    m = _load(fixtures_dir / manifest_name)
    ds = fixtures_dir / m["dataset_dir"]
    proc = h.run_wkfs("check", ds)
    h.assert_no_crash(proc)
    assert proc.returncode == 0, h.describe(proc)

    info = json.loads(h.wkfs_ok("info", ds, "--json"))
    text = json.dumps(info)
    for layer in m["layers"]:
        assert f'"{layer["name"]}"' in text, f"layer {layer['name']} missing in info --json"
        assert layer["dtype"] in text, f"dtype {layer['dtype']} missing in info --json"
    # the human-readable form works too
    assert h.wkfs_ok("info", ds).strip()
