"""Where the web pages live in storage, relative to the storage's prefix (pure, no imports
from either pipeline, so the feed and the newsletter can name a page's key).

>>> episode_page_key("ai-i-kommunens-vardag")
'podcast/episodes/ai-i-kommunens-vardag.html'
"""

from __future__ import annotations

HOME_KEY = "index.html"  # the start page, at the storage root
HOME_STATE_KEY = "home.json"  # private: what each channel shows on the start page
SHOW_PAGE_KEY = "podcast/index.html"
EPISODE_PAGES_PREFIX = "podcast/episodes/"
PAGES_MANIFEST_KEY = "podcast/pages.json"  # private: a hash of each podcast page
NEWSLETTER_ARCHIVE_KEY = "newsletters/index.html"  # the Swedish edition's archive page
HTML_CONTENT_TYPE = "text/html; charset=utf-8"


def episode_page_key(slug: str) -> str:
    """The key of an episode's page (a removed episode's notice page has the same key)."""
    return f"{EPISODE_PAGES_PREFIX}{slug}.html"
