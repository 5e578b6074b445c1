"""``python -m hear_gram.checkpoints``: the command-line tool of `hear_gram.checkpoints.cli`."""

import sys

from hear_gram.checkpoints.cli import main

sys.exit(main())
