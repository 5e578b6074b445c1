"""X-ARES encoder: GRAM-T, binaural (16x8 patch), released weights `gramt-binaural`.

python -m xares.run --max-jobs 0 hear_gram/adapters/xares/gramt_binaural.py TASKS_PY...
"""

from hear_gram.adapters.xares import XaresAdapter


class GramtBinauralEncoder(XaresAdapter):
    registry_name = "gramt-binaural"
