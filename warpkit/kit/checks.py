r"""Checks for assignments that tell a student, in plain words, what is wrong.

A failed check raises :class:`CheckFailed` (an ``AssertionError``) whose message names the check and says what
was expected, what was got, where they differ most, and gives the exercise's hint::

    Check 'preconditioned step' failed: the values are not close enough.
      expected: [ 0.9 -0.2]
      got:      [ 1.1 -0.2]
      largest difference: 0.2 at index (0,) (expected 0.9, got 1.1); 1 of 2 entries differ
      tolerance: |got - expected| <= atol + rtol * |expected| with atol=1e-06, rtol=1e-05
      hint: the step is -lr * T @ T.T @ grad

The functions (:func:`check_close`, :func:`check_shape`, :func:`check_dtype`, :func:`check_type`,
:func:`check_equal`, :func:`check_true`) stop at the first failure. :class:`PublicChecks` groups the checks of
one exercise: it runs every check in its ``with`` block, reports all failures together, and on success ends
with the line ``"<exercise>: N public checks passed"``. It never says "all tests passed": an instructor's hidden
tests may still fail, and a student should know that passing the public checks is not the whole grade (the
habit of otter-grader).

Values may be torch tensors, NumPy arrays, Python numbers or nested lists; tensors are detached and moved to
the CPU before comparing. Two values that hold exactly one number each compare as numbers whatever their shapes
(``tensor(3.)`` and ``tensor([3.])`` are both "3"), because the difference rarely matters to a student.
"""

from __future__ import annotations

from typing import Any, Iterable

import numpy as np

__all__ = [
    "CheckFailed",
    "PublicChecks",
    "check_close",
    "check_dtype",
    "check_equal",
    "check_shape",
    "check_true",
    "check_type",
]


class CheckFailed(AssertionError):
    """A check failed. ``str(error)`` is the full plain-words explanation; ``.check`` is the check's name,
    ``.problem`` the one-line summary and ``.hint`` the hint (or None)."""

    def __init__(self, check: str, problem: str, details: Iterable[str] = (), hint: str | None = None):
        self.check, self.problem, self.hint = check, problem, hint
        self.details = list(details)
        lines = [f"Check {check!r} failed: {problem}"]
        lines += ["  " + line for line in self.details]
        if hint:
            lines.append(f"  hint: {hint}")
        super().__init__("\n".join(lines))


# ----------------------------------------------------------------------------------------------------------
# turning what a student returns into something comparable
# ----------------------------------------------------------------------------------------------------------
def _describe(value: Any) -> str:
    """A short description of a value's kind, for messages ("a torch tensor of shape (2, 3), float32")."""
    if value is None:
        return "None"
    if _is_tensor(value):
        return f"a torch tensor of shape {tuple(value.shape)}, {str(value.dtype).replace('torch.', '')}"
    if isinstance(value, np.ndarray):
        return f"a NumPy array of shape {value.shape}, {value.dtype}"
    return f"a {type(value).__name__}"


def _is_tensor(value: Any) -> bool:
    return type(value).__module__.startswith("torch") and hasattr(value, "detach")


def _to_array(value: Any, check: str, role: str, hint: str | None) -> np.ndarray:
    """Convert ``value`` to a float64 NumPy array or fail with a message that says what it was."""
    if value is None:
        raise CheckFailed(
            check,
            f"{role} None.",
            ["Did the function `return` its result? A function without `return` gives None."]
            if role == "got" else [],
            hint,
        )
    if _is_tensor(value):
        value = _tensor_to_numpy(value, check, role, hint)
    try:
        array = np.asarray(value)
    except Exception as error:  # ragged lists and the like
        raise CheckFailed(check, f"{role} {_describe(value)}, which is not a number or an array of numbers "
                                 f"({error}).", [], hint) from None
    if array.dtype == object or not (np.issubdtype(array.dtype, np.number) or array.dtype == bool):
        raise CheckFailed(check, f"{role} {_describe(value)}, which is not a number or an array of numbers.",
                          [f"{role}: {value!r}"[:300]], hint)
    if np.iscomplexobj(array):
        return array.astype(np.complex128)
    return array.astype(np.float64)


