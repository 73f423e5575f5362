"""A party's Prefect worker, which runs this host's own code whatever the shared server says.

Every party of the network can write to its Prefect server: create flow runs with any job variables,
change a deployment's entrypoint and pull steps, change a work pool's base job template. A stock
process worker obeys all of them, so a stranger could run any command on every party's host (the
``command`` job variable) or change its settings (``env``: ``BAHEN_WORKER_ATTACK`` on an honest
worker, ``BAHEN_ACCEPT_UNSIGNED_ORDERS`` on a client). This worker takes from the server only which
flow run to start; what runs is decided here:

- the command is this module's ``run``, which imports the flow from the installed package by its
  name, among the flows of the worker's pool (:data:`FLOWS_OF_POOL`), and never runs pull steps;
- the job template is the process worker's default, not the pool's, and of the job variables only
  the environment variables in :func:`run_env` pass (how often a run beats, how the order
  dispatches its stages); the host's own environment and ``config.yaml`` hold everything else;
- the flow runs in the host's project folder (``BAHEN_PROJECT_DIR``), as the deployments' pull step
  would have set it.

``python -m bahen.host_worker start --pool gpu --name worker-7 --work-queue 0x…`` starts one (`bahen
worker start` does); ``python -m bahen.host_worker run gpu`` is the command it gives each flow run.
"""

import argparse
import asyncio
import importlib
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from uuid import UUID

import anyio
from prefect.runner._flow_run_executor import FlowRunExecutorContext
from prefect.runner._starter_engine import EngineCommandStarter
from prefect.utilities.processutils import command_to_string
from prefect.workers.process import ProcessJobConfiguration, ProcessWorker, ProcessWorkerResult

from bahen.parties import POOL_OF_ROLE

# The flows a party's worker runs, by its pool: prefect.yaml's deployments, by flow name.
FLOWS_OF_POOL: dict[str, dict[str, str]] = {
    POOL_OF_ROLE["client"]: {"order": "flows.order:order", "audit": "flows.audit:audit"},
    POOL_OF_ROLE["worker"]: {"train": "flows.train:train", "grant-model": "flows.train:grant_model"},
    POOL_OF_ROLE["validator"]: {"verify": "flows.verify:verify", "score": "flows.score:score",
                                "deliver": "flows.deliver:deliver", "resolve": "flows.resolve:resolve",
                                "resolve-pending": "flows.resolve:resolve_pending"},
    POOL_OF_ROLE["wasp"]: {"wasp": "flows.wasp:wasp", "void-verification": "flows.wasp:void_verification"},
}
RUN_ENV_NAMES = ("PREFECT_FLOWS_HEARTBEAT_FREQUENCY",)
RUN_ENV_PREFIXES = ("BAHEN_DISPATCH_",)


class ForeignFlow(Exception):
    """A flow run of a flow this host's pool does not run."""


def run_env(*job_variables: Mapping[str, Any] | None) -> dict[str, str]:
    """The environment variables a run takes from its deployment's and its own job variables (later
    wins): only :data:`RUN_ENV_NAMES` and names under :data:`RUN_ENV_PREFIXES`; the rest is dropped."""
    env: dict[str, str] = {}
    for variables in job_variables:
        for name, value in ((variables or {}).get("env") or {}).items():
            if value is not None and (name in RUN_ENV_NAMES or name.startswith(RUN_ENV_PREFIXES)):
                env[name] = str(value)
    return env


def local_flow(pool: str, flow_name: str):
    """The flow named ``flow_name`` as the installed package defines it, if ``pool``'s workers run it;
    :class:`ForeignFlow` otherwise."""
    entrypoint = FLOWS_OF_POOL.get(pool, {}).get(flow_name)
    if entrypoint is None:
        raise ForeignFlow(f"a worker of the {pool!r} pool runs only the flows {sorted(FLOWS_OF_POOL.get(pool, {}))}, "
                          f"not {flow_name!r}: the run was not started on this host")
    module, name = entrypoint.split(":")
    return getattr(importlib.import_module(module), name)


