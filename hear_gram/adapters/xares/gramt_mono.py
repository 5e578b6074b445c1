"""X-ARES encoder: GRAM-T, single channel (16x8 patch), released weights `gramt-mono`.

python -m xares.run --max-jobs 0 hear_gram/adapters/xares/gramt_mono.py TASKS_PY...
"""

from hear_gram.adapters.xares import XaresAdapter


class GramtMonoEncoder(XaresAdapter):
    registry_name = "gramt-mono"
