"""One benchmark operation per process, run by bench.py under /usr/bin/time.

Each command prints one JSON line on stdout: {"seconds": in-process time (everything after the
imports), ...}. The whole-process time and peak memory are measured by the caller.

    refops.py read        MAGDIR X,Y,Z SX,SY,SZ
    refops.py write       MAGDIR X,Y,Z SX,SY,SZ DTYPE INPUT
    refops.py write-cubes DATASET CUBEDIR CUBELIST SIDE
    refops.py copy        SRC DST BLOCK_LEN FILE_LEN
    refops.py boxes-wkw   MAGDIR BOXES.json
    refops.py boxes-pread MAGROOT SIDE DTYPE BOXES.json
    refops.py boxes-mmap  MAGROOT SIDE DTYPE BOXES.json
    refops.py boxes-planes MAGROOT SIDE DTYPE BOXES.json
    refops.py readall     ROOT LIST [LIMIT]                (LIMIT: bytes per file)
    refops.py read-ts     MAGDIR X,Y,Z SX,SY,SZ            (tensorstore, Zarr3)
    refops.py read-wk     DATASET LAYER X,Y,Z SX,SY,SZ     (webknossos, mag 1)
    refops.py copy-zarr3  SRC DST CHUNK SHARD

Arrays on disk are C-order (z, y, x) with one channel, as wkfs reads and writes them.
"""

import json
import os
import sys
import time
import warnings

warnings.filterwarnings("ignore")

import numpy as np  # noqa: E402

T0 = None  # set after the imports of each command


def vec(text):
    return tuple(int(v) for v in text.split(","))


def done(**fields):
    fields["seconds"] = time.perf_counter() - T0
    print(json.dumps(fields), flush=True)


def start_clock():
    global T0
    T0 = time.perf_counter()


def cmd_read(magdir, offset, size):
    import wkw

    start_clock()
    with wkw.Dataset.open(magdir) as ds:
        data = ds.read(vec(offset), vec(size))
    done(bytes=int(data.nbytes))


def to_wkw_array(flat, size):
    """C-order (z, y, x) bytes -> the reference's (c, x, y, z) array (Fortran-contiguous view)."""
    sx, sy, sz = size
    return flat.reshape(sz, sy, sx, 1).transpose(3, 2, 1, 0)


def cmd_write(magdir, offset, size, dtype, path):
    import wkw

    start_clock()
    size = vec(size)
    data = to_wkw_array(np.fromfile(path, dtype=dtype), size)
    with wkw.Dataset.open(magdir) as ds:
        ds.write(vec(offset), data)
    done(bytes=int(data.nbytes))


def cmd_write_cubes(dataset, cubedir, cubelist, side):
    """Write every raw cube LAYER/MAG/zZ/yY/xX.raw of the list into DATASET/LAYER/MAG at its
    file's offset (whole files, as wkw requires for compressed mags)."""
    import wkw

    start_clock()
    side = int(side)
    total = 0
    with open(cubelist) as f:
        names = [line.strip() for line in f if line.strip()]
    mags = {}
    try:
        for name in names:
            layer, mag, zs, ys, xs = name.removesuffix(".raw").split("/")
            z, y, x = int(zs[1:]), int(ys[1:]), int(xs[1:])
            if (layer, mag) not in mags:
                mags[(layer, mag)] = wkw.Dataset.open(os.path.join(dataset, layer, mag))
            ds = mags[(layer, mag)]
            flat = np.fromfile(os.path.join(cubedir, name), dtype=ds.header.voxel_type)
            data = to_wkw_array(flat, (side,) * 3)
            ds.write((x * side, y * side, z * side), data)
            total += data.nbytes
    finally:
        for ds in mags.values():
            ds.close()
    done(bytes=total, cubes=len(names))


def cmd_copy(src, dst, block_len, file_len):
    import webknossos as wk

    start_clock()
    block_len, file_len = int(block_len), int(file_len)
    wk.Dataset.open(src).copy_dataset(
        dst,
        chunk_shape=block_len,
        shard_shape=block_len * file_len,
        data_format="wkw",
        compress=True,
    )
    done()


def cmd_read_ts(magdir, offset, size):
    """tensorstore (C++), the fastest Zarr reader: one region of a Zarr3 array (c, x, y, z)."""
    import tensorstore as ts

    start_clock()
    array = ts.open({"driver": "zarr3", "kvstore": {"driver": "file", "path": magdir}}).result()
    (x, y, z), (sx, sy, sz) = vec(offset), vec(size)
    data = array[:, x:x + sx, y:y + sy, z:z + sz].read().result()
    done(bytes=int(data.nbytes))


def cmd_read_wk(dataset, layer, offset, size):
    """webknossos: one region of a layer's mag 1 (any format)."""
    import webknossos as wk

    start_clock()
    mag = wk.Dataset.open(dataset).get_layer(layer).get_mag("1")
    data = mag.read(absolute_offset=vec(offset), size=vec(size))
    done(bytes=int(data.nbytes))


