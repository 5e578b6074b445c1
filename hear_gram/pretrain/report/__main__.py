"""``python -m hear_gram.pretrain.report``: the command line of `hear_gram.pretrain.report`."""

import sys

from hear_gram.pretrain.report import main

sys.exit(main())
