"""Per-party write permissions, enforced by an S3 server: each party's credentials carry the policy
``storage.policy.party_policy`` gives it, and the server checks every request against it.

moto checks signatures and IAM users' policies only while ``enable_iam_authentication`` is on
(requests made before are not checked, which is how the users are created). It does not evaluate
policy conditions or bucket policies, so ``bucket_policy``'s write-once rule is not tried here.
"""

import json
import uuid
from collections.abc import Iterator

import boto3
import pytest
from botocore.exceptions import ClientError
from moto.core.authorization import enable_iam_authentication

from storage.errors import StoreUnavailableError
from storage.policy import party_policy
from storage.s3 import S3Store

pytest_plugins = ["tests.s3server"]

WASP, VALIDATOR = "0x" + "Aa" * 20, "0x" + "bB" * 20


def _credentials(s3_server, url: str, party: str) -> dict[str, str]:
    """A new IAM user holding ``party``'s policy on the store at ``url``; its access key."""
    iam = boto3.client("iam", endpoint_url=s3_server.endpoint_url, region_name="us-east-1",
                       aws_access_key_id="testing", aws_secret_access_key="testing")
    user = f"bahen-{party.lower()}-{uuid.uuid4().hex[:6]}"
    iam.create_user(UserName=user)
    iam.put_user_policy(UserName=user, PolicyName="bahen-store", PolicyDocument=json.dumps(party_policy(url, party)))
    key = iam.create_access_key(UserName=user)["AccessKey"]
    return {"access_key": key["AccessKeyId"], "secret_key": key["SecretAccessKey"]}


@pytest.fixture
def parties(s3_server) -> Iterator[tuple[str, dict, dict]]:
    """A fresh store and two parties' credentials, with the server checking every request."""
    url = s3_server.fresh_url()
    wasp, validator = _credentials(s3_server, url, WASP), _credentials(s3_server, url, VALIDATOR)
    with enable_iam_authentication():
        yield url, wasp, validator


def _raw(s3_server, credentials: dict):
    return boto3.client("s3", endpoint_url=s3_server.endpoint_url, region_name="us-east-1",
                        aws_access_key_id=credentials["access_key"], aws_secret_access_key=credentials["secret_key"])


def _stream(size: int, seed: int) -> Iterator[bytes]:
    block = uuid.UUID(int=seed).bytes * (1 << 16)  # 1 MiB
    for start in range(0, size, len(block)):
        yield block[:size - start]


def test_a_party_stores_artifacts_names_them_in_its_folder_and_cleans_its_staging(s3_server, parties):
    url, wasp_keys, validator_keys = parties
    wasp = S3Store(url, endpoint_url=s3_server.endpoint_url, party=WASP, part_size=5 << 20, **wasp_keys)
    small = wasp.put(b"a signed verdict", name="verdict")
    big = wasp.put(_stream(12 << 20, 1), name="checkpoint")  # three parts: staged, copied in, staging deleted
    listing = wasp.put_dir({"a": small, "b/c": big}, name="bundle")
    wasp.put_pointer(WASP, "orders/0xab/task-0/case", small)
    assert wasp.get_pointer(WASP, "orders/0xab/task-0/case") == small
    prefix = url.removeprefix(f"s3://{s3_server.bucket}/")
    keys = [o["Key"] for o in _raw(s3_server, wasp_keys).list_objects_v2(
        Bucket=s3_server.bucket, Prefix=prefix).get("Contents", [])]
    assert not [k for k in keys if "/staging/" in k] and f"{prefix}/pointers/{WASP.lower()}/orders/0xab/task-0/case" in keys

    validator = S3Store(url, endpoint_url=s3_server.endpoint_url, party=VALIDATOR, part_size=5 << 20, **validator_keys)
    assert validator.get(small) == b"a signed verdict"
    assert {path: ref.sha256 for path, ref in validator.list_dir(listing).items()} == {"a": small.sha256, "b/c": big.sha256}
    assert validator.put(_stream(12 << 20, 1), name="the same checkpoint") == big.model_copy(
        update={"name": "the same checkpoint"})  # content another party stored: found at its address, kept
    assert validator.get_pointer(WASP, "orders/0xab/task-0/case") == small  # reads every party's names


