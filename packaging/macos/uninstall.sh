#!/bin/sh
# Remove deskcorder from this Mac (run with sudo). Users' recorded data in
# ~/Library/Application Support/deskcorder is theirs and is left alone.
set -eu
APP="/Library/Application Support/deskcorder"
if [ -x "$APP/venv/bin/deskcorder" ]; then
  "$APP/venv/bin/deskcorder" service uninstall --all-users || true
fi
rm -f /usr/local/bin/deskcorder
rm -rf "$APP/venv" "$APP/wheels" "$APP/examples" "$APP/uninstall.sh"
rmdir "$APP" 2>/dev/null || echo "deskcorder: kept $APP (it holds the machine policy)"
pkgutil --forget com.deskcorder.agent.pkg >/dev/null 2>&1 || true
