"""Errors raised by the privacy package.

Every error's ``str()`` names the thing that failed and says what to do about it, so the CLI and
the pipeline can show it to a user as is.
"""


class PrivacyError(Exception):
    """Base class of every failure the privacy package reports."""


class DecryptionError(PrivacyError):
    """An encrypted artifact could not be decrypted.

    ``artifact`` is the human name of the artifact (for example ``order 0xab…/checkpoint step 40``)
    and ``reason`` says what failed and what to do.
    """

    def __init__(self, artifact: str, reason: str) -> None:
        self.artifact = artifact
        self.reason = reason
        super().__init__(f"cannot decrypt {artifact}: {reason}")


class WrongKeyError(DecryptionError):
    """The key offered is not the key the artifact (or grant) was encrypted for."""


class TruncatedError(DecryptionError):
    """The artifact ends early: chunks or bytes are missing at its end."""


class TamperedError(DecryptionError):
    """Bytes were changed, or chunks were reordered, duplicated, dropped or spliced in."""


class TruncatedOrTamperedError(TruncatedError, TamperedError):
    """The final chunk fails authentication and is shorter than a full chunk.

    Without the missing bytes no one can tell a file cut short inside a chunk from an altered
    final chunk, so this error is both a :class:`TruncatedError` and a :class:`TamperedError`.
    """


class ContextMismatchError(DecryptionError):
    """The artifact is authentic but belongs to another order or role than the one expected."""


class HeaderError(DecryptionError):
    """The header is malformed, or of a format version or algorithm this code does not know."""


class SignatureError(PrivacyError):
    """A signature is invalid, covers other data, or was made by an unexpected signer."""


class KeystoreError(PrivacyError):
    """The keystore cannot provide an identity: wrong passphrase, missing identity, bad permissions."""


class CanonicalJsonError(PrivacyError, TypeError):
    """A value cannot be written as canonical JSON (bytes, NaN, non-string keys, …)."""


class DocumentError(PrivacyError):
    """Bytes offered as a signed document or a key grant are not one: too large, too deep, not JSON, or lacking fields."""
