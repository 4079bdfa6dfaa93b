#!/usr/bin/env bash
# Prepare the Monado chroot the headset tests (pytest marker "xr") run the OpenXR client in:
# build it with the shared xr tools, add the client's Python dependencies the chroot lacks, and
# leave it unmounted (the tests mount it themselves). Idempotent; about 2 minutes the first time.
#   sudo XRROOT=/tmp/xrroot .ci/xrroot.sh        (run with the project's venv active: pip is used)
# Needs root, Debian package mirrors and PyPI; without root or ../shared/xr it does nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
XRROOT=${XRROOT:-/tmp/xrroot}
TOOLS=../shared/xr
# The client imports vrstyle's base dependencies; the chroot has numpy, Pillow, PyOpenGL, glfw
# and pyopenxr already (Debian packages and the tools' venv), so only these are added.
CLIENT_WHEELS=(pyzmq tqdm simplejpeg zstandard numba)

if [ "$(id -u)" != 0 ] || [ ! -x "$TOOLS/setup_xrroot.sh" ]; then
  echo "xrroot: skipped (needs root and $TOOLS); the xr tests will skip" >&2
  exit 0
fi
trap 'XRROOT=$XRROOT bash "$TOOLS/umount_chroot.sh"' EXIT
XRROOT=$XRROOT bash "$TOOLS/setup_xrroot.sh" >/dev/null
# pip inside the chroot cannot reach PyPI: download on the host, install offline.
python3 -m pip download -q --only-binary=:all: --python-version 3.13 --platform manylinux2014_x86_64 \
    --platform any -d "$XRROOT/opt/wheels" "${CLIENT_WHEELS[@]}"
chroot "$XRROOT" env PIP_FIND_LINKS= PIP_CONFIG_FILE=/dev/null \
    /opt/xrvenv/bin/pip install -q --no-index --find-links /opt/wheels "${CLIENT_WHEELS[@]}"
echo "xrroot: ready at $XRROOT"
