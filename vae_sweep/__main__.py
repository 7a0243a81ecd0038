"""`python -m vae_sweep ...`: the `vae-sweep` command without the installed script."""

import sys

from vae_sweep.cli import main

sys.exit(main())
