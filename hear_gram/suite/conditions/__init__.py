"""The built-in conditions, registered in this order (the order of `--conditions`' default and of
REPORT.md's sections): dry, nat-binaural and nat-ambisonic, localization, t60, and the opt-in
seld-ambisonic and seld-binaural (run only when `--conditions` names them)."""

import importlib

BUILTIN_MODULES = ("dry", "naturalistic", "localization", "t60", "seld")

for _name in BUILTIN_MODULES:  # in order: importing a module registers its conditions
    importlib.import_module(f"{__name__}.{_name}")
