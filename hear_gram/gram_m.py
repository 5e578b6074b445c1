"""HEAR module for GRAM-M (Mamba-2 as released, or Mamba-1 as the v1 paper), any format and patching.

python -m heareval.embeddings.runner hear_gram.gram_m --model model.safetensors ...
"""

from hear_gram import hear_api

SPEC = hear_api.ModuleSpec(
    name="hear_gram.gram_m",
    backbone="mamba",
    variants=("patch", "time"),
    channels=(1, 2, 7),
    default=None,
    hint="GRAM-M weights",
)

load_model, get_scene_embeddings, get_timestamp_embeddings = hear_api.bind(SPEC)
