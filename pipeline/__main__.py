"""``python -m pipeline`` is the ``relspace`` command."""

import sys

from .cli import main

sys.exit(main())
