"""The podcast pipeline: dropped audio in, a published episode and the feed out.

inbox (the drop folder, sidecars) -> audio, loudness -> catalog (the truth) -> feed;
`run` is the publish run; `flow` holds the Prefect wrappers.
"""
