"""The public web pages of both channels: one look, one navigation, one start page.

- `keys`: where the pages live in storage (pure, imported by the feed and the newsletter).
- `render`: the Jinja2 environment of `templates/` (autoescaped, strict), the site's chrome
  (navigation, canonical link, Open Graph and Twitter tags, JSON-LD) and Swedish formats.
- `transcript`: a WebVTT or SRT transcript as paragraphs of plain text.
- `podcast`: the show page, the episode pages and a removed episode's notice page (pure).
- `publish`: uploads the podcast pages that changed, found out from one manifest.
- `home`: the start page (`index.html` at the storage root), which each channel updates.
"""
