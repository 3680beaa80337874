"""``python -m raylib.cli <verb> ...``: ``landcover <verb> ...``."""

import sys

from raylib.cli import main

sys.exit(main())
