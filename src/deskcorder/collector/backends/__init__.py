"""The collector's storage backends behind one interface (``collector/store.py``).

* ``local``: files on local disk + SQLite (``--data DIR``), the default.
* ``fleet``: an S3-compatible bucket + PostgreSQL (``--store s3://... --db ...``).
"""

from .local import open_local

__all__ = ["open_local"]
