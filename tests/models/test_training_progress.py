"""Training tells its progress callback each step as it starts, then the end."""

from __future__ import annotations

import pandas as pd
import pytest
from model_frames import WINDOW_END, training_frame

from pql.config import Settings
from pql.models.training import TRAIN_STEPS, TooLittleDataError, train_on_frame


class Calls(list):
    def __call__(self, done: int, total: int | None, step: str = "") -> None:
        self.append((done, total, step))


def test_every_step_after_the_training_set_is_reported_in_order_up_to_the_total(
    frame: pd.DataFrame, model_settings: Settings
) -> None:
    progress = Calls()
    train_on_frame(frame, model_settings, window_end=WINDOW_END, progress=progress)
    total = len(TRAIN_STEPS)
    expected = [(done, total, step) for done, step in enumerate(TRAIN_STEPS) if step != "training set"]
    assert progress == [*expected, (total, total, "registered")]


def test_a_refusal_for_too_little_data_stops_the_progress_short_of_the_total(
    model_settings: Settings,
) -> None:
    progress = Calls()
    sparse = training_frame(model_settings, accounts=50)
    strict = model_settings.model_copy(
        update={"model": model_settings.model.model_copy(update={"min_conversions": 10_000})}
    )
    with pytest.raises(TooLittleDataError):
        train_on_frame(sparse, strict, window_end=WINDOW_END, progress=progress)
    assert progress == []
