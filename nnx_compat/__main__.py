import sys

from nnx_compat.cli import main

sys.exit(main())
