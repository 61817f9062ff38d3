"""Benchmark data: the voxel arrays, the datasets (LZ4 and raw mags in several block/file lengths),
the raw cubes of every WKW file, their squashfs images, the random boxes, and the passthrough_ll
binary. Everything is built with wkfs's CLI and the reference tools, outside any timing."""

import json
import os
import subprocess

import numpy as np

from harness import BenchError, log, rmtree, run

VOXEL_SIZE = "11.24,11.24,25"
LZ4 = 2  # WKW block type 2: LZ4 (fast), written by wkfs and wkw alike into these mags
SLAB = 16  # z-slices generated at a time


# ---- voxel arrays --------------------------------------------------------------------------


def axes(shape, z0, nz):
    sx, sy, _ = shape
    return (np.arange(sx, dtype=np.float32), np.arange(sy, dtype=np.float32),
            np.arange(z0, z0 + nz, dtype=np.float32))


def color_slab(shape, z0, nz, rng):
    """EM-like uint8: bright cytoplasm, dark thin membranes where a smooth field crosses zero,
    slow shading, and Gaussian noise. Returns C-order (z, y, x)."""
    x, y, z = axes(shape, z0, nz)
    a = np.sin(x[None, :] / 23 + 2 * np.sin(y[:, None] / 41))  # (y, x)
    b = np.sin(y[None, :] / 29 + 2 * np.sin(z[:, None] / 37))  # (z, y)
    c = np.sin(x[None, :] / 31 + 2 * np.sin(z[:, None] / 43))  # (z, x)
    f = a[None, :, :] + b[:, :, None] + c[:, None, :]
    value = 170 - 110 * np.exp(-20 * f * f)
    value += 15 * np.sin(x[None, None, :] / 150 + y[None, :, None] / 190 + z[:, None, None] / 90)
    value += rng.standard_normal(value.shape, dtype=np.float32) * 9
    return np.clip(value, 0, 255).astype(np.uint8)


def segmentation_slab(shape, z0, nz):
    """uint32 ids of large constant regions with wavy borders. Returns C-order (z, y, x)."""
    x, y, z = axes(shape, z0, nz)
    xw = (x[None, None, :] + 20 * np.sin(y[None, :, None] / 57)) // 96
    yw = (y[None, :, None] + 16 * np.sin(z[:, None, None] / 45)) // 80
    zw = (z[:, None, None] + 12 * np.sin(x[None, None, :] / 66)) // 64
    return (1 + (xw + 1) + 16 * (yw + 1) + 256 * (zw + 1)).astype(np.uint32)


def write_arrays(layers, srcdir):
    """Write each layer's voxels to srcdir/<layer>.raw; returns the largest segment ids."""
    os.makedirs(srcdir, exist_ok=True)
    rng = np.random.default_rng(20240611)
    largest = {}
    for layer in layers:
        sx, sy, sz = layer["shape"]
        peak = 0
        with open(os.path.join(srcdir, layer["name"] + ".raw"), "wb") as f:
            for z0 in range(0, sz, SLAB):
                nz = min(SLAB, sz - z0)
                if layer["category"] == "color":
                    slab = color_slab(layer["shape"], z0, nz, rng)
                else:
                    slab = segmentation_slab(layer["shape"], z0, nz)
                    peak = max(peak, int(slab.max()))
                f.write(slab.tobytes())
        largest[layer["name"]] = peak
    return largest


# ---- datasets ------------------------------------------------------------------------------


def set_block_type(magdir, dtype, block_len, file_len, block_type):
    """Replace an empty mag's header.wkw by one with another block type, written by wkw."""
    import wkw

    if any(name != "header.wkw" for name in os.listdir(magdir)):
        raise BenchError(f"{magdir} is not empty")
    os.remove(os.path.join(magdir, "header.wkw"))
    header = wkw.Header(np.dtype(dtype).type, block_len=block_len, file_len=file_len,
                        block_type=block_type)
    wkw.Dataset.create(magdir, header).close()


