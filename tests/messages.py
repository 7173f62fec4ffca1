"""What the tests of refusals ask of a message: one sentence a user can act on."""

from __future__ import annotations


def one_sentence(message: str) -> bool:
    """A message a user can act on: one line, a sentence ending in a full stop, no traceback."""
    return "\n" not in message and message.rstrip().endswith(".") and "Traceback" not in message
