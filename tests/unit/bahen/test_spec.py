"""The order spec: bounds, the field named in every refusal, exact wei."""

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bahen.spec import MAX_SPEC_BYTES, MAX_SPEC_DEPTH, OrderSpec, SpecError, load_spec, parse_spec


def test_defaults_are_a_valid_order():
    spec = parse_spec({})
    assert spec.dataset == "digits" and spec.model == "mlp"
    assert spec.budget_wei == 10**18


@pytest.mark.parametrize(
    ("field", "value"),
    [("lr", 0), ("epochs", 0), ("batch_size", 5000), ("model", "transformer"), ("holdout_fraction", 0.9),
     ("validators", 0), ("budget_eth", -1), ("seed", -3)],
)
def test_out_of_bounds_field_is_named(field, value):
    with pytest.raises(SpecError) as refused:
        parse_spec({field: value})
    assert f"  {field}:" in str(refused.value)


def test_unknown_field_is_refused():
    with pytest.raises(SpecError, match="learning_rate"):
        parse_spec({"learning_rate": 0.1})


def test_missing_dataset_file_is_refused(tmp_path):
    with pytest.raises(SpecError, match="dataset_path"):
        parse_spec({"dataset_path": str(tmp_path / "absent.csv")})
    with pytest.raises(SpecError, match="initial_weights_path .* is not a readable file"):
        parse_spec({"initial_weights_path": str(tmp_path / "absent.safetensors")})
    with pytest.raises(SpecError, match="initial_weights_path .* is not a .safetensors file"):
        parse_spec({"initial_weights_path": str(tmp_path / "model.pt")})


def test_a_spec_naming_the_clients_files_is_valid_where_they_are_not():
    """A worker or validator receives the spec the client submitted; the client's files are not on its host."""
    received = {"dataset_path": "/home/client/data.csv", "initial_weights_path": "/home/client/start.safetensors"}
    assert OrderSpec.model_validate(received).dataset_path == "/home/client/data.csv"
    with pytest.raises(SpecError, match="dataset_path"):
        parse_spec(received)


@pytest.mark.parametrize("profile", ["cuda-fp32-deterministic", "cuda-bf16-tolerant"])
def test_a_cuda_profile_refuses_segments_longer_than_its_tolerance_was_measured_for(profile):
    assert parse_spec({"profile": profile, "checkpoint_every": 50}).checkpoint_every == 50
    with pytest.raises(SpecError, match="checkpoint_every .51. must be at most 50 under " + profile):
        parse_spec({"profile": profile, "checkpoint_every": 51})
    assert parse_spec({"checkpoint_every": 51}).checkpoint_every == 51


def test_a_gpt_order_and_text_go_together():
    assert parse_spec({"model": "gpt", "dataset": "shakespeare"}).text
    with pytest.raises(SpecError, match="a gpt order trains on text"):
        parse_spec({"model": "gpt"})
    with pytest.raises(SpecError, match="shakespeare is text, which only a gpt model learns from"):
        parse_spec({"dataset": "shakespeare"})
    with pytest.raises(SpecError, match="gpt_embed .66. must be a multiple of gpt_heads .4."):
        parse_spec({"model": "gpt", "dataset": "shakespeare", "gpt_embed": 66})


def test_budget_is_converted_to_wei_without_binary_rounding():
    assert parse_spec({"budget_eth": 0.1}).budget_wei == 10**17
    assert parse_spec({"budget_eth": 1.000000000000000001}).budget_wei == 10**18  # float has no more digits


@given(st.decimals(min_value="0.000001", max_value="10000", places=6))
def test_budget_wei_matches_the_decimal_written(amount):
    assert parse_spec({"budget_eth": float(amount)}).budget_wei == int(amount * 10**18)


def test_yaml_file_errors_say_which_file(tmp_path):
    path = tmp_path / "order.yaml"
    path.write_text("epochs: [1, 2\n")
    with pytest.raises(SpecError, match="not valid YAML"):
        load_spec(path)
    path.write_text("- 1\n- 2\n")
    with pytest.raises(SpecError, match="mapping"):
        load_spec(path)
    path.write_text("epochs: 3\nmodel: cnn\n")
    assert load_spec(path) == OrderSpec(epochs=3, model="cnn")


def test_an_order_names_its_data_as_the_client_knows_it(tmp_path):
    from bahen.spec import OrderSpec

    path = tmp_path / "sensor-readings.csv"
    path.write_text("x0,label\n0.5,1\n")
    assert OrderSpec(dataset="mnist").data_name == "mnist"
    assert OrderSpec(dataset_path=str(path)).data_name == "sensor-readings.csv"


def _bounds():
    """Every numeric bound of every order field, read from the model: (field, kind, bound)."""
    for name, info in OrderSpec.model_fields.items():
        for meta in info.metadata:
            for kind in ("ge", "gt", "le", "lt"):
                if hasattr(meta, kind):
                    yield name, kind, getattr(meta, kind)


