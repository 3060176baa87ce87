"""`python -m maas.cli ...`: the `maas` command from any checkout, whichever console script is on PATH."""

from __future__ import annotations

import sys

from maas.cli import main

sys.exit(main())
