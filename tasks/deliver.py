"""deliver — a validator releases the model key to the client once the accepted verdict is final.

The worker wrapped its model key to the order's validators only, so the client cannot read the
model while a dispute could still change the verdict, and cannot both keep the model and contest
the payment. Once the order is settled on chain (every verdict past its dispute window) and the
task accepted, a validator of the order that opened the key to check the proof (the first whose
verification no dispute overturned) wraps it to the X25519 key the client named in its signed
dataset manifest, and to every auditor the order names (the spec in that manifest), so they can
re-execute the verification (``bahen audit verify``). A rejected task's model is never delivered:
its payment went back to the client. The validator signs the delivery and names it in the store by
the order and task (``bahen.audit.delivery_pointer``), where an auditor's host finds its grant.
"""

from contextlib import suppress

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from privacy.errors import PrivacyError
from privacy.identity import PublicIdentity
from storage.errors import IntegrityError, StorageError

from bahen.artifacts import get_signed, put_grant, put_signed
from bahen.audit import delivering_validator, delivery_pointer
from bahen.errors import BahenError
from bahen.network import Network
from bahen.records import Delivery, Shard, Training, Upload, ValidatorSlot
from tasks.runtime import network
from tasks.verify import model_key, signed_spec


class NotDeliverable(BahenError):
    """The chain does not (yet) allow the model of a task to be delivered."""


def recipients(net: Network, upload: Upload) -> tuple[PublicIdentity, list[PublicIdentity]]:
    """The client's X25519 key and the order's auditors, as the client's signed dataset manifest names them."""
    spec, manifest = signed_spec(upload, net)
    client = PublicIdentity(name="the client", address=upload.client, x25519_public=manifest.meta["client_x25519"])
    return client, spec.auditor_identities


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
    slot = delivering_validator(shard, order)
    if slot is None:
        raise NotDeliverable(f"every validator of order {order_id} had its verification overturned: none is trusted "
                             "to deliver the model")
    return slot


def deliver(upload: Upload, shard: Shard, training: Training, net: Network) -> Delivery:
    """As the :func:`deliverer`, wrap the task's model key to the client and the order's auditors, sign the
    delivery and name it in the store. Run again, it returns the delivery already named.

    A name taken by anyone else (the store does not stop a party from writing any name) costs
    nobody the model: the delivery is returned all the same, ``named`` false, and the order's
    auditors, who would find their grants under that name, are told so.
    """
    validator = net.party_at(deliverer(upload, shard, training, net).address, role="validator")
    order_id, task = upload.order_id, training.task
    pointer = delivery_pointer(order_id, task)
    with suppress(PrivacyError, StorageError, ValueError):
        delivery, _ = get_signed(net.store, net.store.get_pointer(pointer), Delivery, expected_signer=validator.address)
        if (delivery.order_id, delivery.task) == (order_id, task):
            return delivery
    key = model_key(net, training, validator)
    client, auditors = recipients(net, upload)
    role = f"task {task} model"
    delivery = Delivery(
        order_id=order_id, task=task, validator=validator.address,
        grant=put_grant(net.store, key, client, order_id=order_id, role=role),
        auditor_grants={a.address: put_grant(net.store, key, a, order_id=order_id, role=role) for a in auditors},
    )
    ref, _ = put_signed(net.store, validator, delivery, name=f"order {order_id[:10]}/task {task}/delivery")
    try:
        net.store.put_pointer(pointer, ref)
    except IntegrityError:
        return delivery.model_copy(update={"named": False})
    return delivery


@task(name="deliver", cache_policy=NO_CACHE)
def deliver_task(upload: Upload, shard: Shard, training: Training) -> Delivery:
    """Prefect task: release the model key to the client as the order's delivering validator."""
    delivery = deliver(upload, shard, training, network())
    if not delivery.named:
        name = delivery_pointer(delivery.order_id, delivery.task)
        get_run_logger().warning("the store's name %s of this delivery was taken by another writer: the client has "
                                 "its key; the order's auditors must be handed this delivery to find theirs", name)
    return delivery
