"""Models kept as JSON files on a party's own host, written so that no reader ever sees half a file."""

import os
import threading
from pathlib import Path

from pydantic import BaseModel


def save_json(path: Path, model: BaseModel) -> None:
    """Write ``model`` as indented JSON to ``path`` through a temporary file beside it and an atomic rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    tmp.write_text(model.model_dump_json(indent=2))
    tmp.replace(path)