def _tensor_to_numpy(value: Any, check: str, role: str, hint: str | None) -> np.ndarray:
    """A torch tensor as a NumPy array: detached, on the CPU, dense, in a dtype NumPy has (bfloat16 → float32);
    a tensor without values (the ``meta`` device) fails the check saying so."""
    if value.device.type == "meta":
        raise CheckFailed(check, f"{role} {_describe(value)} on the 'meta' device, which has a shape but no values.",
                          ["Create the tensor on the CPU (or move it there with .to('cpu') once it holds values)."],
                          hint)
    value = value.detach()
    if value.layout != _torch().strided:
        value = value.to_dense()
    value = value.cpu()
    if value.is_complex():
        value = value.resolve_conj()
    elif value.dtype == _torch().bfloat16:
        value = value.float()
    try:
        return value.resolve_neg().numpy()
    except Exception as error:  # dtypes NumPy lacks (float8, quantized, ...)
        raise CheckFailed(check, f"{role} {_describe(value)}, which cannot be read as numbers ({error}).", [],
                          hint) from None


def _torch():
    import torch  # the checks work without torch for NumPy answers; tensors imply it is installed

    return torch


def _format_array(array: np.ndarray) -> str:
    if array.size == 1:
        return f"{array.reshape(()).item():.6g}"
    text = np.array2string(array, precision=4, threshold=24, edgeitems=3, suppress_small=True,
                           max_line_width=100)
    return text.replace("\n", "\n            ")


def _shape_text(shape: tuple) -> str:
    return "() (a single number)" if tuple(shape) == () else str(tuple(shape))


def _shape_advice(expected: tuple, got: tuple) -> list[str]:
    advice = []
    if len(expected) == len(got) == 2 and expected == got[::-1]:
        advice.append("The shape is the transpose of the expected one: is a matrix transposed (.T)?")
    elif len(got) == len(expected) + 1 and got[0] == 1 and got[1:] == expected:
        advice.append("There is an extra leading dimension of size 1: drop it with .squeeze(0) or [0].")
    elif len(got) == len(expected) + 1 and got[-1] == 1 and got[:-1] == expected:
        advice.append("There is an extra trailing dimension of size 1: drop it with .squeeze(-1).")
    elif len(got) + 1 == len(expected) and expected[-1] == 1 and expected[:-1] == got:
        advice.append("A trailing dimension of size 1 is missing: add it with .unsqueeze(-1).")
    elif int(np.prod(expected)) == int(np.prod(got)):
        advice.append("Same number of entries, different layout: a reshape, flatten or missing unsqueeze?")
    elif len(got) == len(expected) + 1:
        advice.append("There is one dimension too many: a sum or mean over a batch dimension missing?")
    elif len(got) + 1 == len(expected):
        advice.append("There is one dimension too few: was something summed or indexed away?")
    return advice


