"""Pretraining of GRAM encoders (arXiv 2506.00934, pretraining recipe): in-batch scene mixing and
crops (`data`), WebDataset shards (`shards`), and the Lightning recipe with named run
configurations (`train`); the masked autoencoder itself is `hear_gram.mae`."""

import warnings

# lightning_fabric's import-time notice about setuptools' pkg_resources is not ours to act on;
# printed first on every `python -m hear_gram.pretrain` run, it would break one-line errors.
warnings.filterwarnings("ignore", message="pkg_resources is deprecated")
