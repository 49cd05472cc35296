import sys

from nnx_compat._cli import main

sys.exit(main())
