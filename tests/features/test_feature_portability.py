"""The SQL builder agrees with a plain pandas statement of every feature, on every database."""

from __future__ import annotations

import pandas as pd
from feature_worlds import MIXED_AS_OF, features_of, mixed_world
from pandas_reference import reference_features

from pql.config import Settings


def test_builder_matches_the_pandas_reference_on_every_database(any_db_url: str, settings: Settings) -> None:
    world = mixed_world(settings)
    frames = {table: world.frame(table) for table in world.rows}

    built = features_of(any_db_url, world, settings, MIXED_AS_OF)

    expected = reference_features(frames, settings, MIXED_AS_OF)
    assert len(expected) > 10
    pd.testing.assert_frame_equal(built, expected, check_exact=False, rtol=1e-12, atol=1e-9)
