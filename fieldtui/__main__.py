"""``python -m fieldtui``: the same as the ``fieldtui`` command."""

import sys

from fieldtui.cli.main import main

sys.exit(main())
