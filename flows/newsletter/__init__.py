"""The newsletter pipeline: posts and events in, a reviewed and sent issue out.

sources (posts, events) -> select -> render -> build (the draft on disk) -> release
(review, approval, delivery, web copy and archive); `flow` holds the Prefect wrappers.
"""