def make_dataset(wkfs, path, variant, layers, largest, srcdir=None):
    """Create a dataset with every layer in one mag 1 of the variant's lengths and block type;
    with srcdir, write each layer's voxels (wkfs write) and check it."""
    rmtree(path)
    run([wkfs, "create", path, "--voxel-size", VOXEL_SIZE])
    for layer in layers:
        name = layer["name"]
        extra = ["--largest-segment-id", largest[name]] if layer["category"] == "segmentation" else []
        run([wkfs, "add-layer", path, name, "--category", layer["category"], "--dtype", layer["dtype"]] + extra)
        compress = "--compress" if variant["kind"] == "lz4" else "--no-compress"
        run([wkfs, "add-mag", path, name, "1", "--block-len", variant["block_len"],
             "--file-len", variant["file_len"], compress])
        if variant["kind"] == "lz4":
            set_block_type(os.path.join(path, name, "1"), layer["dtype"], variant["block_len"],
                           variant["file_len"], LZ4)
        if srcdir:
            size = ",".join(map(str, layer["shape"]))
            run([wkfs, "write", path, name, "1", "--offset", "0,0,0", "--size", size,
                 "--input", os.path.join(srcdir, name + ".raw")], timeout=3600)
    if srcdir:
        run([wkfs, "check", path], timeout=3600)


def verify_dataset(path, layers, srcdir):
    """The reference reads back exactly the generated voxels: wkw for WKW mags, tensorstore for Zarr3."""
    import wkw

    for layer in layers:
        sx, sy, sz = layer["shape"]
        expected = np.memmap(os.path.join(srcdir, layer["name"] + ".raw"), dtype=layer["dtype"],
                             mode="r", shape=(sz, sy, sx))
        magdir = os.path.join(path, layer["name"], "1")
        if os.path.exists(os.path.join(magdir, "zarr.json")):
            import tensorstore as ts

            array = ts.open({"driver": "zarr3", "kvstore": {"driver": "file", "path": magdir}}).result()
            read = lambda z0, nz: array[0, :sx, :sy, z0:z0 + nz].read().result()
        else:
            ds = wkw.Dataset.open(magdir)
            read = lambda z0, nz: ds.read((0, 0, z0), (sx, sy, nz))[0]
        for z0 in range(0, sz, 64):
            nz = min(64, sz - z0)
            got = read(z0, nz).transpose(2, 1, 0)
            if not np.array_equal(got, expected[z0:z0 + nz]):
                raise BenchError(f"{path}/{layer['name']}: the reference reads other voxels than were written")


def wkw_files(magdir):
    """Relative paths zZ/yY/xX of the data files in a mag directory."""
    found = []
    for zname in sorted(os.listdir(magdir)):
        zdir = os.path.join(magdir, zname)
        if not (zname.startswith("z") and os.path.isdir(zdir)):
            continue
        for yname in sorted(os.listdir(zdir)):
            for xname in sorted(os.listdir(os.path.join(zdir, yname))):
                if xname.endswith(".wkw"):
                    found.append(f"{zname}/{yname}/{xname[:-4]}")
    return found


def extract_cubes(wkfs, dataset, layers, side, cubedir, listpath):
    """One raw cube per WKW file (what the mount shows), via `wkfs read` of the file's box; zero
    runs are turned into holes (fallocate --dig-holes) so the cubes take little disk."""
    rmtree(cubedir)
    names = []
    for layer in layers:
        magdir = os.path.join(dataset, layer["name"], "1")
        for rel in wkw_files(magdir):
            z, y, x = (int(p[1:]) for p in rel.split("/"))
            name = f"{layer['name']}/1/{rel}.raw"
            out = os.path.join(cubedir, name)
            os.makedirs(os.path.dirname(out), exist_ok=True)
            run([wkfs, "read", dataset, layer["name"], "1", "--offset", f"{x * side},{y * side},{z * side}",
                 "--size", f"{side},{side},{side}", "--output", out], timeout=3600)
            run(["fallocate", "--dig-holes", out])
            names.append(name)
    with open(listpath, "w") as f:
        f.write("\n".join(names) + "\n")
    return names


