"""``python -m radical.asyncflow.cli``: the same as ``radical-asyncflow-run``."""

import sys

from .run import main

sys.exit(main())
