"""Great Expectations Data Docs of a run: static HTML rendered by GX's own site builder.

Imports GX when imported: `gx_runner.prepare` imports it in a run's main thread, the results import it
when they write.

GX builds a new Jinja environment for every build, so every build would compile its templates again
(most of a build's time). The pages here are GX's default views with one in-memory bytecode cache per
process: the templates are compiled once.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
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


def write_data_docs(folder: Path, runs: Sequence[tuple[BatchSuite, Any]], run_name: str) -> Path:
    """Render Checkpoint results (`(suite, GX validation result)` pairs) as GX Data Docs in `folder`:
    `index.html`, a page per validation and per suite. Pages already there are kept; the index is
    rebuilt over all of `runs`. Returns the index's path."""
    import great_expectations as gx
    from great_expectations.core.run_identifier import RunIdentifier
    from great_expectations.data_context.types.resource_identifiers import (
        ExpectationSuiteIdentifier,
        ValidationResultIdentifier,
    )

    pages = {"module_name": __name__, "class_name": "PageView"}
    site = {
        "class_name": "SiteBuilder",
        "show_how_to_buttons": False,
        "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(folder)},
        "site_index_builder": {
            "class_name": "DefaultSiteIndexBuilder",
            "view": {"module_name": __name__, "class_name": "IndexPageView"},
        },
        "site_section_builders": {
            "expectations": {"view": pages},
            "validations": {"view": pages},
            "profiling": "None",  # pql profiles nothing: no section to look for
        },
    }
    with _DOCS_LOCK:
        context = gx.get_context(mode="ephemeral", project_config=quiet_config(pql=site))
        added: set[str] = set()
        new: list[Any] = []
        for suite, result in runs:
            suite_key = ExpectationSuiteIdentifier(name=suite.suite_name)
            if suite.suite_name not in added:
                context.suites.add(suite.gx_suite())
                added.add(suite.suite_name)
            run_id = RunIdentifier(run_name=run_name, run_time=result.meta["run_id"].run_time)
            result.meta["run_id"] = run_id  # the pages show the pql run, not GX's anonymous one
            key = ValidationResultIdentifier(suite_key, run_id, result.batch_id)
            context.validation_results_store.set(key, result)
            page = folder.joinpath("validations", *key.to_tuple()[:-1], f"{key.to_tuple()[-1]}.html")
            if not page.is_file():
                new += [key, suite_key]
        if new or not (folder / "index.html").is_file():
            context.build_data_docs(site_names=["pql"], resource_identifiers=new or None)
    return folder / "index.html"
