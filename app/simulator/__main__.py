"""`python -m app.simulator`: the same as `proofup simulator`."""
import sys

from app.simulator.cli import main

sys.exit(main())
