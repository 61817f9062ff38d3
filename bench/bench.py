#!/usr/bin/env python3
"""wkfs benchmark: wkfs (CLI and mount) against the reference tools on the same generated data.

    .venv/bin/python bench/bench.py [--smoke] [--reps N] [--only 1,4] [--json PATH] [--regen]

Normally started by bench/run.sh (`make bench`), which installs squashfuse, squashfs-tools and
time first and cleans up leftovers. Benchmarks (ratio = other median / wkfs median, > 1 means
wkfs is faster):
  1 read of the whole bounding box: `wkfs read` vs wkw.Dataset.read
  2 write of the same region: `wkfs write` vs wkw.Dataset.write
  3 copy to block length 8, file length 8, LZ4HC: `wkfs copy` vs webknossos copy_dataset
  4 reading every raw cube through a fresh mount vs squashfuse, passthrough_ll, the page cache
  5 `cp` of the raw cubes into the mount vs wkw writing the same cubes
  6 random 64³ boxes read with pread through the mount vs wkw reading the same boxes
"""

import argparse
import json
import os
import platform
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, HERE)

import numpy as np  # noqa: E402

import data  # noqa: E402
from harness import (BenchError, Mount, PidFile, Sample, drop_caches, log, measure_group,  # noqa: E402
                     rmtree, row, run, run_timed, table)

REFOPS = os.path.join(HERE, "refops.py")
# A cube of the mount (not volume.raw, which shows the same voxels again).
CUBE_NAME = re.compile(r"x\d+\.raw")
# The reference CLI of the venv the benchmark runs in.
WEBKNOSSOS = os.path.join(os.path.dirname(sys.executable), "webknossos")
BLOCK_TYPES = {1: "raw", 2: "LZ4", 3: "LZ4HC"}


def layers(color_shape, segmentation_shape):
    return [
        {"name": "color", "category": "color", "dtype": "uint8", "shape": color_shape},
        {"name": "segmentation", "category": "segmentation", "dtype": "uint32", "shape": segmentation_shape},
    ]


CONFIGS = {
    # 512 MiB of uint8 EM-like voxels + 256 MiB of uint32 segmentation = 768 MiB decoded per dataset.
    "full": {"layers": layers([1024, 1024, 512], [512, 512, 256]), "lengths": [[32, 32], [8, 8]],
             "reps": 3, "boxes": 1000, "box": 64, "max_write_mib": 1024},
    # 1 MiB + 1 MiB; (32, 4) stands in for 32/32 so that a cube is 128³ and not 1024³.
    "smoke": {"layers": layers([128, 128, 64], [64, 64, 64]), "lengths": [[32, 4], [8, 8]],
              "reps": 1, "boxes": 40, "box": 64, "max_write_mib": 1024},
}


def variants_for(lengths):
    out = []
    for block_len, file_len in lengths:
        for kind in ("lz4", "raw"):
            key = f"b{block_len}f{file_len}"
            out.append({"name": f"{kind}-{key}", "kind": kind, "key": key, "block_len": block_len,
                        "file_len": file_len, "side": block_len * file_len})
    return out


def block_type_of(magdir):
    with open(os.path.join(magdir, "header.wkw"), "rb") as f:
        return BLOCK_TYPES.get(f.read(6)[5], "?")


def csv(values):
    return ",".join(str(v) for v in values)


