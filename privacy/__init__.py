"""Privacy: streaming authenticated encryption, identities, key grants and signatures.

Modules: :mod:`privacy.stream` (the encrypted artifact format), :mod:`privacy.identity`
(parties' keys and the keystore), :mod:`privacy.grants` (data keys wrapped per recipient),
:mod:`privacy.signing` (canonical JSON and EIP-191 signatures), :mod:`privacy.errors`.
The file formats are specified in ``privacy/README.md``.
"""
