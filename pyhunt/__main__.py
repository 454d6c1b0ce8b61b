"""`python -m pyhunt`: the command line."""
import os
import sys

# pyhunt does no linear algebra: keep OpenBLAS from starting (and spinning) one thread per core
# when numpy is imported. A value the user set wins.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

from pyhunt.cli import main  # noqa: E402

sys.exit(main())
