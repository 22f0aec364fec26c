"""`python -m loopctl` is the same as the `loopctl` command."""

import sys

from loopctl.cli import main

sys.exit(main())
