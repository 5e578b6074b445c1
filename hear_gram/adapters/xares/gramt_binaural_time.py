"""X-ARES encoder: GRAM-T, binaural (128x2 time patch), released weights `gramt-binaural-time`.

python -m xares.run --max-jobs 0 hear_gram/adapters/xares/gramt_binaural_time.py TASKS_PY...
"""

from hear_gram.adapters.xares import XaresAdapter


class GramtBinauralTimeEncoder(XaresAdapter):
    registry_name = "gramt-binaural-time"
