"""``python -m deskcorder`` = the ``deskcorder`` command."""

import sys

from deskcorder.cli import main

sys.exit(main())
