"""Import torchaudio's pure-PyTorch parts on a CPU-only torch (tests only).

Every torchaudio wheel on PyPI is a CUDA build whose C++ extension fails to load next to CPU torch
(ENV.md). The functions the tests compare against (MelSpectrogram, MelScale, resample) need none
of it, so a stand-in ``torchaudio._extension`` that reports "no extension" is registered first.
"""

import sys
import types


def import_torchaudio():
    if "torchaudio" not in sys.modules:
        stub = types.ModuleType("torchaudio._extension")
        stub._IS_TORCHAUDIO_EXT_AVAILABLE = False
        stub._IS_ALIGN_AVAILABLE = False
        stub.fail_if_no_align = lambda f: f
        sys.modules["torchaudio._extension"] = stub
    import torchaudio

    return torchaudio
