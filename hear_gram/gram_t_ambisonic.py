"""HEAR module for GRAM-T on first-order Ambisonics (4-channel W, X, Y, Z audio).

python -m heareval.embeddings.runner hear_gram.gram_t_ambisonic --model model.safetensors ...
"""

from hear_gram import hear_api

SPEC = hear_api.ModuleSpec(
    name="hear_gram.gram_t_ambisonic",
    backbone="transformer",
    variants=("patch", "time"),
    channels=(7,),
    default="gramt-ambisonics",
    hint="GRAM-T Ambisonic (7-channel input) weights",
)

load_model, get_scene_embeddings, get_timestamp_embeddings = hear_api.bind(SPEC)
