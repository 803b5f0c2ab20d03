"""``python -m mapo_verl explain|doctor``."""

import sys

from mapo_verl.cli import main

sys.exit(main())