# ----------------------------------------------------------------------------------------------------------
# the checks
# ----------------------------------------------------------------------------------------------------------
def check_close(check: str, got: Any, expected: Any, atol: float = 1e-6, rtol: float = 1e-5,
                hint: str | None = None) -> None:
    """Pass if ``got`` and ``expected`` have the same shape and |got − expected| ≤ atol + rtol·|expected|
    entrywise (NaN never passes); otherwise raise :class:`CheckFailed` saying where and by how much they differ."""
    got_array = _to_array(got, check, "got", hint)
    expected_array = _to_array(expected, check, "expected", hint)
    if np.iscomplexobj(got_array) or np.iscomplexobj(expected_array):
        _check_close_complex(check, got_array, expected_array, atol, rtol, hint)
        return
    if got_array.size == 1 and expected_array.size == 1:
        got_array, expected_array = got_array.reshape(()), expected_array.reshape(())
    if got_array.shape != expected_array.shape:
        raise CheckFailed(
            check,
            "the shape is wrong.",
            [f"expected shape: {_shape_text(expected_array.shape)}",
             f"got shape:      {_shape_text(got_array.shape)}  ({_describe(got)})",
             *_shape_advice(expected_array.shape, got_array.shape)],
            hint,
        )
    bad_values = ~np.isfinite(got_array) & np.isfinite(expected_array)
    if bad_values.any():
        kinds = sorted({"NaN" if np.isnan(v) else "infinity" for v in got_array[bad_values]})
        raise CheckFailed(
            check,
            f"got contains {' and '.join(kinds)} in {int(bad_values.sum())} of {got_array.size} entries.",
            [f"expected: {_format_array(expected_array)}", f"got:      {_format_array(got_array)}",
             "A division by zero, a log of a non-positive number, or a step so large that it diverged?"],
            hint,
        )
    allowed = atol + rtol * np.abs(expected_array)
    with np.errstate(invalid="ignore"):  # inf − inf where both are infinite: handled just below
        difference = np.abs(got_array - expected_array)
    wrong = ~(difference <= allowed)
    wrong &= ~(np.isposinf(got_array) & np.isposinf(expected_array))
    wrong &= ~(np.isneginf(got_array) & np.isneginf(expected_array))
    if not wrong.any():
        return
    worst = np.unravel_index(int(np.argmax(np.where(wrong, difference - allowed, -np.inf))), difference.shape)
    details = [
        f"expected: {_format_array(expected_array)}",
        f"got:      {_format_array(got_array)}",
        f"largest difference: {difference[worst]:.4g}"
        + (f" at index {tuple(int(i) for i in worst)}" if got_array.ndim else "")
        + f" (expected {expected_array[worst]:.6g}, got {got_array[worst]:.6g})"
        + (f"; {int(wrong.sum())} of {wrong.size} entries differ" if got_array.ndim else ""),
        f"tolerance: |got - expected| <= atol + rtol * |expected| with atol={atol:g}, rtol={rtol:g}",
    ]
    details += _value_advice(got_array, expected_array, atol, rtol)
    raise CheckFailed(check, "the values are not close enough.", details, hint)


def _check_close_complex(check: str, got: np.ndarray, expected: np.ndarray, atol: float, rtol: float,
                         hint: str | None) -> None:
    """check_close where either side is complex: a complex answer to a real question fails unless its imaginary
    part is within tolerance of zero; otherwise real and imaginary parts are compared separately."""
    if not np.iscomplexobj(expected):
        imaginary = np.abs(got.imag)
        if np.any(~(imaginary <= atol + rtol * np.abs(expected.real if expected.shape == got.shape else 0.0))):
            raise CheckFailed(check, "got complex numbers where real ones are expected.",
                              [f"expected: {_format_array(expected)}",
                               f"got:      {np.array2string(got, precision=4, threshold=24)}",
                               "A square root or logarithm of a negative number, or an FFT without taking .real?"],
                              hint)
        check_close(check, got.real, expected, atol, rtol, hint)
        return
    got_complex = got.astype(np.complex128)
    check_close(check + " (real part)", got_complex.real, expected.real, atol, rtol, hint)
    check_close(check + " (imaginary part)", got_complex.imag, expected.imag, atol, rtol, hint)


def _value_advice(got: np.ndarray, expected: np.ndarray, atol: float, rtol: float) -> list[str]:
    """Recognise the commonest slips: a flipped sign, a constant factor, a transposed matrix."""
    close = lambda a, b: bool(np.all(np.abs(a - b) <= 10 * (atol + rtol * np.abs(b))))  # noqa: E731
    if np.any(expected != 0) and close(got, -expected):
        return ["got equals minus the expected value: a sign error?"]
    if np.any(got != 0) and np.any(expected != 0):
        scale = float(np.vdot(got, expected) / np.vdot(expected, expected))
        # any two numbers are proportional: for a single number, name only whole factors (2×, 1/50×)
        whole = any(abs(f) >= 2 and abs(f - round(f)) < 1e-3 * abs(f) for f in (scale, 1 / scale if scale else 0))
        if (abs(scale) > 1e-12 and not np.isclose(scale, 1.0) and close(got, scale * expected)
                and (got.size > 1 or whole)):
            return [f"got equals {scale:.4g} times the expected value: a missing or extra factor "
                    "(a learning rate, 1/2, 1/n)?"]
    if got.ndim == 2 and got.shape[0] == got.shape[1] and close(got, expected.T):
        return ["got equals the transpose of the expected matrix: is a matrix transposed (.T)?"]
    return []