# Values of other fields that let a field reach its bound: a one-hour deadline leaves a commit window
# of at most 59 minutes, the longest commit window needs the longest deadline, and 64 shards a batch of 64.
_ROOM = {("deadline_hours", "ge"): {"commit_minutes": 1}, ("commit_minutes", "lt"): {"deadline_hours": 24 * 30},
         ("grad_shards", "le"): {"batch_size": 64}}


def _step(field, value, towards):
    """The next value of ``field``'s type after ``value``, up (``towards`` 1) or down (-1)."""
    if OrderSpec.model_fields[field].annotation is int:
        return value + towards
    return math.nextafter(float(value), towards * math.inf)


@pytest.mark.parametrize(("field", "kind", "bound"), list(_bounds()), ids=lambda v: str(v))
def test_every_bound_of_every_field_is_reachable_and_enforced(field, kind, bound):
    inward = 1 if kind in ("ge", "gt") else -1
    last = bound if kind in ("ge", "le") else _step(field, bound, inward)
    room = _ROOM.get((field, kind), {})
    assert getattr(parse_spec({**room, field: last}), field) == last
    with pytest.raises(SpecError) as refused:
        parse_spec({**room, field: _step(field, last, -inward)})
    assert f"  {field}:" in str(refused.value)


def test_every_numeric_field_is_bounded_both_ways():
    sides = {}
    for field, kind, _ in _bounds():
        sides.setdefault(field, set()).add(kind[0])
    numeric = {n for n, i in OrderSpec.model_fields.items() if i.annotation in (int, float)}
    assert {f for f, s in sides.items() if s == {"g", "l"}} == numeric


# Known answers: the exact messages a client reads, one per way a spec file can be refused.


def test_every_field_in_error_is_listed_with_what_was_given():
    with pytest.raises(SpecError) as refused:
        parse_spec({"lr": 0, "epochs": 0, "model": "x" * 100})
    assert str(refused.value) == (
        "order spec is invalid:\n"
        "  model: Input should be 'mlp', 'cnn', 'resnet20' or 'gpt' (got 'xxxxxxxxxxxxxxxxxxxxxxxxxxx...xxxxxxxxxxxxxxxxxxxxxxxxxxxx')\n"
        "  lr: Input should be greater than 0 (got 0)\n"
        "  epochs: Input should be greater than or equal to 1 (got 0)"
    )


def test_a_rule_across_fields_is_named_as_the_orders():
    with pytest.raises(SpecError) as refused:
        parse_spec({"deadline_hours": 1, "commit_minutes": 60}, source="order spec o.yaml")
    assert str(refused.value).startswith(
        "order spec o.yaml is invalid:\n  (order): Value error, commit_minutes (60) must be shorter than the deadline "
        "(1 h = 60 min), so a replaced worker's successor has time (got {'commit_minutes': 60, 'deadline_hours': 1})"
    )


def _spec_file(tmp_path, content: bytes):
    path = tmp_path / "order.yaml"
    path.write_bytes(content)
    return path


def _refusal(path) -> str:
    with pytest.raises(SpecError) as refused:
        load_spec(path)
    return str(refused.value)


def test_an_absent_or_unreadable_spec_file_is_named(tmp_path):
    assert _refusal(tmp_path / "absent.yaml") == f"order spec {tmp_path / 'absent.yaml'} does not exist"
    assert _refusal(tmp_path) == f"order spec {tmp_path} cannot be read: Is a directory"


def test_a_spec_file_may_take_exactly_its_byte_limit(tmp_path):
    head = b"epochs: 3\n#"
    exact = _spec_file(tmp_path, head + b"x" * (MAX_SPEC_BYTES - len(head)))
    assert load_spec(exact).epochs == 3
    over = _spec_file(tmp_path, head + b"x" * (MAX_SPEC_BYTES - len(head) + 1))
    assert _refusal(over) == f"order spec {over} is over 65,536 bytes; an order is a few dozen lines"


def test_a_spec_file_that_is_not_utf8_names_the_byte(tmp_path):
    path = _spec_file(tmp_path, b"epochs: 3\nmodel: \xe9\n")
    assert _refusal(path) == f"order spec {path} is not UTF-8 text (byte 17 is 0xe9); save it as UTF-8"


def test_an_alias_is_refused_where_it_stands(tmp_path):
    path = _spec_file(tmp_path, b"a: &x 1\nepochs: *x\n")
    assert _refusal(path).startswith(
        f"order spec {path} is not valid YAML: found alias *x: an order spec may not use aliases, write the value out\n"
        '  in "<unicode string>", line 2, column 9:'
    )


