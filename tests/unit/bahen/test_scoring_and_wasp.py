"""Known answers for the robust aggregate of validators' scores and for Wasp's rules."""

import math

import pytest

from proof.report import CheckResult, VerificationCost, VerificationReport
from proof.scoring import PerformanceReport, aggregate
from proof.wasp import Evidence, decide


def report(validator, accuracy, loss=0.3, error=None, blind=None):
    return PerformanceReport(
        order_id="0x1", task=0, validator=validator, model_sha256="aa", holdout_sha256="bb", samples=100,
        accuracy=accuracy, loss=loss, input_blind_loss=blind, error=error,
    )


def test_median_and_mad_outlier():
    agg = aggregate([report("a", 0.90), report("b", 0.91), report("c", 0.92), report("d", 0.10)])
    assert agg.median_accuracy == pytest.approx(0.905)
    assert agg.outliers == ["d"]
    assert agg.valid == 4


def test_identical_scores_have_no_outlier_and_errors_are_outliers():
    agg = aggregate([report("a", 0.8), report("b", 0.8), report("c", math.nan, error="unreadable model")])
    assert agg.median_accuracy == 0.8
    assert agg.outliers == ["c"]
    assert agg.valid == 2


@pytest.mark.parametrize(("accuracy", "loss", "blind"), [
    (math.nan, 0.3, None), (0.7, math.nan, None), (math.inf, 0.3, None), (0.7, -math.inf, None), (1.5, 0.3, None),
    (-0.1, 0.3, None), (0.7, -1.0, None), (0.7, 1e308 * 10, None),
])
def test_a_score_that_is_no_share_or_no_loss_counts_as_none_and_moves_no_median(accuracy, loss, blind):
    """One validator's figures that are not numbers, or not an accuracy and a loss, with no error named: counted
    as no score, so the honest validators' median stands and the liar is named."""
    agg = aggregate([report("honest", 0.75, blind=2.0), report("liar", accuracy, loss, blind=blind),
                     report("other", 0.77, blind=2.2)])
    assert (agg.median_accuracy, agg.median_loss, agg.median_input_blind_loss) == (0.76, 0.3, 2.1)
    assert agg.valid == 2 and agg.outliers == ["liar"]


@pytest.mark.parametrize("blind", [math.nan, math.inf, -1.0])
def test_an_input_blind_loss_that_is_no_loss_is_left_out(blind):
    agg = aggregate([report("a", 0.75, blind=2.0), report("b", 0.76, blind=blind)])
    assert agg.median_input_blind_loss == 2.0 and agg.valid == 2


def test_the_chance_bound_counts_the_samples_of_the_scores_only():
    """A report with no score does not shrink the sample count the chance bound divides by."""
    honest = [report(v, 0.9) for v in "ab"]
    tiny = report("c", math.nan).model_copy(update={"samples": 1})
    findings = {f.rule: f for f in decide(evidence(performance=[*honest, tiny], validators_assigned=3)).model_report.findings}
    assert "on 100 samples" in findings["above-chance"].detail and findings["above-chance"].passed


def test_no_valid_report():
    agg = aggregate([report("a", math.nan, error="x")])
    assert math.isnan(agg.median_accuracy) and agg.valid == 0


def verification(passed=True):
    check = CheckResult(name="replay-random", metric="distance", threshold=0, observed=0 if passed else 1,
                        passed=passed, decisive=True, detail="", cost_steps=10, seconds=0.1)
    return VerificationReport(
        order_id="0x1", task=0, challenge_seed="00", merkle_root="11", checks=[check], passed=passed,
        cost=VerificationCost(replayed_steps=10, forward_samples=0, seconds=0.1, fraction_of_training=0.01),
        artifacts={},
    )


def evidence(**changes):
    base = dict(
        order_id="0x1", task=0, num_classes=10, validators_assigned=2, manifest_signed=True, root_committed=True,
        verification=verification(), verification_attested=True,
        performance=[report("a", 0.9), report("b", 0.9)], performance_attested=2, claimed_final_loss=0.2,
    )
    return Evidence(**{**base, **changes})


