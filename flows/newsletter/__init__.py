"""The newsletter pipeline: posts and events in, a reviewed and sent issue out.

posts, events (what both share: sources) -> select -> render -> build (the draft on disk)
-> release (review and approval) -> delivery (SMTP) and archive (web copy, archive page and
feed). `issue` is the one owner of an issue's folder, month, keys and web-copy URL; `flow`
holds the Prefect wrappers.
"""
