"""The podcast catalog: `podcast/catalog.json` in storage, the truth about published episodes.

CONTRACT STUB (the podcast helper replaces this with the implementation; keep the names).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from flows.models import Episode

CATALOG_KEY = "podcast/catalog.json"


@dataclass
class Catalog:
    """All published episodes and the ETag of the catalog object they were read from."""

    episodes: list[Episode] = field(default_factory=list)
    etag: str | None = None  # None when the catalog did not exist yet


def load_catalog(storage) -> Catalog:  # noqa: ANN001
    """Read the catalog from storage (an empty Catalog if there is none yet)."""
    raise NotImplementedError
