"""What each stage hands to the next: references, hashes and numbers, never plaintext or keys.

These are the Prefect task results of an order and the body of its order record, so they stay small
and JSON-serialisable.
"""

from typing import Annotated

from contracts.models import CreditEvent, Ledger, OrderView, Settlement, SlashEvent
from proof.telemetry import TelemetrySample
from proof.wasp import ModelReport
from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema
from storage.refs import ArtifactRef

from bahen.spec import OrderSpec

# A measured number that may not be finite (a diverged loss, a score no validator could compute). Its
# model writes it in JSON as "NaN", "Infinity" or "-Infinity" (ser_json_inf_nan="strings"), and says so
# in its JSON schema, which the Prefect server checks a run's parameters against.
Measure = Annotated[float, WithJsonSchema({"anyOf": [{"type": "number"}, {"enum": ["NaN", "Infinity", "-Infinity"]}]})]
# An order id as the market derives it, and a task's index within the most tasks an order holds
# (BahenMarket.MAX_TASKS): the Prefect server refuses a run handed anything else before any party sees it.
OrderId = Annotated[str, Field(pattern=r"^0x[0-9a-f]{64}$", description="The order id: 0x and 64 lowercase hex digits")]
TaskIndex = Annotated[int, Field(ge=0, lt=64, description="The task's index in the order, from 0")]
# A drawn member's label (``<role>-<registration index>``, see ``tasks.shard``): it names the member's
# scores and files in an audit export, so it is a plain file name.
LABEL_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
Label = Annotated[str, Field(pattern=LABEL_PATTERN, description="The member's label: letters, digits, '.', '_', '-'")]


class Upload(BaseModel):
    """encrypt_upload: the validated dataset, encrypted and stored, and the client's key grants."""

    order_id: OrderId
    salt: str = Field(description="The client's salt: the market derives the order id from it and the client's address")
    spec_hash: str
    client: str
    rows: int
    train_rows: int
    holdout_rows: int
    input_shape: list[int]
    num_classes: int = Field(ge=1, le=2**53, description="Classes of the label (a language model's vocabulary): at "
                             "least one and a count a float holds, so every party's figures against chance are defined")
    expectations: int = Field(description="Expectations evaluated (all passed)")
    train: ArtifactRef
    holdout: ArtifactRef
    weights: ArtifactRef | None = Field(
        default=None, description="A fine-tuning order's starting weights, sealed under the train split's key")
    initial_weights: str | None = Field(default=None, description="Their digest (training.models.weights_digest)")
    client_grants: dict[str, ArtifactRef] = Field(description="Key role (train, holdout) -> that key wrapped to the client")
    auditor_grants: dict[str, ArtifactRef] = Field(
        default_factory=dict, description="Address of each auditor the order names -> the train split's key wrapped to it")
    client_x25519: str = Field(description="The client's X25519 public key (hex), named in the signed dataset manifest: "
                               "where the model key is delivered")
    manifest: ArtifactRef


class Assignment(BaseModel):
    """A task of the order given to a staked worker."""

    task: TaskIndex
    worker: Label
    address: str
    payment_wei: int
    grants: dict[str, ArtifactRef]


class ValidatorSlot(BaseModel):
    """A validator of the order and the keys granted to it."""

    name: Label
    address: str
    fee_wei: int
    grants: dict[str, ArtifactRef]


class Shard(BaseModel):
    """shard: the order opened on chain with its escrow, tasks assigned."""

    model_config = ConfigDict(ser_json_inf_nan="strings")  # read back whole from a signed case, whatever was handed over

    order_id: OrderId
    train_gflops: Measure
    fee_wei: int
    escrow_wei: int
    deadline: int
    assignments: list[Assignment]
    validators: list[ValidatorSlot]


class Training(BaseModel):
    """train: a worker's signed proof, committed on chain."""

    model_config = ConfigDict(ser_json_inf_nan="strings")  # a final loss of NaN where a run logged no step

    order_id: OrderId
    task: TaskIndex
    worker: str
    bundle: ArtifactRef = Field(description="The signed proof manifest")
    merkle_root: str
    commit_block: int
    response: ArtifactRef | None = Field(default=None, description="The worker's signed answer to the challenge")
    final_model: ArtifactRef
    steps: int
    final_loss: Measure
    losses: list[Measure]
    seconds: float
    processes: int = Field(1, description="Processes (devices) the worker trained on, with torch.distributed when several")
    telemetry: list[TelemetrySample] = Field(
        default_factory=list, description="Hardware samples taken while training, thinned (the proof keeps them all)")
    model_grants: dict[str, ArtifactRef] = Field(
        default_factory=dict, description="Address of each validator of the order and of the worker -> the worker's "
        "model key wrapped to it (the client gets none from the worker: a validator delivers it once the work verdict "
        "is final)")


class Verification(BaseModel):
    """verify: the signed verification report of one task."""

    model_config = ConfigDict(ser_json_inf_nan="strings")  # its verifier's figures, read back whole from a signed case

    order_id: OrderId
    task: TaskIndex
    verifier: str
    report: ArtifactRef
    digest: str
    passed: bool
    checks: list[dict]
    cost_fraction: Measure


