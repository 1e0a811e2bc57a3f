"""The core both pipelines stand on: settings, errors, models, storage, fetching.

Nothing here knows about a newsletter issue or a podcast episode's files; the pipelines
import the core, never the other way round.
"""
