"""The pipeline from Python: `pql.connect()` gives a `Project`, whose methods are what the commands do.

    project = pql.connect()                 # settings as the command line reads them
    project.features("2026-03-01")          # one row per account, the nightly's own builder
    project.train()                         # `pql train`
    project.score()                         # `pql score --dry-run`: the real flow, nothing written
    project.explain("acc_00042")            # score, tier, reasons, talking point, playbook of one account
    project.pqls(owner="ana")               # `pql pqls --owner ana`

The command line calls these methods too, so there is one way to do each thing. Frames hold naive
UTC, and a naive datetime given to a method is UTC too; a date or an ISO text is read as the command
line reads it: in the configured time zone unless it carries an offset, a date meaning its midnight.
Heavy stacks (scikit-learn, Prefect, Great Expectations) are imported by the methods that need them,
so importing this module stays quick.
"""

from __future__ import annotations

import json
import logging
import math
import os
import tempfile
import tomllib
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from datetime import date, datetime
from functools import cached_property
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

import pandas as pd
import sqlalchemy as sa
import tomli_w

from pql.clock import start_of_day, to_utc_naive, today_in
from pql.config import SECRET_URL_SCHEME, URL_KEYS, Settings, config_path, load_settings
from pql.db import Databases, DataError, redacted
from pql.progress import Progress
from pql.schema import OutputTables, SourceTables, readable_columns

if TYPE_CHECKING:
    from pql.flows.summary import RunSummary
    from pql.models.training import TrainOutcome

Moment = date | datetime | str
log = logging.getLogger("pql.api")


class UnknownAccountError(DataError, LookupError):
    """An account id that neither the scores nor the source's accounts hold."""

    heading = "unknown account"


@dataclass(frozen=True)
class Reason:
    """One reason behind a score: its phrase as sales reads it and how far it moved the score."""

    phrase: str
    direction: str  # "up" raises the score, "down" lowers it
    impact_points: float  # score points (probability x 100) the account would lose without it
    group: str  # the feature group (a signal a rep recognises)
    feature: str | None  # the group's headline feature for this account
    value: Any  # the account's value of that feature
    percentile: float | None  # its standing among accounts on the same plan (None for a category)


@dataclass(frozen=True)
class Explanation:
    """Why one account scores what it scores, as of one instant.

    `stored` tells where it comes from: True, the score a run wrote to the CRM; False, computed now
    with the champion model (validated by no gate and written nowhere)."""

    account_id: str
    name: str | None
    as_of: datetime
    score: float
    probability: float
    tier: str | None
    grade: str | None
    is_pql: bool
    routed_to: str | None
    playbook: str | None
    ineligible_reason: str | None
    reasons: tuple[Reason, ...]
    model_version: str
    stored: bool
    talking_point: str | None = None  # what a rep can say to this PQL (None for an account that is not one)

    def __str__(self) -> str:
        who = f"{self.name} ({self.account_id})" if self.name else self.account_id
        tier = self.tier.replace("_", " ") if self.tier else f"not tiered: {self.ineligible_reason}"
        lines = [
            f"{who} as of {self.as_of:%Y-%m-%d %H:%M} UTC: score {self.score:.1f}, {tier}"
            + (", PQL" if self.is_pql else ""),
            *(
                f"  {'+' if r.direction == 'up' else '-'} {r.phrase} ({r.impact_points:+.1f})"
                for r in self.reasons
            ),
        ]
        if self.talking_point:
            lines.append(f"  say: {self.talking_point}")
        if self.playbook:
            lines.append(f"  playbook {self.playbook.replace('_', ' ')}")
        lines.append(f"  model {self.model_version} ({'stored score' if self.stored else 'computed now'})")
        return "\n".join(lines)


def _missing(value: object) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NaT


def _text(value: object) -> str | None:
    return None if _missing(value) else str(value)


def reasons_of(reasons_json: str | None, reasons_text: str | None) -> tuple[Reason, ...]:
    """The reasons of a scored row: `reasons_json` and `reasons_text` list them in the same order."""
    entries = json.loads(reasons_json) if reasons_json else []
    phrases = (reasons_text or "").splitlines()
    return tuple(
        Reason(
            phrase=line[2:] if line[:2] in ("+ ", "- ") else line,
            direction=entry["direction"],
            impact_points=float(entry["impact_points"]),
            group=entry["group"],
            feature=entry.get("feature"),
            value=entry.get("value"),
            percentile=entry.get("percentile"),
        )
        for entry, line in zip(entries, phrases, strict=True)
    )


