"""A test window: ``python clickwin.py TITLE GEOMETRY``.

A text entry at the top and a canvas below it whose colour changes on every
press of the left mouse button, so a screenshot taken after a press differs
from one taken before it. EOF on stdin closes the window.
"""

import sys
import threading
import tkinter as tk

COLOURS = ("#3060c0", "#c03030", "#30a050", "#c0a020")
title, geometry = sys.argv[1], sys.argv[2]
root = tk.Tk()
root.title(title)
root.geometry(geometry)
entry = tk.Entry(root, font=("TkFixedFont", 14), insertofftime=0)  # no blinking caret
entry.pack(fill="x")
canvas = tk.Canvas(root, background=COLOURS[0], highlightthickness=0)
canvas.pack(fill="both", expand=True)
presses = [0]


def pressed(_event: object) -> None:
    presses[0] += 1
    canvas.configure(background=COLOURS[presses[0] % len(COLOURS)])


canvas.bind("<ButtonPress-1>", pressed)


def wait_eof() -> None:
    sys.stdin.read()
    root.after(0, root.destroy)


threading.Thread(target=wait_eof, daemon=True).start()
root.mainloop()
