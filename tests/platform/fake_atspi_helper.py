"""A stand-in for the AT-SPI helper process (same protocol), scripted by pid:
1 answers a text field, 2 a password field, 3 never answers (a hung helper),
4 makes the helper exit; every request first sends a focus event."""

from __future__ import annotations

import json
import sys

print(json.dumps({"ready": True}), flush=True)
for line in sys.stdin:
    req = json.loads(line)
    pid = req.get("pid")
    print(json.dumps({"ev": "focus"}), flush=True)
    if pid == 3:
        continue
    if pid == 4:
        sys.exit(3)
    el = {"role": "text", "name": "Name", "rect": [1, 2, 30, 40], "path": ["frame", "text"]}
    if pid == 2:
        el = {"role": "password text", "password": True}
    print(json.dumps({"id": req["id"], "el": el}), flush=True)