def make_squashfs(cubedir, image):
    if os.path.exists(image):
        os.remove(image)
    run(["mksquashfs", cubedir, image, "-comp", "lz4", "-noappend", "-quiet", "-no-progress"], timeout=3600)


def random_boxes(path, shape, box, count, seed=7):
    """`count` offsets of box³ regions inside `shape`, not aligned to anything."""
    rng = np.random.default_rng(seed)
    limits = [max(1, s - box + 1) for s in shape]
    offsets = [[int(rng.integers(0, lim)) for lim in limits] for _ in range(count)]
    with open(path, "w") as f:
        json.dump({"size": [min(box, s) for s in shape], "offsets": offsets}, f)


def build_passthrough_ll(bindir):
    """Build libfuse's passthrough_ll example from the source libfuse3-dev ships; None if absent."""
    exe = os.path.join(bindir, "passthrough_ll")
    if os.access(exe, os.X_OK):
        return exe
    examples = "/usr/share/doc/libfuse3-dev/examples"
    source = os.path.join(examples, "passthrough_ll.c")
    if not os.path.exists(source):
        log(f"bench: {source} is not shipped; the passthrough_ll comparison is skipped")
        return None
    os.makedirs(bindir, exist_ok=True)
    flags = subprocess.run(["pkg-config", "fuse3", "--cflags", "--libs"], capture_output=True,
                           text=True, check=True).stdout.split()
    run(["cc", "-O2", "-Wall", "-I", examples, source, "-o", exe] + flags)
    return exe


def generate(cfg, wkfs, root, variants, lengths):
    """Build everything under root; reuse it when root/stamp.json matches this configuration."""
    stamp_path = os.path.join(root, "stamp.json")
    stamp = {"layers": cfg["layers"], "lengths": lengths, "boxes": [cfg["box"], cfg["boxes"]],
             "wkfs": run([wkfs, "--version"]).stdout.strip(), "version": 3}
    if os.path.exists(stamp_path):
        with open(stamp_path) as f:
            old = json.load(f)
        if old.get("config") == stamp:
            log(f"bench: reusing the data in {root} (delete it or pass --regen to rebuild)")
            return old["largest"]
    for name in ("src", "ds", "cubes", "sqfs"):
        rmtree(os.path.join(root, name))
    if os.path.exists(stamp_path):
        os.remove(stamp_path)
    layers = cfg["layers"]
    srcdir = os.path.join(root, "src")
    log("bench: generating voxels")
    largest = write_arrays(layers, srcdir)
    for variant in variants:
        log(f"bench: building dataset {variant['name']}")
        path = os.path.join(root, "ds", variant["name"])
        make_dataset(wkfs, path, variant, layers, largest, srcdir)
        verify_dataset(path, layers, srcdir)
    for block_len, file_len in lengths:
        key = f"b{block_len}f{file_len}"
        log(f"bench: extracting raw cubes and building the squashfs image for {key}")
        cubedir = os.path.join(root, "cubes", key)
        extract_cubes(wkfs, os.path.join(root, "ds", f"raw-{key}"), layers, block_len * file_len,
                      cubedir, os.path.join(root, "cubes", key + ".list"))
        os.makedirs(os.path.join(root, "sqfs"), exist_ok=True)
        make_squashfs(cubedir, os.path.join(root, "sqfs", key + ".sqfs"))
    color = next(layer for layer in layers if layer["category"] == "color")
    random_boxes(os.path.join(root, "boxes.json"), color["shape"], cfg["box"], cfg["boxes"])
    with open(stamp_path, "w") as f:
        json.dump({"config": stamp, "largest": largest}, f, indent=1)
    return largest


def disk_usage(path):
    total = 0
    for dirpath, _, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(dirpath, name)).st_blocks * 512
            except OSError:
                pass
    return total


def copy_tree(src, dst):
    rmtree(dst)
    run(["cp", "-a", "--sparse=always", src, dst], timeout=3600)
    return dst

