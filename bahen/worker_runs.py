"""A worker's notes on the tasks it trains, in its own home, so a crashed or retried run picks up where it stopped.

One JSON note per task under ``HOME/worker-runs``, rewritten atomically at each milestone: the
grant that wraps the task's model key to the worker itself (drawn once, so every artifact of the
task is sealed under one key across restarts), the last journal the recorder stored (where
training resumes), and once the proof is committed, the signed manifest, its root and block
(from which a retry only answers the challenge). The note holds references and a wrapped key,
nothing a stranger could use; it is dropped once the challenge is answered.
"""

from pathlib import Path

from pydantic import BaseModel, Field
from storage.refs import ArtifactRef

from bahen.errors import BahenError
from bahen.jsonfile import save_json


class WorkerRunNote(BaseModel):
    """Where one task's training stands on the worker's host."""

    order_id: str
    task: int
    model_grant: ArtifactRef = Field(description="The task's model key wrapped to the worker itself")
    last_journal: ArtifactRef | None = Field(default=None, description="The recorder's last stored journal")
    bundle: ArtifactRef | None = Field(default=None, description="The signed proof manifest, once committed")
    merkle_root: str | None = None
    commit_block: int | None = None
    seconds: float = Field(default=0.0, description="Training time of the runs so far")


class WorkerRunBook:
    """Reads and writes a worker's run notes atomically."""

    def __init__(self, directory: Path):
        self.directory = Path(directory)

    def _path(self, order_id: str, task: int) -> Path:
        return self.directory / f"{order_id}-task{task}.json"

    def load(self, order_id: str, task: int) -> WorkerRunNote | None:
        """The note of the task, or None when this host never started it (or finished it)."""
        path = self._path(order_id, task)
        if not path.is_file():
            return None
        try:
            return WorkerRunNote.model_validate_json(path.read_bytes())
        except ValueError as exc:
            raise BahenError(f"the run note {path} is damaged ({exc.__class__.__name__}); delete it to train "
                             "the task from the start") from None

    def save(self, note: WorkerRunNote) -> None:
        save_json(self._path(note.order_id, note.task), note)

    def drop(self, order_id: str, task: int) -> None:
        self._path(order_id, task).unlink(missing_ok=True)