def cmd_copy_zarr3(src, dst, chunk, shard):
    """webknossos's copy_dataset into Zarr3 (zstd, as webknossos writes it by default)."""
    import webknossos as wk

    start_clock()
    wk.Dataset.open(src).copy_dataset(dst, chunk_shape=int(chunk), shard_shape=int(shard), data_format="zarr3", compress=True)
    done()


def cmd_planes_wkw(magdir, shape, planes_path):
    """wkw: whole z planes of the volume (x, y extent of `shape`), one read each."""
    import wkw

    start_clock()
    sx, sy, _ = vec(shape)
    with open(planes_path) as f:
        planes = json.load(f)
    checksum = 0
    with wkw.Dataset.open(magdir) as ds:
        for z in planes:
            checksum += int(ds.read((0, 0, z), (sx, sy, 1)).sum(dtype=np.uint64))
    done(planes=len(planes), checksum=checksum)


def cmd_planes_volume(path, shape, dtype, planes_path):
    """numpy memmap of a mount's volume.raw: whole z planes."""
    start_clock()
    sx, sy, sz = vec(shape)
    with open(planes_path) as f:
        planes = json.load(f)
    volume = np.memmap(path, dtype=dtype, mode="r", shape=(sz, sy, sx))
    checksum = sum(int(volume[z].sum(dtype=np.uint64)) for z in planes)
    done(planes=len(planes), checksum=checksum)


def cmd_boxes_volume(path, shape, dtype, boxes_path):
    """numpy memmap of a mount's volume.raw: the boxes sliced out of it."""
    start_clock()
    sx, sy, sz = vec(shape)
    boxes = load_boxes(boxes_path)
    bx, by, bz = boxes["size"]
    volume = np.memmap(path, dtype=dtype, mode="r", shape=(sz, sy, sx))
    checksum = 0
    for x, y, z in boxes["offsets"]:
        checksum += int(volume[z:z + bz, y:y + by, x:x + bx].sum(dtype=np.uint64))
    done(boxes=len(boxes["offsets"]), checksum=checksum)