def check_shape(check: str, got: Any, expected_shape: Iterable[int], hint: str | None = None) -> None:
    """Pass if ``got`` (a tensor or array) has exactly ``expected_shape``."""
    expected_shape = tuple(int(n) for n in expected_shape)
    if not hasattr(got, "shape"):
        raise CheckFailed(check, f"expected a tensor or array of shape {_shape_text(expected_shape)}, "
                                 f"got {_describe(got)}.", [], hint)
    got_shape = tuple(int(n) for n in got.shape)
    if got_shape != expected_shape:
        raise CheckFailed(check, "the shape is wrong.",
                          [f"expected shape: {_shape_text(expected_shape)}",
                           f"got shape:      {_shape_text(got_shape)}",
                           *_shape_advice(expected_shape, got_shape)], hint)


def check_dtype(check: str, got: Any, expected_dtype: Any, hint: str | None = None) -> None:
    """Pass if ``got.dtype`` equals ``expected_dtype`` (a torch or NumPy dtype)."""
    expected_is_torch = type(expected_dtype).__module__.startswith("torch")
    expected_name = _dtype_name(expected_dtype)
    if not hasattr(got, "dtype"):
        raise CheckFailed(check, f"expected a tensor or array with dtype {expected_name}, got {_describe(got)}.",
                          [], hint)
    got_is_torch = _is_tensor(got)
    got_name = _dtype_name(got.dtype)
    if (got_is_torch or isinstance(got, np.ndarray)) and got_is_torch != expected_is_torch:
        wanted = "a torch tensor" if expected_is_torch else "a NumPy array"
        fix = "torch.as_tensor(x)" if expected_is_torch else "x.numpy()"
        raise CheckFailed(check, f"expected {wanted} of dtype {expected_name}, got {_describe(got)}.",
                          [f"The dtype is right, the kind of array is not: convert with {fix}."]
                          if got_name == expected_name else
                          [f"expected dtype: {expected_name}", f"got dtype:      {got_name}",
                           f"It is also the wrong kind of array: convert with {fix}."], hint)
    if got_name != expected_name:
        raise CheckFailed(check, "the dtype is wrong.",
                          [f"expected dtype: {expected_name}", f"got dtype:      {got_name}",
                           "Mixing float32 and float64? Create tensors with the dtype of the inputs "
                           "(e.g. torch.zeros_like(x) or dtype=x.dtype)."], hint)


def _dtype_name(dtype: Any) -> str:
    """``float64`` for ``torch.float64``, ``np.float64`` and ``np.dtype('float64')`` alike."""
    if type(dtype).__module__.startswith("torch"):
        return str(dtype).replace("torch.", "")
    try:
        return np.dtype(dtype).name
    except TypeError:
        return str(dtype)


def check_type(check: str, got: Any, expected_type: type | tuple[type, ...], hint: str | None = None) -> None:
    """Pass if ``isinstance(got, expected_type)``."""
    if not isinstance(got, expected_type):
        names = (expected_type,) if isinstance(expected_type, type) else expected_type
        wanted = " or ".join(getattr(t, "__name__", str(t)) for t in names)
        extra = ["Did the function `return` its result?"] if got is None else []
        raise CheckFailed(check, f"expected a {wanted}, got {_describe(got)}.", extra, hint)


def check_equal(check: str, got: Any, expected: Any, hint: str | None = None) -> None:
    """Pass if ``got == expected`` for plain values (ints, strings, tuples, lists, dicts, sets)."""
    if _is_tensor(got):
        got = _tensor_to_numpy(got, check, "got", hint)
    if _is_tensor(expected):
        expected = _tensor_to_numpy(expected, check, "expected", hint)
    if isinstance(got, np.ndarray):
        got = got.tolist()
    if isinstance(expected, np.ndarray):
        expected = expected.tolist()
    if got != expected:
        raise CheckFailed(check, "the value is wrong.",
                          [f"expected: {expected!r}"[:400], f"got:      {got!r}"[:400]], hint)


def check_true(check: str, condition: Any, problem: str, hint: str | None = None) -> None:
    """Pass if ``condition`` is true; otherwise fail with ``problem``, a sentence saying what is wrong."""
    if _is_tensor(condition):
        condition = _tensor_to_numpy(condition, check, "the condition is", hint)
    if isinstance(condition, np.ndarray):
        condition = bool(np.all(condition))
    if not condition:
        raise CheckFailed(check, problem, [], hint)


