"""The exceptions tributary raises, with the CLI's messages."""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional

if TYPE_CHECKING:
    from . import Answer


class TributaryError(Exception):
    """Every error tributary raises."""


class ConfigError(TributaryError, ValueError):
    """A bad argument or sources file: the message names the field, and the file's line and column."""


class QuestionError(TributaryError, ValueError):
    """A question that cannot be asked: blank, longer than 4 KiB, or with control characters."""


class SourceError(TributaryError):
    """No answer: the sources failed, or none had anything for the question.

    ``answer`` is the run's report all the same: each source's status and error say what happened.
    """

    def __init__(self, message: str, answer: Optional[Answer] = None) -> None:
        super().__init__(message)
        self.answer = answer


class DeadlineExceeded(SourceError, TimeoutError):
    """No answer within the run's deadline: tributary's own deadline, as a ``TimeoutError``."""


class BatchError(TributaryError):
    """A batch that could not start or stopped early: its input or database could not be read or written."""
