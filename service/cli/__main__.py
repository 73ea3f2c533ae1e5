"""`python -m service.cli`: the same command line as `visma-hooks`."""

import sys

from service.cli import main

sys.exit(main())
