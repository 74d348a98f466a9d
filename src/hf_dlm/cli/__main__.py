"""`python -m hf_dlm.cli` runs the hf-dlm command."""

import sys

from . import main

sys.exit(main())
