#!/usr/bin/env bash
# Make Debian's PyGObject (python3-gi) importable in a virtual environment, for the AT-SPI
# helper (accessibility: secure input and elements). One symlink, nothing compiled:
#
#   packaging/linux/system-gi.sh VENV    ->  VENV/lib/pythonX.Y/site-packages/gi
#                                            -> /usr/lib/python3/dist-packages/gi
#
# python3-gi's C module is built for Debian's python3; a venv of the same X.Y (Debian's
# own, as in the .deb, or another CPython X.Y build, as in .ci/setup) loads it. With
# another X.Y nothing is linked: the agent then reports accessibility as unavailable.
# Why not PyGObject from PyPI: see docs/dependencies.md.
set -euo pipefail
VENV=${1:?usage: system-gi.sh VENV}
SYSTEM_GI=${SYSTEM_GI:-/usr/lib/python3/dist-packages/gi}
SYSTEM_PY=${SYSTEM_PY:-/usr/bin/python3}
xy() { "$1" -c 'import sys; print("%d.%d" % sys.version_info[:2])'; }
site=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
if [ "$(xy "$VENV/bin/python")" != "$(xy "$SYSTEM_PY")" ]; then
  echo "system-gi: $VENV is Python $(xy "$VENV/bin/python"), python3-gi is for" \
    "$(xy "$SYSTEM_PY"): not linked (accessibility unavailable in this venv)" >&2
  exit 0
fi
ln -sfn "$SYSTEM_GI" "$site/gi"
