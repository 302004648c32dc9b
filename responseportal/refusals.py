"""The refusal every change of the portal raises when it cannot be made.

It lives in the core so that every app can refuse a change the same way: a request's
transition (approvals), the audit log that cannot record it (audit). Views catch it and show
its message; nothing was changed.
"""


class TransitionRefused(Exception):
    """The change is not allowed now; the message says what happened."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message
