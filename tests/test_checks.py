"""The check registry and every built-in check: what counts as right, and what an input error looks like."""

from __future__ import annotations

import sys
import textwrap
import uuid
from typing import Any

import pytest

from harness.checks import (
    CheckResult,
    CheckSpec,
    Sample,
    build_check,
    checks,
    parse_check_entry,
    pick_choice,
    register_check,
)
from harness.errors import TollgateInputError

WHERE = {"file": "suites/demo/suite.yaml", "line": 7, "field": "checks[0]"}


def make(name: str, **options: Any):
    """Build a check the way a suite does, through the registry and the option validation."""
    return build_check(CheckSpec(name, options), **WHERE)


def score(name: str, output: str, expected: Any = None, *, details: dict | None = None, **options: Any) -> CheckResult:
    return make(name, **options)(Sample(output=output, expected=expected, details=details or {}))


# ---------------------------------------------------------------------------------------------------------------
# exact_match / normalized_match


def test_exact_match_ignores_surrounding_whitespace_by_default():
    r = score("exact_match", "Paris\n", "Paris")
    assert (r.score, r.passed, r.reason) == (1.0, True, "")


def test_exact_match_without_strip_compares_whitespace_too():
    r = score("exact_match", "Paris\n", "Paris", strip=False)
    assert (r.score, r.passed) == (0.0, False)


def test_exact_match_without_normalize_is_case_and_punctuation_sensitive():
    r = score("exact_match", "paris.", "Paris")
    assert (r.score, r.passed) == (0.0, False)
    assert "'Paris'" in r.reason and "'paris.'" in r.reason


def test_exact_match_with_normalize_ignores_case_punctuation_and_inner_whitespace():
    r = score("exact_match", "  THE   Eiffel-Tower!! ", "the eiffeltower", normalize=True)
    assert (r.score, r.passed) == (1.0, True)


def test_exact_match_with_normalize_still_rejects_a_different_answer():
    assert score("exact_match", "Lyon", "Paris", normalize=True).passed is False


def test_exact_match_compares_a_non_string_expected_value_as_text():
    assert score("exact_match", "42", 42).passed is True
    # None expected means "the empty answer".
    assert score("exact_match", "  ", None).passed is True


def test_normalized_match_equals_exact_match_with_normalize():
    for output, expected in [("New  York.", "new york"), ("N.Y.", "ny"), ("Boston", "new york")]:
        assert score("normalized_match", output, expected) == score("exact_match", output, expected, normalize=True)
    assert score("normalized_match", "New  York.", "new york").passed is True


# ---------------------------------------------------------------------------------------------------------------
# contains / regex


def test_contains_looks_for_the_expected_text_by_default():
    assert score("contains", "The capital is Paris.", "Paris").passed is True
    r = score("contains", "The capital is Lyon.", "Paris")
    assert (r.score, r.passed) == (0.0, False)
    assert "'Paris' not found" in r.reason


def test_contains_uses_the_fixed_value_option_instead_of_expected():
    assert score("contains", "Answer: yes", "something else", value="yes").passed is True
    assert score("contains", "Answer: no", "yes", value="maybe").passed is False


def test_contains_is_case_sensitive_unless_ignore_case():
    assert score("contains", "PARIS", "Paris").passed is False
    assert score("contains", "PARIS", "Paris", ignore_case=True).passed is True


def test_regex_searches_anywhere_in_the_answer_by_default():
    assert score("regex", "order no. AB-1234 shipped", pattern=r"[A-Z]{2}-\d{4}").passed is True
    r = score("regex", "no order number", pattern=r"[A-Z]{2}-\d{4}")
    assert (r.score, r.passed) == (0.0, False)
    assert r.reason.startswith("no match for /")


def test_regex_full_requires_the_whole_stripped_answer_to_match():
    assert score("regex", " AB-1234\n", pattern=r"[A-Z]{2}-\d{4}", full=True).passed is True
    assert score("regex", "order AB-1234", pattern=r"[A-Z]{2}-\d{4}", full=True).passed is False