class PartyJobConfiguration(ProcessJobConfiguration):
    """A flow run's process, configured by this host: :func:`run_env` of the job variables, the
    command ``python -m bahen.host_worker run <pool>``, the process worker's default template."""

    @classmethod
    async def resolve_for_flow_run(cls, flow_run, *, client, work_pool, worker_name, worker_id=None, deployment=None):
        if not deployment and flow_run.deployment_id:
            deployment = await client.read_deployment(flow_run.deployment_id)
        values = {"env": run_env(getattr(deployment, "job_variables", None), flow_run.job_variables),
                  "command": command_to_string([sys.executable, "-m", "bahen.host_worker", "run", work_pool.name])}
        configuration = await cls.from_template_and_values(
            base_job_template=ProcessWorker.get_default_base_job_template(), values=values, client=client)
        configuration.prepare_for_flow_run(flow_run=flow_run, deployment=deployment,
                                           flow=await client.read_flow(flow_run.flow_id), work_pool=work_pool,
                                           worker_name=worker_name, worker_id=worker_id)
        return configuration


class PartyWorker(ProcessWorker):
    """A process worker whose runs are configured by :class:`PartyJobConfiguration`, and whose crash and
    cancellation hooks load the flow as :func:`local_flow` does, never from the deployment."""

    job_configuration = PartyJobConfiguration

    @classmethod
    def __dispatch_key__(cls) -> str:
        return "bahen-party"  # registered beside Prefect's process worker, not in its place; it serves process pools

    async def run(self, flow_run, configuration: PartyJobConfiguration, task_status=None) -> ProcessWorkerResult:
        task_status = task_status or anyio.TASK_STATUS_IGNORED
        pool = self.work_pool.name

        async def resolve_flow(run):
            return local_flow(pool, (await self.client.read_flow(run.flow_id)).name)

        async with FlowRunExecutorContext() as ctx:
            starter = EngineCommandStarter(command=configuration.command, cwd=Path.cwd(), env=configuration.env,
                                           stream_output=configuration.stream_output, control_channel=ctx.control_channel)
            executor = ctx.create_executor(flow_run, starter, resolve_flow=resolve_flow, propose_submitting=False)
            execution = None

            async def execute(*, task_status=anyio.TASK_STATUS_IGNORED) -> None:
                nonlocal execution
                execution = await executor.submit(task_status=task_status)

            async with anyio.create_task_group() as group:
                handle = await group.start(execute)
                task_status.started(handle.pid)
        if execution is None or execution.status_code is None:
            raise RuntimeError("the flow run's process did not start")
        return ProcessWorkerResult(status_code=execution.status_code, identifier=str(execution.handle.pid))


def run(pool: str) -> None:
    """Run the flow run named by ``PREFECT__FLOW_RUN_ID`` in this process, as ``python -m prefect.engine``
    does, but with the flow of :func:`local_flow`; a foreign flow's run is failed, not started."""
    from prefect import get_client
    from prefect._internal.control_listener import configure_from_env
    from prefect.engine import handle_engine_signals
    from prefect.flow_engine import flow_run_logger, load_flow_run, run_flow
    from prefect.states import Failed

    flow_run_id = UUID(os.environ["PREFECT__FLOW_RUN_ID"])
    configure_from_env()
    with handle_engine_signals(flow_run_id):
        flow_run = load_flow_run(flow_run_id=flow_run_id)
        with get_client(sync_client=True) as client:
            try:
                flow = local_flow(pool, client.read_flow(flow_run.flow_id).name)
            except ForeignFlow as refused:
                client.set_flow_run_state(flow_run_id, Failed(message=str(refused)), force=True)
                return
        if project := os.environ.get("BAHEN_PROJECT_DIR"):
            os.chdir(project)
        run_flow(flow, flow_run=flow_run, error_logger=flow_run_logger(flow_run=flow_run))


async def start(pool: str, name: str, queues: list[str], limit: int | None) -> None:
    async with PartyWorker(name=name, work_pool_name=pool, work_queues=queues or None, limit=limit,
                           create_pool_if_not_found=False) as worker:
        await worker.start()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bahen.host_worker", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    starting = commands.add_parser("start", help="poll a pool's work queues and run their flow runs")
    starting.add_argument("--pool", required=True, choices=sorted(FLOWS_OF_POOL))
    starting.add_argument("--name", required=True)
    starting.add_argument("--work-queue", action="append", default=[], dest="queues")
    starting.add_argument("--limit", type=int)
    running = commands.add_parser("run", help="run the flow run PREFECT__FLOW_RUN_ID names (the worker's command)")
    running.add_argument("pool", choices=sorted(FLOWS_OF_POOL))
    args = parser.parse_args(argv)
    if args.command == "run":
        run(args.pool)
    else:
        asyncio.run(start(args.pool, args.name, args.queues, args.limit))


if __name__ == "__main__":
    main()
