"""``python -m pixelmill.bench._worker JOB.json``: run one benchmark group in a fresh process."""

import sys

from ._harness import worker_main

if __name__ == "__main__":
    sys.exit(worker_main(sys.argv[1:]))
