#!/usr/bin/env python
"""Reference side of Tests/compat/test_downsample.py: webknossos 4.3.3 creates small datasets and
downsamples copies of them with `Layer.downsample`, all in this one process.

Usage: python ref_downsample.py CASES.json

CASES.json is a list of objects:
  src, ref            dataset directories to create (src: only mag 1; ref: a copy of src, downsampled)
  fmt                 "wkw" | "zarr3"
  voxel_size          [x, y, z]
  topleft, size       the layer's bounding box (mag-1 voxels)
  dtype, category, channels
  data                "random" (full value range) | "lowcard" (a few values, so mode ties occur;
                      uint64: some above 2**53) | "lowcard52" (uint64: a few values below 2**52)
  seed
  chunk, shard        mag 1's chunk and shard edge (null: webknossos's default)
  compress            mag 1 compressed?
  downsample          keyword arguments of Layer.downsample (interpolation_mode, sampling_mode,
                      coarsest_mag); None values are left out.
  other_mags          (optional) mags of a second, empty layer "other" (uint8 color, same box),
                      whose mags the downsampling follows

The reference's new mags are written uncompressed with webknossos's default chunk/shard shapes:
that gives the same voxels as the CLI (compression does not change voxels, and the default shard
shape keeps the tiling that `nearest` depends on) and avoids padding each write to a whole
1024^3 shard. Everything runs on the sequential executor (no worker processes).

Must only run as a script: webknossos's parallel executors import the calling module.
"""

from __future__ import annotations

import json
import shutil
import sys
import time

import numpy as np

#: The values of "lowcard" data, per dtype (uint64 above 2**53 on purpose).
LOWCARD = {
    "uint8": [0, 1, 7, 255],
    "uint16": [0, 3, 65535, 1000],
    "uint32": [0, 5, 4294967295, 123456],
    "uint64": [0, 2**53 + 1, 2**64 - 1, 42],
}
#: "lowcard52": uint64 values below 2**52 (webknossos's nearest adds 0.5 in float64).
LOWCARD52 = {"uint64": [0, 2**52 - 1, 2**40 + 3, 42]}


def make_data(case: dict) -> np.ndarray:
    rng = np.random.default_rng(case["seed"])
    channels = case["channels"]
    shape = (channels, *case["size"])
    dt = np.dtype(case["dtype"])
    if case["data"] in ("lowcard", "lowcard52"):
        values = np.array((LOWCARD52 if case["data"] == "lowcard52" else LOWCARD)[case["dtype"]], dtype=dt)
        # weighted, so that 2-, 3- and 4-way ties all happen
        data = values[rng.choice(len(values), size=shape, p=[0.4, 0.3, 0.2, 0.1])]
    elif dt.kind == "f":
        data = (rng.standard_normal(shape) * 1000).astype(dt)
    else:
        info = np.iinfo(dt)
        data = rng.integers(info.min, info.max, size=shape, dtype=dt, endpoint=True)
    return data


def create(case: dict) -> None:
    import webknossos as wk

    shutil.rmtree(case["src"], ignore_errors=True)
    ds = wk.Dataset(case["src"], voxel_size=tuple(case["voxel_size"]))
    kw = dict(dtype=case["dtype"], num_channels=case["channels"], data_format=case["fmt"])
    if case["category"] == "segmentation":
        kw["largest_segment_id"] = int(max(LOWCARD.get(case["dtype"], [0])))
    layer = ds.add_layer(case["layer"], case["category"], **kw)
    layer.bounding_box = wk.BoundingBox(tuple(case["topleft"]), tuple(case["size"]))
    mag = layer.add_mag(1, chunk_shape=case.get("chunk"), shard_shape=case.get("shard"),
                        compress=case["compress"])
    data = make_data(case)
    if case["channels"] == 1:
        data = data[0]
    mag.write(data, absolute_offset=tuple(case["topleft"]), allow_unaligned=True)
    if case.get("other_mags"):
        other = ds.add_layer("other", "color", dtype="uint8", data_format=case["fmt"])
        other.bounding_box = wk.BoundingBox(tuple(case["topleft"]), tuple(case["size"]))
        for name in case["other_mags"]:
            other.add_mag(name, compress=False)


def downsample(case: dict, executor) -> None:
    import webknossos as wk

    shutil.rmtree(case["ref"], ignore_errors=True)
    shutil.copytree(case["src"], case["ref"], symlinks=True)
    layer = wk.Dataset.open(case["ref"]).get_layer(case["layer"])
    kw = {k: v for k, v in case.get("downsample", {}).items() if v is not None}
    if "coarsest_mag" in kw:
        kw["coarsest_mag"] = wk.Mag(kw["coarsest_mag"])
    layer.downsample(compress=False, executor=executor, **kw)


def main() -> None:
    import logging
    import warnings

    warnings.filterwarnings("ignore")
    logging.disable(logging.WARNING)
    from cluster_tools import get_executor

    cases = json.load(open(sys.argv[1]))
    with get_executor("sequential") as executor:
        for case in cases:
            t = time.perf_counter()
            create(case)
            t1 = time.perf_counter()
            if case.get("ref"):
                downsample(case, executor)
            t2 = time.perf_counter()
            print(f"{case['src']}: create {t1 - t:.2f} s, downsample {t2 - t1:.2f} s", flush=True)


if __name__ == "__main__":
    main()
