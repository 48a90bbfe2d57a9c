"""warpkit.kit.checks: every check passes what it should, fails what it should, and says why in plain words."""

import numpy as np
import pytest
import torch

from warpkit.kit.checks import (
    CheckFailed,
    PublicChecks,
    check_close,
    check_dtype,
    check_equal,
    check_shape,
    check_true,
    check_type,
)


def failure_message(function, *args, **kwargs) -> str:
    with pytest.raises(CheckFailed) as info:
        function(*args, **kwargs)
    return str(info.value)


def test_check_failed_is_an_assertion_error_with_name_problem_and_hint():
    error = CheckFailed("step", "the values are not close enough.", ["expected: 1"], hint="look at the sign")
    assert isinstance(error, AssertionError)
    assert str(error).splitlines() == [
        "Check 'step' failed: the values are not close enough.", "  expected: 1", "  hint: look at the sign"]


def test_check_close_passes_within_tolerance_for_tensors_arrays_lists_and_numbers():
    check_close("tensor", torch.tensor([1.0, 2.0], requires_grad=True), [1.0, 2.0 + 1e-7])
    check_close("array", np.array([[1.0, 2.0]]), torch.tensor([[1.0, 2.0]], dtype=torch.float64))
    check_close("number", 3, 3.0)
    check_close("one-number shapes are lenient", torch.tensor([3.0]), 3.0)
    check_close("relative tolerance", 1000.0 + 5e-3, 1000.0, atol=0, rtol=1e-5)
    check_close("infinities", [float("inf")], [float("inf")])


def test_check_close_failure_says_expected_got_where_and_the_tolerance():
    message = failure_message(check_close, "step", torch.tensor([1.1, -0.2]), [0.9, -0.2], hint="the hint")
    assert message.startswith("Check 'step' failed: the values are not close enough.")
    assert "expected: [ 0.9 -0.2]" in message and "got:      [ 1.1 -0.2]" in message
    assert "largest difference: 0.2 at index (0,) (expected 0.9, got 1.1); 1 of 2 entries differ" in message
    assert "atol=1e-06, rtol=1e-05" in message
    assert message.endswith("hint: the hint")


def test_check_close_recognises_sign_errors_factors_and_transposes():
    assert "a sign error?" in failure_message(check_close, "v", [-1.0, 2.0], [1.0, -2.0])
    assert "got equals 2 times the expected value" in failure_message(check_close, "v", [2.0, 4.0], [1.0, 2.0])
    matrix = np.array([[1.0, 2.0], [3.0, 4.0]])
    assert "transpose of the expected matrix" in failure_message(check_close, "m", matrix.T, matrix)
    # no advice when the error is not one of those
    assert "sign" not in failure_message(check_close, "v", [1.5, 2.0], [1.0, 2.0])


def test_check_close_shape_mismatch_is_reported_as_a_shape_problem_with_advice():
    message = failure_message(check_close, "W", torch.ones(3, 2), torch.ones(2, 3))
    assert "the shape is wrong" in message
    assert "expected shape: (2, 3)" in message and "got shape:      (3, 2)" in message
    assert "transpose" in message
    assert "extra leading dimension" in failure_message(check_close, "x", np.ones((1, 4)), np.ones(4))
    assert "one dimension too few" in failure_message(check_close, "x", np.ones(4), np.ones((4, 3)))


def test_check_close_explains_none_nan_and_non_numbers():
    assert "Did the function `return` its result?" in failure_message(check_close, "x", None, 1.0)
    assert "got contains NaN in 1 of 2 entries" in failure_message(check_close, "x", [float("nan"), 1.0], [1.0, 1.0])
    assert "got contains infinity" in failure_message(check_close, "x", [float("inf")], [1.0])
    assert "not a number or an array of numbers" in failure_message(check_close, "x", "abc", 1.0)
    assert "not a number or an array of numbers" in failure_message(check_close, "x", {"a": 1}, 1.0)


def test_check_close_nan_never_passes_even_when_expected_is_nan():
    with pytest.raises(CheckFailed):
        check_close("x", [float("nan")], [float("nan")])


