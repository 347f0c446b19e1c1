"""`python -m tests.bench`: see `tests.bench.runner` for the options."""

from tests.bench.runner import main

raise SystemExit(main())
