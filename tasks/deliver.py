"""deliver — a validator releases the model key to the client once the accepted verdict is final.

The worker wrapped its model key to the order's validators only, so the client cannot read the
model while a dispute could still change the verdict, and cannot both keep the model and contest
the payment. Once the order is settled on chain (every verdict past its dispute window) and the
task accepted, a validator of the order that opened the key to check the proof (the first whose
verification no dispute overturned) wraps it to the X25519 key the client named in its signed
dataset manifest, and to every auditor the order names (the spec in that manifest), so they can
re-execute the verification (``bahen audit verify``). A rejected task's model is never delivered:
its payment went back to the client. The validator signs the delivery, names it in the store by the
order, the task and the delivery's digest (``bahen.audit.delivery_pointer``), then records that digest
on chain, where an auditor's host, knowing only the order, finds it.
"""

from prefect import task
from prefect.cache_policies import NO_CACHE
from privacy.identity import PublicIdentity

from bahen.artifacts import get_signed, put_grant, signed
from bahen.audit import delivering_validator, delivery_pointer
from bahen.errors import BahenError
from bahen.network import Network
from bahen.records import Delivery, Shard, Training, Upload, ValidatorSlot
from tasks.inputs import check_validators, proof_key, signed_inputs, worker_evidence
from tasks.runtime import network
from tasks.verify import model_key


class NotDeliverable(BahenError):
    """The chain does not (yet) allow the model of a task to be delivered."""


def deliverer(upload: Upload, shard: Shard, training: Training, net: Network) -> ValidatorSlot:
    """The validator that releases the task's model key, if the chain says the work was paid.

    The first validator of the order whose verification no dispute overturned delivers it.
    """
    order_id, task = upload.order_id, training.task
    order = net.market.order(bytes.fromhex(order_id[2:]))
    if order.status != "settled":
        raise NotDeliverable(f"order {order_id} is {order.status} on chain: its model key is released once it is "
                             "settled, after every verdict's dispute window")
    verdict = order.tasks[task].verdict
    if verdict != "accepted":
        raise NotDeliverable(f"task {task} of order {order_id} was {verdict}: its model is not delivered, "
                             "its payment went back to the client")
    check_validators(shard, order)
    slot = delivering_validator(shard, order)
    if slot is None:
        raise NotDeliverable(f"every validator of order {order_id} had its verification overturned: none is trusted "
                             "to deliver the model")
    return slot


def deliver(upload: Upload, shard: Shard, training: Training, net: Network) -> Delivery:
    """As the :func:`deliverer`, wrap the task's model key to the client and the order's auditors, sign the
    delivery, name it in the store and record its digest on chain. Run again, it returns the delivery
    the chain records. The upload must be the one its client signed and the key the one the worker
    sealed its committed proof under (``tasks.inputs``): anything else handed over is refused, with
    nothing recorded.

    The name holds the delivery's digest, unknowable before the validator writes it (the grants are
    fresh ciphertexts), so nobody can take it first; a run that stopped before the chain recorded
    the digest leaves a name nobody reads, and the next run delivers afresh.
    """
    validator = net.party_at(deliverer(upload, shard, training, net).address, role="validator")
    order_id, task = upload.order_id, training.task
    oid = bytes.fromhex(order_id[2:])
    recorded = net.market.delivery_of(oid, task, validator.address)
    if any(recorded):
        ref = net.store.get_pointer(validator.address, delivery_pointer(order_id, task, "0x" + recorded.hex()))
        return get_signed(net.store, ref, Delivery, expected_signer=validator.address)[0]
    spec, manifest, order = signed_inputs(upload, task, net)
    bundle, _ = worker_evidence(training, order, task, net)
    key = proof_key(lambda: model_key(net, training, validator), bundle, order_id, task, net)
    client = PublicIdentity(name="the client", address=upload.client, x25519_public=manifest.meta["client_x25519"])
    auditors = spec.auditor_identities
    role = f"task {task} model"
    delivery = Delivery(
        order_id=order_id, task=task, validator=validator.address,
        grant=put_grant(net.store, key, client, order_id=order_id, role=role),
        auditor_grants={a.address: put_grant(net.store, key, a, order_id=order_id, role=role) for a in auditors},
    )
    data, ref, doc = signed(validator, delivery, name=f"order {order_id[:10]}/task {task}/delivery")
    net.store.put_pointer(validator.address, delivery_pointer(order_id, task, doc.digest), ref)
    net.store.put(data, name=ref.name)
    net.market.record_delivery(validator.account, order_id=oid, task=task, digest=bytes.fromhex(doc.digest[2:]))
    return delivery


@task(name="deliver", cache_policy=NO_CACHE)
def deliver_task(upload: Upload, shard: Shard, training: Training) -> Delivery:
    """Prefect task: release the model key to the client as the order's delivering validator."""
    return deliver(upload, shard, training, network())
