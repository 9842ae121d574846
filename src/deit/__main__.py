"""`python -m deit` (and so `torchrun -m deit train ...`)."""

import sys

from deit.cli import main

if __name__ == "__main__":
    sys.exit(main())