def test_honest_evidence_is_accepted():
    decision = decide(evidence())
    assert decision.accepted
    assert all(r.passed for r in decision.reasons)
    assert all(f.passed for f in decision.model_report.findings) and not decision.model_report.verify_more
    assert decision.model_report.perplexity == pytest.approx(math.exp(0.3))


@pytest.mark.parametrize(
    ("changes", "rule"),
    [
        ({"manifest_signed": False}, "signed-proof"),
        ({"root_committed": False}, "committed-root"),
        ({"verification_attested": False}, "verification-attested"),
        ({"verification": verification(passed=False)}, "verification-passed"),
        ({"verification": None}, "verification-passed"),
    ],
)
def test_each_work_rule_rejects(changes, rule):
    decision = decide(evidence(**changes))
    assert not decision.accepted
    assert [r.rule for r in decision.reasons if not r.passed] == [rule]


@pytest.mark.parametrize(
    ("changes", "findings"),
    [
        # a binary task learnt to 97.5%: the old "twice chance" floor (1.0) rejected it
        ({"num_classes": 2, "performance": [report("a", 0.975), report("b", 0.975)]}, []),
        # random labels: nothing to learn is the client's choice, not the worker's fault
        ({"num_classes": 3, "performance": [report("a", 0.30), report("b", 0.32)]}, ["above-chance"]),
        # 0.42 on 100 samples of 3 classes is within 3 standard errors of chance (up to 0.4748)...
        ({"num_classes": 3, "performance": [report("a", 0.42), report("b", 0.42)]}, ["above-chance"]),
        # ...0.48 is not
        ({"num_classes": 3, "performance": [report("a", 0.48), report("b", 0.48)]}, []),
        ({"performance_attested": 1}, ["score-quorum"]),
        ({"performance": [report("a", 0.9, error="x"), report("b", 0.9, error="y")]},
         ["score-quorum", "above-chance", "validators-agree"]),
    ],
)
def test_the_model_report_never_decides_the_work_verdict(changes, findings):
    decision = decide(evidence(**changes))
    assert decision.accepted and [r.rule for r in decision.reasons] == [
        "signed-proof", "committed-root", "verification-attested", "verification-passed"]
    failed = [f.rule for f in decision.model_report.findings if not f.passed]
    assert failed == findings


@pytest.mark.parametrize(("loss", "passed"), [(2.1, True), (3.3, False)])
def test_the_model_report_compares_the_holdout_loss_with_a_model_that_ignores_its_input(loss, passed):
    decision = decide(evidence(performance=[report("a", 0.3, loss=loss, blind=3.3), report("b", 0.3, loss=loss, blind=3.3)],
                               claimed_final_loss=2.0))
    finding = next(f for f in decision.model_report.findings if f.rule == "uses-its-input")
    assert decision.accepted and finding.passed is passed and not finding.decisive
    assert decision.model_report.input_blind_loss == 3.3
    assert f"perplexity {math.exp(loss):.4g} against {math.exp(3.3):.4g}" in finding.detail
    assert "uses-its-input" not in [f.rule for f in decide(evidence()).model_report.findings]  # no figure, no finding


def test_a_holdout_loss_that_contradicts_the_trace_asks_for_more_verification_not_a_rejection():
    decision = decide(evidence(performance=[report("a", 0.9, loss=5.0), report("b", 0.9, loss=5.0)]))
    assert decision.accepted and decision.model_report.verify_more
    assert [f.rule for f in decision.model_report.findings if not f.passed] == ["loss-consistent"]


# Known answers: the whole decision for given evidence, every rule's outcome, weight and words.


def _table(reasons):
    return [(r.rule, r.passed, r.decisive, r.detail) for r in reasons]


def test_the_honest_decision_is_known():
    decision = decide(evidence())
    assert _table(decision.reasons) == [
        ("signed-proof", True, True, "proof manifest signed by the assigned worker"),
        ("committed-root", True, True, "manifest root equals the root committed on chain"),
        ("verification-attested", True, True, "verification report signed by an assigned validator and its digest on chain"),
        ("verification-passed", True, True, "every decisive check passed"),
    ]
    assert _table(decision.model_report.findings) == [
        ("score-quorum", True, False, "2 attested scores, quorum 2 of 2"),
        ("above-chance", True, False, "median holdout accuracy 0.9000 on 100 samples, chance 0.1000, above chance from 0.1900"),
        ("loss-consistent", True, False, "median holdout loss 0.3000, bound 1.1000 from the claimed training loss"),
        ("validators-agree", True, False, "no outlying validator"),
    ]


