#!/usr/bin/env bash
# Build the Debian package: deskcorder_<version>_<arch>.deb, with dpkg-deb.
#
#   packaging/linux/build-deb.sh [OUTDIR]        (default: dist/)
#
# The package holds its own virtual environment in /opt/deskcorder, made with
# Debian's python3 from the wheel built here plus its dependencies from PyPI,
# /usr/bin/deskcorder, the systemd user unit (installed, NOT enabled) and an
# example machine policy /etc/deskcorder/policy.toml (a conffile). Debian's PyGObject
# (python3-gi, a Depends) is linked into the venv for accessibility (system-gi.sh).
# Needs: dpkg-deb, python3 with venv (python3-venv), network access to PyPI.
# DEB_CONSTRAINTS=FILE pins the dependency versions (pip constraints) for a
# reproducible build; without it the newest allowed versions are taken.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
OUT=$(mkdir -p "${1:-$REPO/dist}" && cd "${1:-$REPO/dist}" && pwd)
PY=${DEB_PYTHON:-/usr/bin/python3}   # the venv links to it: must be Debian's interpreter
PREFIX=/opt/deskcorder

VERSION=$(sed -n 's/^__version__ = "\(.*\)"$/\1/p' "$REPO/src/deskcorder/__init__.py")
ARCH=$(dpkg --print-architecture)
PYVER=$("$PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
PYNEXT=$("$PY" -c 'import sys; print("%d.%d" % (sys.version_info[0], sys.version_info[1] + 1))')
[ -n "$VERSION" ] || { echo "build-deb: cannot read __version__" >&2; exit 1; }

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
STAGE=$WORK/root
VENV=$STAGE$PREFIX
quiet() { grep -v "is ignored: it is neither a file nor a directory" || true; }

echo "build-deb: deskcorder $VERSION for $ARCH (python $PYVER)"
"$PY" -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --disable-pip-version-check --no-compile --upgrade pip 2>&1 | quiet
"$VENV/bin/python" -m pip wheel -q --disable-pip-version-check --no-deps -w "$WORK/wheels" "$REPO" 2>&1 | quiet
WHEEL=$(ls "$WORK"/wheels/deskcorder-*.whl)
PINS=()
[ -n "${DEB_CONSTRAINTS:-}" ] && PINS=(-c "$(cd "$(dirname "$DEB_CONSTRAINTS")" && pwd)/$(basename "$DEB_CONSTRAINTS")")
"$VENV/bin/python" -m pip install -q --disable-pip-version-check --no-compile "${PINS[@]}" \
  "${WHEEL}[screenshots]" 2>&1 | quiet
"$VENV/bin/python" -m pip freeze | { grep -v "^deskcorder" || true; } > "$WORK/versions.txt"
bash "$HERE/system-gi.sh" "$VENV"  # PyGObject from python3-gi (a Depends), for AT-SPI
"$VENV/bin/python" -m pip uninstall -q -y pip setuptools wheel >/dev/null 2>&1 || true

# The venv was made in the staging folder: point its scripts at the final prefix.
grep -rlF "$STAGE" "$VENV" | while read -r f; do sed -i "s|$STAGE||g" "$f"; done
find "$VENV" -name __pycache__ -prune -exec rm -rf {} +
rm -f "$VENV"/bin/activate* "$VENV"/bin/Activate.ps1 "$VENV"/bin/pip*
find "$VENV" -name direct_url.json -delete

install -d "$STAGE/usr/bin" "$STAGE/etc/deskcorder" "$STAGE/usr/lib/systemd/user" \
  "$STAGE/usr/share/doc/deskcorder" "$STAGE/usr/share/deskcorder"
ln -s "$PREFIX/bin/deskcorder" "$STAGE/usr/bin/deskcorder"
install -m 0644 "$REPO/configs/default.toml" "$STAGE/etc/deskcorder/policy.toml"
# the vendor unit: installed, not enabled (see postinst); ceilings for the default [limits]
sed -e 's|@EXEC@|/usr/bin/deskcorder|' -e 's|@CPU_QUOTA@|25|' -e 's|@MEMORY_HIGH@|300|' \
  -e 's|@MEMORY_MAX@|400|' "$HERE/deskcorder.service" > "$STAGE/usr/lib/systemd/user/deskcorder.service"
install -m 0644 "$REPO/LICENSE" "$STAGE/usr/share/doc/deskcorder/copyright"
install -m 0644 "$REPO/docs/deployment.md" "$STAGE/usr/share/doc/deskcorder/deployment.md"
install -m 0644 "$WORK/versions.txt" "$STAGE/usr/share/doc/deskcorder/python-packages.txt"
install -m 0644 "$REPO"/configs/*.toml "$STAGE/usr/share/deskcorder/"

install -d "$STAGE/DEBIAN"
SIZE=$(du -sk --exclude=DEBIAN "$STAGE" | cut -f1)
sed -e "s|@VERSION@|$VERSION|" -e "s|@ARCH@|$ARCH|" -e "s|@SIZE@|$SIZE|" \
  -e "s|@PYVER@|$PYVER|" -e "s|@PYNEXT@|$PYNEXT|" "$HERE/debian/control" > "$STAGE/DEBIAN/control"
install -m 0644 "$HERE/debian/conffiles" "$STAGE/DEBIAN/conffiles"
for script in postinst prerm postrm; do
  install -m 0755 "$HERE/debian/$script" "$STAGE/DEBIAN/$script"
done
find "$STAGE" -type d -exec chmod 0755 {} +

DEB="$OUT/deskcorder_${VERSION}_${ARCH}.deb"
dpkg-deb --root-owner-group -Zxz --build "$STAGE" "$DEB" >/dev/null
echo "build-deb: wrote $DEB ($(du -h "$DEB" | cut -f1))"
