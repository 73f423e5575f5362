"""Challenge, then reveal: the worker's answer to the spot-check part of a challenge.

After the worker's root is on chain and the challenge seed exists, anyone can compute which
steps are spot-checked (``Challenge.spot_steps``). For each challenged step ``t`` the worker
stores the states after ``t`` and ``t + 1`` steps from its spool through ``put`` (which seals and
stores them) and returns a :class:`Response` listing their references. The verifier checks each
revealed state against the digest the worker committed in its step log, so the worker can only
reveal what it committed to before it knew the challenge. The state before step 0 is never
revealed: anyone rebuilds it from the order's seed.
"""

from collections.abc import Callable

from pydantic import BaseModel, Field

from proof.challenge import Challenge
from proof.spool import StateNotSpooledError, StateSpool, state_name
from storage.refs import ArtifactRef

Put = Callable[[str, bytes], ArtifactRef]
Regenerate = Callable[[int], bytes]


class Response(BaseModel, frozen=True):
    """The worker's revealed states for one challenge; signed by the worker like its bundle."""

    order_id: str
    task: int
    merkle_root: str = Field(description="The committed root this response answers for")
    challenge_seed: str = Field(description="Hex of the challenge seed it answers")
    states: list[tuple[int, ArtifactRef]] = Field(description="(step, stored state after that many steps)")

    def state_ref(self, step: int) -> ArtifactRef | None:
        """The reference of the revealed state after ``step`` steps, if revealed."""
        return next((ref for s, ref in self.states if s == step), None)


def revealed_steps(challenge: Challenge) -> list[int]:
    """The states a complete response reveals: before and after every spot-checked step (never state 0)."""
    return sorted({s for t in challenge.spot_steps for s in (t, t + 1) if s > 0})


def respond(
    challenge: Challenge,
    spool: StateSpool,
    put: Put,
    *,
    order_id: str,
    task: int,
    merkle_root: str,
    regenerate: Regenerate | None = None,
) -> Response:
    """Reveal the challenged states from ``spool``; ``regenerate(step)`` rebuilds one the spool lacks.

    A worker that resumed after a crash lost the spool of its first process; it passes a
    ``regenerate`` that replays from its checkpoints (see :func:`replay_regenerator`).
    """
    states = []
    for step in revealed_steps(challenge):
        if step in spool:
            data = spool.get(step)
        elif regenerate is not None:
            data = regenerate(step)
        else:
            raise StateNotSpooledError(step)
        states.append((step, put(state_name(step), data)))
    return Response(
        order_id=order_id, task=task, merkle_root=merkle_root, challenge_seed=challenge.seed, states=states
    )


def replay_regenerator(spec, X, y, checkpoints: list[tuple[int, ArtifactRef]], get: Callable[[ArtifactRef], bytes]) -> Regenerate:
    """A ``regenerate`` that replays the checkpoint segment holding the step and keeps its states.

    Each segment is replayed at most once (its states go to a private spool), so answering many
    challenges costs at most one replay of the steps before the resume. Under an exact profile the
    replayed states have the committed bytes; under a tolerant profile they may not, so such a
    worker keeps its spool across restarts instead.
    """
    from training.checkpoint import Checkpoint
    from training.trainer import replay_segment_states

    cache = StateSpool()
    steps = sorted(s for s, _ in checkpoints)

    def regenerate(step: int) -> bytes:
        if step not in cache:
            base, ref = max(((s, r) for s, r in checkpoints if s < step), key=lambda item: item[0])
            stop = next((s for s in steps if s >= step), step)
            start = Checkpoint.from_bytes(get(ref), name=ref.name)
            for offset, state in enumerate(replay_segment_states(spec, X, y, start=start, stop=stop), start=base + 1):
                cache.add(offset, state)
        return cache.get(step)

    return regenerate
