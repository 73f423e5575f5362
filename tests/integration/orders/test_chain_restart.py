"""An order on a real chain node that restarts before every stage and dies in the middle of one.

anvil runs with persisted state (``--state``): stopped, it writes its chain to a file, and started
again on the same port it continues from there, as a node restarted by its operator does. While the
worker trains, the node dies: the train stage fails naming the chain, and once the node is back, the
same stage resumes from the worker's last journal and commits. The order completes, is paid, and
re-checks clean against the chain.
"""

import pytest
from contracts.chain import Chain
from contracts.errors import ChainUnavailableError
from proof.bundle import ProofBundle

from bahen import devnet
from bahen.artifacts import get_signed
from bahen.audit import recheck
from bahen.devnet_services import PROJECT_DIR, DevnetError, anvil_binary
from bahen.network import connect, keystore_of, save_addresses
from bahen.records import OrderRecord
from bahen.settings import Settings
from bahen.spec import OrderSpec
from tasks.audit import audit
from tasks.encrypt_upload import encrypt_upload
from tasks.score import score
from tasks.settle import settle
from tasks.shard import shard
from tasks.train import train
from tasks.verify import verify
from tests.anvil import start_anvil, stop_anvil

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SPEC = OrderSpec(dataset="digits", model="mlp", epochs=1, checkpoint_every=8, batch_size=32)


class Node:
    """One anvil node with persisted state, restartable on its port."""

    def __init__(self, binary, state):
        self.binary, self.state, self.cache = binary, state, state.with_name("anvil-cache")
        self.proc, self.url = start_anvil(binary, self.cache, state=state)
        self.port = int(self.url.rsplit(":", 1)[1])

    def stop(self):
        if self.proc is not None:
            stop_anvil(self.proc, self.cache)
            self.proc = None

    def restart(self):
        self.stop()
        self.proc, _ = start_anvil(self.binary, self.cache, state=self.state, port=self.port)


@pytest.fixture
def node(tmp_path):
    try:
        binary = anvil_binary(PROJECT_DIR)
    except DevnetError as missing:
        pytest.skip(str(missing))
    node = Node(binary, tmp_path / "chain-state.json")
    yield node
    node.stop()


def test_an_order_completes_across_node_restarts_and_an_outage_while_training(node, tmp_path):
    settings = Settings(home=tmp_path / "home", chain_rpc_url=node.url, scrypt_n=2**12)
    save_addresses(settings, devnet.bootstrap(Chain.connect(node.url), keystore_of(settings)).addresses)
    net = connect(settings)

    upload = encrypt_upload(SPEC, net, salt="0x" + "9a" * 32)
    node.restart()
    plan = shard(SPEC, upload, net)
    [assignment] = plan.assignments
    node.restart()

    def node_dies(name: str) -> None:
        if name == "journal-00000016":
            node.stop()

    with pytest.raises(ChainUnavailableError, match="no EVM JSON-RPC endpoint answers"):
        train(SPEC, upload, assignment, net, on_put=node_dies)
    node.restart()
    training = train(SPEC, upload, assignment, net)  # resumes from the last journal the dead run stored
    bundle, _ = get_signed(net.store, training.bundle, ProofBundle, expected_signer=assignment.address)
    assert bundle.resumes == [training.steps]
    node.restart()
    verification = verify(SPEC, upload, plan, assignment, training, net)
    node.restart()
    scores = score(SPEC, upload, plan, training, net)
    node.restart()
    verdict = audit(upload, plan, assignment, training, net)
    node.restart()
    settled = settle(upload, net)

    assert verification.passed and verdict.accepted
    assert settled.payouts_wei[assignment.address] == assignment.payment_wei
    record = OrderRecord(order_id=upload.order_id, spec=SPEC, status="settled", upload=upload, shard=plan,
                         training=training, verification=verification, scores=scores, verdict=verdict, settled=settled)
    assert recheck(record, net.store, net.market) == []