def registry_lock(settings: Settings, holder: str) -> AbstractContextManager[None]:
    """The model registry's lock, the one the retrain flow holds while it trains and promotes."""
    from pql.flows.locking import registry_lock as lock

    timeout = settings.flows.lock_timeout_seconds
    return lock(settings, timeout_seconds=timeout, holder=holder, on_wait=log.warning)


class Project:
    """One pipeline's settings, databases and registry; what a notebook (and the command line) works on.

    Engines and table objects are made once, on first use, and disposed by `close()` (or at the end
    of a `with` block)."""

    def __init__(
        self,
        settings: Settings,
        *,
        config: str | Path | None = None,
        overrides: Mapping[str, Any] | None = None,
    ) -> None:
        """`settings` as loaded from `config` (the settings file, None when there was none) with
        `overrides` on top: the file and overrides are what a flow run is handed to load the same."""
        self.raw_settings = settings
        self.config = Path(config).resolve() if config is not None else None
        self.overrides = dict(overrides or {})
        self._databases: Databases | None = None

    # --- settings, databases, tables -------------------------------------------------------------

    @cached_property
    def settings(self) -> Settings:
        """The settings, with database URLs kept in Prefect Secret blocks read from them (as the flows do)."""
        if not any((getattr(self.raw_settings, key) or "").startswith(SECRET_URL_SCHEME) for key in URL_KEYS):
            return self.raw_settings  # Prefect is imported only when a URL names a Secret block
        from pql.flows.secrets import with_secret_urls

        return with_secret_urls(self.raw_settings)

    @property
    def databases(self) -> Databases:
        if self._databases is None:
            self._databases = Databases(self.settings)
        return self._databases

    @property
    def source(self) -> sa.Engine:
        """The source database (product usage, plans, accounts, the CRM's sales-owned tables)."""
        return self.databases.source

    @property
    def crm(self) -> sa.Engine:
        """The CRM database the pipeline writes to (the same engine as `source` when the URLs match)."""
        return self.databases.crm

    @cached_property
    def source_tables(self) -> SourceTables:
        return self.databases.source_tables

    @cached_property
    def output_tables(self) -> OutputTables:
        return self.databases.output_tables

    def close(self) -> None:
        """Dispose the engines (embedded database files are closed); the project can be used again."""
        if self._databases is not None:
            self._databases.dispose()
            self._databases = None

    def __enter__(self) -> Project:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        settings = self.raw_settings
        source, crm = settings.source_database_url, settings.crm_database_url
        parts = [f"source={_masked(source)}", f"crm={'same as source' if crm == source else _masked(crm)}"]
        parts.append(f"registry={settings.model_registry_path}")
        if self.config is not None:
            parts.append(f"config={self.config}")
        return f"<pql.Project {' '.join(parts)}>"

    def instant(self, moment: Moment) -> datetime:
        """`moment` as the naive UTC the frames hold. A datetime is UTC when naive (as in every frame)
        and converted when aware; a date or a text is read as the command line reads it: in the
        configured time zone unless it carries an offset, a date meaning its midnight there."""
        if isinstance(moment, datetime):
            return to_utc_naive(moment, ZoneInfo("UTC"))
        try:
            return to_utc_naive(moment, self.settings.zone)
        except ValueError as exc:
            raise ValueError(
                f"{moment!r} is not an ISO date or date-time (YYYY-MM-DD or YYYY-MM-DDTHH:MM)"
            ) from exc

    def today(self) -> datetime:
        """The start of today in the configured time zone (naive UTC): the as_of of tonight's run."""
        zone = self.settings.zone
        return start_of_day(today_in(zone), zone)

    # --- features and training ---------------------------------------------------------------------

    def features(self, as_of: Moment) -> pd.DataFrame:
        """Point-in-time features of every account as of `as_of`: the builder the nightly run uses."""
        from pql.features.builder import build_features

        return build_features(self.source, self.source_tables, self.settings, [self.instant(as_of)])

    def training_set(self, end: Moment | None = None) -> pd.DataFrame:
        """Features and `label` of the training snapshots, as `pql train` builds them; `end` bounds
        what labels see (default: the end of observed data)."""
        from pql.features.training import training_set

        return training_set(self.source, self.source_tables, self.settings, self._optional(end))

    def train(self, end: Moment | None = None, *, progress: Progress | None = None) -> TrainOutcome:
        """Train, backtest against baselines, register, promote if better: `pql train`, under the
        registry lock the retrain flow takes. Too little data raises `TooLittleDataError` (its
        `outcome` is the points baseline it registered). `progress` is told each training step."""
        from pql.models.training import train_and_register

        window_end = self._optional(end)
        with registry_lock(self.settings, holder=f"pql train (process {os.getpid()})"):
            return train_and_register(
                self.source, self.source_tables, self.settings, window_end, progress=progress
            )

    # --- scoring ---------------------------------------------------------------------------------

    def score(self, as_of: Moment | None = None, *, dry_run: bool = True) -> RunSummary:
        """Run the nightly scoring flow as `pql score` does (a Prefect flow run: validation, scores,
        reasons, gates, monitoring). A dry run, the default here, writes nothing and reports in
        `changes` what would change; `dry_run=False` writes the list to the CRM."""
        from pql.flows.runner import quiet_prefect, run_flow

        moment = self._optional(as_of)
        quiet_prefect()
        from pql.flows.nightly import nightly

        with self._flow_config() as config:
            return run_flow(lambda: nightly(as_of=moment, dry_run=dry_run, config=config))

    def pqls(self, owner: str | None = None, top: int | None = None) -> pd.DataFrame:
        """The current PQL list, best first (what `pql pqls` shows): only those routed to `owner` when
        given, at most `top`; `name` is the account's name from the source (null when unknown)."""
        from pql.scoring.crm import account_names
        from pql.scoring.writeback import pql_list

        listed = pql_list(self.crm, self.output_tables, owner=owner, top=top)
        has_accounts = sa.inspect(self.source).has_table(self.source_tables.accounts.name)
        names = (
            account_names(self.source, self.source_tables, listed["account_id"])
            if has_accounts and not listed.empty
            else {}
        )
        listed.insert(1, "name", listed["account_id"].map(names).astype(object))
        return listed

    def explain(self, account_id: str, as_of: Moment | None = None) -> Explanation:
        """Why `account_id` scores what it scores: its row of the current list (pql_scores) when there
        is one for `as_of` (any as_of when None), else computed with the champion as of `as_of`
        (default: the start of today), writing nothing. An id the source does not hold raises
        UnknownAccountError."""
        account_id = str(account_id)
        moment = self._optional(as_of)
        row = self._stored_score(account_id, moment)
        stored = row is not None
        if row is None:
            self._require_account(account_id)
            row = self._computed_score(account_id, self.today() if moment is None else moment)
        return _explanation(row, self._name(account_id), stored=stored)

    # --- helpers ---------------------------------------------------------------------------------

    def _optional(self, moment: Moment | None) -> datetime | None:
        return None if moment is None else self.instant(moment)

    @contextmanager
    def _flow_config(self) -> Iterator[str | None]:
        """The settings file a flow run loads: the project's own, or, when overrides were given, a
        private copy with them written in (removed after the run)."""
        if not self.overrides:
            yield str(self.config) if self.config is not None else None
            return
        # The file was read and validated once already (connect).
        data = tomllib.loads(self.config.read_text(encoding="utf-8")) if self.config is not None else {}
        data.update(self.overrides)
        with tempfile.TemporaryDirectory(prefix="pql-settings-") as folder:
            path = Path(folder) / "pql.toml"
            path.write_text(tomli_w.dumps(_plain(data)), encoding="utf-8")
            yield str(path)

    def _stored_score(self, account_id: str, as_of: datetime | None) -> dict[str, Any] | None:
        """The account's row of the current list (pql_scores) when it is for `as_of` (any when None).

        The history keeps no phrases, so an earlier `as_of` is computed rather than read."""
        scores = self.output_tables.scores
        with self.crm.connect() as conn:
            if not sa.inspect(conn).has_table(scores.name):
                return None
            query = sa.select(*readable_columns(conn, scores)).where(scores.c.account_id == account_id)
            found = conn.execute(query).mappings().first()
        if found is None or (as_of is not None and pd.Timestamp(found["as_of"]) != pd.Timestamp(as_of)):
            return None
        return dict(found)

    def _require_account(self, account_id: str) -> None:
        accounts = self.source_tables.accounts
        with self.source.connect() as conn:
            query = sa.select(accounts.c.account_id).where(accounts.c.account_id == account_id)
            if conn.execute(query.limit(1)).first() is None:
                raise UnknownAccountError(
                    f"account {account_id!r} is not in {accounts.name} of {redacted(self.source.url)} "
                    "and has no stored score: check the id (pqls() and features() list the known ones)."
                )

    def _computed_score(self, account_id: str, as_of: datetime) -> dict[str, Any]:
        """Every account scored as of `as_of` with the champion (reasons need the peers), one kept."""
        from pql.features.builder import build_features
        from pql.flows.ledger import last_trained_model
        from pql.models.registry import load_scoring_model
        from pql.scoring.crm import crm_snapshot
        from pql.scoring.rows import pql_rows
        from pql.scoring.writeback import previous_scores

        settings, tables = self.settings, self.output_tables
        features = build_features(self.source, self.source_tables, settings, [as_of])
        model = load_scoring_model(settings, scored_before=last_trained_model(self.crm, tables))
        crm = crm_snapshot(self.source, self.source_tables, as_of)
        scored_before = sa.inspect(self.crm).has_table(tables.history.name)
        previous = previous_scores(self.crm, tables, as_of) if scored_before else pd.DataFrame()
        rows = pql_rows(features, model, crm, previous, settings, as_of)
        found = rows[rows["account_id"].astype(str) == account_id]
        if found.empty:
            raise UnknownAccountError(
                f"account {account_id!r} has no features as of {as_of:%Y-%m-%d %H:%M} UTC "
                "(it was created after that instant)."
            )
        return {**found.iloc[0].to_dict(), "as_of": as_of, "model_version": model.version}

    def _name(self, account_id: str) -> str | None:
        from pql.scoring.crm import account_names

        if not sa.inspect(self.source).has_table(self.source_tables.accounts.name):
            return None
        return account_names(self.source, self.source_tables, [account_id]).get(account_id)


