"""`pql train` and `pql models list | show | promote | rollback`: training runs and the model registry.

The model code (scikit-learn, matplotlib) is imported inside the commands, so `pql --help` stays quick.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from pql.api import Project
from pql.commands import cli_errors, console, instant_option, require_database_files, settings_of
from pql.commands.output import JSON_HELP, print_json, warn
from pql.commands.progress import progress_bar
from pql.config import Settings

if TYPE_CHECKING:
    from pql.models.training import TrainOutcome

SHOWN_METRICS = (
    ("pr_auc", "PR-AUC", 3),
    ("roc_auc", "ROC-AUC", 3),
    ("brier", "Brier", 4),
    ("precision_top_10pct", "precision top 10%", 3),
    ("lift_top_10pct", "lift top 10%", 2),
    ("precision_top_k", "precision top-K", 3),
    ("capture_top_10pct", "conversions in top 10%", 3),
)


def signature_text(status: str, *, short: bool = False) -> str:
    """A version's signature status (models.registry) as `pql models list` (short) or `show` words it."""
    from pql.models.registry import BAD_SIGNATURE, MISSING_FILE, SIGNED, UNSIGNED, UNVERIFIED

    cell, sentence = {
        SIGNED: ("verified", "signed; verifies with the current key"),
        UNSIGNED: ("unsigned", "unsigned"),
        UNVERIFIED: ("not checked", "signed; not verified (no PQL_MODEL__SIGNING_KEY set)"),
        BAD_SIGNATURE: ("INVALID", "does NOT verify with the current key: refused"),
        MISSING_FILE: ("no file", "model file missing"),
    }[status]
    return cell if short else sentence


def _number(value: Any, digits: int) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def outcome_lines(outcome: TrainOutcome) -> list[str]:
    """What `pql train` prints about a registered version."""
    lines = [
        f"registered model {outcome.version} ({outcome.status})",
        f"  folder     {outcome.path}",
        f"  champion   {'yes' if outcome.promoted else 'no, kept as challenger'}: {outcome.reason}",
    ]
    if outcome.metrics:
        m = outcome.metrics
        lines.append(
            f"  holdout    PR-AUC {m['pr_auc']:.3f} (points {m['pr_auc_points']:.3f}, logistic regression "
            f"{m['pr_auc_logreg']:.3f}, most active {m['pr_auc_most_active']:.3f}); lift top 10% "
            f"{m['lift_top_10pct']:.2f}"
        )
        if m.get("model_choice"):
            lines.append(f"  model      {m['model_choice']}")
        lines.append(f"  report     {outcome.path / 'report.html'}")
    return lines


def metrics_table(metrics: dict[str, Any]) -> Table:
    """Model against baselines on the holdout, with 95% bootstrap intervals."""
    from pql.models.report import SCORER_NAMES

    holdout = metrics["holdout"]
    table = Table(title=f"holdout metrics ({metrics['bootstrap_rounds']} bootstrap rounds, 95% intervals)")
    table.add_column("metric")
    for name in holdout:
        table.add_column(SCORER_NAMES.get(name, name), justify="right")
    for key, label, digits in SHOWN_METRICS:
        cells = []
        for name in holdout:
            low, high = holdout[name].get("ci", {}).get(key, (None, None))
            interval = f" [{_number(low, digits)}, {_number(high, digits)}]" if low is not None else ""
            cells.append(_number(holdout[name].get(key), digits) + interval)
        table.add_row(label, *cells)
    return table


