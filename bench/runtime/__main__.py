"""``python -m bench.runtime``: see :mod:`bench.runtime.run`."""

import sys

from bench.runtime.run import main

sys.exit(main())
