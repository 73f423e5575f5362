"""Training started from the weights the committed seed derives, or the client's that a fine-tuning
order pins, not from a model the worker chose."""

from proof.checks.base import Check, CheckContext, flatten_state, same_layout
from proof.report import CheckResult


class InitializationCheck(Check):
    """Checkpoint 0 against `training.trainer.initial_state(spec, initial)`."""

    name = "initialization"
    metric = "max absolute difference to the order's initial weights"

    def run(self, ctx: CheckContext) -> CheckResult:
        from training.trainer import initial_state

        if 0 not in ctx.checkpoints:
            names = [ref.name for step, ref in ctx.bundle.checkpoints if step == 0] or ["checkpoint at step 0"]
            return self.missing(names, ctx)
        claimed = ctx.checkpoints[0].model_state
        expected = initial_state(ctx.spec, ctx.initial)
        if not same_layout(claimed, expected):
            return self.result(
                threshold=0.0, observed=float("inf"), detail="initial checkpoint does not hold the ordered model's parameters"
            )
        delta = flatten_state(claimed) - flatten_state(expected)
        diff = float(delta.abs().max()) if delta.numel() else 0.0
        source = "the seed-derived ones" if ctx.initial is None else "the client's starting weights"
        detail = f"initial weights {'equal' if diff == 0.0 else 'differ from'} {source}"
        return self.result(threshold=0.0, observed=diff, detail=detail)
