"""Merkle tree over a proof's artifact hashes, exactly as RFC 6962 section 2.1 defines it.

SHA-256 with domain separation: a leaf hashes as ``H(0x00 || data)`` and an interior node as
``H(0x01 || left || right)``, so a leaf can never pass for a node. The empty tree's root is
``H("")``. Odd counts: a tree of n > 1 leaves splits at k, the largest power of two below n; the
left subtree holds the first k leaves and the right the rest. No leaf is duplicated (unlike
Bitcoin's tree), so two different leaf lists never share a root.

Inclusion proofs are RFC 6962's audit paths, verified with the algorithm of RFC 9162 section
2.1.3.2; any Certificate Transparency implementation checks them too.
"""

import hashlib


def _leaf(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def _node(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    """The largest power of two strictly below ``n`` (n >= 2)."""
    return 1 << ((n - 1).bit_length() - 1)


def _root_of_hashes(hashes: list[bytes]) -> bytes:
    if len(hashes) == 1:
        return hashes[0]
    k = _split(len(hashes))
    return _node(_root_of_hashes(hashes[:k]), _root_of_hashes(hashes[k:]))


def merkle_root(leaves: list[bytes]) -> bytes:
    """The RFC 6962 Merkle tree hash of ``leaves`` (raw leaf data, hashed here)."""
    if not leaves:
        return hashlib.sha256(b"").digest()
    return _root_of_hashes([_leaf(x) for x in leaves])


def _path(hashes: list[bytes], index: int) -> list[bytes]:
    if len(hashes) == 1:
        return []
    k = _split(len(hashes))
    if index < k:
        return _path(hashes[:k], index) + [_root_of_hashes(hashes[k:])]
    return _path(hashes[k:], index - k) + [_root_of_hashes(hashes[:k])]


def inclusion_proof(leaves: list[bytes], index: int) -> list[bytes]:
    """The audit path of leaf ``index``: sibling hashes from the leaf up to the root."""
    if not 0 <= index < len(leaves):
        raise IndexError(f"leaf {index} is outside a tree of {len(leaves)} leaves")
    return _path([_leaf(x) for x in leaves], index)


def verify_inclusion(leaf: bytes, index: int, proof: list[bytes], root: bytes, *, size: int) -> bool:
    """Whether ``leaf`` (raw data) is leaf ``index`` of the tree of ``size`` leaves with ``root``."""
    if not 0 <= index < size:
        return False
    fn, sn, r = index, size - 1, _leaf(leaf)
    for sibling in proof:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = _node(sibling, r)
            # A right edge with no sibling at this level: climb until this node is a right child.
            while not fn & 1 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            r = _node(r, sibling)
        fn, sn = fn >> 1, sn >> 1
    return sn == 0 and r == root
