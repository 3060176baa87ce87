"""`python -m maas.cli ...`: the console script without its wrapper (a worktree, a subprocess in tests)."""

from __future__ import annotations

import sys

from maas.cli import main

sys.exit(main())
