"""Great Expectations Data Docs of a run: static HTML rendered by GX's own site builder.

Imports GX when imported: `gx_runner.prepare` imports it in a run's main thread, the results import it
when they write.

GX builds a new Jinja environment for every build, so every build would compile its templates again
(most of a build's time). The pages here are GX's default views with one in-memory bytecode cache per
process: the templates are compiled once.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2
from great_expectations.render.view import DefaultJinjaIndexPageView, DefaultJinjaPageView

from pql.validation.gx_runner import BatchSuite, quiet_config

_DOCS_LOCK = threading.Lock()


class _Bytecode(jinja2.BytecodeCache):
    """Compiled templates kept in memory, keyed by template name and source checksum."""

    def __init__(self) -> None:
        self._compiled: dict[str, bytes] = {}

    def load_bytecode(self, bucket: jinja2.bccache.Bucket) -> None:
        compiled = self._compiled.get(bucket.key)
        if compiled is not None:
            bucket.bytecode_from_string(compiled)

    def dump_bytecode(self, bucket: jinja2.bccache.Bucket) -> None:
        self._compiled[bucket.key] = bucket.bytecode_to_string()


_BYTECODE = _Bytecode()


class PageView(DefaultJinjaPageView):
    """GX's page view (suite and validation pages), its templates compiled once per process."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.env.bytecode_cache = _BYTECODE


class IndexPageView(DefaultJinjaIndexPageView):
    """GX's index page view, its templates compiled once per process."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.env.bytecode_cache = _BYTECODE


@dataclass
class _Site:
    """A docs context whose one site is a run's Data Docs folder, and what its stores already hold."""

    context: Any
    suites: set[str] = field(default_factory=set)
    results: set[str] = field(default_factory=set)


@functools.lru_cache(maxsize=4)
def _site(folder: Path) -> _Site:
    """The docs context of `folder`, kept across a run's writes: each result is stored (serialized by
    GX, half the cost of a write) once, not at every write."""
    import great_expectations as gx

    views = {"module_name": __name__, "class_name": "PageView"}
    site = {
        "class_name": "SiteBuilder",
        "show_how_to_buttons": False,
        "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(folder)},
        "site_index_builder": {
            "class_name": "DefaultSiteIndexBuilder",
            "view": {"module_name": __name__, "class_name": "IndexPageView"},
        },
        "site_section_builders": {
            "expectations": {"view": views},
            "validations": {"view": views},
            "profiling": "None",  # pql profiles nothing: no section to look for
        },
    }
    return _Site(gx.get_context(mode="ephemeral", project_config=quiet_config(pql=site)))


def write_data_docs(folder: Path, runs: Sequence[tuple[BatchSuite, Any]], run_name: str) -> Path:
    """Render Checkpoint results (`(suite, GX validation result)` pairs) as GX Data Docs in `folder`:
    `index.html`, a page per validation and per suite. Pages already there are kept; the index is
    rebuilt over all of `runs`. Returns the index's path."""
    from great_expectations.core.run_identifier import RunIdentifier
    from great_expectations.data_context.types.resource_identifiers import (
        ExpectationSuiteIdentifier,
        ValidationResultIdentifier,
    )

    folder = folder.resolve()  # GX's site store takes absolute paths only; state_dir may be relative
    with _DOCS_LOCK:
        site = _site(folder)
        new: list[Any] = []
        for suite, result in runs:
            suite_key = ExpectationSuiteIdentifier(name=suite.suite_name)
            if suite.suite_name not in site.suites:
                site.context.suites.add(suite.gx_suite())
                site.suites.add(suite.suite_name)
            run_id = RunIdentifier(run_name=run_name, run_time=result.meta["run_id"].run_time)
            result.meta["run_id"] = run_id  # the pages show the pql run, not GX's anonymous one
            key = ValidationResultIdentifier(suite_key, run_id, result.batch_id)
            if key.to_fixed_length_tuple() in site.results:
                continue
            site.context.validation_results_store.set(key, result)
            site.results.add(key.to_fixed_length_tuple())
            page = folder.joinpath("validations", *key.to_tuple()[:-1], f"{key.to_tuple()[-1]}.html")
            if not page.is_file():
                new += [key, suite_key]
        if new or not (folder / "index.html").is_file():
            site.context.build_data_docs(site_names=["pql"], resource_identifiers=new or None)
    return folder / "index.html"
