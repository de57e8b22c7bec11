#!/usr/bin/env bash
# Build the macOS installer package deskcorder-<version>.pkg with pkgbuild.
# NOT built on the Linux development machines: .github/workflows/packages.yml
# runs it on a macOS runner.
#
#   packaging/macos/build-pkg.sh [OUTDIR]          (default: dist/)
#
# The payload is a wheelhouse (deskcorder and every dependency, for this
# macOS/CPU) in /Library/Application Support/deskcorder/wheels; the
# postinstall script makes the private environment
# /Library/Application Support/deskcorder/venv from it, offline, with the
# python.org Python 3.11 (/Library/Frameworks/Python.framework), and links
# /usr/local/bin/deskcorder. Installing starts nothing: IT enables the
# LaunchAgent with `deskcorder service install --all-users` once a policy is in
# place (a file, or managed preferences from MDM).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
OUT=$(mkdir -p "${1:-$REPO/dist}" && cd "${1:-$REPO/dist}" && pwd)
PY=${PKG_PYTHON:-python3.11}
VERSION=$(sed -n 's/^__version__ = "\(.*\)"$/\1/p' "$REPO/src/deskcorder/__init__.py")

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
APP="$WORK/root/Library/Application Support/deskcorder"
mkdir -p "$APP/wheels" "$APP/examples"
"$PY" -m pip wheel -q --wheel-dir "$APP/wheels" "$REPO[screenshots]"
cp "$REPO"/configs/*.toml "$APP/examples/"
cp "$HERE/deskcorder.mobileconfig" "$HERE/deskcorder-pppc.mobileconfig" "$APP/examples/"
cp "$HERE/uninstall.sh" "$APP/uninstall.sh"
chmod 0755 "$APP/uninstall.sh" "$HERE/scripts/postinstall"

pkgbuild \
  --root "$WORK/root" \
  --scripts "$HERE/scripts" \
  --identifier com.deskcorder.agent.pkg \
  --version "$VERSION" \
  --install-location / \
  "$OUT/deskcorder-$VERSION.pkg"
echo "build-pkg: wrote $OUT/deskcorder-$VERSION.pkg"
