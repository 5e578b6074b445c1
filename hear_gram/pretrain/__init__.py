"""Pretraining of GRAM encoders (REFERENCE §6): the masked autoencoder (`model`), in-batch scene
mixing and crops (`data`), and the Lightning recipe with named run configurations (`train`)."""
