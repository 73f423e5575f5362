"""The policy documents, pinned: the party policy is also tried against a server
(tests/integration/storage/test_store_policy.py); the bucket policy only here, as no server here evaluates it."""

import pytest

from storage.policy import bucket_policy, party_policy
from storage.store import staging_folder

PARTY = "0x" + "Ab" * 20


def test_a_party_creates_addresses_and_keys_in_its_own_folders_and_deletes_only_its_staging():
    store, own = "arn:aws:s3:::bucket/some/prefix", PARTY.lower()
    assert party_policy("s3://bucket/some/prefix", PARTY) == {"Version": "2012-10-17", "Statement": [
        {"Sid": "ReadTheStore", "Effect": "Allow", "Action": ["s3:GetObject"], "Resource": [f"{store}/*"]},
        {"Sid": "ListTheBucket", "Effect": "Allow", "Action": ["s3:ListBucket", "s3:GetBucketLocation"],
         "Resource": ["arn:aws:s3:::bucket"]},
        {"Sid": "CreateAddressesAndOwnKeys", "Effect": "Allow",
         "Action": ["s3:PutObject", "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts"],
         "Resource": [f"{store}/files/md5/*", f"{store}/dirs/*", f"{store}/pointers/{own}/*", f"{store}/staging/{own}/*",
                      f"{store}/prefect-results/{own}/*"]},
        {"Sid": "CleanOwnStaging", "Effect": "Allow", "Action": ["s3:DeleteObject"], "Resource": [f"{store}/staging/{own}/*"]},
    ]}


def test_a_store_at_the_buckets_root_has_no_prefix():
    [read, *_] = party_policy("s3://bucket", PARTY)["Statement"]
    assert read["Resource"] == ["arn:aws:s3:::bucket/*"]
    assert bucket_policy("s3://bucket")["Statement"][0]["Resource"][0] == "arn:aws:s3:::bucket/files/md5/*"


def test_the_bucket_policy_denies_unconditional_writes_and_any_delete_of_addresses_and_pointers():
    policy = bucket_policy("s3://bucket/p")
    assert policy["Version"] == "2012-10-17"
    once, never = policy["Statement"]
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