class Scores(BaseModel):
    """score: every validator's signed performance report and their robust aggregate."""

    model_config = ConfigDict(ser_json_inf_nan="strings")  # NaN where no validator could score the model

    order_id: OrderId
    reports: dict[str, ArtifactRef]
    accuracy: dict[str, Measure]
    loss: dict[str, Measure]
    median_accuracy: Measure
    outliers: list[str]


class Verdict(BaseModel):
    """audit: Wasp's work verdict with its reasons, recorded on chain, and the model report."""

    order_id: OrderId
    task: TaskIndex
    accepted: bool
    reasons: list[str] = Field(description="The work verdict's rules: the Proof of Train, signatures, commitments")
    model_report: ModelReport = Field(description="The validators' figures: evidence for the client, never a verdict")
    verdict: ArtifactRef
    digest: str


class VoidedVerification(BaseModel):
    """void-verification: Wasp voided on chain a verification nobody could judge with; its verifier was replaced."""

    order_id: OrderId
    task: TaskIndex
    verifier: str = Field(description="The verifier whose attested verification was voided (replaced on chain)")
    reason: str = Field(description="Why nobody could judge with it: its report not in the store whole, or another task's")
    tx_hash: str


class Settled(BaseModel):
    """settle: what the contract paid, slashed and refunded."""

    order_id: OrderId
    payouts_wei: dict[str, int]
    slashed_wei: dict[str, int]
    refund_wei: int
    tx_hash: str
    credits: list[CreditEvent] = Field(default_factory=list, description="Every credit of the order, from chain events")
    slashes: list[SlashEvent] = Field(default_factory=list, description="Every slash of the order, from chain events")
    overturned: list[TaskIndex] = Field(
        default_factory=list, description="Tasks whose verdict an upheld dispute overturned: the final verdict, which "
        "settlement paid, is the opposite of Wasp's")

    @classmethod
    def from_chain(cls, settlement: Settlement, ledger: Ledger, view: OrderView) -> "Settled":
        """The record of a settlement, the order's whole ledger and the verdicts disputes overturned, as the
        chain states them."""
        return cls(order_id=settlement.order_id, payouts_wei=settlement.payouts, slashed_wei=settlement.slashed,
                   refund_wei=settlement.refund, tx_hash=settlement.tx_hash, credits=ledger.credits,
                   slashes=ledger.slashes, overturned=[t.task for t in view.tasks if t.verdict != t.wasp_verdict])


class Delivery(BaseModel):
    """deliver: the model key wrapped to the client by a validator, once the accepted verdict was final and settled."""

    order_id: OrderId
    task: TaskIndex
    validator: str = Field(description="The validator that released the key")
    grant: ArtifactRef = Field(description="The model key wrapped to the client")
    auditor_grants: dict[str, ArtifactRef] = Field(
        default_factory=dict, description="Address of each auditor the order names -> the model key wrapped to it")


class AuditCase(BaseModel):
    """What Wasp judged for one task, with its verdict: signed by Wasp and named in the store by the
    order, the task and the verdict's digest (``bahen.audit.case_pointer``), so a host that never saw
    the order re-audits it from the chain and the store alone. It has the parts of an
    :class:`OrderRecord` the audit reads."""

    model_config = ConfigDict(ser_json_inf_nan="strings")  # signed even when no validator could score the model

    order_id: OrderId
    upload: Upload
    shard: Shard
    training: Training
    verification: Verification
    scores: Scores
    verdict: Verdict
    delivery: Delivery | None = None

    @property
    def status(self) -> str:
        return f"audited ({'accepted' if self.verdict.accepted else 'rejected'})"


class StageTiming(BaseModel):
    stage: str
    seconds: float


class OrderRecord(BaseModel):
    """Everything a client sees of an order; kept under ``HOME/orders/<id>.json``."""

    order_id: OrderId
    spec: OrderSpec
    status: str
    timings: list[StageTiming] = []
    upload: Upload | None = None
    shard: Shard | None = None
    training: Training | None = None
    verification: Verification | None = None
    scores: Scores | None = None
    verdict: Verdict | None = None
    settled: Settled | None = None
    delivery: Delivery | None = None

    @property
    def overturned(self) -> bool:
        """Whether an upheld dispute overturned Wasp's verdict (as settlement read it from the chain)."""
        return self.verdict is not None and self.settled is not None and self.verdict.task in self.settled.overturned

    @property
    def work_verdict(self) -> str:
        """The work verdict that pays or slashes: Wasp's, or its opposite once a dispute overturned it; as the
        verdict line of a summary reads ("" before there is one)."""
        if self.verdict is None:
            return ""
        wasp = "accepted" if self.verdict.accepted else "rejected"
        if not self.overturned:
            return wasp
        return f"{'rejected' if self.verdict.accepted else 'accepted'}, overturned by a dispute (Wasp's: {wasp})"

    def artifacts(self) -> list[tuple[str, ArtifactRef]]:
        """The order's main artifacts with a label each, in pipeline order."""
        found = []
        if self.upload:
            found += [("train split", self.upload.train), ("holdout split", self.upload.holdout),
                      ("dataset manifest", self.upload.manifest)]
        if self.training:
            found += [("proof manifest", self.training.bundle), ("final model", self.training.final_model)]
        if self.verification:
            found.append(("verification report", self.verification.report))
        if self.verdict:
            found.append(("verdict", self.verdict.verdict))
        return found
