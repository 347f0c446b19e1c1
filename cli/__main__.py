"""`python -m cli`: the same as the `seqattr` command."""

import sys

from cli.main import main

sys.exit(main())
