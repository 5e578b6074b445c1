"""Sound-localization and T60 tasks built from HEAR scene tasks (arXiv 2506.00934): `generate`
(task folders), `evaluate` (probe any HEAR module), `metrics`, `probe`, `plots`, `baselines`."""
