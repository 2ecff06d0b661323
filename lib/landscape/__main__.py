"""`python -m landscape ...`: the same command line as `landscape ...` (see `landscape.cli`)."""

import sys

from .cli import main

sys.exit(main())