def _show(meta: dict[str, Any], is_champion: bool, folder: str, signature: str) -> None:
    from pql.models.report import left_out_lines, path_rows, verdict_sentences

    training = meta.get("training", {})
    dates = training.get("as_of_dates", [])
    console.print(f"model {meta['version']}{' (champion)' if is_champion else ''}", highlight=False)
    for label, value in (
        ("status", meta.get("status")),
        ("created", meta.get("created")),
        ("data end", training.get("data_end")),
        ("snapshots", f"{len(dates)} ({dates[0][:10]} … {dates[-1][:10]})" if dates else "none"),
        ("horizon", f"{training.get('horizon_days')} days"),
        ("label", training.get("label") or "converted_to_paid"),
        (
            "rows",
            f"{training.get('rows')} ({training.get('conversions')} positive rows from "
            f"{training.get('converting_accounts', 'n/a')} converting accounts)",
        ),
        ("promotion", meta.get("promotion", {}).get("reason")),
        ("signature", signature_text(signature)),
        ("report", f"{folder}/report.html"),
    ):
        console.print(f"  {label:<10} {value}", highlight=False)
    if meta.get("reason"):
        console.print(f"  {'refused':<10} {meta['reason']}", highlight=False)
    paths = path_rows(meta)
    if paths:
        console.print(
            f"  {'paths':<10} converting accounts: self-serve only / opportunity only / both", highlight=False
        )
        for label, (converting, *split) in paths:
            console.print(f"    {label:<28} {converting:>6}: {' / '.join(split)}", highlight=False)
    left_out = left_out_lines(meta)
    if left_out:
        console.print(f"  {'left out':<10} {len(left_out)} feature(s) not in the model:", highlight=False)
        for line in left_out:
            console.print(f"    {line}", highlight=False)
    if meta.get("metrics"):
        console.print(metrics_table(meta["metrics"]))
        for _, sentence in verdict_sentences(meta["metrics"]):
            console.print(sentence, highlight=False)
    else:
        for rule in meta.get("points", {}).get("rules", []):
            console.print(
                f"  points {rule['event']:<24} {rule['points']:>7.2f} pts, lifespan {rule['lifespan_days']} "
                f"days ({rule['source']})",
                highlight=False,
            )


def version_document(meta: dict[str, Any], is_champion: bool, folder: str, signature: str) -> dict[str, Any]:
    """A version as `pql models show --json` prints it: the facts `_show` prints, with the holdout
    metrics unrounded (intervals, comparisons, folds and calibration as registered)."""
    from pql.models.report import verdict_sentences

    training = meta.get("training", {})
    dates = training.get("as_of_dates", [])
    metrics = meta.get("metrics") or None
    return {
        "version": meta["version"],
        "is_champion": is_champion,
        "status": meta.get("status"),
        "created": meta.get("created"),
        "data_end": training.get("data_end"),
        "snapshots": {
            "count": len(dates),
            "first": dates[0] if dates else None,
            "last": dates[-1] if dates else None,
        },
        "horizon_days": training.get("horizon_days"),
        "rows": training.get("rows"),
        "conversions": training.get("conversions"),
        "converting_accounts": training.get("converting_accounts"),
        "promotion": meta.get("promotion"),
        "signature": signature,
        "signature_text": signature_text(signature),
        "report": f"{folder}/report.html",
        "refused": meta.get("reason"),
        "left_out": meta.get("features", {}).get("left_out", {}),
        "metrics": metrics,
        "verdicts": [sentence for _, sentence in verdict_sentences(metrics)] if metrics else [],
        "points_rules": None if metrics else meta.get("points", {}).get("rules", []),
    }


def warn_if_unsigned(settings: Settings, *, as_json: bool = False) -> None:
    """Print the unsigned-registry warning when no signing key is set (on stderr beside JSON)."""
    from pql.models.registry import signing_key, unsigned_warning

    if signing_key(settings) is None:
        warning = unsigned_warning(settings.model_registry_path)
        if as_json:
            warn(warning)
        else:
            console.print(f"[bold yellow]warning:[/] {escape(warning)}", highlight=False)