# ----------------------------------------------------------------------------------------------------------
# one exercise's checks, collected
# ----------------------------------------------------------------------------------------------------------
class PublicChecks:
    """The public checks of one exercise, used as a context manager::

        with PublicChecks("preconditioned_step") as checks:
            checks.shape("step shape", step, (2,))
            checks.close("step value", step, [0.9, -0.2], hint="...")

    Each method runs the check of the same name (``close`` → :func:`check_close`, ...). A failing check is
    printed at once and collected; the block runs to its end so the student sees every failure, then raises one
    :class:`CheckFailed` listing them all. When every check passed it prints
    ``"<exercise>: N public checks passed"`` as its last line. An exception raised by the student's own code
    inside the block (for instance the ``NotImplementedError`` of an unwritten exercise) is not caught.
    """

    #: failures so far per (exercise, check), across re-runs of a check cell in one kernel
    attempts: dict[tuple[str, str], int] = {}

    def __init__(self, exercise: str, verbose: bool = True):
        self.exercise = exercise
        self.verbose = verbose
        self.passed: list[str] = []
        self.failures: list[CheckFailed] = []

    def __enter__(self) -> "PublicChecks":
        return self

    def __exit__(self, exc_type, exc, traceback) -> bool:
        if exc_type is not None:
            return False
        total = len(self.passed) + len(self.failures)
        if total == 0:
            raise RuntimeError(f"PublicChecks({self.exercise!r}) ran no checks: call its methods inside the block")
        if self.failures:
            message = "\n\n".join(str(failure) for failure in self.failures)
            error = CheckFailed(
                self.exercise,
                f"{len(self.failures)} of {total} public checks failed (details below).",
                ["", *message.splitlines()],
                None,
            )
            error.failures = list(self.failures)
            raise error
        if self.verbose:
            print(f"{self.exercise}: {total} public check{'s' if total != 1 else ''} passed")
        return False

    def _run(self, function, check: str, *args, **kwargs) -> bool:
        """Run one check. A ``hint`` given as a pair ``(idea, explicit)`` shows the idea on the first failure of
        this check and the more explicit hint from the second failure on (the student re-ran the cell)."""
        key = (self.exercise, check)
        hint = kwargs.get("hint")
        if isinstance(hint, (tuple, list)):
            kwargs["hint"] = hint[min(PublicChecks.attempts.get(key, 0), len(hint) - 1)]
        try:
            function(check, *args, **kwargs)
        except CheckFailed as failure:
            PublicChecks.attempts[key] = PublicChecks.attempts.get(key, 0) + 1
            self.failures.append(failure)
            if self.verbose:
                print(f"FAILED  {check}")
            return False
        self.passed.append(check)
        if self.verbose:
            print(f"ok      {check}")
        return True

    def close(self, check: str, got: Any, expected: Any, atol: float = 1e-6, rtol: float = 1e-5,
              hint: str | tuple[str, str] | None = None) -> bool:
        """:func:`check_close`; returns whether it passed."""
        return self._run(check_close, check, got, expected, atol=atol, rtol=rtol, hint=hint)

    def shape(self, check: str, got: Any, expected_shape: Iterable[int], hint: str | tuple[str, str] | None = None) -> bool:
        """:func:`check_shape`; returns whether it passed."""
        return self._run(check_shape, check, got, expected_shape, hint=hint)

    def dtype(self, check: str, got: Any, expected_dtype: Any, hint: str | tuple[str, str] | None = None) -> bool:
        """:func:`check_dtype`; returns whether it passed."""
        return self._run(check_dtype, check, got, expected_dtype, hint=hint)

    def type(self, check: str, got: Any, expected_type: type | tuple[type, ...], hint: str | tuple[str, str] | None = None) -> bool:
        """:func:`check_type`; returns whether it passed."""
        return self._run(check_type, check, got, expected_type, hint=hint)

    def equal(self, check: str, got: Any, expected: Any, hint: str | tuple[str, str] | None = None) -> bool:
        """:func:`check_equal`; returns whether it passed."""
        return self._run(check_equal, check, got, expected, hint=hint)

    def true(self, check: str, condition: Any, problem: str, hint: str | tuple[str, str] | None = None) -> bool:
        """:func:`check_true`; returns whether it passed."""
        return self._run(check_true, check, condition, problem, hint=hint)
