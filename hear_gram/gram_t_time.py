"""HEAR module for GRAM-T with 128x2 time patches (20 ms steps).

python -m heareval.embeddings.runner hear_gram.gram_t_time --model model.safetensors ...
"""

from hear_gram import hear_api

SPEC = hear_api.ModuleSpec(
    name="hear_gram.gram_t_time",
    backbone="transformer",
    variants=("time",),
    channels=(1, 2),
    default="gramt-binaural-time",
    hint="GRAM-T binaural or mono weights with 128x2 time patches",
)

load_model, get_scene_embeddings, get_timestamp_embeddings = hear_api.bind(SPEC)