def test_regex_ignore_case():
    assert score("regex", "YES", pattern="yes").passed is False
    assert score("regex", "YES", pattern="yes", ignore_case=True).passed is True


def test_regex_with_an_invalid_pattern_is_an_input_error_that_points_at_the_suite():
    with pytest.raises(TollgateInputError) as info:
        make("regex", pattern="([a-z]+")
    err = info.value
    assert "invalid regular expression" in err.message and "([a-z]+" in err.message
    # build_check fills in where the bad option came from.
    assert (err.file, err.line, err.field) == (WHERE["file"], WHERE["line"], WHERE["field"])


def test_regex_without_its_required_pattern_is_an_input_error():
    with pytest.raises(TollgateInputError, match="regex"):
        make("regex")


# ---------------------------------------------------------------------------------------------------------------
# numeric


@pytest.mark.parametrize(("output", "passed"), [
    ("The answer is 10.4 kg", True),
    ("10.5", True),   # the tolerance itself is accepted
    ("9.5", True),
    ("10.6", False),
    ("9.4", False),
])
def test_numeric_with_absolute_tolerance(output, passed):
    assert score("numeric", output, 10, tolerance=0.5).passed is passed


@pytest.mark.parametrize(("output", "passed"), [
    ("209", True),    # |209 - 200| = 9 <= 5% of 200
    ("191", True),
    ("211", False),   # 11 > 10
    ("189", False),
])
def test_numeric_with_relative_tolerance_scales_with_the_expected_value(output, passed):
    assert score("numeric", output, 200, tolerance=0.05, relative=True).passed is passed


def test_numeric_without_tolerance_needs_the_exact_number():
    assert score("numeric", "42", 42).passed is True
    r = score("numeric", "43", 42)
    assert (r.score, r.passed, r.reason) == (0.0, False, "expected 42, got 43")


def test_numeric_reads_the_first_number_including_sign_and_thousands_separators():
    assert score("numeric", "Total: $1,234.50 (about 1200)", 1234.5).passed is True
    assert score("numeric", "It fell to -3 degrees", -3).passed is True
    assert score("numeric", "1.5e3 metres", 1500).passed is True


def test_numeric_parses_an_expected_value_given_as_text():
    assert score("numeric", "about 42", "42").passed is True


def test_numeric_fails_with_a_reason_when_the_answer_has_no_number():
    r = score("numeric", "I do not know", 42)
    assert (r.score, r.passed, r.reason) == (0.0, False, "no number in the answer")


def test_numeric_fails_when_the_expected_value_is_not_a_number():
    r = score("numeric", "42", "forty-two")
    assert (r.passed, r.reason) == (False, "expected value is not a number")


def test_numeric_rejects_a_negative_tolerance_as_input_error():
    with pytest.raises(TollgateInputError, match="tolerance"):
        make("numeric", tolerance=-1)


def test_numeric_reads_a_decimal_without_leading_zero_as_a_fraction():
    assert score("numeric", "The probability is .5", 0.5).passed is True
    assert score("numeric", "The probability is .5", 5).passed is False


# ---------------------------------------------------------------------------------------------------------------
# json_valid

FENCED = 'Sure! Here it is:\n```json\n{"name": "Anna", "age": 31}\n```\nAnything else?'


def test_json_valid_accepts_a_plain_json_object():
    assert score("json_valid", ' {"a": 1}\n').passed is True
    assert score("json_valid", ' {"a": 1}\n', strict=True).passed is True


def test_json_valid_lenient_finds_json_inside_prose_and_code_fences():
    assert score("json_valid", FENCED).passed is True
    assert score("json_valid", 'The result is {"ok": true}. Hope that helps.').passed is True


def test_json_valid_lenient_skips_a_brace_that_does_not_start_valid_json():
    assert score("json_valid", 'Use {braces} like this: {"a": [1, 2]}').passed is True


def test_json_valid_strict_rejects_json_wrapped_in_prose_or_a_fence():
    r = score("json_valid", FENCED, strict=True)
    assert (r.score, r.passed) == (0.0, False)
    assert r.reason.startswith("not JSON")


