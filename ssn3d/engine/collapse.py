"""The collapse guard: SSN3D whose SSN never separates the parts is a pooled 3D model in disguise.

Training calls ``warn_if_collapsed`` after every log step; the first time L_SSN has stayed near its
chance level (eq. 4: log N per part) or the attention maps near uniform (eq. 2) past a warm-up, the
log and the run's status say so once, so nobody mistakes such a run for an aligned one.
"""

from __future__ import annotations

import logging
import math
from typing import Any

from torch import nn

from ssn3d.config import Config
from ssn3d.models.ssn import chance_loss
from ssn3d.runs.status import StatusWriter

_logger = logging.getLogger(__name__)


class CollapseGuard:
    """Warns once when SSN has not separated the parts: L_SSN near (or above) chance, or flat maps.

    Judged at log steps after a warm-up (``COLLAPSE_WARMUP`` of the steps, at most 5 epochs): when
    each of the last ``COLLAPSE_WINDOWS`` log windows has L_SSN >= (1 - ``COLLAPSE_MARGIN``) x chance
    (log N per part, x N for ``loss.ssn_reduction=sum``, x T for the non-shared variant's T losses), or
    attention whose mean peak is below ``UNIFORM_PEAK`` x 1/(h*w) (a uniform map's peak is 1/(h*w)).
    The peaks come from a forward hook on the SSN modules (a tensor sum per step, read at log steps);
    under torch.compile only L_SSN is watched, since a hook with side effects would break the graph.

    Args:
        model: the unwrapped model.
        cfg: the run's config.
        total_steps: the run's steps.
        steps_per_epoch: steps of one epoch.
        watch_attention: hook the attention maps.
    """

    COLLAPSE_WARMUP = 0.3  # SSN needs some steps to leave chance; 30 % of a run is past that on walkers
    COLLAPSE_WINDOWS = 3  # one noisy window must not warn
    COLLAPSE_MARGIN = 0.05  # a tiny walkers run that separates is 15-65 % below chance after 12 steps
    UNIFORM_PEAK = 2.0  # random init gives 1.7-2.0 x 1/(h*w); separated maps 5-20 x

    def __init__(
        self, model: nn.Module, cfg: Config, total_steps: int, steps_per_epoch: int, watch_attention: bool
    ) -> None:
        m = cfg.model
        ssn = getattr(model, "ssn", None)
        self.enabled = m.arch == "ssn3d" and m.strategy != "supervised" and ssn is not None
        losses = 1 if m.shared_classifier else min(m.num_frames, cfg.data.seq_len)
        self.chance = (
            chance_loss(m.num_parts) * (m.num_parts if cfg.loss.ssn_reduction == "sum" else 1) * losses
        )
        self.warmup = min(math.ceil(self.COLLAPSE_WARMUP * total_steps), 5 * steps_per_epoch)
        self.flagged: list[str] = []  # why each recent window counts as not separated ("" when it is fine)
        self.warned = False
        self._peak_sum, self._peaks = None, 0
        if self.enabled and watch_attention:
            for module in ssn:
                module.register_forward_hook(self._observe)

    def _observe(self, module: nn.Module, args: tuple, out: Any) -> None:
        if module.training and out.attention is not None:
            a = out.attention.detach().flatten(2)  # (B, N, h*w), each row a softmax
            peak = a.amax(-1).float().mean() * a.shape[-1]  # 1 for a uniform map
            self._peak_sum = peak if self._peak_sum is None else self._peak_sum + peak
            self._peaks += 1

    def check(self, step: int, ssn_loss: float) -> str | None:
        """Judge one log window; returns the warning the first time SSN is found not separated."""
        peak = None
        if self._peaks:
            peak = float(self._peak_sum) / self._peaks
            self._peak_sum, self._peaks = None, 0
        if not self.enabled or self.warned or step < self.warmup:
            return None
        why = []
        if ssn_loss >= (1 - self.COLLAPSE_MARGIN) * self.chance:
            why.append(f"L_SSN {ssn_loss:.3f} is not below its chance level {self.chance:.3f} (log N)")
        if peak is not None and peak < self.UNIFORM_PEAK:
            why.append(f"the attention maps are nearly uniform (mean peak {peak:.2f} x 1/(h*w))")
        self.flagged = [*self.flagged, "; ".join(why)][-self.COLLAPSE_WINDOWS :]
        if len(self.flagged) < self.COLLAPSE_WINDOWS or not all(self.flagged):
            return None
        self.warned = True
        return (
            f"SSN has not separated the parts: at step {step}, {self.flagged[-1]} over the last "
            f"{self.COLLAPSE_WINDOWS} log steps; SSN3D then pools the frame like a plain 3D model. "
            "Raise loss.ssn_lambda, train longer, or check that the frames are not blank."
        )


def warn_if_collapsed(guard: CollapseGuard, step: int, ssn_loss: float, status: StatusWriter) -> None:
    """After a log step: the guard's warning, once, in the log and in the status's ``warnings``."""
    message = guard.check(step, ssn_loss)
    if message is not None:
        _logger.warning(message)
        status.update(warnings=[*status.status.get("warnings", []), message])
