#!/usr/bin/env bash
# wkfs benchmark driver: installs what the benchmark needs, then runs bench/bench.py.
#
#   bash bench/run.sh            full benchmark (several GiB of data, tens of minutes)
#   bash bench/run.sh --smoke    tiny data, one repetition, < 1 minute (also: SMOKE=1)
#   bash bench/run.sh --help     every option
#
# Needs: the release binary (.build/release/wkfs) and the project virtualenv (.venv with
# wkw 1.1.24, webknossos 4.3.3, numpy); `make bench` builds both first.
# Installs when missing (apt-get, as root or via sudo): squashfuse, squashfs-tools, time.
# Whatever happens, every mount under the data directory is unmounted and every process the
# benchmark started is stopped before this script exits.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/.." && pwd)"
cd "$repo"

PYTHON="${BENCH_PYTHON:-$repo/.venv/bin/python}"
WKFS_BIN="${WKFS_BIN:-$repo/.build/release/wkfs}"
export WKFS_BIN

args=("$@")
if [[ "${SMOKE:-0}" == 1 ]]; then
  args=(--smoke "${args[@]}")
fi

# The data directory, as bench.py computes it (needed by the clean-up trap below).
data_dir="${BENCH_DATA:-$here/.data}"
for ((i = 0; i < ${#args[@]}; i++)); do
  if [[ "${args[$i]}" == --data-dir ]]; then data_dir="${args[$((i + 1))]}"; fi
  if [[ "${args[$i]}" == --data-dir=* ]]; then data_dir="${args[$i]#--data-dir=}"; fi
done
mkdir -p "$data_dir"
data_dir="$(cd "$data_dir" && pwd)"
export BENCH_DATA="$data_dir"
# Scratch space for write inputs (tmpfs, so dropping the page cache does not touch them).
if [[ -d /dev/shm ]]; then export BENCH_SHM="/dev/shm/wkfs-bench-$$"; else export BENCH_SHM="$data_dir/shm-$$"; fi

# ---- dependencies ------------------------------------------------------------------------
sudo_cmd=""
[[ "$(id -u)" == 0 ]] || sudo_cmd="sudo"

missing=()
command -v mksquashfs >/dev/null 2>&1 || missing+=(squashfs-tools)
command -v squashfuse >/dev/null 2>&1 || missing+=(squashfuse)
[[ -x /usr/bin/time ]] || missing+=(time)
command -v fusermount3 >/dev/null 2>&1 || missing+=(fuse3)
command -v pkg-config >/dev/null 2>&1 || missing+=(pkg-config)
dpkg -s libfuse3-dev >/dev/null 2>&1 || missing+=(libfuse3-dev)
if ((${#missing[@]})); then
  echo "bench: installing ${missing[*]}"
  $sudo_cmd apt-get update -qq
  $sudo_cmd env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

if [[ ! -x "$WKFS_BIN" ]]; then
  echo "bench: $WKFS_BIN is missing; run 'make build' (or 'make bench', which builds it)" >&2
  exit 2
fi
if ! "$PYTHON" -c 'import wkw, webknossos, numpy' >/dev/null 2>&1; then
  echo "bench: $PYTHON lacks wkw/webknossos/numpy; run 'make deps' (or 'make bench')" >&2
  exit 2
fi

# ---- clean-up, even on failure or Ctrl-C ---------------------------------------------------
cleanup() {
  local status=$?
  trap - EXIT INT TERM
  # Mounts under the data directory (bench.py unmounts its own; this catches a killed bench.py).
  local mp
  while read -r mp; do
    [[ -n "$mp" ]] || continue
    echo "bench: cleaning up leftover mount $mp" >&2
    timeout 20 fusermount3 -u "$mp" 2>/dev/null || timeout 20 fusermount3 -uz "$mp" 2>/dev/null || true
  done < <(awk -v d="$data_dir/" 'index($2, d) == 1 { print $2 }' /proc/self/mounts)
  # Processes bench.py started and recorded (pid and start time, so a reused pid is left alone).
  local pidfile="$data_dir/pids"
  if [[ -f "$pidfile" ]]; then
    local pid start
    while read -r pid start; do
      [[ -n "$pid" && -r /proc/$pid/stat ]] || continue
      [[ "$(awk '{print $22}' /proc/$pid/stat 2>/dev/null)" == "$start" ]] || continue
      echo "bench: stopping leftover process $pid" >&2
      kill "$pid" 2>/dev/null || true
      sleep 1
      kill -0 "$pid" 2>/dev/null && kill -9 "$pid" 2>/dev/null || true
    done < "$pidfile"
    rm -f "$pidfile"
  fi
  rm -rf --one-file-system "$BENCH_SHM"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

"$PYTHON" "$here/bench.py" "${args[@]}"
