"""What the ``cryptoviz`` commands raise when an operation cannot be done."""

from __future__ import annotations

from typing import Final

EXIT_FAILED: Final = 1


class OperationFailed(Exception):
    """An operation that could not be done; its message is the one line the operator sees."""
