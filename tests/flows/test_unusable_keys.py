"""A key nothing can be wrapped to costs nobody but its owner anything.

The registry takes any 32 bytes as a member's X25519 key, and a client names its own in its signed
manifest. A low-order point (all zeros, for one) is a key to which no data key can be wrapped
(``privacy.grants.accepts_grants``). A party that wraps keys to many goes on without such a member:
the client grants it no split, the worker no model key, a disputer no case (tested in
``test_disputes.py``); and a client that names such a key for itself has no order anyone works on,
since its model could never be delivered.
"""

import pytest
from privacy.identity import Identity
from privacy.signing import canonical_json
from storage.manifest import ArtifactEntry, Manifest

from bahen.artifacts import get_grant, get_signed, put_signed
from bahen.devnet import PARAMS
from bahen.parties import CLIENT
from bahen.spec import OrderSpec
from tasks.encrypt_upload import encrypt_upload
from tasks.inputs import InputMismatch
from tasks.shard import shard
from tasks.train import train

SMALL = OrderSpec(dataset="digits", model="mlp", epochs=1, checkpoint_every=8, batch_size=32)


def test_a_drawn_validator_whose_key_takes_no_grant_is_granted_nothing_and_the_order_goes_on(staked_net):
    net = staked_net
    hostile = Identity.generate("hostile")
    stake = 1000 * PARAMS.min_validator_stake  # outweighs every other validator: drawn but for a ~3e-5 chance
    net.chain.fund(hostile.address, stake + 10**18)
    net.market.register_validator(hostile.account, x25519_public=bytes(32), stake=stake)
    upload = encrypt_upload(SMALL, net, salt="0x" + "e4" * 32)
    try:
        plan = shard(SMALL, upload, net)
        [slot] = [s for s in plan.validators if s.address == hostile.address]
        assert slot.grants == {} and all(s.grants for s in plan.validators if s is not slot)
        [assignment] = plan.assignments
        training = train(SMALL, upload, assignment, net)  # the worker's proof is committed and answered all the same
        assert set(training.model_grants) == {s.address for s in plan.validators if s is not slot} | {assignment.address}
    finally:
        net.chain.increase_time(SMALL.deadline_hours * 3600 + 1)
        net.market.cancel_order(net.party(CLIENT).account, order_id=bytes.fromhex(upload.order_id[2:]))
        net.market.request_unbond(hostile.account, amount=stake)  # drawn by no later test


def _naming_its_key(net, upload, x25519: str):
    """The upload re-signed by its client with ``x25519`` as its own key, in its manifest and its own grants."""
    manifest, _ = get_signed(net.store, upload.manifest, Manifest)
    grants = {role: net.store.put(canonical_json(get_grant(net.store, ref).model_copy(update={"recipient_x25519": x25519})),
                                  name=f"{role} grant") for role, ref in upload.client_grants.items()}
    entries = [ArtifactEntry(role=e.role, ref=grants[e.role.split("/")[1]])
               if e.role.startswith("grant/") and e.role.endswith("/client") else e for e in manifest.entries]
    forged = manifest.model_copy(update={"entries": entries, "meta": {**manifest.meta, "client_x25519": x25519}})
    ref, _ = put_signed(net.store, net.party(CLIENT), forged, name="dataset manifest")
    return upload.model_copy(update={"manifest": ref, "client_grants": grants, "client_x25519": x25519})


@pytest.mark.parametrize("x25519", ["00" * 32, "zz"])
def test_a_worker_trains_nothing_for_a_client_whose_key_takes_no_grant(staked_net, x25519):
    net = staked_net
    honest = encrypt_upload(SMALL, net, salt="0x" + ("ca" if x25519 == "zz" else "cb") * 32)
    [assignment] = shard(SMALL, honest, net).assignments
    with pytest.raises(InputMismatch, match=r"differs from its client-signed manifest and the chain in client_x25519 "
                                            r"\(a key to which nothing can be wrapped, so its model could never be "
                                            r"delivered\)"):
        train(SMALL, _naming_its_key(net, honest, x25519), assignment, net)
    assert net.market.order(bytes.fromhex(honest.order_id[2:])).tasks[0].commit_block == 0