def register(app: typer.Typer) -> None:
    @app.command("train")
    @cli_errors
    def train(
        ctx: typer.Context,
        end: Annotated[
            str | None,
            typer.Option(
                "--end",
                help="Train as of this instant: labels see nothing at or after it (ISO date or date-time"
                " in the configured time zone; default: the end of observed data).",
            ),
        ] = None,
    ) -> None:
        """Build the training set, backtest the model against baselines, register it, promote if better."""
        settings = settings_of(ctx)
        end_at = instant_option(end, "--end", settings)
        require_database_files(settings.source_database_url)
        with Project(settings) as project, progress_bar("training", "steps") as progress:
            outcome = project.train(end_at, progress=progress)
        for line in outcome_lines(outcome):
            console.print(line, highlight=False)
        warn_if_unsigned(settings)

    models_app = typer.Typer(
        help="Inspect the model registry, promote or roll back the champion.", no_args_is_help=True
    )
    app.add_typer(models_app, name="models")

    @models_app.command("list")
    @cli_errors
    def list_models(
        ctx: typer.Context, as_json: Annotated[bool, typer.Option("--json", help=JSON_HELP)] = False
    ) -> None:
        """List every registered version, oldest first; * marks the champion; whether each is signed."""
        from pql.models.registry import list_versions, signing_key

        settings = settings_of(ctx)
        root = settings.model_registry_path
        rows = list_versions(root, signing_key(settings))
        if as_json:
            if not rows:
                warn(f"no models in {root}; run `pql train`")
            champion = next((row["version"] for row in rows if row["is_champion"]), None)
            print_json({"registry": root, "champion": champion, "versions": rows})
            warn_if_unsigned(settings, as_json=True)
            return
        if not rows:
            console.print(f"no models in {root}; run `pql train`", highlight=False)
            return
        table = Table(
            caption="* champion; signature: verified with the current key, unsigned, INVALID (refused) or "
            "not checked (no key set); `pql models show VERSION` gives the reasons"
        )
        table.add_column("")
        for column in ("version", "status", "data end", "PR-AUC", "points", "promoted", "signature"):
            table.add_column(column, no_wrap=True)
        for row in rows:
            table.add_row(
                "*" if row["is_champion"] else "",
                row["version"],
                row["status"],
                (row["data_end"] or "")[:10],
                _number(row["pr_auc"], 3),
                _number(row["pr_auc_points"], 3),
                "yes" if row["promoted"] else "no",
                signature_text(row["signature"], short=True),
            )
        console.print(table)
        warn_if_unsigned(settings)

    @models_app.command("show")
    @cli_errors
    def show(
        ctx: typer.Context,
        version: Annotated[
            str | None, typer.Argument(help="A version from `pql models list` (default: the champion).")
        ] = None,
        as_json: Annotated[bool, typer.Option("--json", help=JSON_HELP)] = False,
    ) -> None:
        """Show a version's training window, metrics against baselines, promotion decision and signature."""
        from pql.models.registry import (
            RegistryError,
            champion_state,
            read_metadata,
            signing_key,
            version_signature,
        )

        settings = settings_of(ctx)
        root = settings.model_registry_path
        champion = champion_state(root).get("champion")
        version = version or champion
        if version is None:
            raise RegistryError(f"No champion model in {root}: run `pql train`, or name a version to show.")
        meta = read_metadata(root, version)
        signature = version_signature(root, version, meta, signing_key(settings))
        if as_json:
            print_json(version_document(meta, version == champion, str(root / version), signature))
            warn_if_unsigned(settings, as_json=True)
            return
        _show(meta, version == champion, str(root / version), signature)
        warn_if_unsigned(settings)

    @models_app.command("promote")
    @cli_errors
    def promote_version(
        ctx: typer.Context, version: Annotated[str, typer.Argument(help="The version to make champion.")]
    ) -> None:
        """Make VERSION the champion (after checking it loads: checksum, features, library versions)."""
        from pql.models.registry import promote

        settings = settings_of(ctx)
        promote(settings.model_registry_path, version, settings, reason="manual promotion")
        console.print(f"{version} is now the champion", highlight=False)
        warn_if_unsigned(settings)

    @models_app.command("rollback")
    @cli_errors
    def rollback_champion(ctx: typer.Context) -> None:
        """Undo the latest promotion: the previous champion scores again."""
        from pql.models.registry import rollback

        settings = settings_of(ctx)
        restored = rollback(settings.model_registry_path, settings)
        console.print(f"rolled back: {restored} is the champion again", highlight=False)
        warn_if_unsigned(settings)
