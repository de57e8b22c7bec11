"""HTML replay of a session: one self-contained page (docs/replay.md).

Pure rendering: records (or actions) in, one page out. Reading a spool or a
collector's store, and writing files, is the callers' job.
"""

from deskcorder.replay.model import ChunkFacts, build_replay, images_of
from deskcorder.replay.page import Images, content_security_policy, render, render_page

__all__ = [
    "ChunkFacts",
    "Images",
    "build_replay",
    "content_security_policy",
    "images_of",
    "render",
    "render_page",
]
