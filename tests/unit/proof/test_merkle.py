"""Merkle tree: RFC 6962 known answers (the Certificate Transparency test vectors) and properties."""

import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from proof.merkle import inclusion_proof, merkle_root, verify_inclusion

LEAVES = [bytes.fromhex(h) for h in ["", "00", "10", "2021", "3031", "40414243", "5051525354555657",
                                     "606162636465666768696a6b6c6d6e6f"]]
ROOTS = [
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]
INCLUSION = [  # (leaf index, tree size, audit path)
    (0, 8, ["96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"]),
    (5, 8, ["bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"]),
    (2, 3, ["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"]),
    (1, 5, ["6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"]),
]


@pytest.mark.parametrize("size", range(9))
def test_roots_match_rfc6962(size):
    assert merkle_root(LEAVES[:size]).hex() == ROOTS[size]


@pytest.mark.parametrize(("index", "size", "path"), INCLUSION)
def test_inclusion_proofs_match_rfc6962(index, size, path):
    proof = inclusion_proof(LEAVES[:size], index)
    assert [p.hex() for p in proof] == path
    assert verify_inclusion(LEAVES[index], index, proof, bytes.fromhex(ROOTS[size]), size=size)


def test_domain_separation():
    # A two-leaf tree's root must not verify as a leaf: leaves hash with 0x00, nodes with 0x01.
    a, b = b"a", b"b"
    assert merkle_root([a]) == hashlib.sha256(b"\x00a").digest()
    inner = hashlib.sha256(b"\x00a").digest() + hashlib.sha256(b"\x00b").digest()
    assert merkle_root([a, b]) == hashlib.sha256(b"\x01" + inner).digest()
    assert merkle_root([inner]) != merkle_root([a, b])


def test_no_duplication_of_odd_leaves():
    # Bitcoin-style trees give [a, b, c] and [a, b, c, c] one root; RFC 6962 does not.
    assert merkle_root([b"a", b"b", b"c"]) != merkle_root([b"a", b"b", b"c", b"c"])


@given(leaves=st.lists(st.binary(max_size=40), min_size=1, max_size=40), data=st.data())
def test_every_leaf_proves_and_tampering_fails(leaves, data):
    root, size = merkle_root(leaves), len(leaves)
    index = data.draw(st.integers(0, size - 1))
    proof = inclusion_proof(leaves, index)
    assert verify_inclusion(leaves[index], index, proof, root, size=size)
    assert not verify_inclusion(leaves[index] + b"x", index, proof, root, size=size)
    if size > 1:
        other = (index + 1) % size
        assert not verify_inclusion(leaves[index], other, proof, root, size=size) or leaves[other] == leaves[index]
    if proof:
        flipped = [bytes([proof[0][0] ^ 1]) + proof[0][1:], *proof[1:]]
        assert not verify_inclusion(leaves[index], index, flipped, root, size=size)


def test_every_leaf_of_every_tree_up_to_64_leaves_proves_itself_and_nothing_else():
    # Exhaustive where the property test samples: the right-edge climbs of every shape of tree.
    for size in range(1, 65):
        leaves = [bytes([i]) for i in range(size)]
        root = merkle_root(leaves)
        for index in range(size):
            proof = inclusion_proof(leaves, index)
            assert verify_inclusion(leaves[index], index, proof, root, size=size), (size, index)
            assert not verify_inclusion(leaves[index], index, [*proof, root], root, size=size), (size, index)
            if size > 1:
                assert not verify_inclusion(leaves[index], (index + 1) % size, proof, root, size=size), (size, index)


def test_out_of_range():
    with pytest.raises(IndexError, match="leaf 1 is outside a tree of 1 leaves"):
        inclusion_proof([b"a"], 1)
    assert not verify_inclusion(b"a", 1, [], merkle_root([b"a"]), size=1)