def test_a_party_cannot_name_in_another_folder_replace_or_delete_anything(s3_server, parties):
    url, wasp_keys, validator_keys = parties
    wasp = S3Store(url, endpoint_url=s3_server.endpoint_url, party=WASP, part_size=5 << 20, **wasp_keys)
    verdict = wasp.put(b"a signed verdict", name="verdict")
    validator = S3Store(url, endpoint_url=s3_server.endpoint_url, party=VALIDATOR, **validator_keys)
    with pytest.raises(StoreUnavailableError, match="was denied .*a party writes only its own keys.*store_party"):
        validator.put_pointer(WASP, "orders/0xab/task-0/case", validator.put(b"junk", name="junk"))
    with pytest.raises(StoreUnavailableError, match="denied"):  # its own folder's name for what Wasp names
        wasp.put_pointer(VALIDATOR, "orders/0xab/task-0/delivery", verdict)
    # its credentials staging under another folder than its own (a host whose store_party is wrong or unset)
    for party in (VALIDATOR, None):
        with pytest.raises(StoreUnavailableError, match="denied"):
            S3Store(url, endpoint_url=s3_server.endpoint_url, party=party, part_size=5 << 20,
                    **wasp_keys).put(_stream(12 << 20, 2), name="checkpoint")

    raw, bucket, prefix = _raw(s3_server, validator_keys), s3_server.bucket, url.removeprefix(f"s3://{s3_server.bucket}/")
    address = f"{prefix}/files/md5/{verdict.md5[:2]}/{verdict.md5[2:]}"
    refused = [
        lambda: raw.delete_object(Bucket=bucket, Key=address),
        lambda: raw.delete_object(Bucket=bucket, Key=f"{prefix}/pointers/{WASP.lower()}/orders/0xab/task-0/case"),
        lambda: raw.delete_object(Bucket=bucket, Key=f"{prefix}/staging/{WASP.lower()}/0/1"),
        lambda: raw.put_object(Bucket=bucket, Key=f"{prefix}/pointers/{WASP.lower()}/x", Body=b"{}"),
        lambda: raw.put_object(Bucket=bucket, Key=f"{prefix}/elsewhere", Body=b"x"),
        lambda: raw.put_object(Bucket=bucket, Key="outside-the-store", Body=b"x"),
        lambda: raw.put_bucket_lifecycle_configuration(Bucket=bucket, LifecycleConfiguration={"Rules": []}),
    ]
    for request in refused:
        with pytest.raises(ClientError, match="AccessDenied"):
            request()
    deleted = raw.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": address}]})
    assert [e["Code"] for e in deleted["Errors"]] == ["AccessDenied"]
    assert wasp.get(verdict) == b"a signed verdict"


def test_a_partys_runs_write_their_results_in_its_own_folder_only(s3_server, parties, tmp_path, monkeypatch):
    from bahen.devnet_up import result_storage
    from bahen.settings import load_settings

    url, wasp_keys, _ = parties
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", wasp_keys["access_key"])  # how a host's Prefect runs get credentials
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", wasp_keys["secret_key"])
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)

    def results(party):
        return result_storage(load_settings(home=tmp_path, store_url=url, s3_endpoint_url=s3_server.endpoint_url,
                                            s3_region="us-east-1", store_party=party))

    own = results(WASP)
    assert own.basepath == f"{url}/prefect-results/{WASP.lower()}"
    own.write_path("a-result", b'{"verdict": "accepted"}')
    assert own.read_path("a-result") == b'{"verdict": "accepted"}'
    with pytest.raises(PermissionError):
        results(VALIDATOR).write_path("a-result", b'{"verdict": "rejected"}')
    assert results(VALIDATOR).basepath == f"{url}/prefect-results/{VALIDATOR.lower()}"