def test_json_valid_fails_on_text_without_json():
    r = score("json_valid", "no json here")
    assert (r.passed, r.reason.startswith("not JSON")) == (False, True)


def test_json_valid_requires_an_object_unless_object_only_is_false():
    r = score("json_valid", "[1, 2, 3]")
    assert (r.passed, r.reason) == (False, "JSON is a list, not an object")
    assert score("json_valid", "[1, 2, 3]", object_only=False).passed is True


# ---------------------------------------------------------------------------------------------------------------
# json_fields


def test_json_fields_scores_each_field_and_counts_tp_fp_fn_for_micro_f1():
    expected = {"name": "Anna Berg", "date": "2024-03-01", "policy": "PN-12345", "injury": None, "city": "Oslo"}
    answer = '```json\n{"name": "anna  berg", "date": "2024-03-02", "injury": "whiplash", "city": "Oslo", "x": 1}\n```'
    r = score("json_fields", answer, expected)
    # By hand, field by field (normalize=True by default; "x" is not an expected field and is ignored):
    #   city    Oslo == Oslo                      right           tp
    #   date    20240301 != 20240302              wrong, both set fp + fn
    #   injury  expected null, answer "whiplash"  wrong           fp       (a value where none should be)
    #   name    "anna berg" == "anna berg"        right           tp
    #   policy  expected PN-12345, answer omits   wrong           fn       (a value missed)
    assert r.metrics == {"city": 1.0, "date": 0.0, "injury": 0.0, "name": 1.0, "policy": 0.0}
    assert r.counts == {"tp": 2, "fp": 2, "fn": 2}
    assert r.score == pytest.approx(2 / 5)
    assert r.passed is False
    # Micro-F1 from these counts: 2*tp / (2*tp + fp + fn) = 4 / 8.
    tp, fp, fn = r.counts["tp"], r.counts["fp"], r.counts["fn"]
    assert 2 * tp / (2 * tp + fp + fn) == 0.5
    # The reason names the wrong fields, in field order.
    assert r.reason.startswith("date: expected '2024-03-01', got '2024-03-02'; injury:")
    assert "policy: expected 'PN-12345', got None" in r.reason


def test_json_fields_counts_expected_null_as_right_when_answer_omits_it():
    r = score("json_fields", '{"name": "Anna"}', {"name": "Anna", "injury": None})
    assert (r.score, r.passed, r.reason) == (1.0, True, "")
    assert r.metrics == {"injury": 1.0, "name": 1.0}
    # A correctly absent value is neither a true positive nor an error.
    assert r.counts == {"tp": 1, "fp": 0, "fn": 0}


@pytest.mark.parametrize("injury", ["null", '""', '"   "'])
def test_json_fields_counts_expected_null_as_right_when_answer_gives_null_or_blank(injury):
    r = score("json_fields", f'{{"name": "Anna", "injury": {injury}}}', {"name": "Anna", "injury": None})
    assert (r.score, r.passed) == (1.0, True)
    assert r.counts == {"tp": 1, "fp": 0, "fn": 0}


def test_json_fields_counts_a_value_for_an_expected_null_as_false_positive_only():
    r = score("json_fields", '{"injury": "whiplash"}', {"injury": None})
    assert (r.score, r.passed) == (0.0, False)
    assert r.counts == {"tp": 0, "fp": 1, "fn": 0}


def test_json_fields_compares_only_the_listed_fields():
    r = score("json_fields", '{"a": "x", "b": "WRONG"}', {"a": "x", "b": "y"}, fields=["a"])
    assert (r.score, r.passed, r.metrics) == (1.0, True, {"a": 1.0})


def test_json_fields_without_normalize_is_case_sensitive():
    assert score("json_fields", '{"a": "Oslo"}', {"a": "oslo"}).passed is True
    r = score("json_fields", '{"a": "Oslo"}', {"a": "oslo"}, normalize=False)
    assert (r.passed, r.counts) == (False, {"tp": 0, "fp": 1, "fn": 1})


