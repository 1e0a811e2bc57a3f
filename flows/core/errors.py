"""The project's exceptions. Every message names the file or item, what is wrong and the fix.

KraftsamlingError
├── SettingsError          a setting or command-line value is invalid
├── SourceError            a posts feed or events source could not be read
├── InputError             a file a person wrote (YAML, sidecar, intro, show.yaml) is invalid
│   └── AudioError         an audio file is not usable as an episode
├── StorageError           object storage failed or refused an operation
│   └── ConcurrentWriteError   someone else changed the object since we read it
├── CatalogError           the podcast catalog is inconsistent
├── FeedGateError          a new feed failed the checks that protect subscribers
├── IssueSentError         a newsletter issue was already sent and is immutable
├── DeliveryError          sending the newsletter failed
├── NoWaitingRunError      no newsletter run waits for a decision on that issue
│                          (defined in flows/newsletter/approval.py, beside the gate)
└── PublishIncompleteError some episodes failed (the others were published)

Two private exceptions never leave their module, so callers never see them:
`flows.podcast.files.MoveFailed` (a move that failed; its journal stays for the next run) and
`flows.newsletter.events._YamlProblem` (values of one events.yaml item that do not fit
together, such as an end before the start; reported through `flows.core.schema`).
"""

from __future__ import annotations


class KraftsamlingError(Exception):
    """Base class: anything the project raises on purpose."""


class SettingsError(KraftsamlingError):
    """A setting or command-line value is invalid."""


class SourceError(KraftsamlingError):
    """A posts feed or events source could not be fetched or parsed."""


class InputError(KraftsamlingError):
    """A hand-written input file (YAML, sidecar, intro, show.yaml) is invalid."""


class AudioError(InputError):
    """An audio file is not usable as a podcast episode."""


class StorageError(KraftsamlingError):
    """Object storage failed or refused an operation."""


class ConcurrentWriteError(StorageError):
    """An object changed since it was read, so writing it would overwrite another run's work."""


class CatalogError(KraftsamlingError):
    """The podcast catalog is inconsistent or cannot be used."""


class FeedGateError(KraftsamlingError):
    """A newly built feed failed the checks that keep subscribers safe; it was not published."""


class IssueSentError(KraftsamlingError):
    """A newsletter issue was already sent and must not change."""


class DeliveryError(KraftsamlingError):
    """Sending the newsletter failed."""


class PublishIncompleteError(KraftsamlingError):
    """Some episodes failed; the good ones were published and the failed ones moved aside."""
