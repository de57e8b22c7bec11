"""A GTK 3 sign-up form for the accessibility tests: a name entry, a password entry
(visibility off) and a button. Run as ``python gtkform.py TITLE X Y``.

Once the window is mapped and laid out it prints one JSON line with each widget's
rectangle in screen coordinates: {"entry": [x, y, w, h], "password": [...], "button": [...]}.
"""

from __future__ import annotations

import json
import sys

import gi

gi.require_version("Gtk", "3.0")
from gi.repository import GLib, Gtk  # noqa: E402


def main() -> None:
    title, x, y = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    win = Gtk.Window(title=title)
    box = Gtk.Box(orientation=Gtk.Orientation.VERTICAL, spacing=12)
    box.set_border_width(20)
    widgets = {
        "entry": Gtk.Entry(),
        "password": Gtk.Entry(),
        "button": Gtk.Button(label="Sign up now"),
    }
    widgets["password"].set_visibility(False)
    for widget in widgets.values():
        box.pack_start(widget, False, False, 0)
    win.add(box)
    win.set_default_size(420, 220)
    win.move(x, y)
    win.connect("destroy", Gtk.main_quit)

    def report() -> bool:
        out = {}
        for name, widget in widgets.items():
            alloc = widget.get_allocation()
            _ok, ox, oy = widget.get_window().get_origin()
            out[name] = [ox + alloc.x, oy + alloc.y, alloc.width, alloc.height]
        print(json.dumps(out), flush=True)
        return False

    win.connect("map-event", lambda *a: GLib.timeout_add(200, report) and False)
    win.show_all()
    Gtk.main()


if __name__ == "__main__":
    main()
