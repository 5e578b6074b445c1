"""X-ARES encoder: GRAM-T, first order Ambisonic (16x8 patch), released weights `gramt-ambisonics`.

python -m xares.run --max-jobs 0 hear_gram/adapters/xares/gramt_ambisonics.py TASKS_PY...
"""

from hear_gram.adapters.xares import XaresAdapter


class GramtAmbisonicsEncoder(XaresAdapter):
    registry_name = "gramt-ambisonics"