class Bench:
    def __init__(self, cfg, root, top, reps, reader="python"):
        self.cfg, self.root, self.reps, self.reader = cfg, root, reps, reader
        self.layers = cfg["layers"]
        self.lengths = cfg["lengths"]
        self.variants = variants_for(self.lengths)
        self.wkfs = os.environ.get("WKFS_BIN") or os.path.join(REPO, ".build/release/wkfs")
        self.logs = os.path.join(root, "logs")
        self.mnt = os.path.join(root, "mnt")
        self.work = os.path.join(root, "work")
        for d in (self.logs, self.mnt, self.work):
            os.makedirs(d, exist_ok=True)
        if os.environ.get("BENCH_SHM"):  # set by run.sh, which removes it whatever happens
            self.shm = os.environ["BENCH_SHM"]
            os.makedirs(self.shm, exist_ok=True)
        else:
            self.shm = tempfile.mkdtemp(prefix="wkfs-bench-", dir="/dev/shm" if os.path.isdir("/dev/shm") else root)
        self.pidfile = PidFile(os.path.join(top, "pids"))
        self.rss_path = os.path.join(self.logs, "rss.txt")
        self.can_drop = drop_caches()
        self.rows, self.notes, self.skipped = [], [], []
        self.largest = None
        self.squashfuse = shutil_which("squashfuse")
        self.passthrough = None

    # ---- helpers ----

    def cold(self):
        """Before every timed run: write back dirty pages and drop the page cache."""
        if self.can_drop:
            drop_caches()
        else:
            os.sync()

    def timed(self, cmd, **kw):
        return run_timed(cmd, self.rss_path, **kw)

    def py(self, *args):
        return [sys.executable, REFOPS] + [str(a) for a in args]

    def ds(self, variant):
        return os.path.join(self.root, "ds", variant["name"])

    def mount(self, name, argv, mountpoint, unmount_argv):
        return Mount(name, argv, mountpoint, unmount_argv, self.logs, self.pidfile)

    def wkfs_mount(self, dataset, name="wkfs", options=None):
        mp = os.path.join(self.mnt, name)
        extra = ["-o", options] if options else []
        return self.mount(name, [self.wkfs, "mount", dataset, mp, "-f"] + extra, mp, [self.wkfs, "unmount", mp])

    def fuse_mount(self, name, argv_before_mp, argv_after_mp=()):
        mp = os.path.join(self.mnt, name)
        return self.mount(name, list(argv_before_mp) + [mp] + list(argv_after_mp), mp,
                          ["fusermount3", "-u", mp])

    def group(self, title, runners):
        return measure_group(self.reps, runners, title)

    # ---- 1: read ----

    def bench_read(self):
        for v in self.variants:
            for layer in self.layers:
                ds, name, size = self.ds(v), layer["name"], csv(layer["shape"])

                def wkfs_side(ds=ds, name=name, size=size):
                    self.cold()
                    return self.timed([self.wkfs, "read", ds, name, "1", "--offset", "0,0,0", "--size", size,
                                       "--output", "/dev/null"])

                def wkw_side(ds=ds, name=name, size=size):
                    self.cold()
                    return self.timed(self.py("read", os.path.join(ds, name, "1"), "0,0,0", size))

                data_label = f"{name} {v['name']}"
                stats = self.group(f"1 read {data_label}", {"wkfs": wkfs_side, "wkw": wkw_side})
                self.rows.append(row("1 read bbox", data_label, stats["wkfs"], stats["wkw"]))

    # ---- 2: write ----

    def write_input(self, layer, region, cache):
        """The layer's voxels zero-padded to `region`, as a raw file in shared memory."""
        key = (layer["name"], tuple(region))
        if key in cache:
            return cache[key]
        sx, sy, sz = layer["shape"]
        rx, ry, rz = region
        path = os.path.join(self.shm, f"{layer['name']}-{rx}x{ry}x{rz}.raw")
        src = np.memmap(os.path.join(self.root, "src", layer["name"] + ".raw"), dtype=layer["dtype"],
                        mode="r", shape=(sz, sy, sx))
        with open(path, "wb") as f:
            for z0 in range(0, rz, 16):
                slab = np.zeros((min(16, rz - z0), ry, rx), dtype=layer["dtype"])
                if z0 < sz:
                    part = src[z0:min(z0 + 16, sz)]
                    slab[: part.shape[0], :sy, :sx] = part
                f.write(slab.tobytes())
        cache[key] = path
        return path

    def bench_write(self):
        cache = {}
        limit = self.cfg["max_write_mib"] << 20
        try:
            for v in self.variants:
                for layer in self.layers:
                    side = v["side"]
                    # wkw writes compressed files only as whole files: snap the box out to them.
                    if v["kind"] == "raw":
                        region = list(layer["shape"])
                    else:
                        region = [-(-s // side) * side for s in layer["shape"]]
                    nbytes = int(np.prod(region)) * np.dtype(layer["dtype"]).itemsize
                    data_label = f"{layer['name']} {v['name']} {'x'.join(map(str, region))}"
                    if nbytes > limit:
                        self.skipped.append(f"2 write {data_label}: wkw needs whole files for compressed "
                                            f"writes, {nbytes >> 20} MiB here (limit {limit >> 20} MiB)")
                        log(f"bench: skipping {self.skipped[-1]}")
                        continue
                    path = self.write_input(layer, region, cache)
                    targets = {side_name: os.path.join(self.work, f"write-{side_name}")
                               for side_name in ("wkfs", "wkw")}

                    def fresh(target, v=v, layer=layer):
                        data.make_dataset(self.wkfs, target, v, [layer], self.largest)
                        self.cold()

                    def wkfs_side(v=v, layer=layer, region=region, path=path):
                        fresh(targets["wkfs"])
                        return self.timed([self.wkfs, "write", targets["wkfs"], layer["name"], "1",
                                           "--offset", "0,0,0", "--size", csv(region), "--input", path])

                    def wkw_side(v=v, layer=layer, region=region, path=path):
                        fresh(targets["wkw"])
                        return self.timed(self.py("write", os.path.join(targets["wkw"], layer["name"], "1"),
                                                  "0,0,0", csv(region), layer["dtype"], path))

                    stats = self.group(f"2 write {data_label}", {"wkfs": wkfs_side, "wkw": wkw_side})
                    written = {s: block_type_of(os.path.join(t, layer["name"], "1")) for s, t in targets.items()}
                    note = f"block type: wkfs {written['wkfs']}, wkw {written['wkw']}"
                    self.rows.append(row("2 write", data_label, stats["wkfs"], stats["wkw"], note))
                    for t in targets.values():
                        rmtree(t)
        finally:
            for path in cache.values():
                os.remove(path)

    # ---- 3: copy ----

    def bench_copy(self):
        v = self.variants[0]  # LZ4, the first (default) lengths
        src = self.ds(v)
        targets = {"wkfs": os.path.join(self.work, "copy-wkfs"), "webknossos": os.path.join(self.work, "copy-wk")}

        def wkfs_side():
            rmtree(targets["wkfs"])
            self.cold()
            return self.timed([self.wkfs, "copy", src, targets["wkfs"], "--block-len", "8", "--file-len", "8",
                               "--compress"], timeout=7200)

        def wk_side():
            rmtree(targets["webknossos"])
            self.cold()
            return self.timed(self.py("copy", src, targets["webknossos"], 8, 8), timeout=7200)

        stats = self.group(f"3 copy {v['name']}", {"wkfs": wkfs_side, "webknossos": wk_side})
        written = {}
        for side_name, target in targets.items():
            data.verify_dataset(target, self.layers, os.path.join(self.root, "src"))
            written[side_name] = block_type_of(os.path.join(target, self.layers[0]["name"], "1"))
            rmtree(target)
        note = f"block type: wkfs {written['wkfs']}, webknossos {written['webknossos']}; voxels verified"
        self.rows.append(row("3 copy to 8/8 LZ4HC", f"both layers {v['name']}", stats["wkfs"],
                             stats["webknossos"], note))

    # ---- 4: reading every cube through a mount ----

    def read_all(self, root, listpath, expected, limit=None):
        """Read every listed cube under root to the end (or its first `limit` bytes) with 1 MiB reads."""
        if self.reader == "dd" and limit is None:
            script = 'while IFS= read -r f; do dd if="$1/$f" of=/dev/null bs=1M status=none || exit 1; done < "$2"'
            return self.timed(["bash", "-c", script, "dd-all", root, listpath], timeout=3600)
        s = self.timed(self.py("readall", root, listpath, *([] if limit is None else [limit])), timeout=3600)
        if s.extra.get("bytes") != expected:
            raise BenchError(f"reading the cubes under {root}: {s.extra.get('bytes')} bytes, expected {expected}")
        return s

    def read_through(self, mount, listpath, expected, limit=None):
        with mount as m:
            self.cold()
            s = self.read_all(m.mountpoint, listpath, expected, limit)
        return Sample(s.seconds, m.peak_kib, s.inproc, {"bytes": expected, "reader_rss_kib": s.rss_kib})

    def bench_mount_read(self):
        for block_len, file_len in self.lengths:
            key = f"b{block_len}f{file_len}"
            cubedir = os.path.join(self.root, "cubes", key)
            listpath = cubedir + ".list"
            image = os.path.join(self.root, "sqfs", key + ".sqfs")
            with open(listpath) as f:
                names = f.read().split()
            expected = sum(os.path.getsize(os.path.join(cubedir, n)) for n in names)
            runners = {}
            # The default mount (page cache) and -o direct_io (read-only handles bypass it).
            kinds = ("lz4", "raw", "lz4 direct_io", "raw direct_io")
            for kind in kinds:
                ds = os.path.join(self.root, "ds", f"{kind.split()[0]}-{key}")
                options = "direct_io" if kind.endswith("direct_io") else None
                runners[f"wkfs {kind}"] = lambda ds=ds, options=options: self.read_through(
                    self.wkfs_mount(ds, options=options), listpath, expected)
            if self.squashfuse:
                runners["squashfuse"] = lambda: self.read_through(
                    self.fuse_mount("squashfuse", [self.squashfuse, "-f", image]), listpath, expected)
            if self.passthrough:
                runners["passthrough_ll"] = lambda: self.read_through(
                    self.fuse_mount("passthrough_ll", [self.passthrough, "-f", "-o", f"source={cubedir}"]),
                    listpath, expected)

            def page_cache():
                self.read_all(cubedir, listpath, expected)  # the first pass fills the cache
                s = self.read_all(cubedir, listpath, expected)
                return Sample(s.seconds, None, s.inproc, {"bytes": expected})

            runners["page cache"] = page_cache
            mib = expected >> 20
            stats = self.group(f"4 mount read {key}", runners)
            for kind in kinds:
                for other in runners:
                    if other.startswith("wkfs"):
                        continue
                    label = {"squashfuse": "squashfuse (squashfs LZ4)", "passthrough_ll": "passthrough_ll",
                             "page cache": "page cache (2nd read)"}[other]
                    stats[other].label = label
                    note = "reference floor, no target" if other == "page cache" else ""
                    self.rows.append(row("4 mount: read all cubes", f"{kind.split()[0]}-{key}{' -o direct_io' if 'direct_io' in kind else ''}, "
                                         f"{len(names)} cubes, {mib} MiB",
                                         stats[f"wkfs {kind}"], stats[other], note))

    # ---- 7: Zarr3 ----

    def bench_zarr3(self):
        """The LZ4 32/32 data as webknossos's default Zarr3 (chunk 32, zstd; shard 1024, or 128
        in the smoke run): `wkfs read` against tensorstore and webknossos, `wkfs copy` WKW ->
        Zarr3 against webknossos's copy_dataset, and a fresh mount reading every cube of it
        against the same data as WKW LZ4."""
        v = self.variants[0]
        src = self.ds(v)
        chunk, shard = 32, (1024 if self.cfg is CONFIGS["full"] else 128)
        zarr = os.path.join(self.root, "ds", f"zarr3-c{chunk}s{shard}")
        if not os.path.isdir(zarr):
            run([self.wkfs, "copy", src, zarr, "--data-format", "zarr3", "--chunk-shape", str(chunk),
                 "--shard-shape", str(shard), "--compress"], timeout=7200)
        data_label = f"zstd chunk {chunk} shard {shard}"
        for layer in self.layers:
            name, size = layer["name"], csv(layer["shape"])

            def wkfs_side(name=name, size=size):
                self.cold()
                return self.timed([self.wkfs, "read", zarr, name, "1", "--offset", "0,0,0", "--size", size,
                                   "--output", "/dev/null"])

            def ts_side(name=name, size=size):
                self.cold()
                return self.timed(self.py("read-ts", os.path.join(zarr, name, "1"), "0,0,0", size))

            def wk_side(name=name, size=size):
                self.cold()
                return self.timed(self.py("read-wk", zarr, name, "0,0,0", size))

            stats = self.group(f"7 zarr3 read {name}", {"wkfs": wkfs_side, "tensorstore": ts_side, "webknossos": wk_side})
            self.rows.append(row("7 Zarr3 read bbox", f"{name} {data_label}", stats["wkfs"], stats["tensorstore"], "vs tensorstore"))
            self.rows.append(row("7 Zarr3 read bbox", f"{name} {data_label}", stats["wkfs"], stats["webknossos"], "vs webknossos"))

        targets = {"wkfs": os.path.join(self.work, "zarr-wkfs"), "webknossos": os.path.join(self.work, "zarr-wk")}

        def copy_wkfs():
            rmtree(targets["wkfs"])
            self.cold()
            return self.timed([self.wkfs, "copy", src, targets["wkfs"], "--data-format", "zarr3", "--chunk-shape",
                               str(chunk), "--shard-shape", str(shard), "--compress"], timeout=7200)

        def copy_wk():
            rmtree(targets["webknossos"])
            self.cold()
            return self.timed(self.py("copy-zarr3", src, targets["webknossos"], chunk, shard), timeout=7200)

        stats = self.group("7 zarr3 copy", {"wkfs": copy_wkfs, "webknossos": copy_wk})
        for target in targets.values():
            data.verify_dataset(target, self.layers, os.path.join(self.root, "src"))
            rmtree(target)
        self.rows.append(row("7 Zarr3 copy WKW -> Zarr3", f"both layers {v['name']} -> {data_label}", stats["wkfs"],
                             stats["webknossos"], "voxels verified"))

        # A fresh mount reading every cube: Zarr3 against the same data as WKW LZ4.
        lists = {}
        for kind, ds in (("zarr3", zarr), ("lz4", src)):
            listpath = os.path.join(self.work, f"cubes-{kind}.list")
            with self.wkfs_mount(ds, name=f"list-{kind}") as m:
                names = sorted(os.path.relpath(os.path.join(d, f), m.mountpoint)
                               for d, _, fs in os.walk(m.mountpoint) for f in fs if CUBE_NAME.fullmatch(f))
                expected = sum(os.path.getsize(os.path.join(m.mountpoint, n)) for n in names)
            with open(listpath, "w") as f:
                f.write("\n".join(names) + "\n")
            lists[kind] = (listpath, expected, len(names))
        runners = {kind: (lambda kind=kind, ds=ds: self.read_through(self.wkfs_mount(ds, name=f"read-{kind}"), *lists[kind][:2]))
                   for kind, ds in (("zarr3", zarr), ("lz4", src))}
        stats = self.group("7 zarr3 mount read", runners)
        self.rows.append(row("7 mount: read all cubes", f"Zarr3 {data_label} ({lists['zarr3'][2]} cubes) vs WKW {v['name']} "
                             f"({lists['lz4'][2]} cubes), {lists['zarr3'][1] >> 20} MiB", stats["zarr3"], stats["lz4"]))

        # Most of those bytes are zeros outside the bounding boxes, which a Zarr3 array does not
        # store at all: the dense part alone (the color cube's planes inside its box) too.
        color = self.layers[0]
        cx, cy, cz = color["shape"]
        if cx == cy == shard == v["side"] and cz <= shard:
            dense = cx * cy * cz
            listpath = os.path.join(self.work, "cubes-color.list")
            with open(listpath, "w") as f:
                f.write("color/1/z0/y0/x0.raw\n")
            runners = {kind: (lambda ds=ds, kind=kind: self.read_through(self.wkfs_mount(ds, name=f"dense-{kind}"),
                                                                         listpath, dense, dense))
                       for kind, ds in (("zarr3", zarr), ("lz4", src))}
            stats = self.group("7 zarr3 mount read dense", runners)
            self.rows.append(row("7 mount: read the dense part", f"color planes inside the box, Zarr3 {data_label} vs WKW "
                                 f"{v['name']}, {dense >> 20} MiB", stats["zarr3"], stats["lz4"]))

    # ---- 9: downsample, compress, and a copy split in parts ----

    def bench_scale_out(self):
        """`wkfs downsample` of both layers against `webknossos downsample` (all cores), `wkfs
        compress` of the raw data against `webknossos compress` (all cores), and a copy split in 2
        parts on 2 cores against the unsharded copy."""
        lz4, raw = self.variants[0], self.variants[1]
        jobs = str(os.cpu_count() or 1)
        work = {side: os.path.join(self.work, f"scale-{side}") for side in ("wkfs", "webknossos")}

        def fresh(side, source):
            # A copy as the source is on disk: raw files keep their holes (copytree fills them).
            rmtree(work[side])
            run(["cp", "-a", "--sparse=always", source, work[side]])
            self.cold()
            return work[side]

        def down_wkfs():
            ds = fresh("wkfs", self.ds(lz4))
            script = " && ".join(f"{shlex.quote(self.wkfs)} downsample {shlex.quote(ds)} {l['name']}" for l in self.layers)
            return self.timed(["bash", "-c", script], timeout=7200)

        def down_wk():
            ds = fresh("webknossos", self.ds(lz4))
            return self.timed([WEBKNOSSOS, "downsample", ds, "--jobs", jobs], timeout=7200)

        stats = self.group("9 downsample", {"wkfs": down_wkfs, "webknossos": down_wk})
        mags = {side: [sorted(os.listdir(os.path.join(work[side], l["name"]))) for l in self.layers] for side in work}
        note = f"mags: wkfs {mags['wkfs']}, webknossos {mags['webknossos']}"
        self.rows.append(row("9 downsample", f"both layers {lz4['name']}, default mags", stats["wkfs"], stats["webknossos"], note))

        def compress_wkfs():
            return self.timed([self.wkfs, "compress", fresh("wkfs", self.ds(raw))], timeout=7200)

        def compress_wk():
            return self.timed([WEBKNOSSOS, "compress", fresh("webknossos", self.ds(raw)), "--jobs", jobs], timeout=7200)

        stats = self.group("9 compress", {"wkfs": compress_wkfs, "webknossos": compress_wk})
        for side in work:
            data.verify_dataset(work[side], self.layers, os.path.join(self.root, "src"))
        written = {side: block_type_of(os.path.join(work[side], self.layers[0]["name"], "1")) for side in work}
        self.rows.append(row("9 compress", f"both layers {raw['name']}", stats["wkfs"], stats["webknossos"],
                             f"block type: wkfs {written['wkfs']}, webknossos {written['webknossos']}; voxels verified"))
        for side in work:
            rmtree(work[side])

        target = os.path.join(self.work, "copy-parts")
        copy = [self.wkfs, "copy", self.ds(lz4), target, "--block-len", "8", "--file-len", "8", "--compress"]

        def unsharded():
            rmtree(target)
            self.cold()
            return self.timed(copy, timeout=7200)

        def two_parts():
            rmtree(target)
            self.cold()
            line = " ".join(shlex.quote(c) for c in copy)
            return self.timed(["bash", "-c", f"{line} --shard 0/2 & a=$!; {line} --shard 1/2 & b=$!; wait $a && wait $b"], timeout=7200)

        stats = self.group("9 copy in parts", {"2 parts": two_parts, "1 process": unsharded})
        data.verify_dataset(target, self.layers, os.path.join(self.root, "src"))
        rmtree(target)
        self.rows.append(row("9 copy in 2 parts", f"both layers {lz4['name']} -> 8/8 LZ4HC, 2 processes vs 1",
                             stats["2 parts"], stats["1 process"], "voxels verified"))

    # ---- 8: the views (volume.raw, slices) ----

    def bench_views(self):
        """100 random z planes and the random boxes of benchmark 6 through `volume.raw` (numpy
        memmap) against wkw reading the same; every slice TIFF of the color layer (`cat`) against
        webknossos's export-as-tiff of the same bounding box."""
        v = self.variants[0]
        ds = self.ds(v)
        color = next(layer for layer in self.layers if layer["category"] == "color")
        shape = csv(color["shape"])
        planes = os.path.join(self.work, "planes.json")
        rng = np.random.default_rng(8)
        with open(planes, "w") as f:
            json.dump(sorted(int(z) for z in rng.integers(0, color["shape"][2], size=100)), f)
        boxes = os.path.join(self.root, "boxes.json")
        magdir = os.path.join(ds, color["name"], "1")

        def through_volume(what, spec):
            with self.wkfs_mount(ds) as m:
                self.cold()
                s = self.timed(self.py(what, os.path.join(m.mountpoint, color["name"], "1", "volume.raw"), shape,
                                       color["dtype"], spec), timeout=3600)
            return Sample(s.seconds, m.peak_kib, s.inproc, s.extra)

        def wkw_planes():
            self.cold()
            return self.timed(self.py("planes-wkw", magdir, shape, planes), timeout=3600)

        def wkw_boxes():
            self.cold()
            return self.timed(self.py("boxes-wkw", magdir, boxes), timeout=3600)

        stats = self.group("8 volume planes", {"wkfs": lambda: through_volume("planes-volume", planes), "wkw": wkw_planes})
        if len({s.extra.get("checksum") for st in stats.values() for s in st.samples}) != 1:
            raise BenchError("8 volume planes: the sides read different voxels")
        self.rows.append(row("8 volume.raw: 100 z planes", f"color {v['name']} (memmap)", stats["wkfs"], stats["wkw"],
                             "checksums equal"))
        stats = self.group("8 volume boxes", {"wkfs": lambda: through_volume("boxes-volume", boxes), "wkw": wkw_boxes})
        if len({s.extra.get("checksum") for st in stats.values() for s in st.samples}) != 1:
            raise BenchError("8 volume boxes: the sides read different voxels")
        with open(boxes) as f:
            spec = json.load(f)
        self.rows.append(row("8 volume.raw: random boxes", f"{len(spec['offsets'])} x {'x'.join(map(str, spec['size']))} "
                             f"color {v['name']} (memmap)", stats["wkfs"], stats["wkw"], "checksums equal"))

        target = os.path.join(self.work, "tiff-wk")

        def slices_side():
            with self.wkfs_mount(ds) as m:
                self.cold()
                s = self.timed(["bash", "-c", 'cat "$1"/*.tif > /dev/null', "cat-slices",
                                os.path.join(m.mountpoint, color["name"], "1", "slices")], timeout=3600)
            return Sample(s.seconds, m.peak_kib, s.inproc, s.extra)

        def export_side():
            rmtree(target)
            self.cold()
            return self.timed(self.py("export-tiff", ds, color["name"], target), timeout=3600)

        stats = self.group("8 slices", {"wkfs": slices_side, "webknossos": export_side})
        rmtree(target)
        self.rows.append(row("8 slices: every z plane as TIFF", f"color {v['name']}, {color['shape'][2]} planes",
                             stats["wkfs"], stats["webknossos"], "cat slices/*.tif vs webknossos export-as-tiff"))

    # ---- 5: cp into the mount ----

    def bench_mount_write(self):
        for v in self.variants:
            key = v["key"]
            cubedir = os.path.join(self.root, "cubes", key)
            listpath = cubedir + ".list"
            target = data.copy_tree(self.ds(v), os.path.join(self.work, f"cp-{v['name']}"))
            with open(listpath) as f:
                count = len(f.read().split())

            def wkfs_side(target=target, cubedir=cubedir):
                m = self.wkfs_mount(target).start()
                try:
                    self.cold()
                    t0 = time.perf_counter()
                    cp = self.timed(["cp", "-rT", "--sparse=never", cubedir, m.mountpoint], timeout=3600)
                    m.stop()  # pending writes are flushed before the unmount completes
                    seconds = time.perf_counter() - t0
                finally:
                    m.stop()
                return Sample(seconds, m.peak_kib, None, {"cp_s": round(cp.seconds, 4)})

            def wkw_side(target=target, cubedir=cubedir, listpath=listpath, side=v["side"]):
                self.cold()
                return self.timed(self.py("write-cubes", target, cubedir, listpath, side), timeout=3600)

            stats = self.group(f"5 cp into mount {v['name']}", {"wkfs": wkfs_side, "wkw": wkw_side})
            data.verify_dataset(target, self.layers, os.path.join(self.root, "src"))
            rmtree(target)
            written = block_type_of(os.path.join(self.ds(v), self.layers[0]["name"], "1"))
            self.rows.append(row("5 cp cubes into mount", f"{v['name']}, {count} cubes", stats["wkfs"], stats["wkw"],
                                 f"both write {written}; wkfs time includes the unmount; voxels verified"))

    # ---- 6: random boxes ----

    def bench_boxes(self):
        boxes = os.path.join(self.root, "boxes.json")
        with open(boxes) as f:
            spec = json.load(f)
        color = next(layer for layer in self.layers if layer["category"] == "color")
        for v in self.variants:
            ds, side = self.ds(v), v["side"]
            cubes = os.path.join(self.root, "cubes", v["key"], color["name"], "1")

            def through_mount(how, ds=ds, side=side):
                with self.wkfs_mount(ds) as m:
                    self.cold()
                    s = self.timed(self.py(f"boxes-{how}", os.path.join(m.mountpoint, color["name"], "1"), side,
                                           color["dtype"], boxes), timeout=3600)
                s.extra["reader_rss_kib"] = s.rss_kib
                return Sample(s.seconds, m.peak_kib, s.inproc, s.extra)

            def wkw_side(ds=ds):
                self.cold()
                return self.timed(self.py("boxes-wkw", os.path.join(ds, color["name"], "1"), boxes), timeout=3600)

            def local_pread(cubes=cubes, side=side):
                cmd = self.py("boxes-pread", cubes, side, color["dtype"], boxes)
                self.timed(cmd, timeout=3600)  # first pass fills the page cache
                return self.timed(cmd, timeout=3600)

            size = "x".join(map(str, spec["size"]))
            runners = {"wkfs pread": lambda: through_mount("pread"), "wkfs planes": lambda: through_mount("planes"),
                       "wkfs memmap": lambda: through_mount("mmap"), "wkw": wkw_side, "local pread": local_pread}
            stats = self.group(f"6 boxes {v['name']}", runners)
            sums = {s.extra.get("checksum") for st in stats.values() for s in st.samples}
            if len(sums) != 1:
                raise BenchError(f"6 boxes {v['name']}: the sides read different voxels ({sums})")
            stats["wkw"].label = "wkw"
            stats["local pread"].label = "pread of local raw cubes (page cache)"
            label = f"{len(spec['offsets'])} x {size} color {v['name']}"
            self.rows.append(row("6 random boxes", label + " (pread)", stats["wkfs pread"], stats["wkw"],
                                 "one preadv per box row; checksums equal"))
            self.rows.append(row("6 random boxes", label + " (pread per plane)", stats["wkfs planes"], stats["wkw"],
                                 "one preadv per z-plane of a box and cube (whole cube rows); checksums equal"))
            self.rows.append(row("6 random boxes", label + " (memmap)", stats["wkfs memmap"], stats["wkw"],
                                 "numpy memmap of the cube files; checksums equal"))
            self.rows.append(row("6 random boxes", label + " (pread)", stats["wkfs pread"], stats["local pread"],
                                 "reference floor, no target"))


def shutil_which(name):
    import shutil

    return shutil.which(name)


def machine_info(wkfs):
    def out(cmd):
        try:
            return subprocess.run(cmd, capture_output=True, text=True, timeout=30).stdout.strip()
        except OSError:
            return None

    from importlib.metadata import version

    mem_kib = int(open("/proc/meminfo").readline().split()[1])
    return {
        "cpus": os.cpu_count(),
        "memory_gib": round(mem_kib / 2**20, 1),
        "kernel": platform.release(),
        "wkfs": out([wkfs, "--version"]),
        "wkw": version("wkw"),
        "webknossos": version("webknossos"),
        "squashfuse": (out(["dpkg-query", "-W", "-f", "${Version}", "squashfuse"]) or None),
        "squashfs-tools": (out(["dpkg-query", "-W", "-f", "${Version}", "squashfs-tools"]) or None),
        "libfuse3": (out(["pkg-config", "--modversion", "fuse3"]) or None),
    }


def static_notes(bench, cfg):
    reps = bench.reps
    return [
        "ratio = other median / wkfs median: > 1 means wkfs is faster. Times are whole-process wall "
        f"times (medians of {reps} runs, the two or more sides back to back, order alternating per run); "
        "'other in-proc' is the time the Python side measured itself after its imports.",
        "page cache: " + ("dropped (sync; echo 3 > /proc/sys/vm/drop_caches) before every timed run"
                          if bench.can_drop else "could not be dropped (not permitted); every mount is fresh"),
        "peak RSS: /usr/bin/time %M (the largest single process; webknossos copy runs a pool of "
        f"{os.cpu_count()} worker processes); for mounts, the FUSE server's VmHWM from /proc.",
        "LZ4 mags are block type 2 (LZ4 fast): wkfs and wkw both write fast LZ4 at acceleration 1 into "
        "them (wkw: LZ4_compress_default; wkfs: the same compressor with a state kept per thread). Copies: wkfs --compress writes LZ4HC level 9 (type 3), webknossos compress=True writes "
        "LZ4HC via wkw. squashfs: mksquashfs -comp lz4 (plain LZ4, 128 KiB blocks).",
        "wkfs replaces compressed files atomically with fsync; wkw writes without fsync.",
        ("4: each source is read by one process, every cube to the end with 1 MiB reads (what dd bs=1M "
         "does, without starting ~1 ms of dd per cube)" if bench.reader == "python" else
         "4: `dd if=CUBE of=/dev/null bs=1M` for every cube")
        + ", through a freshly started mount; the raw cubes on disk (for passthrough_ll, the page cache "
        "and the squashfs image) keep their zero runs as holes, as the WKW files do. The default mount "
        "fills the kernel's page cache as squashfuse and passthrough_ll do; '-o direct_io' rows bypass it "
        "(read-only handles; no read-only mmap).",
        "5: `cp -rT --sparse=never CUBES MOUNT` over the existing cubes, timed up to the end of "
        "`wkfs unmount`; wkw writes the same cubes at their file offsets in one process.",
        "6: the boxes are read in one Python process through a fresh mount, with one os.preadv per "
        "row of a box (and per cube the row touches), with one os.preadv per z-plane of a box and cube "
        "(the box's rows read as whole cube rows, then sliced), or by slicing numpy memmaps of the cube files; wkw "
        "reads the same boxes with Dataset.read; the floor is the same preads on the raw cubes on local "
        "disk, second pass (page cache).",
        "Datasets: color uint8 " + "x".join(map(str, cfg["layers"][0]["shape"])) + ", segmentation uint32 "
        + "x".join(map(str, cfg["layers"][1]["shape"])) + ", block/file lengths "
        + ", ".join(f"{b}/{f}" for b, f in cfg["lengths"]) + "; built with wkfs write, verified with wkw.",
    ]


BENCHMARKS = {
    "1": "bench_read", "2": "bench_write", "3": "bench_copy",
    "4": "bench_mount_read", "5": "bench_mount_write", "6": "bench_boxes", "7": "bench_zarr3", "8": "bench_views",
    "9": "bench_scale_out",
}


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--smoke", action="store_true", help="tiny data, one repetition (also SMOKE=1)")
    p.add_argument("--reps", type=int, help="repetitions per benchmark (default: 3, smoke: 1)")
    p.add_argument("--only", default="1,2,3,4,5,6,7,8,9", help="comma-separated benchmark numbers")
    p.add_argument("--json", help="where to write the results (default: bench/results.json; "
                                  "smoke: <data dir>/results-smoke.json)")
    p.add_argument("--data-dir", help="where the data goes (default: bench/.data, or $BENCH_DATA)")
    p.add_argument("--reader", choices=["python", "dd"], default="python",
                   help="benchmark 4: read all cubes in one Python process with 1 MiB reads (default), "
                        "or run `dd bs=1M` once per cube (adds ~1 ms of process start per cube)")
    p.add_argument("--regen", action="store_true", help="rebuild the data even if it is up to date")
    return p.parse_args()


def free_gib(path):
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize / 2**30


def main():
    args = parse_args()
    mode = "smoke" if args.smoke or os.environ.get("SMOKE") == "1" else "full"
    cfg = CONFIGS[mode]
    top = os.path.abspath(args.data_dir or os.environ.get("BENCH_DATA") or os.path.join(HERE, ".data"))
    root = os.path.join(top, mode)
    os.makedirs(root, exist_ok=True)
    json_path = args.json or (os.path.join(HERE, "results.json") if mode == "full"
                              else os.path.join(top, "results-smoke.json"))
    needed = 20 if mode == "full" else 1
    if free_gib(root) < needed:
        sys.exit(f"bench: {root} has {free_gib(root):.0f} GiB free; the {mode} benchmark needs about {needed} GiB")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    started = time.time()
    bench = Bench(cfg, root, top, args.reps or cfg["reps"], args.reader)
    if args.regen:
        rmtree(os.path.join(root, "ds"))
        stamp = os.path.join(root, "stamp.json")
        if os.path.exists(stamp):
            os.remove(stamp)
    errors = []
    log(f"bench: {mode} run, data in {root}, {bench.reps} repetition(s)")
    try:
        bench.largest = data.generate(cfg, bench.wkfs, root, bench.variants, cfg["lengths"])
        bench.passthrough = data.build_passthrough_ll(os.path.join(top, "bin"))
        for number in args.only.split(","):
            name = BENCHMARKS[number.strip()]
            log(f"bench: benchmark {number.strip()} ({name[6:]})")
            try:
                getattr(bench, name)()
            except BenchError as e:
                errors.append(f"benchmark {number}: {e}")
                log(f"bench: ERROR in benchmark {number}: {e}")
            finally:
                Mount.stop_all()
    finally:
        Mount.stop_all()
        rmtree(bench.work)
        rmtree(bench.shm)

    duration = time.time() - started
    notes = static_notes(bench, cfg)
    if not bench.squashfuse:
        notes.append("squashfuse is not installed: that comparison is skipped")
    if not bench.passthrough:
        notes.append("passthrough_ll.c is not shipped by libfuse3-dev here: that comparison is skipped")
    result = {
        "mode": mode, "repetitions": bench.reps, "duration_s": round(duration, 1),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
        "machine": machine_info(bench.wkfs), "config": cfg, "notes": notes,
        "skipped": bench.skipped, "errors": errors, "incidents": Mount.incidents, "rows": bench.rows,
    }
    os.makedirs(os.path.dirname(os.path.abspath(json_path)), exist_ok=True)
    with open(json_path, "w") as f:
        json.dump(result, f, indent=2)
        f.write("\n")

    print()
    print(table(bench.rows))
    print()
    for note in notes + [f"skipped: {s}" for s in bench.skipped] + [f"INCIDENT: {s}" for s in Mount.incidents]:
        print(f"- {note}")
    print(f"\n{mode} run: {duration / 60:.1f} min; results in {json_path}")
    if errors:
        print("\nERRORS:\n" + "\n".join(errors))
        sys.exit(1)


if __name__ == "__main__":
    main()
