"""Ray job entry point: ``ray job submit --working-dir . -- python jobs/sample.py --config configs/sample.yaml``."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from raylib.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(["sample", *sys.argv[1:]]))
