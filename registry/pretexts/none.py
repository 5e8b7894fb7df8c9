"""No pretext: the backbone as built (pretrained weights if any, else random init)."""
from __future__ import annotations

from registry.pretexts import PRETEXTS, Pretext


@PRETEXTS.register("none")
class NoPretext(Pretext):
    """The backbone as built (pretrained weights if any, else random init): no training."""

    name = "none"
    trains = False
