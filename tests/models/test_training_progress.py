"""Training tells its progress callback each step as it starts (the folds of a step in its text), then
the end; choosing the model family tells its folds."""

from __future__ import annotations

import re

import pandas as pd
import pytest
from model_frames import WINDOW_END, fast_settings, training_frame

from pql.config import Settings
from pql.models.backtest import out_of_time_split
from pql.models.candidates import choose_candidate
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
    assert {call[1] for call in progress} == {total}
    done = [call[0] for call in progress]
    assert done == sorted(done) and done[-1] == total and progress[-1][2] == "registered"
    started = [step for _, _, step in progress if step in TRAIN_STEPS]
    assert started == list(TRAIN_STEPS[1:])
    assert all(
        step == TRAIN_STEPS[index] or step.startswith(TRAIN_STEPS[index]) for index, _, step in progress[:-1]
    )


def test_the_rolling_origin_folds_show_in_their_steps_text_from_none_to_all(
    model_settings: Settings,
) -> None:
    progress = Calls()
    frame = training_frame(model_settings, snapshots=30)
    train_on_frame(frame, model_settings, window_end=WINDOW_END, progress=progress)
    folds = [re.fullmatch(r"rolling-origin folds \((\d+)/(\d+) folds\)", step) for _, _, step in progress]
    counts = [(int(found[1]), int(found[2])) for found in folds if found]
    (total,) = {total for _, total in counts}
    assert [done for done, _ in counts] == list(range(total + 1)) and total >= 2


def test_choosing_the_family_tells_each_fold_compared(model_settings: Settings) -> None:
    settings = fast_settings(
        model_settings.state_dir, candidates=["gradient_boosting", "logistic_regression"]
    )
    frame = training_frame(settings, snapshots=30)
    train = frame[out_of_time_split(frame["as_of"], settings.horizon_days).train_rows(frame)]
    progress = Calls()
    choice = choose_candidate(train, settings, progress)
    total = progress[-1][1]
    assert progress == [(done, total, "") for done in range(total + 1)]
    assert total >= len(choice.folds) >= 1


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
