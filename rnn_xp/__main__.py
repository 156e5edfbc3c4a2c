"""``python -m rnn_xp``: the same as the ``rnn-xp`` command."""

import sys

from rnn_xp.cli import main

sys.exit(main())
