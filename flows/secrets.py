"""Database URLs kept in Prefect Secret blocks: `source_url` or `crm_url` set to
`prefect_secret://<block name>` is replaced, when a flow starts, by the URL the block holds.

The URL then never sits in a file or a deployment's parameters; like every URL, it is only ever
shown with its password masked (`pql.db.redacted`).
"""

from __future__ import annotations

from prefect.blocks.system import Secret

from pql.config import SECRET_URL_SCHEME as SCHEME
from pql.config import URL_KEYS, ConfigError, Settings


def with_secret_urls(settings: Settings) -> Settings:
    """`settings` with every `prefect_secret://NAME` database URL replaced by the Secret block NAME."""
    updates = {}
    for key in URL_KEYS:
        value = getattr(settings, key)
        if value and value.startswith(SCHEME):
            name = value.removeprefix(SCHEME)
            try:
                updates[key] = str(Secret.load(name).get())
            except ValueError as exc:
                raise ConfigError(
                    f"{key}: there is no Prefect Secret block named {name!r}. Create it (Secret(value=URL)"
                    f".save({name!r}) or in the Prefect UI under Blocks) or set the URL another way."
                ) from exc
    return settings.model_copy(update=updates) if updates else settings
