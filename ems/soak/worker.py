"""`python -m ems.soak.worker`: runs one segment of a soak in its own process (see `runner.run_soak`)."""
from __future__ import annotations

import sys

from .runner import worker_main

if __name__ == "__main__":
    sys.exit(worker_main())
