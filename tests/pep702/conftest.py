"""These tests run real type checkers over sample.py: only in the ``typing`` tox env, which
installs them (NNX_COMPAT_TYPE_CHECKERS=1); the flax envs do not collect them."""

import os

collect_ignore_glob = [] if os.environ.get("NNX_COMPAT_TYPE_CHECKERS") == "1" else ["test_*.py"]
