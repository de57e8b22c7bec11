"""A test window: ``python patternwin.py TITLE GEOMETRY MODE``.

MODE ``pattern``: four solid quadrants (red, green, blue, yellow) and no
cursor, so the screen does not change by itself. ``text``: a busy screen like
a code editor (ragged, indented lines of random words). ``dense``: every line
full of small text. ``noise``: random pixels (worst case for any codec).
Lines on stdin change the window title; EOF closes it.
"""

import os
import random
import sys
import tempfile
import threading
import tkinter as tk

QUADRANTS = ("#ff0000", "#00ff00", "#0000ff", "#ffff00")

title, geometry, mode = sys.argv[1], sys.argv[2], sys.argv[3]
size = geometry.split("+", 1)[0]
width, height = (int(v) for v in size.split("x"))
root = tk.Tk()
root.title(title)
root.geometry(geometry)
canvas = tk.Canvas(root, width=width, height=height, highlightthickness=0, borderwidth=0)
canvas.place(x=0, y=0, width=width, height=height)
hold = []
if mode == "pattern":
    w2, h2 = width // 2, height // 2
    for i, (x, y) in enumerate(((0, 0), (w2, 0), (0, h2), (w2, h2))):
        canvas.create_rectangle(x, y, x + w2, y + h2, fill=QUADRANTS[i], outline="")
elif mode in ("text", "dense"):
    # text: a code editor (ragged, indented lines); dense: every line full (worst case)
    canvas.configure(background="white")
    rng = random.Random(42)
    words = [
        "def",
        "return",
        "self",
        "import",
        "class",
        "for",
        "in",
        "if",
        "else",
        "lambda",
        "yield",
        "0x1f",
        "None",
        "True",
        "print",
        "value",
        "index",
        "result",
        "#",
        "==",
    ]
    dense = mode == "dense"
    step = 13 if dense else 17
    y = 2
    while y < height:
        n = width // 40 if dense else rng.choice((0, 2, 4, 6, 8, 10, 12, 14))
        indent = 0 if dense else rng.choice((0, 4, 8, 12)) * 7
        line = " ".join(rng.choice(words) for _ in range(n))
        canvas.create_text(
            4 + indent,
            y,
            text=line,
            anchor="nw",
            font=("TkFixedFont", 9),
            fill=rng.choice(["black", "#204080", "#803020", "#206020"]),
        )
        y += step
elif mode == "noise":
    fd, path = tempfile.mkstemp(suffix=".ppm")
    with os.fdopen(fd, "wb") as fh:
        fh.write(b"P6 %d %d 255\n" % (width, height) + os.urandom(width * height * 3))
    img = tk.PhotoImage(file=path)
    os.unlink(path)
    hold.append(img)
    canvas.create_image(0, 0, image=img, anchor="nw")
else:
    raise SystemExit(f"unknown mode {mode}")


def read_titles() -> None:
    for line in sys.stdin:
        root.after(0, root.title, line.rstrip("\n"))
    root.after(0, root.destroy)


threading.Thread(target=read_titles, daemon=True).start()
print("ready", flush=True)
root.mainloop()