def test_each_failed_work_rule_says_why():
    bad = decide(evidence(manifest_signed=False, root_committed=False, verification_attested=False, verification=None))
    assert _table(bad.reasons) == [
        ("signed-proof", False, True, "proof manifest signature invalid or not the worker's"),
        ("committed-root", False, True, "manifest root differs from the on-chain commitment"),
        ("verification-attested", False, True, "no verification report matching an on-chain digest"),
        ("verification-passed", False, True, "failed checks: report missing"),
    ]


def test_only_failed_decisive_checks_are_named():
    def check(name, passed, decisive):
        return CheckResult(name=name, metric="m", threshold=0, observed=0, passed=passed, decisive=decisive, detail="",
                           cost_steps=0, seconds=0.0)

    report = verification(passed=False).model_copy(update={"checks": [
        check("integrity", True, True), check("loss", False, True), check("telemetry", False, False),
        check("replay-random", False, True)]})
    reason = decide(evidence(verification=report)).reasons[-1]
    assert (reason.passed, reason.detail) == (False, "failed checks: loss, replay-random")


def test_the_quorum_is_a_strict_majority_of_the_assigned_validators():
    three = [report("a", 0.9), report("b", 0.9), report("c", 0.9)]
    assert decide(evidence(validators_assigned=3, performance=three[:2], performance_attested=2)).model_report.findings[0].passed
    finding = decide(evidence(validators_assigned=4, performance=three, performance_attested=2)).model_report.findings[0]
    assert (finding.passed, finding.detail) == (False, "2 attested scores, quorum 3 of 4")


def test_the_chance_and_loss_bounds_are_strict_at_their_edges():
    # 2 classes on 100 samples: chance 0.5 plus 3 standard errors of 0.05 is 0.65; claimed loss 0.2 bounds 1.1
    at_the_edges = decide(evidence(num_classes=2, performance=[report("a", 0.65, loss=1.1), report("b", 0.65, loss=1.1)]))
    failed = [f.rule for f in at_the_edges.model_report.findings if not f.passed]
    assert failed == ["above-chance"] and not at_the_edges.model_report.verify_more
    no_scores = decide(evidence(performance=[], performance_attested=0)).model_report
    assert "on 0 samples" in no_scores.findings[1].detail and "above chance from inf" in no_scores.findings[1].detail


@pytest.mark.parametrize(("loss", "perplexity"), [
    (0.0, 1.0), (699.0, math.exp(699.0)), (700.0, math.inf), (math.inf, math.inf), (math.nan, math.inf)])
def test_perplexity_is_exp_of_the_loss_until_it_overflows(loss, perplexity):
    reports = [report("a", 0.9, loss=loss), report("b", 0.9, loss=loss)]
    assert decide(evidence(performance=reports)).model_report.perplexity == perplexity


def test_outlying_validators_are_named():
    reports = [report("a", 0.9), report("b", 0.91), report("c", 0.92), report("d", 0.1), report("e", 0.9, error="x")]
    finding = decide(evidence(validators_assigned=5, performance=reports, performance_attested=5)).model_report.findings[3]
    assert (finding.rule, finding.passed, finding.detail) == ("validators-agree", False, "outlying validators: d, e")



def test_a_decision_signs_when_no_validator_could_score_the_model():
    """Every score an error (a model no validator could read): the medians are NaN, and Wasp still signs its
    decision, so the task gets a verdict rather than none."""
    from privacy.identity import Identity
    from privacy.signing import sign_document, verify_document
    from proof.wasp import Decision

    decision = decide(evidence(performance=[report("a", math.nan, error="unreadable"),
                                            report("b", math.nan, error="unreadable")]))
    assert decision.accepted and math.isnan(decision.model_report.median_accuracy)
    doc = sign_document(Identity.generate("wasp"), decision)
    verify_document(doc)
    assert doc.payload["model_report"]["median_accuracy"] == "NaN"
    assert math.isnan(Decision.model_validate(doc.payload).model_report.median_loss)