def cmd_export_tiff(dataset, layer, target):
    """webknossos's export-as-tiff of a layer's bounding box (one TIFF per z plane)."""
    import subprocess

    start_clock()
    webknossos = os.path.join(os.path.dirname(sys.executable), "webknossos")
    subprocess.run([webknossos, "export-as-tiff", dataset, target, "--layer-name", layer], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    done(files=len(os.listdir(target)))


def load_boxes(path):
    with open(path) as f:
        return json.load(f)  # {"size": [sx, sy, sz], "offsets": [[x, y, z], ...]}


def cmd_boxes_wkw(magdir, boxes_path):
    import wkw

    start_clock()
    boxes = load_boxes(boxes_path)
    size = tuple(boxes["size"])
    checksum = 0
    with wkw.Dataset.open(magdir) as ds:
        for offset in boxes["offsets"]:
            checksum += int(ds.read(tuple(offset), size).sum(dtype=np.uint64))
    done(boxes=len(boxes["offsets"]), checksum=checksum)


def read_box_rows(magroot, side, itemsize, offset, size, fds, out):
    """Fill `out` (C-order z, y, x bytes) with one pread per row and per cube the row touches."""
    x0, y0, z0 = offset
    sx, sy, sz = size
    view = memoryview(out)
    pos = 0
    # The x-pieces of a row: (cube x index, offset inside the cube, voxel count).
    pieces = []
    x = x0
    while x < x0 + sx:
        cx, lx = divmod(x, side)
        n = min(x0 + sx, (cx + 1) * side) - x
        pieces.append((cx, lx, n * itemsize))
        x += n
    for z in range(z0, z0 + sz):
        cz, lz = divmod(z, side)
        for y in range(y0, y0 + sy):
            cy, ly = divmod(y, side)
            row_base = (lz * side + ly) * side
            for cx, lx, nbytes in pieces:
                key = (cz, cy, cx)
                fd = fds.get(key)
                if fd is None:
                    fd = os.open(os.path.join(magroot, f"z{cz}/y{cy}/x{cx}.raw"), os.O_RDONLY)
                    fds[key] = fd
                got = os.preadv(fd, [view[pos : pos + nbytes]], (row_base + lx) * itemsize)
                if got != nbytes:
                    raise IOError(f"short read in cube {key}: {got} of {nbytes} bytes")
                pos += nbytes


def cmd_boxes_pread(magroot, side, dtype, boxes_path):
    start_clock()
    side = int(side)
    dtype = np.dtype(dtype)
    boxes = load_boxes(boxes_path)
    size = tuple(boxes["size"])
    out = bytearray(size[0] * size[1] * size[2] * dtype.itemsize)
    fds = {}
    checksum = 0
    try:
        for offset in boxes["offsets"]:
            read_box_rows(magroot, side, dtype.itemsize, offset, size, fds, out)
            checksum += int(np.frombuffer(out, dtype=dtype).sum(dtype=np.uint64))
    finally:
        for fd in fds.values():
            os.close(fd)
    done(boxes=len(boxes["offsets"]), checksum=checksum)


def cmd_boxes_planes(magroot, side, dtype, boxes_path):
    """Like boxes-pread, but one pread per z-plane and cube: the box's rows in that cube read as
    one span of whole cube rows, then sliced (64 calls per box instead of 4,096)."""
    start_clock()
    side = int(side)
    dtype = np.dtype(dtype)
    item = dtype.itemsize
    boxes = load_boxes(boxes_path)
    sx, sy, sz = boxes["size"]
    out = np.empty((sz, sy, sx * item), dtype=np.uint8)
    span = bytearray(min(sy, side) * side * item)
    fds = {}
    checksum = 0
    try:
        for x0, y0, z0 in boxes["offsets"]:
            for cz, lz, oz, nz in segments(z0, sz, side):
                for cy, ly, oy, ny in segments(y0, sy, side):
                    for cx, lx, ox, nx in segments(x0, sx, side):
                        key = (cz, cy, cx)
                        fd = fds.get(key)
                        if fd is None:
                            fd = os.open(os.path.join(magroot, f"z{cz}/y{cy}/x{cx}.raw"), os.O_RDONLY)
                            fds[key] = fd
                        view = memoryview(span)[: ny * side * item]
                        rows = np.frombuffer(view, dtype=np.uint8).reshape(ny, side * item)
                        for k in range(nz):
                            got = os.preadv(fd, [view], ((lz + k) * side + ly) * side * item)
                            if got != len(view):
                                raise IOError(f"short read in cube {key}: {got} of {len(view)} bytes")
                            out[oz + k, oy : oy + ny, ox * item : (ox + nx) * item] = rows[:, lx * item : (lx + nx) * item]
            checksum += int(out.view(dtype).sum(dtype=np.uint64))
    finally:
        for fd in fds.values():
            os.close(fd)
    done(boxes=len(boxes["offsets"]), checksum=checksum)


def segments(start, length, side):
    """Split [start, start+length) at cube borders: (cube index, offset in cube, offset in box, n)."""
    out, pos = [], start
    while pos < start + length:
        cube, local = divmod(pos, side)
        n = min(start + length, (cube + 1) * side) - pos
        out.append((cube, local, pos - start, n))
        pos += n
    return out


def cmd_boxes_mmap(magroot, side, dtype, boxes_path):
    """Like boxes-pread, but each cube file is a numpy memmap and a box is sliced out of it."""
    start_clock()
    side = int(side)
    boxes = load_boxes(boxes_path)
    sx, sy, sz = boxes["size"]
    out = np.empty((sz, sy, sx), dtype=dtype)
    maps = {}
    checksum = 0
    for x0, y0, z0 in boxes["offsets"]:
        for cz, lz, oz, nz in segments(z0, sz, side):
            for cy, ly, oy, ny in segments(y0, sy, side):
                for cx, lx, ox, nx in segments(x0, sx, side):
                    key = (cz, cy, cx)
                    if key not in maps:
                        path = os.path.join(magroot, f"z{cz}/y{cy}/x{cx}.raw")
                        maps[key] = np.memmap(path, dtype=dtype, mode="r", shape=(side, side, side))
                    out[oz:oz + nz, oy:oy + ny, ox:ox + nx] = maps[key][lz:lz + nz, ly:ly + ny, lx:lx + nx]
        checksum += int(out.sum(dtype=np.uint64))
    del maps
    done(boxes=len(boxes["offsets"]), checksum=checksum)


def cmd_readall(root, listfile, limit=None):
    """Read every listed file to the end (or its first LIMIT bytes) with 1 MiB reads (what
    `dd bs=1M` does), in one process."""
    start_clock()
    buf = bytearray(1 << 20)
    total = 0
    limit = int(limit) if limit is not None else None
    with open(listfile) as f:
        names = [line.strip() for line in f if line.strip()]
    for name in names:
        fd = os.open(os.path.join(root, name), os.O_RDONLY)
        read = 0
        try:
            while (limit is None or read < limit) and (n := os.readv(fd, [buf])):
                read += n
                total += n
        finally:
            os.close(fd)
    done(bytes=total, files=len(names))


COMMANDS = {
    "read": cmd_read,
    "write": cmd_write,
    "write-cubes": cmd_write_cubes,
    "copy": cmd_copy,
    "read-ts": cmd_read_ts,
    "read-wk": cmd_read_wk,
    "copy-zarr3": cmd_copy_zarr3,
    "planes-wkw": cmd_planes_wkw,
    "planes-volume": cmd_planes_volume,
    "boxes-volume": cmd_boxes_volume,
    "export-tiff": cmd_export_tiff,
    "boxes-wkw": cmd_boxes_wkw,
    "boxes-pread": cmd_boxes_pread,
    "boxes-mmap": cmd_boxes_mmap,
    "boxes-planes": cmd_boxes_planes,
    "readall": cmd_readall,
}

if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1] not in COMMANDS:
        sys.exit(__doc__)
    COMMANDS[sys.argv[1]](*sys.argv[2:])
