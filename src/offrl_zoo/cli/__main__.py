"""``python -m offrl_zoo.cli``: the same as the ``offrl-zoo`` command."""

import sys

from offrl_zoo.cli.main import main

sys.exit(main())
