"""The client's side of delivery: decrypt the final model with the grant a validator released to the client."""

import os
import tempfile
from pathlib import Path

import torch
from training.checkpoint import Checkpoint

from bahen.artifacts import PROOF_ROLE, get_decrypted, open_stored_grant
from bahen.errors import BahenError
from bahen.network import keystore_of, store_of
from bahen.orders import OrderBook
from bahen.parties import CLIENT
from bahen.settings import load_settings


def fetch_model(order_id: str, out: Path, *, overwrite: bool = False) -> Path:
    """Write the final model's state_dict of ``order_id`` to ``out`` (atomically); an existing ``out`` only if ``overwrite``.

    A ``.safetensors`` file is written with safetensors (what a fine-tuning order starts from),
    anything else with ``torch.save``.
    """
    out = Path(out)
    if out.exists() and not overwrite:
        raise BahenError(f"{out} exists; pass --force to overwrite it, or choose another --out")
    settings = load_settings()
    record = OrderBook(settings.orders_dir).load(order_id)
    if record.training is None or record.delivery is None:
        raise BahenError(
            f"order {order_id} has no delivered model (status: {record.status}): the model key is released to the "
            "client once the accepted work verdict is final and the order settled; a rejected task's model is never delivered"
        )
    store = store_of(settings)
    client = keystore_of(settings).load(CLIENT)
    key = open_stored_grant(store, record.delivery.grant, client, order_id=order_id)
    plain = get_decrypted(store, key, record.training.final_model, order_id=order_id, role=PROOF_ROLE)
    checkpoint = Checkpoint.from_bytes(plain, name=record.training.final_model.name)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".part")
    os.close(fd)
    try:
        if out.suffix == ".safetensors":
            from safetensors.torch import save_file

            save_file(checkpoint.model_state, tmp)
        else:
            torch.save(checkpoint.model_state, tmp)
        os.replace(tmp, out)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return out
