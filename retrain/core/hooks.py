"""What long work reports while it runs: one hooks type for training, fine-tuning, bottlenecks and the audit.

The engines call these and never print; the shell turns them into progress bars and step lines.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # for annotations only: the shell imports hooks before any result exists, and results need pandas
    from retrain.core.results import EpochResult, EvalStep


def _ignore(*_: Any) -> None:
    """The default of every hook: nobody is listening."""


@dataclass(frozen=True)
class Hooks:
    on_stage: Callable[[str], None] = _ignore  # a stage begins: one line for people
    on_progress: Callable[[str, int, int], None] = _ignore  # (stage, done, total); done == 0 starts a pass
    on_eval: Callable[[EvalStep], None] = _ignore  # the new layer was evaluated
    on_epoch: Callable[[EpochResult], None] = _ignore  # a fine-tuning epoch ended (epoch 0: before fine-tuning)

    def progress(self, stage: str) -> Callable[[int, int], None]:
        """``on_progress`` for one stage, as a ``(done, total)`` callable."""
        return lambda done, total: self.on_progress(stage, done, total)
