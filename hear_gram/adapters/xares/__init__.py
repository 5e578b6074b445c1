"""X-ARES encoders for GRAM's released models (`xares` on PyPI; ``pip install hear-gram[xares]``).

X-ARES wants one ``*Encoder`` class per encoder module, built with no arguments
(``python -m xares.run ENCODER_PY TASKS_PY...`` finds the class by that suffix), with
``sampling_rate``, ``output_dim``, ``hop_size_in_ms`` and ``forward(audio (B, T)) -> (B, T', D)``
(``xares/audio_encoder_checker.py``). So each released model has its own module here:

    hear_gram.adapters.xares.gramt_binaural       GramtBinauralEncoder
    hear_gram.adapters.xares.gramt_binaural_time  GramtBinauralTimeEncoder
    hear_gram.adapters.xares.gramt_ambisonics     GramtAmbisonicsEncoder
    hear_gram.adapters.xares.gramt_mono           GramtMonoEncoder

The frames are the HEAR module's timestamp embeddings (strategy ``raw``: all frequency tokens of
a time step concatenated), one per patch width in time: 80 ms for the 16x8-patch models, 20 ms for
the time-patch model. The audio is taken at the model's own rate (32 kHz). X-ARES pads a batch to
its longest clip and passes no lengths, so padding frames are embedded like the HEAR module
embeds them; a clip's frames do not depend on the other clips of its batch (each 2 s chunk is
normalised and encoded on its own).
"""

from __future__ import annotations

import logging

import torch
from torch import Tensor, nn

from hear_gram.adapters import load_runtime, mono_warning

log = logging.getLogger(__name__)

# Audio longer than this in one batch (clips x samples at the model's rate, about 2 minutes of
# 32 kHz audio) is embedded clip by clip, so that up to 10 minutes a clip (the length X-ARES
# asks encoders to take) costs the memory of one clip, not of the whole batch.
BATCH_SAMPLES = 4_000_000


class XaresAdapter(nn.Module):
    """Base of the X-ARES encoders (its name must not end in "Encoder": X-ARES takes the one
    attribute of an encoder module whose name does)."""

    registry_name: str = ""

    def __init__(self) -> None:
        super().__init__()
        self.runtime = load_runtime(self.registry_name)
        fc = self.runtime.cfg.features
        self.sampling_rate: int = fc.sample_rate
        self.output_dim: int = self.runtime.timestamp_embedding_size
        # one embedding per patch width in time (hear_gram.runtime.GramRuntime.embed, "raw")
        self.hop_size_in_ms: float = (
            1000.0 * fc.hop_length * self.runtime.cfg.patch_t / fc.sample_rate
        )
        self._warning = mono_warning("X-ARES", self.runtime)
        self.eval()

    def forward(self, audio: Tensor) -> Tensor:
        """(B, T) mono audio at `sampling_rate` (or (B, C, T) spatial audio, which X-ARES never
        passes) -> (B, T', output_dim) float32 on the audio's device."""
        if audio.ndim == 2 and self._warning:
            log.warning(self._warning)
            self._warning = None
        with torch.no_grad():
            if audio.shape[0] * audio.shape[-1] <= BATCH_SAMPLES:
                return self.runtime.timestamp_embeddings(audio)[0]
            return torch.cat([self.runtime.timestamp_embeddings(a[None])[0] for a in audio])
