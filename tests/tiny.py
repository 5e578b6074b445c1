"""The tiny pretraining configuration the tests train (seconds per step on a 2-core CPU)."""

# key=value overrides of the ``demo-cpu`` TrainConfig: a 1-layer width-64 GRAM-T, a 1-block decoder,
# 4 demo clips, batches of 2 clips x 2 crops, no loader processes, a loss row per step.
TINY_TRAIN = (
    "depth=1",
    "width=64",
    "heads=2",
    "mlp_dim=128",
    "decoder_width=32",
    "decoder_depth=1",
    "demo_clips=4",
    "batch_clips=2",
    "crops=2",
    "num_workers=0",
    "log_every=1",
)
