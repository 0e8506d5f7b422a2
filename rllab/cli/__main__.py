"""``python -m rllab.cli``: the ``rllab`` console script."""

import sys

from rllab.cli import main

sys.exit(main())
