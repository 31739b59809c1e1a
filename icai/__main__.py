"""`python -m icai`: the same command line as `icai`."""

import sys

from icai.cli import main

if __name__ == "__main__":
    sys.exit(main())
