"""Multiple-choice accuracy from log-likelihoods, with lm-eval's exact decision rules."""

from __future__ import annotations

from typing import Literal

from harness.checks._base import CheckFn, CheckResult, Sample, register_check


def pick_choice(logprobs: list[float], choices: list[str], normalize: str = "none") -> int:
    """Index of the chosen option: ``acc`` (raw), ``acc_norm`` (per character), ``acc_bytes``.

    Ties go to the first option, as ``numpy.argmax`` does in lm-eval.
    """
    if normalize == "length":
        values = [lp / max(1, len(c)) for lp, c in zip(logprobs, choices, strict=True)]
    elif normalize == "bytes":
        values = [lp / max(1, len(c.encode("utf-8"))) for lp, c in zip(logprobs, choices, strict=True)]
    else:
        values = list(logprobs)
    return max(range(len(values)), key=lambda i: (values[i], -i))


@register_check("choice_accuracy", tasks=("choice",))
def choice_accuracy(normalize: Literal["none", "length", "bytes"] = "none") -> CheckFn:
    """The option with the highest log-likelihood is the expected one.

    Args:
        normalize: ``none`` is lm-eval's ``acc``; ``length`` divides by the option's characters
            (``acc_norm``), ``bytes`` by its UTF-8 bytes (``acc_bytes``), so long options are not
            penalised for their length.
    """
    if normalize not in ("none", "length", "bytes"):
        raise ValueError(f"normalize must be none, length or bytes, not {normalize!r}")

    def check(s: Sample) -> CheckResult:
        lps, choices, target = s.details["logprobs"], s.details["choices"], s.details["target"]
        pred = pick_choice(lps, choices, normalize)
        ok = pred == target
        reason = "" if ok else f"chose {choices[pred]!r}, expected {choices[target]!r}"
        return CheckResult(float(ok), ok, reason)

    return check
