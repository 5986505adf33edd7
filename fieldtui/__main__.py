"""``python -m fieldtui``: the same as the ``fieldtui`` command."""

import sys

from fieldtui.cli import main

sys.exit(main())
