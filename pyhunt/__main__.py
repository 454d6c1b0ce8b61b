"""`python -m pyhunt`: the command line."""
import sys

from pyhunt.cli import main

sys.exit(main())
