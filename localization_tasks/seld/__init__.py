"""Sound event localization and detection (SELD): DCASE label files and metrics, HEAR-style
SELD tasks (converted from DCASE datasets or synthesised offline), and an evaluator."""
