"""Build hook: a wheel carries the repository's ``checkpoints.json`` (the source of truth, kept at
the top level) inside ``hear_gram/checkpoints/``, where `hear_gram.checkpoints.sources` finds it
once installed. Everything else is declared in setup.cfg."""

from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

REGISTRY = Path(__file__).resolve().parent / "checkpoints.json"


class BuildPyWithRegistry(build_py):
    def run(self) -> None:
        super().run()
        # An editable install reads the repository's own file; copying it would leave a second
        # copy to go stale.
        if not self.editable_mode:
            target = Path(self.build_lib) / "hear_gram" / "checkpoints" / REGISTRY.name
            self.mkpath(str(target.parent))
            self.copy_file(str(REGISTRY), str(target))


setup(cmdclass={"build_py": BuildPyWithRegistry})
