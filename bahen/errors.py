"""The root of the errors a user can cause and act on.

Every package raises its own subclasses (privacy, storage, contracts, proof); the CLI and the flows
print their message, never a traceback.
"""


class BahenError(Exception):
    """An expected failure with a message that says what went wrong and what to do."""
