"""`python -m coinbase_sim`."""

import sys

from coinbase_sim.cli import main

sys.exit(main())
