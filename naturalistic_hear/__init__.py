"""Nat-HEAR: HEAR tasks re-rendered as naturalistic scenes (reverberant rooms, directional noise,
binaural or first-order Ambisonic), offline and reproducibly. ``python -m naturalistic_hear --help``."""