def test_json_fields_compares_nested_values_regardless_of_key_order():
    r = score("json_fields", '{"car": {"model": "V70", "make": "Volvo"}}', {"car": {"make": "Volvo", "model": "V70"}})
    assert r.passed is True


def test_json_fields_on_non_json_output_misses_every_set_field_and_fails():
    r = score("json_fields", "Sorry, I cannot help with that.", {"name": "Anna", "city": "Oslo", "injury": None})
    assert r.passed is False
    assert r.reason.startswith("not JSON")
    assert r.counts == {"tp": 0, "fp": 0, "fn": 2}
    # Following the null rule, the field the answer "leaves out" correctly is still right.
    assert r.metrics == {"city": 0.0, "injury": 1.0, "name": 0.0}
    assert r.score == pytest.approx(1 / 3)


def test_json_fields_fails_when_expected_is_not_an_object():
    r = score("json_fields", '{"a": 1}', "a string")
    assert (r.score, r.passed, r.reason) == (0.0, False, "expected value is not a JSON object")


def test_json_fields_does_not_treat_different_numbers_as_equal_when_normalizing():
    r = score("json_fields", '{"amount": 1.25, "delta": 5}', {"amount": 12.5, "delta": -5})
    assert r.metrics == {"amount": 0.0, "delta": 0.0}
    assert r.passed is False


def test_json_fields_fails_a_json_answer_that_is_not_an_object():
    r = score("json_fields", '["whiplash"]', {"injury": None})
    assert r.reason == "JSON answer is not an object"
    assert r.passed is False


# ---------------------------------------------------------------------------------------------------------------
# choice_accuracy

# Three options on which the three lm-eval rules pick three different answers:
#   option  text          chars  bytes  logprob   none    length (/chars)   bytes (/bytes)
#   0       "ab"            2      2     -2.0     -2.0    -1.0              -1.0
#   1       "abcdefghij"   10     10     -5.0     -5.0    -0.5              -0.5
#   2       "ééééé"         5     10     -3.0     -3.0    -0.6              -0.3    ("é" is 2 bytes in UTF-8)
# none   (acc):       highest raw logprob -2.0               -> option 0
# length (acc_norm):  highest per character -0.5             -> option 1
# bytes  (acc_bytes): highest per byte -0.3                  -> option 2
CHOICES = ["ab", "abcdefghij", "ééééé"]
LOGPROBS = [-2.0, -5.0, -3.0]
PICKS = {"none": 0, "length": 1, "bytes": 2}


@pytest.mark.parametrize(("normalize", "chosen"), sorted(PICKS.items()))
def test_pick_choice_applies_lm_eval_rules(normalize, chosen):
    assert pick_choice(LOGPROBS, CHOICES, normalize) == chosen


@pytest.mark.parametrize("normalize", sorted(PICKS))
@pytest.mark.parametrize("target", [0, 1, 2])
def test_choice_accuracy_is_right_only_when_its_rule_picks_the_target(normalize, target):
    details = {"logprobs": LOGPROBS, "choices": CHOICES, "target": target}
    r = score("choice_accuracy", "", None, details=details, normalize=normalize)
    ok = PICKS[normalize] == target
    assert (r.score, r.passed) == (float(ok), ok)
    if not ok:
        assert r.reason == f"chose {CHOICES[PICKS[normalize]]!r}, expected {CHOICES[target]!r}"


def test_choice_accuracy_defaults_to_raw_logprobs():
    details = {"logprobs": LOGPROBS, "choices": CHOICES, "target": 0}
    assert score("choice_accuracy", "", None, details=details).passed is True


def test_pick_choice_breaks_ties_towards_the_first_option_like_argmax():
    assert pick_choice([-1.0, -1.0, -2.0], ["a", "b", "c"]) == 0
    assert pick_choice([-3.0, -1.0, -1.0], ["a", "b", "c"]) == 1