def test_check_shape_dtype_type_equal_true():
    check_shape("s", torch.zeros(2, 3), (2, 3))
    assert "expected shape: (2,)" in failure_message(check_shape, "s", torch.zeros(3), [2])
    assert "expected a tensor or array of shape" in failure_message(check_shape, "s", [1, 2], (2,))
    check_dtype("d", torch.zeros(1, dtype=torch.long), torch.long)
    message = failure_message(check_dtype, "d", torch.zeros(1), torch.float64)
    assert "expected dtype: float64" in message and "got dtype:      float32" in message
    check_type("t", (1, 2), tuple)
    assert "expected a dict, got None" in failure_message(check_type, "t", None, dict)
    assert "expected a int or float, got a str" in failure_message(check_type, "t", "x", (int, float))
    check_equal("e", torch.tensor([1, 2]), [1, 2])
    message = failure_message(check_equal, "e", (3, 4), (3, 5))
    assert "expected: (3, 5)" in message and "got:      (3, 4)" in message
    check_true("c", torch.tensor([True, True]), "never shown")
    assert failure_message(check_true, "c", False, "it is false.", hint="h").splitlines() == [
        "Check 'c' failed: it is false.", "  hint: h"]


def test_public_checks_prints_each_check_and_ends_with_public_checks_passed(capsys):
    with PublicChecks("my_exercise") as checks:
        assert checks.close("value", 1.0, 1.0) is True
        checks.shape("shape", np.zeros(2), (2,))
        checks.equal("equal", 1, 1)
        checks.true("true", True, "x")
        checks.type("type", 1, int)
        checks.dtype("dtype", np.zeros(1), np.float64)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "ok      value"
    assert lines[-1] == "my_exercise: 6 public checks passed"
    assert "all tests passed" not in "\n".join(lines).lower()


def test_public_checks_runs_every_check_then_raises_one_failure_listing_all(capsys):
    with pytest.raises(CheckFailed) as info:
        with PublicChecks("ex") as checks:
            checks.close("first", 1.0, 1.0)
            assert checks.close("second", 2.0, 1.0) is False
            checks.shape("third", np.zeros(2), (3,))
    message = str(info.value)
    assert message.startswith("Check 'ex' failed: 2 of 3 public checks failed")
    assert "Check 'second' failed: the values are not close enough." in message
    assert "Check 'third' failed: the shape is wrong." in message
    assert [f.check for f in info.value.failures] == ["second", "third"]
    output = capsys.readouterr().out
    assert "FAILED  second" in output and "public checks passed" not in output


def test_public_checks_lets_the_students_own_errors_through(capsys):
    def unwritten():
        raise NotImplementedError("Exercise unwritten: replace these two lines with your code")

    with pytest.raises(NotImplementedError, match="Exercise unwritten"):
        with PublicChecks("unwritten") as checks:
            checks.close("value", unwritten(), 1.0)
    assert "passed" not in capsys.readouterr().out


def test_public_checks_with_no_checks_is_an_error():
    with pytest.raises(RuntimeError, match="ran no checks"):
        with PublicChecks("empty"):
            pass


def test_a_single_number_gets_factor_advice_only_for_whole_factors():
    assert "got equals 50 times the expected value" in failure_message(check_close, "x", 100.0, 2.0)
    assert "got equals 0.5 times the expected value" in failure_message(check_close, "x", 1.0, 2.0)
    assert "times the expected value" not in failure_message(check_close, "x", 3.25, 2.5)


def test_a_second_failure_of_a_check_shows_its_more_explicit_hint():
    PublicChecks.attempts.clear()
    for expected, absent in (("the idea", "the explicit one"), ("the explicit one", "the idea"),
                             ("the explicit one", "the idea")):
        with pytest.raises(CheckFailed) as failure:
            with PublicChecks("hinted", verbose=False) as checks:
                checks.close("value", 1.0, 2.0, hint=("the idea", "the explicit one"))
        assert expected in str(failure.value) and absent not in str(failure.value)