def _nested(levels: int) -> bytes:
    """A spec ``levels`` nodes deep: the mapping, lists nested in its ``seed`` value, and the number in the last."""
    return b"seed: " + b"[" * (levels - 2) + b"1" + b"]" * (levels - 2) + b"\n"


def test_values_may_nest_exactly_as_deep_as_the_limit(tmp_path):
    deepest = _spec_file(tmp_path, _nested(MAX_SPEC_DEPTH))
    assert "  seed: Input should be a valid integer" in _refusal(deepest)  # parsed, then refused as a field
    path = _spec_file(tmp_path, _nested(MAX_SPEC_DEPTH + 1))
    assert _refusal(path).startswith(  # the number, the node one level too deep, is pointed at
        f"order spec {path} is not valid YAML: values nest more than {MAX_SPEC_DEPTH} levels deep; an order spec is "
        f'a flat mapping\n  in "<unicode string>", line 1, column {len("seed: ") + MAX_SPEC_DEPTH}:'
    )


def test_a_spec_file_that_is_not_a_mapping_names_what_it_is(tmp_path):
    path = _spec_file(tmp_path, b"- 1\n")
    assert _refusal(path) == f"order spec {path} must be a mapping of fields, got list"
    assert load_spec(_spec_file(tmp_path, b"")) == OrderSpec()


def test_a_deep_branch_after_a_shallow_one_is_held_to_the_same_limit(tmp_path):
    deep = b"[" * (MAX_SPEC_DEPTH - 1) + b"1" + b"]" * (MAX_SPEC_DEPTH - 1)  # one level too many under seed
    path = _spec_file(tmp_path, b"seed: [[1], " + deep[1:-1] + b"]\n")
    assert "values nest more than" in _refusal(path)


def test_a_spec_files_field_errors_name_the_file(tmp_path):
    path = _spec_file(tmp_path, b"epochs: 0\n")
    assert _refusal(path) == (f"order spec {path} is invalid:\n  epochs: Input should be greater than or equal to 1 "
                              "(got 0)")


def test_shards_must_divide_the_batch_and_reach_the_trainer():
    with pytest.raises(SpecError, match=r"batch_size \(32\) must be a multiple of grad_shards \(3\)"):
        parse_spec({"grad_shards": 3})
    assert parse_spec({"grad_shards": 4}).grad_shards == 4


AUDITOR = "0x" + "ab" * 20 + ":" + "cd" * 32


def test_an_auditor_is_named_by_its_address_and_x25519_key_in_canonical_form():
    spec = parse_spec({"auditors": [AUDITOR.upper().replace("0X", "0x")]})
    [identity] = spec.auditor_identities
    assert spec.auditors == [f"{identity.address}:{'cd' * 32}"]
    assert identity.address == "0xABaBaBaBABabABabAbAbABAbABabababaBaBABaB"  # EIP-55
    assert identity.name == "auditor 0xABaBaBaB"


@pytest.mark.parametrize("bad", ["0x" + "ab" * 20, "0x" + "ab" * 19 + ":" + "cd" * 32, "0x" + "ab" * 20 + ":" + "cd" * 31,
                                 "0x" + "ab" * 20 + ":" + "zz" * 32, "", ":"])
def test_a_malformed_auditor_is_named_with_the_form_it_must_take(bad):
    with pytest.raises(SpecError) as refused:
        parse_spec({"auditors": [bad]})
    assert "  auditors:" in str(refused.value) and "'<address>:<X25519 public key, 64 hex digits>'" in str(refused.value)


def test_an_auditor_whose_key_nothing_can_be_wrapped_to_is_refused():
    with pytest.raises(SpecError, match=r"auditor 0xABaBaBaB\S* names X25519 key 0000000000000000…, to which no key can "
                                        r"be wrapped \(a low-order point\)"):
        parse_spec({"auditors": ["0x" + "ab" * 20 + ":" + "00" * 32]})


def test_an_auditor_named_twice_or_too_many_auditors_are_refused():
    twice = "0x" + "ab" * 20 + ":" + "ef" * 32
    with pytest.raises(SpecError, match="an auditor is named twice"):
        parse_spec({"auditors": [AUDITOR, twice]})
    many = [f"0x{i:040x}:{'cd' * 32}" for i in range(1, 10)]
    assert len(parse_spec({"auditors": many[:8]}).auditors) == 8
    with pytest.raises(SpecError, match="  auditors: List should have at most 8 items"):
        parse_spec({"auditors": many})


def test_a_malformed_auditor_is_shown_as_given():
    with pytest.raises(SpecError) as refused:
        parse_spec({"auditors": ["0x12:34"]})
    assert str(refused.value) == (
        "order spec is invalid:\n  auditors: Value error, auditor '0x12:34' is not '<address>:<X25519 public key, 64 hex "
        "digits>' as `bahen keys new` prints it (got ['0x12:34'])")
