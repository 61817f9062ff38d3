#!/bin/bash
# demo.sh - a tour of wkfs: build the dataset of the webknossos "Dataset Usage" example (smaller
# arrays), mount it, look at it with ordinary tools, edit it, unmount.
#
#   make demo                  (installs what is missing, builds, then runs this)
#   mount-scripts/demo.sh      (after `swift build -c release` and `make deps`)
#
# Environment: WKFS_BIN (default .build/release/wkfs), PYTHON (default .venv/bin/python),
# KEEP=1 keeps the temporary data (it is removed otherwise). Runs non-interactively; whatever
# happens, the trap unmounts and removes the temporary data.

set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/.." && pwd)"
wkfs_bin="${WKFS_BIN:-$repo/.build/release/wkfs}"
python="${PYTHON:-$repo/.venv/bin/python}"

die() {
    echo "demo: $*" >&2
    exit 1
}
[ -x "$wkfs_bin" ] || die "no wkfs binary at $wkfs_bin (run: swift build -c release)"
[ -x "$python" ] || die "no Python at $python (run: make deps)"
"$python" -c 'import numpy' 2>/dev/null || die "$python has no numpy (run: make deps)"
command -v fusermount3 >/dev/null || die "fusermount3 is missing (apt-get install fuse3)"
[ -e /dev/fuse ] || die "/dev/fuse is missing: this machine cannot mount FUSE file systems"

work="$(mktemp -d "${TMPDIR:-/tmp}/wkfs-demo.XXXXXX")"
mnt="$work/mnt"
src="$work/my_new_dataset"
copy="$work/copy_of_dataset"
mount_pid=""

is_mounted() {
    # /proc/mounts escapes spaces as \040; the demo's paths have none.
    awk -v mp="$1" '$2 == mp { found = 1 } END { exit !found }' /proc/mounts
}

