"""The client's order: what to train, on what, how, and for how much.

One flat pydantic model so the Prefect UI renders it as a form (dropdowns for choices, bounds and
descriptions on every field) and the CLI reads it from YAML with the same validation.
"""

import reprlib
from decimal import Decimal
from pathlib import Path
from typing import Literal

import yaml
from privacy.grants import accepts_grants
from privacy.identity import PublicIdentity
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator

from bahen.errors import BahenError
from training.tolerance import replay_tolerance

WEI_PER_ETH = 10**18
MAX_AUDITORS = 8
CLIENT_FILES = "client_files"  # validation context: the spec is read on the client's host, where its files are


def auditor_identity(key: str) -> PublicIdentity:
    """An auditor named as '<address>:<X25519 public key hex>'."""
    address, _, x25519 = str(key).partition(":")
    try:
        auditor = PublicIdentity(name=f"auditor {address[:10]}", address=address, x25519_public=x25519)
    except ValidationError:
        raise ValueError(f"auditor {_SHORT.repr(key)} is not '<address>:<X25519 public key, 64 hex digits>' "
                         "as `bahen keys new` prints it") from None
    if not accepts_grants(auditor):
        raise ValueError(f"auditor {auditor.address} names X25519 key {x25519[:16]}…, to which no key can be wrapped "
                         "(a low-order point): ask the auditor for the key `bahen keys new` printed")
    return auditor


def _bounds(field: dict) -> str:
    """A field's bounds in words, from its JSON schema ("" when it has none)."""
    low = next((f"{word} {field[key]:,}" for key, word in (("minimum", "at least"), ("exclusiveMinimum", "over"),
                                                           ("minLength", "at least"), ("minItems", "at least"))
                if key in field), "")
    high = next((f"{word} {field[key]:,}" for key, word in (("maximum", "at most"), ("exclusiveMaximum", "under"),
                                                            ("maxLength", "at most"), ("maxItems", "at most"))
                 if key in field), "")
    unit = " characters" if "minLength" in field or "maxLength" in field else \
        " entries" if "minItems" in field or "maxItems" in field else ""
    return ", ".join(b for b in (low, high) if b) + (unit if low or high else "")


def _run_form_schema(schema: dict) -> None:
    """The spec's JSON schema as the Prefect UI's run form reads it: an optional path is a text field that may
    be left empty (not a choice between text and None), and each field's bounds close its description."""
    for field in schema["properties"].values():
        options = field.get("anyOf", [])
        if len(options) == 2 and {"type": "null"} in options:
            del field["anyOf"]
            field.pop("default", None)
            field.update(next(o for o in options if o != {"type": "null"}))
        if bounds := _bounds(field):
            field["description"] = f"{field['description']} — {bounds}"


