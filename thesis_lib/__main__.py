"""`python -m thesis_lib ...`: see thesis_lib.cli."""

import sys

from .cli import main

sys.exit(main())