def _masked(url: str) -> str:
    try:
        return redacted(url)
    except sa.exc.ArgumentError:
        return url  # not a URL a password could hide in


def _plain(value: Any) -> Any:
    """Overrides as TOML can hold them (paths as text; no value means the key is left out)."""
    if isinstance(value, Mapping):
        return {key: _plain(item) for key, item in value.items() if item is not None}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    return value.as_posix() if isinstance(value, Path) else value


def _explanation(row: Mapping[str, Any], name: str | None, *, stored: bool) -> Explanation:
    return Explanation(
        account_id=str(row["account_id"]),
        name=name,
        as_of=pd.Timestamp(row["as_of"]).to_pydatetime(),
        score=float(row["score"]),
        probability=float(row["probability"]),
        tier=_text(row.get("tier")),
        grade=_text(row.get("grade")),
        is_pql=bool(row["is_pql"]),
        routed_to=_text(row.get("routed_to")),
        playbook=_text(row.get("playbook")),
        ineligible_reason=_text(row.get("ineligible_reason")),
        reasons=reasons_of(_text(row.get("reasons_json")), _text(row.get("reasons_text"))),
        model_version=str(row["model_version"]),
        stored=stored,
        talking_point=_text(row.get("talking_point")),
    )


def connect(config: str | Path | None = None, **overrides: Any) -> Project:
    """The project the command line would work on: settings from `config`, else $PQL_CONFIG, else
    ./pql.toml; `overrides` (top-level settings keys, e.g. source_url=...) replace the file's values,
    and PQL_* variables win over both, as for the command line. A bad setting raises ConfigError."""
    path = config_path(Path(config) if config is not None else None)
    settings = load_settings(path, **overrides)
    return Project(settings, config=path, overrides=overrides)