class OrderSpec(BaseModel):
    """A training order as the client submits it."""

    model_config = ConfigDict(extra="forbid", frozen=True, json_schema_extra=_run_form_schema)

    dataset: Literal["digits", "mnist", "shakespeare"] = Field(
        "digits", description="Sample dataset: sklearn's 8x8 digits (1,797 images), MNIST (70,000), or 1.1 MB of "
        "Shakespeare's plays for a gpt order"
    )
    dataset_path: str | None = Field(
        None,
        description="Your own CSV or Parquet file (feature columns x0..x{d-1} in [0, 1], integer column 'label'), a "
        "folder of images with one subfolder per class, or a text file (.txt) for a gpt order; when set it replaces "
        "the sample dataset",
    )
    label_column: str = Field(
        "label", min_length=1, max_length=200,
        description="The column of your CSV or Parquet file that holds the labels; where the file has no columns "
        "x0, x1, …, every other column is a feature",
    )
    scale_features: bool = Field(
        False, description="Map each feature column of your file to [0, 1] by its minimum and maximum before "
        "anything is uploaded (the scales go into the signed dataset manifest)",
    )
    model: Literal["mlp", "cnn", "resnet20", "gpt"] = Field(
        "mlp", description="Model from the registry; gpt is a decoder-only transformer that learns the next byte of a text"
    )
    initial_weights_path: str | None = Field(
        None, description="Fine-tuning: a safetensors file of the ordered model's weights (its state_dict) to start "
        "from, uploaded encrypted like the data; unset, training starts from weights the seed derives"
    )
    context: int = Field(64, ge=8, le=1024, description="gpt: bytes the model sees at once (its context window)")
    gpt_layers: int = Field(2, ge=1, le=24, description="gpt: transformer blocks")
    gpt_heads: int = Field(4, ge=1, le=32, description="gpt: attention heads per block")
    gpt_embed: int = Field(64, ge=8, le=2048, description="gpt: embedding width, a multiple of the heads")
    optimizer: Literal["sgd", "adamw"] = Field("sgd", description="Optimizer: SGD with momentum, or AdamW")
    lr: float = Field(0.05, gt=0, le=10, description="Learning rate of the optimizer (the peak of a cosine schedule)")
    momentum: float = Field(0.9, ge=0, lt=1, description="SGD momentum (ignored by AdamW)")
    weight_decay: float = Field(0.0, ge=0, le=1, description="Weight decay (decoupled under AdamW)")
    lr_schedule: Literal["constant", "cosine"] = Field("constant", description="Learning-rate schedule: constant, or cosine decay to 0 over the order's steps")
    batch_size: int = Field(32, ge=1, le=4096, description="Samples per step")
    grad_shards: int = Field(
        1, ge=1, le=64, description="Data-parallel shards of every batch (a divisor of batch_size): a worker with that "
        "many devices trains one shard on each, and the step is the same bits on one device"
    )
    epochs: int = Field(2, ge=1, le=100, description="Passes over the training split")
    seed: int = Field(
        0, ge=0, lt=2**63, description="Client's seed: with the chain, the market contract and the order id it derives the "
        "training seed of initial weights and batch order"
    )
    checkpoint_every: int = Field(
        10, ge=1, le=100_000, description="Steps between full checkpoints (at most 50 under a CUDA profile)"
    )
    holdout_fraction: float = Field(
        0.2, gt=0, le=0.5, description="Share of rows kept back for the validators' holdout score"
    )
    profile: Literal["cpu-fp32-exact", "cuda-fp32-deterministic", "cuda-bf16-tolerant"] = Field(
        "cpu-fp32-exact", description="Determinism profile; sets the tolerance of replayed steps and segments"
    )
    workers: int = Field(
        1, ge=1, le=1, description="Workers training the order (sharding across several is not offered yet)"
    )
    validators: int = Field(2, ge=1, le=16, description="Validators scoring the final model")
    replay_segments: int = Field(
        1, ge=1, le=64, description="Random checkpoint segments re-executed by the verifier"
    )
    spot_steps: int = Field(
        48, ge=0, le=4096,
        description="Single steps the verifier re-executes from revealed states; 48 catches a worker "
        "faking 10% of its steps with probability 1 - 0.9^48 > 0.99",
    )
    largest_steps: int = Field(
        8, ge=0, le=1024,
        description="Single steps the verifier re-executes because their logged update is the largest against "
        "their neighbours': a step that moves the model far is checked whatever the random sample",
    )
    suspicious_steps: int = Field(
        8, ge=0, le=1024,
        description="Single steps the verifier re-executes because Wasp's learned model of honest training scores "
        "them highest, when any step's score clears the model's threshold (more checks, never a rejection by itself)",
    )
    loss_samples: int = Field(
        8, ge=1, le=1024, description="Committed batches whose logged loss the verifier recomputes"
    )
    budget_eth: float = Field(
        1.0, gt=0, le=10_000, description="Most the client pays, in ETH; what is not spent is refunded"
    )
    deadline_hours: int = Field(24, ge=1, le=24 * 30, description="Hours until the order may be cancelled")
    commit_minutes: int = Field(
        120, ge=1, lt=24 * 30 * 60,
        description="Minutes a drawn worker has to train and commit its proof, and then the order's verifier to verify "
        "it; past them anyone may have the chain replace the one that stalls by the next draw",
    )
    auditors: list[str] = Field(
        default_factory=list, max_length=MAX_AUDITORS,
        description="Outside auditors who may re-execute the verification (`bahen audit verify`), each as "
        "'<address>:<X25519 public key>' (what `bahen keys new` prints on their host): they are granted the "
        "training split's key now and, once an accepted task is settled, its model key with yours",
    )

    @field_validator("auditors")
    @classmethod
    def _auditor_keys(cls, value: list[str]) -> list[str]:
        keys = [f"{a.address}:{a.x25519_public}" for a in map(auditor_identity, value)]
        if len({k.split(":")[0] for k in keys}) != len(keys):
            raise ValueError("an auditor is named twice")
        return keys

    @property
    def auditor_identities(self) -> list[PublicIdentity]:
        """The auditors the order names, as the identities their keys are granted to."""
        return [auditor_identity(a) for a in self.auditors]

    @model_validator(mode="after")
    def _initial_weights_are_a_safetensors_file(self) -> "OrderSpec":
        path = self.initial_weights_path
        if path is not None and Path(path).suffix != ".safetensors":
            raise ValueError(f"initial_weights_path {path!r} is not a .safetensors file")
        return self

    @model_validator(mode="after")
    def _the_clients_files_exist(self, info: ValidationInfo) -> "OrderSpec":
        """On the client's host (:func:`parse_spec`), the files the order names must be there; a
        worker or validator that receives the spec never reads them and cannot check."""
        if not (info.context or {}).get(CLIENT_FILES):
            return self
        if self.dataset_path is not None and not Path(self.dataset_path).exists():
            raise ValueError(f"dataset_path {self.dataset_path!r} is neither a file nor a folder")
        if self.initial_weights_path is not None and not Path(self.initial_weights_path).is_file():
            raise ValueError(f"initial_weights_path {self.initial_weights_path!r} is not a readable file")
        return self

    @model_validator(mode="after")
    def _text_for_a_language_model(self) -> "OrderSpec":
        if self.model == "gpt" and not self.text:
            raise ValueError("a gpt order trains on text: set dataset to shakespeare or dataset_path to a .txt file")
        if self.model != "gpt" and self.text:
            raise ValueError(f"{self.data_name} is text, which only a gpt model learns from: set model to gpt")
        if self.gpt_embed % self.gpt_heads:
            raise ValueError(f"gpt_embed ({self.gpt_embed}) must be a multiple of gpt_heads ({self.gpt_heads})")
        return self

    @model_validator(mode="after")
    def _shards_divide_the_batch(self) -> "OrderSpec":
        if self.batch_size % self.grad_shards:
            raise ValueError(f"batch_size ({self.batch_size}) must be a multiple of grad_shards ({self.grad_shards})")
        return self

    @model_validator(mode="after")
    def _commit_before_the_deadline(self) -> "OrderSpec":
        if self.commit_minutes >= self.deadline_hours * 60:
            raise ValueError(
                f"commit_minutes ({self.commit_minutes}) must be shorter than the deadline "
                f"({self.deadline_hours} h = {self.deadline_hours * 60} min), so a replaced worker's successor has time"
            )
        return self

    @model_validator(mode="after")
    def _segments_the_profile_can_replay(self) -> "OrderSpec":
        longest = replay_tolerance(self.profile).segment_steps
        if longest is not None and self.checkpoint_every > longest:
            raise ValueError(
                f"checkpoint_every ({self.checkpoint_every}) must be at most {longest} under {self.profile}: a validator "
                f"on another GPU replays a longer segment too far from the worker's to tell an honest one from a forged one"
            )
        return self

    @property
    def text(self) -> bool:
        """Whether the order's data is text (a language-modelling order)."""
        return Path(self.dataset_path).suffix == ".txt" if self.dataset_path is not None else self.dataset == "shakespeare"

    @property
    def data_name(self) -> str:
        """The order's data as its client knows it: the sample dataset's name, or the file's."""
        return Path(self.dataset_path).name if self.dataset_path is not None else self.dataset

    @property
    def budget_wei(self) -> int:
        """The budget in wei, from the decimal the client wrote (no binary rounding)."""
        return int(Decimal(str(self.budget_eth)) * WEI_PER_ETH)


