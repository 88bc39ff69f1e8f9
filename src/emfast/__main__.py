"""``python -m emfast ...`` and the ``emfast`` console script: the commands are in emfast.cli."""

import sys

from emfast.cli import main

if __name__ == "__main__":
    sys.exit(main())
