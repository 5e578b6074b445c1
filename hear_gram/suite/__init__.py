"""`python -m hear_gram.suite`: from HEAR tasks to the paper's table for any HEAR modules.

- `condition`: what a condition is (`Condition`), its units (`Unit`) and the registry;
- `conditions`: the built-in conditions, one module each (dry, naturalistic: nat-binaural and
  nat-ambisonic, localization, t60; `hear` and `spatial` hold what they share);
- `build`: a condition's build step (tasks made from a source task, keyed by its content);
- `config`: the TOML models file and the run settings;
- `units`: the plan, unit keys (task content, module code, weights sha256), running one (locked);
- `report`: WORK/report/ (results.csv, results.json, REPORT.md, figures) from the done units;
- `stats`: the uncertainty of its cells (mean ± sd, n) and the paired t-test between models;
- `__main__`: the command line, local threads, shards and submitit job arrays.
"""
