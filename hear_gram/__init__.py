"""hear-gram: GRAM (General-purpose Real-world Audio Models) behind the HEAR 2021 API.

``hear_gram`` itself is the default module: GRAM-T, binaural, 16x8 patches (``hear_gram.gram_t``).
Other modules: ``hear_gram.gram_t_time``, ``hear_gram.gram_t_ambisonic``, ``hear_gram.gram_m``.
"""

from typing import Any

__all__ = ["load_model", "get_scene_embeddings", "get_timestamp_embeddings"]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    # Imported lazily so that `python -m hear_gram.<tool>` does not import the tool twice.
    if name in __all__:
        from hear_gram import gram_t

        return getattr(gram_t, name)
    raise AttributeError(f"module 'hear_gram' has no attribute {name!r}")
