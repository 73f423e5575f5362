from proof.checks.data_order import DataOrderCheck


def test_committed_order_passes(context):
    assert DataOrderCheck().run(context()).passed


def test_changed_epoch_digest_fails(context, honest):
    digests = ["0" * 64] + honest.bundle.epoch_digests[1:]
    result = DataOrderCheck().run(context(bundle=honest.bundle.model_copy(update={"epoch_digests": digests})))
    assert not result.passed and result.observed == 1.0


def test_changed_batch_digest_fails(context):
    ctx = context()
    ctx.steps[5] = ctx.steps[5].model_copy(update={"batch_digest": ctx.steps[6].batch_digest})
    result = DataOrderCheck().run(ctx)
    assert not result.passed and "steps [5]" in result.detail


def test_each_finding_is_named_exactly(context):
    ctx = context()
    assert DataOrderCheck().run(ctx).detail == "batch order matches the committed seed"
    total = len(ctx.steps)
    ctx.steps = [*ctx.steps, ctx.steps[-1].model_copy(update={"step": total})]  # one step past the order's last
    for i in range(6):
        ctx.steps[i] = ctx.steps[i].model_copy(update={"batch_digest": "0" * 64})
    ctx.bundle = ctx.bundle.model_copy(update={"epoch_digests": []})
    result = DataOrderCheck().run(ctx)
    assert result.detail == "epochs [0, 1] and steps [0, 1, 2, 3, 4] differ from the committed order"
    assert result.observed == 2 + 6 + 1


def test_a_missing_step_log_is_named(context):
    ctx = context()
    ctx.steps = None
    ctx.problems[ctx.bundle.step_log.name] = "missing or tampered"
    result = DataOrderCheck().run(ctx)
    assert not result.passed and result.detail == f"cannot check: {ctx.bundle.step_log.name}: missing or tampered"
    assert result.decisive and result.threshold == 0.0
    del ctx.problems[ctx.bundle.step_log.name]
    assert DataOrderCheck().run(ctx).detail == f"cannot check: {ctx.bundle.step_log.name}: not available"
