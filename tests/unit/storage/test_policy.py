"""The policy documents, pinned: the party policy is also tried against a server
(tests/integration/storage/test_store_policy.py); the bucket policy only here, as no server here evaluates it."""

import pytest

from storage.policy import bucket_policy, party_policy
from storage.store import staging_folder

PARTY = "0x" + "Ab" * 20


def test_a_party_creates_addresses_and_keys_in_its_own_folders_and_deletes_only_its_staging():
    statements = {s["Sid"]: s for s in party_policy("s3://bucket/some/prefix", PARTY)["Statement"]}
    assert statements["ReadTheStore"]["Resource"] == ["arn:aws:s3:::bucket/some/prefix/*"]
    assert statements["ListTheBucket"]["Resource"] == ["arn:aws:s3:::bucket"]
    assert statements["ListTheBucket"]["Action"] == ["s3:ListBucket", "s3:GetBucketLocation"]
    assert statements["CreateAddressesAndOwnKeys"]["Resource"] == [
        "arn:aws:s3:::bucket/some/prefix/files/md5/*", "arn:aws:s3:::bucket/some/prefix/dirs/*",
        f"arn:aws:s3:::bucket/some/prefix/pointers/{PARTY.lower()}/*",
        f"arn:aws:s3:::bucket/some/prefix/staging/{PARTY.lower()}/*", 
        f"arn:aws:s3:::bucket/some/prefix/prefect-results/{PARTY.lower()}/*"]
    assert statements["CleanOwnStaging"] == {
        "Sid": "CleanOwnStaging", "Effect": "Allow", "Action": ["s3:DeleteObject"],
        "Resource": [f"arn:aws:s3:::bucket/some/prefix/staging/{PARTY.lower()}/*"]}
    assert all(s["Effect"] == "Allow" for s in statements.values())
    assert not any("Delete" in a and s["Sid"] != "CleanOwnStaging" for s in statements.values() for a in s["Action"])


def test_a_store_at_the_buckets_root_has_no_prefix():
    [read, *_] = party_policy("s3://bucket", PARTY)["Statement"]
    assert read["Resource"] == ["arn:aws:s3:::bucket/*"]
    assert bucket_policy("s3://bucket")["Statement"][0]["Resource"][0] == "arn:aws:s3:::bucket/files/md5/*"


def test_the_bucket_policy_denies_unconditional_writes_and_any_delete_of_addresses_and_pointers():
    once, never = bucket_policy("s3://bucket/p")["Statement"]
    fixed = ["arn:aws:s3:::bucket/p/files/md5/*", "arn:aws:s3:::bucket/p/dirs/*", "arn:aws:s3:::bucket/p/pointers/*"]
    assert once == {"Sid": "AddressesAreWrittenOnce", "Effect": "Deny", "Principal": "*", "Action": ["s3:PutObject"],
                    "Resource": fixed, "Condition": {"Null": {"s3:if-none-match": "true"},
                                                     "Bool": {"s3:ObjectCreationOperation": "true"}}}
    assert never == {"Sid": "AddressesAreNeverDeleted", "Effect": "Deny", "Principal": "*",
                     "Action": ["s3:DeleteObject", "s3:DeleteObjectVersion"], "Resource": fixed}


@pytest.mark.parametrize("party", ["a/b", "*", "..", ""])
def test_a_party_is_one_plain_folder(party):
    with pytest.raises(ValueError, match="party"):
        party_policy("s3://bucket/p", party)


def test_staging_is_the_partys_folder_or_the_shared_one():
    assert staging_folder(PARTY) == f"staging/{PARTY.lower()}/"
    assert staging_folder(None) == "staging/"