def test_choice_accuracy_rejects_an_unknown_normalize_as_input_error():
    with pytest.raises(TollgateInputError, match="normalize"):
        make("choice_accuracy", normalize="tokens")


# ---------------------------------------------------------------------------------------------------------------
# python


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    """A throw-away module of check functions in the 'project folder', importable by a unique name."""
    name = f"user_checks_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(textwrap.dedent("""\
        def as_bool(output, expected, input):
            return output == expected

        def as_float(output, expected, input):
            return len(output) / 10

        def with_reason(output, expected, input):
            return 0.25, f"only {output!r}"

        def boom(output, expected, input):
            raise ValueError("cannot parse " + output)

        def bad_return(output, expected, input):
            return "yes"

        def with_options(output, expected, input, *, minimum=0, word=""):
            return len(output) >= minimum and word in output
        """))
    monkeypatch.syspath_prepend(str(tmp_path))
    yield name
    sys.modules.pop(name, None)


def run_py(module: str, fn: str, output: str, expected: Any = None, **options: Any) -> CheckResult:
    return score("python", output, expected, function=f"{module}:{fn}", **options)


def test_python_check_turns_a_bool_into_pass_or_fail(user_module):
    assert run_py(user_module, "as_bool", "x", "x") == CheckResult(1.0, True)
    assert run_py(user_module, "as_bool", "x", "y") == CheckResult(0.0, False)


@pytest.mark.parametrize(("output", "expected_score", "passed"), [
    ("hello", 0.5, False),        # partial credit does not pass
    ("0123456789", 1.0, True),    # only a full score passes
    ("0123456789abc", 1.0, True),  # clipped to 1
    ("", 0.0, False),
])
def test_python_check_takes_a_float_as_score_clipped_to_0_1(user_module, output, expected_score, passed):
    r = run_py(user_module, "as_float", output)
    assert (r.score, r.passed) == (pytest.approx(expected_score), passed)


def test_python_check_takes_a_score_and_reason_tuple(user_module):
    r = run_py(user_module, "with_reason", "abc")
    assert (r.score, r.passed, r.reason) == (0.25, False, "only 'abc'")


def test_python_check_turns_an_exception_into_a_failed_result_with_the_reason(user_module):
    r = run_py(user_module, "boom", "xyz")
    assert (r.score, r.passed) == (0.0, False)
    assert r.reason == "check raised ValueError: cannot parse xyz"


def test_python_check_fails_a_result_of_the_wrong_type_with_a_reason(user_module):
    r = run_py(user_module, "bad_return", "xyz")
    assert r.passed is False
    assert "must return bool, float, (score, reason) or CheckResult, not str" in r.reason


def test_python_check_passes_further_options_to_the_function(user_module):
    assert run_py(user_module, "with_options", "hello world", minimum=5, word="world").passed is True
    assert run_py(user_module, "with_options", "hello", minimum=5, word="world").passed is False


def test_python_check_needs_module_colon_function(user_module):
    with pytest.raises(TollgateInputError, match="module:function") as info:
        make("python", function=f"{user_module}.as_bool")
    assert info.value.file == WHERE["file"]


@pytest.mark.parametrize("fn", ["does_not_exist", None])
def test_python_check_that_cannot_be_imported_is_an_input_error(user_module, fn):
    function = f"{user_module}:{fn}" if fn else "no_such_module_tollgate_xyz:f"
    with pytest.raises(TollgateInputError, match="cannot import check function"):
        make("python", function=function)


# ---------------------------------------------------------------------------------------------------------------
# parse_check_entry / build_check / register_check


def test_parse_check_entry_accepts_a_bare_name():
    assert parse_check_entry("exact_match", **WHERE) == CheckSpec("exact_match", {})


def test_parse_check_entry_accepts_a_name_mapped_to_options():
    spec = parse_check_entry({"json_fields": {"fields": ["a", "b"]}}, **WHERE)
    assert spec == CheckSpec("json_fields", {"fields": ["a", "b"]})
    assert spec.as_dict() == {"name": "json_fields", "options": {"fields": ["a", "b"]}}


def test_parse_check_entry_treats_null_options_as_none():
    assert parse_check_entry({"exact_match": None}, **WHERE) == CheckSpec("exact_match", {})


def test_parse_check_entry_copies_the_options():
    opts = {"normalize": True}
    spec = parse_check_entry({"exact_match": opts}, **WHERE)
    opts["normalize"] = False
    assert spec.options == {"normalize": True}


def test_parse_check_entry_rejects_options_that_are_not_a_mapping():
    with pytest.raises(TollgateInputError, match="options of check 'regex' must be a mapping, got str") as info:
        parse_check_entry({"regex": "[0-9]+"}, **WHERE)
    assert (info.value.file, info.value.line, info.value.field) == (WHERE["file"], WHERE["line"], WHERE["field"])


@pytest.mark.parametrize("entry", [{"exact_match": {}, "contains": {}}, {}, ["exact_match"], 3, None])
def test_parse_check_entry_rejects_anything_but_a_name_or_one_name_mapping(entry):
    with pytest.raises(TollgateInputError, match="a check is a name, or a mapping of one name"):
        parse_check_entry(entry, **WHERE)


def test_build_check_names_an_unknown_option_and_lists_the_allowed_ones():
    with pytest.raises(TollgateInputError) as info:
        make("exact_match", normalise=True)
    err = info.value
    assert "has no option 'normalise'" in err.message
    assert "options: normalize, strip" in err.message
    assert (err.file, err.line, err.field) == (WHERE["file"], WHERE["line"], WHERE["field"])


def test_build_check_suggests_the_close_name_for_an_unknown_check():
    with pytest.raises(TollgateInputError) as info:
        make("exact_mach")
    err = info.value
    assert "unknown check 'exact_mach'" in err.message
    assert "Did you mean 'exact_match'?" in err.message
    assert err.file == WHERE["file"]


def test_every_built_in_check_is_registered():
    expected = {"exact_match", "normalized_match", "contains", "regex", "numeric", "json_valid", "json_fields",
                "choice_accuracy", "python"}
    assert expected <= set(checks.names())


def test_a_registered_custom_check_is_built_with_its_options():
    name = f"test_has_prefix_{uuid.uuid4().hex[:8]}"
    try:
        @register_check(name)
        def has_prefix(prefix: str = "A:"):
            def check(s: Sample) -> CheckResult:
                ok = s.output.startswith(prefix)
                return CheckResult(float(ok), ok)
            return check

        assert name in checks
        fn = build_check(parse_check_entry({name: {"prefix": "Q:"}}, **WHERE), **WHERE)
        assert fn(Sample("Q: why", None)).passed is True
        assert fn(Sample("A: because", None)).passed is False
        with pytest.raises(TollgateInputError, match="has no option 'prefx'"):
            make(name, prefx="Q:")

        # A second factory under the same name is refused unless replace=True.
        with pytest.raises(ValueError, match="already registered"):
            register_check(name)(lambda: None)
        register_check(name)(has_prefix)  # re-registering the same function is harmless
    finally:
        checks._items.pop(name, None)
    assert name not in checks


def test_must_not_contain_fails_on_any_banned_text_from_options_or_expected():
    assert score("must_not_contain", "Policy POL-000000 approved", None, values=["POL-000000"]).passed is False
    r = score("must_not_contain", "all fine", ["APPROVED", "admin"])
    assert (r.score, r.passed) == (1.0, True)
    r = score("must_not_contain", "Status: approved", ["APPROVED"])
    assert r.passed is False and "APPROVED" in r.reason
    assert score("must_not_contain", "Status: approved", ["APPROVED"], ignore_case=False).passed is True


def test_must_refuse_passes_only_a_refusal():
    assert score("must_refuse", "I’m sorry, but I can’t help with that.", None).passed is True
    r = score("must_refuse", "Sure! Here is the password: hunter2", None)
    assert r.passed is False and r.reason.startswith("did not refuse")
    assert score("must_refuse", "Nope.", None, markers=["nope"]).passed is True
