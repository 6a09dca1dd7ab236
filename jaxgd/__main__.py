"""`python -m jaxgd`: the command line."""

import sys

from jaxgd.front.cli import main

sys.exit(main())
