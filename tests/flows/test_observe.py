"""The training progress bar is for people watching: a Prefect server that does not take an update
(restarting, unreachable) costs that update, never the training. The server's refusal is the one a
restart gave the devnet's train runs (httpx.ConnectError from a client that had not connected yet);
the devnet test of a server restart covers the real outage."""

import httpx
import pytest
from prefect import flow, get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
from training.trainer import TrainSpec

from tasks import observe
from tasks.observe import TrainingProgress

SPEC = TrainSpec(model="mlp", input_shape=(1, 8, 8), num_classes=10, optimizer="sgd", lr=0.05, batch_size=32,
                 epochs=1, seed=7, checkpoint_every=2)
ROWS = 320  # 10 steps
ORDER = "0x" + "ab" * 32


@pytest.fixture
def outage(monkeypatch) -> list[bool]:
    """Set its only item to make the artifact calls fail as a server that is down makes them fail."""
    down = [False]
    for name in ("create_progress_artifact", "update_progress_artifact"):
        real = getattr(observe, name)

        def call(*args, _real=real, **kwargs):
            if down[0]:
                raise httpx.ConnectError("All connection attempts failed")
            return _real(*args, **kwargs)

        monkeypatch.setattr(observe, name, call)
    return down


def _shown(task: int) -> list[float]:
    with get_client(sync_client=True) as client:
        key = ArtifactFilterKey(any_=[f"train-{ORDER[2:14]}-{task}"])
        return [a.data for a in client.read_artifacts(artifact_filter=ArtifactFilter(key=key))]


def test_an_update_the_server_does_not_take_is_skipped_and_the_next_one_lands(prefect, outage):
    @flow
    def watched() -> list[list[float]]:
        progress = TrainingProgress(ORDER, 0, SPEC, ROWS)
        progress("checkpoint-00000002")
        seen = [_shown(0)]
        outage[0] = True
        progress("checkpoint-00000006")
        outage[0] = False
        seen.append(_shown(0))
        progress("checkpoint-00000008")
        return [*seen, _shown(0)]

    assert watched() == [[20.0], [20.0], [80.0]]


def test_a_bar_the_server_did_not_take_at_the_start_appears_at_the_next_checkpoint(prefect, outage):
    @flow
    def watched() -> list[list[float]]:
        outage[0] = True
        progress = TrainingProgress(ORDER, 1, SPEC, ROWS)
        outage[0] = False
        seen = [_shown(1)]
        progress("checkpoint-00000004")
        return [*seen, _shown(1)]

    assert watched() == [[], [40.0]]
