"""Signal-processing baselines for the localization tasks, as HEAR modules, and a chance
predictor: `gcc_phat` (binaural), `intensity_vector` (first-order Ambisonics), `chance`."""
