"""HEAR module for GRAM-T, binaural (or mono) weights, 16x8 patch variant.

python -m heareval.embeddings.runner hear_gram.gram_t --model model.safetensors ...
"""

from hear_gram import hear_api

SPEC = hear_api.ModuleSpec(
    name="hear_gram.gram_t",
    backbone="transformer",
    variants=("patch",),
    channels=(1, 2),
    default="gramt-binaural",
    hint="GRAM-T binaural or mono weights with 16x8 patches",
)

load_model, get_scene_embeddings, get_timestamp_embeddings = hear_api.bind(SPEC)
