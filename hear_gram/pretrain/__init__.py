"""Pretraining of GRAM encoders (arXiv 2506.00934, pretraining recipe): the masked autoencoder (`model`), in-batch scene
mixing and crops (`data`), and the Lightning recipe with named run configurations (`train`)."""
