"""The third-party auditor's view of an order: every pinned artifact, pullable with stock DVC.

An order's public documents (manifests, grants, signed reports, the verdict) name every other
artifact, so the export walks them: the dataset manifest, the worker's signed proof manifest (its
checkpoints, step log and telemetry), the verification and performance reports and the verdict.
"""

import json
from pathlib import Path

from proof.bundle import ProofBundle
from storage.export import export_dvc_workspace
from storage.refs import ArtifactRef
from storage.store import ArtifactStore

from bahen.artifacts import get_signed
from bahen.errors import BahenError
from bahen.network import store_of
from bahen.orders import OrderBook
from bahen.records import OrderRecord
from bahen.settings import load_settings


def pinned_artifacts(record: OrderRecord, store: ArtifactStore) -> dict[str, ArtifactRef]:
    """Workspace path -> artifact, for everything the order's records and proof pin."""
    if record.upload is None:
        raise BahenError(f"order {record.order_id} stored nothing yet (status: {record.status})")
    pins = {
        "data/train.enc": record.upload.train,
        "data/holdout.enc": record.upload.holdout,
        "data/manifest.json": record.upload.manifest,
        **{f"grants/client-{role}.json": ref for role, ref in record.upload.client_grants.items()},
    }
    if record.shard:
        for a in record.shard.assignments:
            pins.update({f"grants/task{a.task}-{a.worker}-{role}.json": ref for role, ref in a.grants.items()})
        for v in record.shard.validators:
            pins.update({f"grants/{v.name}-{role}.json": ref for role, ref in v.grants.items()})
    if record.training:
        task = record.training.task
        pins.update({f"grants/task{task}-model-{address}.json": ref for address, ref in record.training.model_grants.items()})
        pins[f"proof/task{task}/manifest.json"] = record.training.bundle
        bundle, _ = get_signed(store, record.training.bundle, ProofBundle)
        pins.update({f"proof/task{task}/checkpoint-{step:07d}.enc": ref for step, ref in bundle.checkpoints})
        pins[f"proof/task{task}/step-log.enc"] = bundle.step_log
        pins[f"proof/task{task}/telemetry.enc"] = bundle.telemetry
    if record.verification:
        pins[f"reports/task{record.verification.task}-verification.json"] = record.verification.report
    if record.scores:
        pins.update({f"reports/score-{name}.json": ref for name, ref in record.scores.reports.items()})
    if record.verdict:
        pins[f"reports/task{record.verdict.task}-verdict.json"] = record.verdict.verdict
    if record.delivery:
        pins[f"grants/task{record.delivery.task}-model-client.json"] = record.delivery.grant
    return pins


def export_order(order_id: str, directory: Path) -> tuple[Path, int]:
    """Write a DVC workspace for ``order_id`` in ``directory``; returns it and the artifact count."""
    settings = load_settings()
    record = OrderBook(settings.orders_dir).load(order_id)
    store = store_of(settings)
    pins = pinned_artifacts(record, store)
    params = {"order_id": order_id, "status": record.status, "spec": record.spec.model_dump(mode="json")}
    if record.training:
        params["merkle_root"] = record.training.merkle_root
    path = export_dvc_workspace(
        settings.resolved_store_url, pins, directory, endpoint_url=settings.s3_endpoint_url, params=params
    )
    return path, len(pins)
