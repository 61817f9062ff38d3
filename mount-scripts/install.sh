#!/bin/bash
# install.sh - install wkfs and its mount helpers for administrators.
#
#   sudo mount-scripts/install.sh              install
#   sudo mount-scripts/install.sh --uninstall  remove what install put there
#   DESTDIR=/tmp/stage mount-scripts/install.sh   stage into a directory (packaging, no root)
#
# Installs
#   /usr/local/bin/wkfs                  the binary (WKFS_BIN, default .build/release/wkfs)
#   /sbin/mount.fuse.wkfs                mount(8) helper for type fuse.wkfs (fstab, mount -t)
#   /sbin/mount.wkfs -> mount.fuse.wkfs  the same for type wkfs
#   /etc/systemd/system/wkfs@.service    systemd unit template (when systemd is there)
#
# Afterwards:
#   mount -t fuse.wkfs /data/ds /mnt/ds -o ro,allow_other
#   /etc/fstab:  /data/ds  /mnt/ds  fuse.wkfs  defaults,allow_other,cache_size=512M  0 0
#   systemctl enable --now "wkfs@$(systemd-escape --path /mnt/ds).service"  (see wkfs@.service)

set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/.." && pwd)"
destdir="${DESTDIR:-}"
bindir="${BINDIR:-/usr/local/bin}"
sbindir="${SBINDIR:-/sbin}"
unitdir="${UNITDIR:-/etc/systemd/system}"
binary="${WKFS_BIN:-$repo/.build/release/wkfs}"

usage() {
    sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'
}

action=install
for arg in "$@"; do
    case "$arg" in
        --uninstall) action=uninstall ;;
        -h | --help) usage; exit 0 ;;
        *) echo "install.sh: unknown argument '$arg'" >&2; usage >&2; exit 2 ;;
    esac
done

if [ -z "$destdir" ] && [ "$(id -u)" != 0 ]; then
    echo "install.sh: run as root (sudo $0), or set DESTDIR to stage the files" >&2
    exit 1
fi

with_systemd=0
if [ -n "$destdir" ] || [ -d /run/systemd/system ] || [ -d /etc/systemd/system ]; then
    with_systemd=1
fi

if [ "$action" = uninstall ]; then
    for f in "$bindir/wkfs" "$sbindir/mount.fuse.wkfs" "$sbindir/mount.wkfs" "$unitdir/wkfs@.service"; do
        if [ -e "$destdir$f" ] || [ -L "$destdir$f" ]; then
            rm -f "$destdir$f"
            echo "removed $destdir$f"
        fi
    done
    if [ -z "$destdir" ] && [ "$with_systemd" = 1 ] && command -v systemctl >/dev/null 2>&1; then
        systemctl daemon-reload 2>/dev/null || true
    fi
    exit 0
fi

if [ ! -x "$binary" ]; then
    echo "install.sh: no wkfs binary at $binary: build it first (swift build -c release, or make build)," >&2
    echo "            or point WKFS_BIN at it" >&2
    exit 1
fi

install -d "$destdir$bindir" "$destdir$sbindir"
install -m 0755 "$binary" "$destdir$bindir/wkfs"
echo "installed $destdir$bindir/wkfs"
install -m 0755 "$here/mount.wkfs" "$destdir$sbindir/mount.fuse.wkfs"
echo "installed $destdir$sbindir/mount.fuse.wkfs"
ln -sfn mount.fuse.wkfs "$destdir$sbindir/mount.wkfs"
echo "installed $destdir$sbindir/mount.wkfs -> mount.fuse.wkfs"

if [ "$with_systemd" = 1 ]; then
    install -d "$destdir$unitdir"
    # The unit names the binary by absolute path: point it at where it was installed.
    sed "s|/usr/local/bin/wkfs|$bindir/wkfs|g" "$here/wkfs@.service" >"$destdir$unitdir/wkfs@.service"
    chmod 0644 "$destdir$unitdir/wkfs@.service"
    echo "installed $destdir$unitdir/wkfs@.service"
    if [ -z "$destdir" ] && command -v systemctl >/dev/null 2>&1; then
        systemctl daemon-reload 2>/dev/null || true
    fi
fi

if ! command -v fusermount3 >/dev/null 2>&1; then
    echo "note: fusermount3 is missing: apt-get install fuse3" >&2
fi
if ! grep -qs '^[[:space:]]*user_allow_other' /etc/fuse.conf; then
    echo "note: for allow_other in mounts made by users other than root, add 'user_allow_other'" >&2
    echo "      to /etc/fuse.conf" >&2
fi
