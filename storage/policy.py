"""Who may write where in an S3 store, as policy documents for AWS IAM and MinIO.

Under the store's prefix, every key is one of five kinds:

============================  ==================================  =========================================
key                           what                                who may write it
============================  ==================================  =========================================
``files/md5/…``               DVC's objects, named by their md5   any party creates one; nobody replaces or
``dirs/…``                    bahen's listings, by their sha256   deletes one (content-addressed)
``pointers/<party>/…``        a party's names for its artifacts   that party creates them; nobody deletes
``staging/<party>/…``         a party's uploads in progress       that party creates and deletes them
``prefect-results/<party>/…`` a party's runs' results            that party (its Prefect result storage)
============================  ==================================  =========================================

Every party may read everything: what the store holds is ciphertext or signed public evidence.
:func:`party_policy` is the identity policy of one party's credentials (an IAM user's policy on
AWS, ``mc admin policy create`` on MinIO); :func:`bucket_policy` is AWS's bucket policy that makes
every address and pointer write-once for anyone, whatever client it uses.
"""

from storage.s3 import split_url
from storage.store import party_folder

_VERSION = "2012-10-17"


def _arn(bucket: str, key: str = "") -> str:
    return f"arn:aws:s3:::{bucket}/{key}" if key else f"arn:aws:s3:::{bucket}"


def _scope(url: str) -> tuple[str, str]:
    """The bucket, and the prefix of the store's keys (empty, or ending in '/')."""
    bucket, prefix = split_url(url)
    return bucket, f"{prefix}/" if prefix else ""


def party_policy(url: str, party: str) -> dict:
    """The identity policy of ``party``'s credentials on the store at ``url`` (``s3://bucket/prefix``).

    It reads and lists everything; creates objects and directory listings at their addresses, and
    pointers and its runs' results in its own folders (and may abort or list the parts of its
    multipart uploads there); creates and deletes staging objects in its own folder only. Nothing
    else: no other party's pointer, result or staging object, no deletion of an address, no bucket
    configuration.
    """
    bucket, prefix = _scope(url)
    folder = party_folder(party)
    creates = [_arn(bucket, f"{prefix}{key}") for key in
               ("files/md5/*", "dirs/*", f"pointers/{folder}/*", f"staging/{folder}/*", f"prefect-results/{folder}/*")]
    return {"Version": _VERSION, "Statement": [
        {"Sid": "ReadTheStore", "Effect": "Allow", "Action": ["s3:GetObject"], "Resource": [_arn(bucket, f"{prefix}*")]},
        # Listing makes a missing key a 404 rather than a 403, which is how a put finds a free address;
        # s3fs (under Prefect's result storage) asks where the bucket is before it writes a result.
        {"Sid": "ListTheBucket", "Effect": "Allow", "Action": ["s3:ListBucket", "s3:GetBucketLocation"],
         "Resource": [_arn(bucket)]},
        {"Sid": "CreateAddressesAndOwnKeys", "Effect": "Allow",
         "Action": ["s3:PutObject", "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts"], "Resource": creates},
        {"Sid": "CleanOwnStaging", "Effect": "Allow", "Action": ["s3:DeleteObject"],
         "Resource": [_arn(bucket, f"{prefix}staging/{folder}/*")]},
    ]}


def bucket_policy(url: str) -> dict:
    """AWS's bucket policy making the store's addresses and pointers write-once for every principal.

    An object is created there only by a ``PutObject`` or ``CompleteMultipartUpload`` carrying
    ``If-None-Match: *`` (what bahen's store always sends), so no credentials, a party's or an
    administrator's, can replace one through another client; and none can be deleted. Staging keys
    are left out: they are written plainly and deleted by their party. Needs S3's conditional-write
    keys (``s3:if-none-match``, ``s3:ObjectCreationOperation``); a server that lacks them may refuse
    the policy or every write.
    """
    bucket, prefix = _scope(url)
    fixed = [_arn(bucket, f"{prefix}{key}") for key in ("files/md5/*", "dirs/*", "pointers/*")]
    return {"Version": _VERSION, "Statement": [
        {"Sid": "AddressesAreWrittenOnce", "Effect": "Deny", "Principal": "*", "Action": ["s3:PutObject"],
         "Resource": fixed,
         "Condition": {"Null": {"s3:if-none-match": "true"}, "Bool": {"s3:ObjectCreationOperation": "true"}}},
        {"Sid": "AddressesAreNeverDeleted", "Effect": "Deny", "Principal": "*",
         "Action": ["s3:DeleteObject", "s3:DeleteObjectVersion"], "Resource": fixed},
    ]}
