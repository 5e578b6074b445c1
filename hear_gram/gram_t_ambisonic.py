"""HEAR module for GRAM-T on first-order Ambisonics: 4-channel audio in ACN order W, Y, Z, X
(AmbiX; the order the released model was trained on, see hear_gram.frontend). Reorder W, X, Y, Z
(FuMa-ordered) files first. Mono audio is accepted as upstream does (copied to all four channels)
but carries no direction; the runtime logs a warning once.

python -m heareval.embeddings.runner hear_gram.gram_t_ambisonic --model model.safetensors ...
"""

from hear_gram import hear_api

SPEC = hear_api.ModuleSpec(
    name="hear_gram.gram_t_ambisonic",
    backbone="transformer",
    variants=("patch", "time"),
    channels=(7,),
    default="gramt-ambisonics",
    hint="GRAM-T Ambisonic (7-channel input: 4 log-mels of W, Y, Z, X + 3 intensity) weights",
)

load_model, get_scene_embeddings, get_timestamp_embeddings = hear_api.bind(SPEC)
