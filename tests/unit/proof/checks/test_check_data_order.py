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
