"""What a model directory or a prompt template may do to the machine that evaluates it: nothing.

Pickled weights, a model's own Python code (``auto_map``), links leading out of the model
directory, oversized or absurd configuration files, and sandbox escapes in prompt templates are
refused with exit code 2 and a message naming the model (or suite) and the file, before anything
of them is loaded, imported, unpickled or allocated. Each attack writes a marker file if it ever
runs; the positive controls show that the same payloads do run when allowed, so the absence of
the markers means something.
"""

from __future__ import annotations

import contextlib
import json
import os
import pickle
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import run_cli, write_project, write_suite

from harness.adapters import adapters
from harness.adapters.base import GenerationSettings, ModelConfig
from harness.adapters.hf_loading import MAX_CONFIG_BYTES, check_model_dir, config_params
from harness.errors import TollgateInputError
from harness.suites import load_suite

REPO = Path(__file__).resolve().parent.parent


class _Unpickled:
    """Unpickling this writes ``marker``: what a malicious ``pytorch_model.bin`` could do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (self.marker, "unpickled"))


CUSTOM_CODE = """\
import os
from pathlib import Path
Path(os.environ["TOLLGATE_TEST_MARKER"]).write_text("custom_code.py was imported")
from transformers import GPT2Config, GPT2LMHeadModel
class TollgateConfig(GPT2Config):
    model_type = "tollgate_custom"
class TollgateModel(GPT2LMHeadModel):
    config_class = TollgateConfig
