"""A test window: ``python tkwin.py TITLE GEOMETRY COLOR``.

Shows a window with a text entry filling it. Each line read from stdin becomes
the new window title; EOF closes the window.
"""

import sys
import threading
import tkinter as tk

title, geometry, color = sys.argv[1], sys.argv[2], sys.argv[3]
root = tk.Tk()
root.title(title)
root.geometry(geometry)
root.configure(background=color)
entry = tk.Text(root, background=color)
entry.pack(fill="both", expand=True)
entry.focus_set()


def read_titles() -> None:
    for line in sys.stdin:
        new = line.rstrip("\n")
        root.after(0, root.title, new)
    root.after(0, root.destroy)


threading.Thread(target=read_titles, daemon=True).start()
root.mainloop()