cleanup() {
    local status=$?
    set +e
    if is_mounted "$mnt"; then
        echo "== cleanup: unmounting $mnt"
        timeout 20 "$wkfs_bin" unmount "$mnt" 2>/dev/null ||
            timeout 20 fusermount3 -u "$mnt" 2>/dev/null ||
            timeout 20 fusermount3 -u -z "$mnt"
    fi
    if [ -n "$mount_pid" ] && kill -0 "$mount_pid" 2>/dev/null; then
        for _ in $(seq 50); do
            kill -0 "$mount_pid" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$mount_pid" 2>/dev/null; then
            kill "$mount_pid" 2>/dev/null
            sleep 1
            kill -9 "$mount_pid" 2>/dev/null
        fi
        wait "$mount_pid" 2>/dev/null
    fi
    if is_mounted "$mnt"; then
        timeout 20 fusermount3 -u -z "$mnt"
    fi
    if [ "$status" -ne 0 ] && [ -s "$work/mount.log" ]; then
        echo "== wkfs mount log (last lines)" >&2
        tail -n 20 "$work/mount.log" >&2
    fi
    if [ "${KEEP:-0}" = 1 ]; then
        echo "== kept the demo data in $work"
    elif ! is_mounted "$mnt"; then
        rm -rf "$work"
    else
        echo "demo: $mnt is still mounted; not removing $work" >&2
    fi
    if [ "$status" -ne 0 ]; then
        echo "demo: FAILED (exit $status)" >&2
    fi
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

step() {
    printf '\n== %s\n' "$*"
}
quote() {
    # The arguments as a shell would need them typed: plain words bare, others in single quotes.
    local out="" arg
    for arg in "$@"; do
        if [[ "$arg" =~ ^[A-Za-z0-9_./:=,+@%-]+$ ]]; then
            out+=" $arg"
        else
            out+=" '${arg//\'/\'\\\'\'}'"
        fi
    done
    printf '%s' "${out# }"
}
show() {
    # Print a command, then run it.
    printf '$ %s\n' "$(quote "$@")"
    "$@"
}
wkfs() {
    "$wkfs_bin" "$@"
}
random_voxels() {
    # random_voxels SEED X Y Z: uint8 voxels of 3 channels, C order (z, y, x, c), on stdout.
    "$python" -c '
import sys, numpy as np
seed, x, y, z = map(int, sys.argv[1:])
sys.stdout.buffer.write((np.random.default_rng(seed).random((z, y, x, 3)) * 255).astype(np.uint8).tobytes())
' "$@"
}

step "wkfs $("$wkfs_bin" --version 2>/dev/null || echo '(version unknown)'); demo data in $work"

step "1. Create the example dataset (color uint8 x 3, mags 1 and 2), like webknossos' Dataset.create"
show wkfs create "$src" --voxel-size 11.24,11.24,25
show wkfs add-layer "$src" color --category color --dtype uint8 --channels 3
show wkfs add-mag "$src" color 1 --block-len 16 --file-len 4
show wkfs add-mag "$src" color 2 --block-len 16 --file-len 4

step "2. Write random voxels: mag 1 at (10, 20, 30), mag 2 at (5, 10, 15) (numpy, C order z, y, x, c)"
random_voxels 1 64 64 16 >"$work/mag1.raw"
random_voxels 2 32 32 8 >"$work/mag2.raw"
show wkfs write "$src" color 1 --offset 10,20,30 --size 64,64,16 --input "$work/mag1.raw"
show wkfs write "$src" color 2 --offset 5,10,15 --size 32,32,8 --input "$work/mag2.raw"

step "3. Copy it with block length 8, file length 8, LZ4HC; link a segmentation layer into the copy"
show wkfs copy "$src" "$copy" --block-len 8 --file-len 8 --compress
show wkfs add-layer "$src" segmentation --category segmentation --dtype uint8 --largest-segment-id 0
show wkfs add-mag "$src" segmentation 1 --block-len 16 --file-len 4 --compress
"$python" -c '
import sys, numpy as np
z, y, x = np.mgrid[0:16, 0:64, 0:64]
ball = ((x - 32) ** 2 + (y - 32) ** 2 + ((z - 8) * 4) ** 2 < 24 ** 2).astype(np.uint8)
sys.stdout.buffer.write(ball.tobytes())
' >"$work/seg.raw"
show wkfs write "$src" segmentation 1 --offset 10,20,30 --size 64,64,16 --input "$work/seg.raw"
show wkfs add-symlink-layer "$copy" "$src/segmentation"
show wkfs info "$copy"

step "4. Mount the copy (in the background with -f; without -f, wkfs mount daemonizes)"
mkdir "$mnt"
printf '$ wkfs mount %s %s -f &\n' "$copy" "$mnt"
"$wkfs_bin" mount "$copy" "$mnt" -f >"$work/mount.log" 2>&1 &
mount_pid=$!
for _ in $(seq 100); do
    is_mounted "$mnt" && break
    kill -0 "$mount_pid" 2>/dev/null || die "wkfs mount exited before mounting"
    sleep 0.1
done
is_mounted "$mnt" || die "no mount at $mnt after 10 s"
grep " $mnt " /proc/mounts

step "5. Look around with ordinary tools"
show ls -l "$mnt"
printf '$ ls -lR %s | head -n 30\n' "$mnt"
ls -lR "$mnt" >"$work/ls-lR.txt"
head -n 30 "$work/ls-lR.txt"
show cat "$mnt/color/1/mag.json"
echo
cube="$mnt/color/1/z0/y0/x0.raw"
echo "One cube = one WKW file decoded: 64^3 voxels x 3 channels = $((64 * 64 * 64 * 3)) bytes:"
show stat -c '%n: %s bytes' "$cube"
echo "The first 48 bytes (voxels 0..15 of row 0; never written, so zeros):"
show od -An -tu1 -N 48 "$cube"
offset=$((((30 * 64 + 20) * 64 + 10) * 3))
echo "48 bytes at voxel (x=10, y=20, z=30), byte offset $offset: the first random voxels, r g b interleaved:"
show od -An -tu1 -j "$offset" -N 48 "$cube"
echo "The same voxel read by the CLI (wkfs read):"
printf '$ wkfs read %s color 1 --offset 10,20,30 --size 1,1,1 | od -An -tu1\n' "$copy"
"$wkfs_bin" read "$copy" color 1 --offset 10,20,30 --size 1,1,1 | od -An -tu1
echo "numpy: np.fromfile(cube, np.uint8).reshape(64, 64, 64, 3) is (z, y, x, c):"
show "$python" -c 'import sys, numpy as np; a = np.fromfile(sys.argv[1], np.uint8).reshape(64, 64, 64, 3); print("shape", a.shape, "| voxel (x=10, y=20, z=30) =", a[30, 20, 10])' "$cube"

step "6. Edit the properties in place with sed -i: voxel size z 25.0 -> 30.0"
show grep -A 4 '"factor"' "$mnt/datasource-properties.json"
show sed -i 's/^\( *\)25\.0$/\130.0/' "$mnt/datasource-properties.json"
echo "In the mount:"
show grep -A 4 '"factor"' "$mnt/datasource-properties.json"
echo "On disk (the real file, replaced atomically):"
show grep -A 4 '"factor"' "$copy/datasource-properties.json"
show wkfs info "$copy"
echo "An invalid edit is refused and the file stays as it was:"
if sed -i 's/"category": "color"/"category": "colour"/' "$mnt/datasource-properties.json" 2>"$work/sed.err"; then
    die "an invalid edit was accepted"
fi
printf '$ sed -i '\''s/"category": "color"/"category": "colour"/'\'' ...  -> %s\n' "$(head -n 1 "$work/sed.err")"
show tail -n 3 "$mnt/.wkfs/errors"
show grep -c '"category": "color"' "$copy/datasource-properties.json"

step "7. The symlinked segmentation layer"
show ls -l "$mnt"
show readlink "$mnt/segmentation"
show ls -l "$copy/segmentation"
show ls "$mnt/segmentation/1/z0/y0"
seg="$mnt/segmentation/1/z0/y0/x0.raw"
show "$python" -c 'import sys, numpy as np; s = np.fromfile(sys.argv[1], np.uint8).reshape(64, 64, 64); print("voxels labelled 1:", int((s == 1).sum()))' "$seg"
echo "What the mount did so far (.wkfs/stats):"
show grep -E '^(cube_bytes_read|cache_group_(hits|misses)|decoded_bytes|requests_(open|read)):' "$mnt/.wkfs/stats"

step "8. Unmount"
show wkfs unmount "$mnt"
for _ in $(seq 100); do
    kill -0 "$mount_pid" 2>/dev/null || break
    sleep 0.1
done
if wait "$mount_pid"; then
    echo "wkfs mount exited with status 0"
else
    die "wkfs mount exited with status $?"
fi
mount_pid=""
is_mounted "$mnt" && die "$mnt is still mounted"
echo "$mnt is no longer mounted; the dataset on disk:"
show wkfs check "$copy"

step "Done."