"""


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def _edit_config(d: Path, **changes) -> Path:
    conf = json.loads((d / "config.json").read_text())
    conf.update(changes)
    (d / "config.json").write_text(json.dumps(conf))
    return d


def _cfg(path: Path, name: str = "m", adapter: str = "hf-causal", **options) -> ModelConfig:
    spec = adapters.get(adapter)
    return ModelConfig(name=name, adapter=adapter, options=spec.options.model_validate(options),
                       generation=GenerationSettings(max_new_tokens=3), path=path)


def _remote_code_dir(tiny: Path, d: Path) -> Path:
    _copy(tiny, d)
    (d / "custom_code.py").write_text(CUSTOM_CODE)
    return _edit_config(d, model_type="tollgate_custom",
                        auto_map={"AutoConfig": "custom_code.TollgateConfig",
                                  "AutoModelForCausalLM": "custom_code.TollgateModel"})


# Every bad model of the project, run in one process that must never import torch.
PROBE = textwrap.dedent("""\
    import contextlib, io, json, sys
    from harness.cli import main
    out = {}
    for name in sys.argv[1:]:
        err = io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            rc = main(["run", "--model", name, "--no-progress"])
        out[name] = [rc, err.getvalue()]
    out["torch imported"] = "torch" in sys.modules
    print(json.dumps(out))
    """)
BAD = ("pickled", "remote", "link_config", "link_weights", "huge_config", "vocab", "layers", "hidden", "missing",
       "nosuch")


@pytest.fixture(scope="module")
def refused(tiny_causal_dir, tmp_path_factory):
    """(root, {model: (exit code, stderr)}, markers) after ``tollgate run`` on each bad model."""
    root = tmp_path_factory.mktemp("safety")
    models, elsewhere = root / "models", root / "elsewhere"
    elsewhere.mkdir()
    markers = {"pickle": root / "UNPICKLED", "code": root / "CODE_RAN"}

    d = _copy(tiny_causal_dir, models / "pickled")
    (d / "model.safetensors").unlink()
    (d / "pytorch_model.bin").write_bytes(pickle.dumps(_Unpickled(markers["pickle"])))
    _remote_code_dir(tiny_causal_dir, models / "remote")
    for name, file in (("link_config", "config.json"), ("link_weights", "model.safetensors")):
        d = _copy(tiny_causal_dir, models / name)
        shutil.move(d / file, elsewhere / f"{name}-{file}")
        (d / file).symlink_to(elsewhere / f"{name}-{file}")
    d = _copy(tiny_causal_dir, models / "huge_config")
    conf = json.loads((d / "config.json").read_text())
    conf["padding"] = "x" * (50 << 20)  # 50 MB: valid JSON, nothing else wrong with it
    (d / "config.json").write_text(json.dumps(conf))
    _edit_config(_copy(tiny_causal_dir, models / "vocab"), vocab_size=10**12)
    _edit_config(_copy(tiny_causal_dir, models / "layers"), n_layer=10**6)
    _edit_config(_copy(tiny_causal_dir, models / "hidden"), n_embd=10**8)

    entries = "".join(f"  {name}:\n    adapter: hf-causal\n    path: {models / name}\n" for name in BAD
                      if name != "nosuch")
    write_project(root, entries)
    write_suite(root, "s", [{"id": "1", "input": "yes", "expected": "x"}], extra="checks: [exact_match]\n")
    env = {**os.environ, "TOLLGATE_TEST_MARKER": str(markers["code"]), "HF_HOME": str(root / "hf")}
    p = subprocess.run([sys.executable, "-c", PROBE, *BAD], cwd=root, capture_output=True, text=True, env=env,
                       timeout=300)
    assert p.returncode == 0, p.stderr
    return root, json.loads(p.stdout), markers


def test_every_bad_model_is_refused_before_transformers_is_even_imported(refused):
    _, results, _ = refused
    assert results["torch imported"] is False


def test_pickled_weights_are_refused_naming_the_model_and_the_file_and_never_unpickled(refused):
    root, results, markers = refused
    rc, err = results["pickled"]
    assert rc == 2, err
    assert "models.pickled.options.allow_unsafe_weights" in err and "pytorch_model.bin" in err
    assert "pickled weights" in err and "allow_unsafe_weights: true" in err
    assert not markers["pickle"].exists()
    # positive control: the same file does run code when unpickled
    pickle.loads((root / "models" / "pickled" / "pytorch_model.bin").read_bytes())
    assert markers["pickle"].read_text() == "unpickled"
    markers["pickle"].unlink()


def test_remote_code_is_refused_naming_the_model_and_the_code_and_never_imported(refused):
    _, results, markers = refused
    rc, err = results["remote"]
    assert rc == 2, err
    assert "models.remote.options.trust_remote_code" in err
    assert "config.json" in err and "auto_map" in err and "custom_code.py" in err
    assert not markers["code"].exists()


def test_links_out_of_the_model_directory_are_refused_naming_the_link(refused):
    root, results, _ = refused
    for name, file in (("link_config", "config.json"), ("link_weights", "model.safetensors")):
        rc, err = results[name]
        assert rc == 2, err
        assert f"models.{name}.path" in err
        assert f"{file} is a link to {root / 'elsewhere' / f'{name}-{file}'}, outside the model directory" in err


def test_oversized_and_absurd_configs_are_refused_before_anything_is_built(refused):
    _, results, _ = refused
    rc, err = results["huge_config"]
    assert rc == 2 and "config.json is 50.0 MiB" in err and f"{MAX_CONFIG_BYTES >> 20} MiB" in err, err
    for name, field in (("vocab", "vocab_size 1,000,000,000,000"), ("layers", "n_layer 1,000,000"),
                        ("hidden", "n_embd 100,000,000")):
        rc, err = results[name]
        assert rc == 2, err
        assert f"models.{name}.path" in err and "config.json" in err and field in err
        assert "describes a model of at least" in err and "its weights hold at most 43,264" in err


def test_a_missing_directory_or_an_unknown_model_is_bad_input_and_nothing_refused_is_stored(refused):
    root, results, _ = refused
    rc, err = results["missing"]
    assert rc == 2 and "models.missing.path" in err and "does not exist" in err, err
    rc, err = results["nosuch"]
    assert rc == 2 and "unknown model 'nosuch'" in err, err
    store = root / ".tollgate" / "tollgate.duckdb"
    if store.exists():  # nothing of any refused model was stored
        import duckdb

        with contextlib.closing(duckdb.connect(str(store), read_only=True)) as con:
            assert con.execute("SELECT count(*) FROM runs").fetchone()[0] == 0


def test_remote_code_runs_only_with_the_models_opt_in(tiny_causal_dir, tmp_path, monkeypatch, capsys):
    """Positive control: with ``trust_remote_code: true`` the same code is imported and the model runs."""
    import transformers.dynamic_module_utils as dynamic

    marker = tmp_path / "CODE_RAN"
    d = _remote_code_dir(tiny_causal_dir, tmp_path / "custom")
    monkeypatch.setenv("TOLLGATE_TEST_MARKER", str(marker))
    monkeypatch.setattr(dynamic, "HF_MODULES_CACHE", str(tmp_path / "hf_modules"))  # not the user's cache
    model = adapters.get("hf-causal").load(_cfg(d, name="custom", trust_remote_code=True))
    assert "may run code from its directory (trust_remote_code)" in capsys.readouterr().err
    assert marker.read_text() == "custom_code.py was imported"
    assert type(model.model).__name__ == "TollgateModel"
    assert model.generate(["yes"], GenerationSettings(max_new_tokens=2))[0].error is None


def test_the_same_checks_guard_every_hf_adapter_and_a_direct_load(tiny_causal_dir, tiny_classifier_dir, tmp_path):
    d = _copy(tiny_classifier_dir, tmp_path / "cls")
    (d / "model.safetensors").rename(d / "pytorch_model.bin")
    for call in (adapters.get("hf-classifier").fingerprint, adapters.get("hf-classifier").load):
        with pytest.raises(TollgateInputError, match="pickled weights"):
            call(_cfg(d, adapter="hf-classifier"))
    d = _remote_code_dir(tiny_causal_dir, tmp_path / "remote")
    with pytest.raises(TollgateInputError, match=r"custom_code\.py"):
        adapters.get("hf-causal").load(_cfg(d))  # the adapter itself refuses, not only the CLI
    tok = json.loads((tiny_causal_dir / "tokenizer_config.json").read_text())
    d = _copy(tiny_causal_dir, tmp_path / "remote_tok")
    (d / "tokenizer_config.json").write_text(json.dumps({**tok, "auto_map": {"AutoTokenizer": ["tok.Slow", None]}}))
    with pytest.raises(TollgateInputError, match=r"tokenizer_config.json has an 'auto_map' that loads tok.py"):
        check_model_dir(_cfg(d))


def test_links_inside_the_directory_and_a_hugging_face_cache_snapshot_are_accepted(tiny_causal_dir, tmp_path):
    fp = adapters.get("hf-causal").fingerprint
    plain = fp(_cfg(tiny_causal_dir))
    # the hub cache: snapshots/<rev>/<file> are links to ../../blobs/<hash>; the fingerprint is the content's
    repo = tmp_path / "hub" / "models--org--tiny"
    snap, blobs = repo / "snapshots" / "abc123", repo / "blobs"
    snap.mkdir(parents=True)
    blobs.mkdir()
    for i, f in enumerate(sorted(tiny_causal_dir.iterdir())):
        shutil.copy(f, blobs / f"blob{i}")
        (snap / f.name).symlink_to(Path("..", "..", "blobs", f"blob{i}"))
    assert fp(_cfg(snap)) == plain
    # a link to a file inside the directory is followed; a link to a folder is not
    d = _copy(tiny_causal_dir, tmp_path / "inside")
    (d / "real").mkdir()
    shutil.move(d / "config.json", d / "real" / "config.json")
    (d / "config.json").symlink_to(Path("real", "config.json"))
    assert fp(_cfg(d)) != plain  # (the file moved: another tree, still readable)
    (d / "loop").symlink_to(Path("."))
    with pytest.raises(TollgateInputError, match=r"loop is a link to .*, a folder"):
        fp(_cfg(d))
    # a directory that is itself a link (the user named it) is fine
    (tmp_path / "alias").symlink_to(tiny_causal_dir)
    assert fp(_cfg(tmp_path / "alias")) == plain


def test_safetensors_beside_a_pickle_load_without_unpickling_it(tiny_causal_dir, tmp_path):
    """A Trainer checkpoint keeps training_args.bin and optimizer.pt beside the safetensors: allowed,
    and only the safetensors are read."""
    marker = tmp_path / "UNPICKLED"
    d = _copy(tiny_causal_dir, tmp_path / "checkpoint")
    for name in ("pytorch_model.bin", "training_args.bin", "optimizer.pt"):
        (d / name).write_bytes(pickle.dumps(_Unpickled(marker)))
    model = adapters.get("hf-causal").load(_cfg(d))
    assert model.generate(["yes"], GenerationSettings(max_new_tokens=2))[0].error is None
    assert not marker.exists()


def test_config_shapes_that_do_not_match_the_weights_are_bad_input_not_a_crash(tiny_causal_dir, tmp_path):
    d = _edit_config(_copy(tiny_causal_dir, tmp_path / "positions"), n_positions=10**12)
    with pytest.raises(TollgateInputError, match="do not match the weights"):
        adapters.get("hf-causal").load(_cfg(d))


def test_the_parameter_bound_stays_below_real_models():
    """The bound must never refuse a real model: it stays under the published parameter counts."""
    llama_7b = {"vocab_size": 32000, "hidden_size": 4096, "num_hidden_layers": 32, "intermediate_size": 11008}
    assert config_params(llama_7b) < 6.7e9 / 4
    albert_xxl = {"vocab_size": 30000, "hidden_size": 4096, "num_hidden_layers": 12, "embedding_size": 128}
    assert config_params(albert_xxl) < 223e6 * 4  # one layer shared twelve times: the loosest real case
    llava = {"text_config": llama_7b, "vision_config": {"hidden_size": 1024, "num_hidden_layers": 24}}
    assert config_params(llava) < 7e9 / 4


# -- prompt templates -----------------------------------------------------------------------------------------
ESCAPES = {
    "mro": "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "cycler": "{{ cycler.__init__.__globals__.os.system('touch MARKER') }}",
    "joiner": "{{ joiner.__init__.__globals__.os.popen('touch MARKER').read() }}",
    "self": "{{ self.__init__.__globals__.__builtins__.open('SECRET').read() }}",
    "lipsum": "{{ lipsum.__globals__['os'].popen('touch MARKER').read() }}",
    "attr_filter": "{{ input|attr('__class__') }}",
    "format": "{{ '{0.__class__.__init__.__globals__}'.format(input) }}",
    "include": "{% include 'SECRET' %}",
    "import": "{% import 'SECRET' as s %}{{ s }}",
    "extends": "{% extends 'SECRET' %}",
}


@pytest.mark.parametrize("name", sorted(ESCAPES))
def test_template_escapes_are_bad_input_and_never_read_a_file_or_run_code(name, tmp_path):
    secret, marker = tmp_path / "secret.txt", tmp_path / "MARKER"
    secret.write_text("TOPSECRET")
    prompt = ESCAPES[name].replace("SECRET", str(secret)).replace("MARKER", str(marker))
    d = write_suite(tmp_path, "evil", [{"id": "1", "input": "hi", "expected": "x"}], prompt=prompt)
    with pytest.raises(TollgateInputError) as info:
        load_suite(d)
    msg = str(info.value)
    assert "examples.jsonl, line 1: field 'prompt': the prompt template fails on this example" in msg
    assert ("SecurityError" in msg and "unsafe" in msg) or "no loader" in msg, msg
    assert "TOPSECRET" not in msg and not marker.exists()


def test_a_template_escape_fails_validate_with_exit_2(tmp_path):
    marker = tmp_path / "MARKER"
    write_project(tmp_path, "  echo:\n    adapter: python\n    options: {callable: \"mymodels:echo\"}\n")
    (tmp_path / "mymodels.py").write_text("def echo(prompt):\n    return prompt\n")
    write_suite(tmp_path, "evil", [{"id": "1", "input": "hi", "expected": "x"}],
                prompt=ESCAPES["cycler"].replace("MARKER", str(marker)))
    res = run_cli("validate", cwd=tmp_path)
    assert res.returncode == 2 and "suites/evil/examples.jsonl, line 1" in res.stderr and "SecurityError" in res.stderr
    assert not marker.exists()