MAX_SPEC_BYTES = 64 << 10
MAX_SPEC_DEPTH = 16
_SHORT = reprlib.Repr()  # how an error message shows a bad value: short, however large the value
_SHORT.maxlevel, _SHORT.maxstring, _SHORT.maxother = 2, 60, 60


class SpecError(BahenError):
    """An order spec that does not validate; the message names every offending field."""


def parse_spec(data: dict, *, source: str = "order spec") -> OrderSpec:
    """Validate ``data`` as an order, turning pydantic's errors into one readable message."""
    try:
        return OrderSpec.model_validate(data or {}, context={CLIENT_FILES: True})
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            field = ".".join(str(part) for part in err["loc"]) or "(order)"
            lines.append(f"  {field}: {err['msg']} (got {_SHORT.repr(err.get('input'))})")
        raise SpecError(f"{source} is invalid:\n" + "\n".join(lines)) from None


class _SpecLoader(yaml.SafeLoader):
    """Safe YAML without aliases and at most :data:`MAX_SPEC_DEPTH` levels deep.

    An order has no use for either: nested aliases expand exponentially, and PyYAML composes
    nested collections by recursion, so depth is bounded before Python's recursion limit is met.
    """

    def __init__(self, stream) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent, index):
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent):
            raise yaml.composer.ComposerError(None, None, f"found alias *{event.anchor}: an order spec may not "
                                              "use aliases, write the value out", event.start_mark)
        if self._depth >= MAX_SPEC_DEPTH:
            raise yaml.composer.ComposerError(None, None, f"values nest more than {MAX_SPEC_DEPTH} levels deep; "
                                              "an order spec is a flat mapping", event.start_mark)
        self._depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def load_spec(path: Path) -> OrderSpec:
    """Read an order spec from a YAML file of at most :data:`MAX_SPEC_BYTES` UTF-8 bytes, without aliases."""
    try:
        with Path(path).open("rb") as file:
            raw = file.read(MAX_SPEC_BYTES + 1)
    except FileNotFoundError:
        raise SpecError(f"order spec {path} does not exist") from None
    except OSError as exc:
        raise SpecError(f"order spec {path} cannot be read: {exc.strerror}") from None
    if len(raw) > MAX_SPEC_BYTES:
        raise SpecError(f"order spec {path} is over {MAX_SPEC_BYTES:,} bytes; an order is a few dozen lines")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SpecError(f"order spec {path} is not UTF-8 text (byte {exc.start} is {raw[exc.start]:#04x}); "
                        "save it as UTF-8") from None
    try:
        data = yaml.load(text, Loader=_SpecLoader)  # _SpecLoader is a SafeLoader
    except yaml.YAMLError as exc:
        raise SpecError(f"order spec {path} is not valid YAML: {exc}") from None
    if data is not None and not isinstance(data, dict):
        raise SpecError(f"order spec {path} must be a mapping of fields, got {type(data).__name__}")
    return parse_spec(data, source=f"order spec {path}")
