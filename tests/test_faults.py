"""The fault matrix (docs/RELIABILITY.md): what a user meets when things go wrong, case by case.

Every case asserts the exit code (or the exception type), a one-line message without a traceback, and what is
left on disk. Signals and races use real processes on tiny models (slow-marked: each export process imports
torch and lowers real artifacts); the rest runs in this process on tiny builds and checkpoints.
"""
from __future__ import annotations

import contextlib
import errno
import io
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import tiny_build
from compressors.evo import EvoCompConfig, EvoCompressor
from compressors.moos import CheckpointError, MOOSCompressor
from export import build as build_cli
from runtime_py import parity

ROOT = Path(__file__).resolve().parents[1]
ARTIFACT = (".pte", ".onnx", ".mlpackage")


def one_line(text: str) -> str:
    """The single message line of `text`; fails on a traceback or on more than one line."""
    assert "Traceback" not in text, text[-2000:]
    lines = [line for line in text.strip().splitlines() if line.strip()]
    assert len(lines) == 1, text[-2000:]
    return lines[0]


def messages(stderr: str, prefix: str) -> list[str]:
    """Lines starting with prefix (progress bars and tables share stderr/stdout); no traceback anywhere."""
    assert "Traceback" not in stderr, stderr[-2000:]
    return [line.strip() for line in stderr.splitlines() if line.strip().startswith(prefix)]


def listing(folder) -> list[str]:
    return sorted(os.listdir(folder))


# ------------------------------------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def evo_dir(tmp_path_factory):
    model = EvoCompressor(EvoCompConfig(**tiny_build.TINY_EVO))
    model.init_weights(torch.Generator().manual_seed(3))
    return str(model.save(tmp_path_factory.mktemp("evo") / "tiny-evo"))


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A tiny build of real ONNX artifacts (MOOSComp bucket 32, EvoComp) and two short parity prompts."""
    root = tmp_path_factory.mktemp("faults")
    build = tiny_build.make_tiny_build(str(root / "build"), onnx_buckets=(32,), evo_formats=("onnx",))
    prompts = tiny_build.write_prompts(str(root / "prompts.jsonl"),
                                       ["The meeting moved to Tuesday at 10am. Bring the budget report.",
                                        "Add 17 and 25, then halve the result: what is left?"])
    return {"build": build, "prompts": prompts}


def copy_of(tiny, tmp_path, edit=None) -> str:
    """A copy of the tiny build, its manifest changed by edit(manifest) when given."""
    build = str(tmp_path / "build")
    shutil.copytree(tiny["build"], build)
    if edit:
        path = os.path.join(build, "manifest.json")
        manifest = json.load(open(path))
        edit(manifest)
        json.dump(manifest, open(path, "w"), indent=2)
    return build


def run_parity(build, tiny, *extra) -> int:
    return parity.main([build, "--prompts", tiny["prompts"], "--evo-sets", "2", "--latency-runs", "1", "--threads", "1",
                        *extra])


@pytest.fixture(scope="module")
def moos(bert_dir):
    return MOOSCompressor.from_pretrained(bert_dir)


@pytest.fixture(scope="module")
def evo():
    return EvoCompressor(EvoCompConfig(**tiny_build.TINY_EVO)).eval()


def env_here() -> dict:
    return dict(os.environ, PYTHONPATH=str(ROOT))


# ------------------------------------------------------------------------------------------------ export: input
@pytest.mark.parametrize("args, message", [
    (["--quant", ","], "--quant ',' names no recipe"),
    (["--quant", " , "], "names no recipe"),
    (["--target", "watch"], "unknown target 'watch'"),
    (["--seq-lens", "a,b"], "--seq-lens must be comma-separated integers"),
    (["--visual-tokens", "0"], "--visual-tokens must be >= 1"),
    (["--model", "llama"], "unknown model 'llama'"),
])
def test_export_bad_arguments(tmp_path, capsys, args, message):
    out = tmp_path / "out"
    assert build_cli.main(args + ["--out", str(out)]) == 2
    assert message in one_line(capsys.readouterr().err)
    assert listing(tmp_path) == []  # nothing written, not even the folder


def _checkpoint_copy(bert_dir, tmp_path, name) -> Path:
    ck = tmp_path / name
    shutil.copytree(bert_dir, ck)
    return ck


def test_export_checkpoint_without_tokenizer(bert_dir, tmp_path, capsys):
    ck = _checkpoint_copy(bert_dir, tmp_path, "no-tokenizer")
    for f in ("tokenizer.json", "vocab.txt"):
        (ck / f).unlink(missing_ok=True)
    before = listing(ck)
    assert build_cli.main(["--moos-checkpoint", str(ck), "--model", "moos", "--out", str(tmp_path / "o")]) == 2
    assert "no tokenizer in" in one_line(capsys.readouterr().err)
    assert not (tmp_path / "o").exists() and listing(ck) == before


def test_export_checkpoint_with_a_cut_tokenizer(bert_dir, tmp_path, capsys):
    ck = _checkpoint_copy(bert_dir, tmp_path, "cut-tokenizer")
    (ck / "vocab.txt").unlink(missing_ok=True)
    tok = json.loads((ck / "tokenizer.json").read_text())
    tok["model"]["vocab"] = {t: i for t, i in tok["model"]["vocab"].items() if i < 300}
    (ck / "tokenizer.json").write_text(json.dumps(tok))
    assert build_cli.main(["--moos-checkpoint", str(ck), "--model", "moos", "--out", str(tmp_path / "o")]) == 2
    line = one_line(capsys.readouterr().err)
    assert "has 300 tokens but the model's vocabulary has" in line
    assert not (tmp_path / "o").exists()


def test_export_into_a_non_empty_folder(tmp_path, capsys):
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "mine.txt").write_text("keep")
    assert build_cli.main(["--out", str(tmp_path / "full")]) == 2
    assert "not an empty folder" in one_line(capsys.readouterr().err)
    assert listing(tmp_path / "full") == ["mine.txt"]


def test_export_below_a_regular_file(evo_dir, tmp_path, capsys):
    (tmp_path / "a-file").write_text("x")
    out = tmp_path / "a-file" / "build"
    assert build_cli.main(["--model", "evo", "--evo-checkpoint", evo_dir, "--visual-tokens", "36", "--out", str(out)]) == 2
    assert "is not writable" in one_line(capsys.readouterr().err)
    assert (tmp_path / "a-file").read_text() == "x"


def test_a_claimed_folder_refuses_a_second_export(tmp_path):
    out = str(tmp_path / "b")
    build_cli.claim_out_dir(out)
    with pytest.raises(build_cli.BadInput, match="being written by another export") as e:
        build_cli.claim_out_dir(out)
    assert "\n" not in str(e.value)
    assert listing(out) == [build_cli.LOCK]  # the loser removed nothing, not even the folder it found
    build_cli.release_out_dir(out)
    assert listing(out) == []


def _fail_manifest_write(monkeypatch, on_call: int):
    real, calls = build_cli.write_json, []

    def write_json(path, obj):
        calls.append(path)
        if path.endswith("manifest.json") and len([c for c in calls if c.endswith("manifest.json")]) == on_call:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), path)
        return real(path, obj)

    monkeypatch.setattr(build_cli, "write_json", write_json)


def test_export_disk_full_at_the_first_manifest(evo_dir, tmp_path, capsys, monkeypatch):
    _fail_manifest_write(monkeypatch, on_call=1)
    out = tmp_path / "o"
    code = build_cli.main(["--model", "evo", "--target", "desktop", "--quant", "fp32", "--evo-checkpoint", evo_dir,
                           "--visual-tokens", "36", "--jobs", "1", "--skip-parity", "--out", str(out)])
    assert code == 1
    line = one_line(capsys.readouterr().err)
    assert "cannot write" in line and "No space left on device" in line and "none was written" in line
    assert listing(out) == []  # no manifest, no lock, no temp file


@pytest.mark.slow
def test_export_disk_full_after_an_artifact_keeps_the_previous_manifest(evo_dir, tmp_path, capsys, monkeypatch):
    _fail_manifest_write(monkeypatch, on_call=2)  # the 1st is the empty manifest written at the start
    out = tmp_path / "o"
    code = build_cli.main(["--model", "evo", "--target", "desktop", "--quant", "fp32", "--evo-checkpoint", evo_dir,
                           "--visual-tokens", "36", "--jobs", "1", "--skip-parity", "--out", str(out)])
    assert code == 1
    errors = messages(capsys.readouterr().err, "export.build:")
    assert len(errors) == 1 and "the previous one is intact" in errors[0]
    manifest = json.load(open(out / "manifest.json"))  # whole, readable, and saying it is not complete
    assert manifest["complete"] is False and manifest["artifacts"] == []
    assert build_cli.LOCK not in listing(out)


# ------------------------------------------------------------------------------------------------ export: signals, races
def start_export(out, log, *extra):
    args = [sys.executable, "-m", "export.build", "--model", "evo", "--target", "desktop", "--visual-tokens", "36",
            "--skip-parity", "--out", str(out), *extra]
    return subprocess.Popen(args, cwd=ROOT, env=env_here(), stdout=subprocess.DEVNULL, stderr=open(log, "w"),
                            start_new_session=True)  # its own process group: its workers can be counted after


def wait_for(predicate, proc, timeout=900):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert proc.poll() is None, f"the export exited early with {proc.returncode}"
        assert time.monotonic() < deadline, "timed out waiting for the export"
        time.sleep(0.2)


def listed(out) -> list[str]:
    try:
        return [a["file"] for a in json.load(open(os.path.join(out, "manifest.json")))["artifacts"]]
    except (OSError, ValueError):
        return []


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False


def check_stopped_folder(out, signame):
    manifest = json.load(open(out / "manifest.json"))
    assert manifest["complete"] is False and manifest["stopped"].startswith(f"{signame} after ")
    on_disk = [n for n in listing(out) if n.endswith(ARTIFACT)]
    exported = [a["file"] for a in manifest["artifacts"] if not a.get("export_error")]
    assert sorted(on_disk) == sorted(exported)  # no half-written or unlisted artifact
    assert not [n for n in listing(out) if n.startswith(".")]  # no temp path, no lock
    return manifest


def test_a_folder_left_by_a_sigkilled_export_names_the_dead_owner(evo_dir, tmp_path, capsys):
    """SIGKILL cannot be caught, so the lock stays: a new export into that folder says whose it was and what to do."""
    out, log = tmp_path / "killed", tmp_path / "export.log"
    proc = start_export(out, log, "--evo-checkpoint", evo_dir, "--jobs", "1", "--quant", "fp32")
    wait_for(lambda: os.path.exists(out / build_cli.LOCK), proc)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)
    assert build_cli.LOCK in listing(out)
    before = listing(out)
    argv = ["--model", "evo", "--evo-checkpoint", evo_dir, "--visual-tokens", "36", "--out", str(out)]
    assert build_cli.main(argv) == 2
    line = one_line(capsys.readouterr().err)
    assert f"names pid {proc.pid}, which is not running" in line and "delete the folder" in line
    assert listing(out) == before  # nothing touched
    with pytest.raises(build_cli.BadInput, match=f"pid {proc.pid}, which is not running"):  # the claim's own check
        build_cli.claim_out_dir(str(out))
    # a live owner is still "being written by another export"
    (out / build_cli.LOCK).write_text(f"{os.getpid()}\n")
    with pytest.raises(build_cli.BadInput, match="being written by another export"):
        build_cli.claim_out_dir(str(out))


@pytest.fixture(scope="module")
def stopped_by_sigterm(evo_dir, tmp_path_factory):
    """An export of 4 artifacts sent SIGTERM once its first artifact is in the manifest."""
    root = tmp_path_factory.mktemp("sigterm")
    out, log = root / "out", root / "export.log"
    proc = start_export(out, log, "--evo-checkpoint", evo_dir, "--jobs", "2")
    wait_for(lambda: listed(out), proc)
    sent = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=120)  # a hang guard, not a timing assertion (docs/RELIABILITY.md has the figure)
    return {"proc": proc, "out": out, "stderr": log.read_text(), "stop_seconds": time.monotonic() - sent}


@pytest.mark.slow
def test_sigterm_after_the_first_artifact_stops_the_export(stopped_by_sigterm):
    r = stopped_by_sigterm
    assert r["proc"].returncode == 143
    (line,) = messages(r["stderr"], "export.build:")
    assert line.startswith("export.build: stopped by SIGTERM:") and "marked incomplete" in line
    manifest = check_stopped_folder(r["out"], "SIGTERM")
    assert len(manifest["artifacts"]) < 4  # the queued artifacts were cancelled, not built after the signal
    assert not group_alive(r["proc"].pid)  # no export worker outlives the export
    print(f"stopped {r['stop_seconds']:.1f} s after SIGTERM: {manifest['stopped']}")


@pytest.mark.slow
def test_parity_refuses_the_stopped_build(stopped_by_sigterm, capsys):
    before = open(stopped_by_sigterm["out"] / "manifest.json").read()
    assert parity.main([str(stopped_by_sigterm["out"]), "--record"]) == 2
    line = one_line(capsys.readouterr().err)
    assert "is marked incomplete (it was SIGTERM after" in line
    assert open(stopped_by_sigterm["out"] / "manifest.json").read() == before
    assert not (stopped_by_sigterm["out"] / "parity.json").exists()


@pytest.mark.slow
def test_ctrl_c_to_the_process_group_is_one_line(evo_dir, tmp_path):
    out, log = tmp_path / "out", tmp_path / "export.log"
    proc = start_export(out, log, "--evo-checkpoint", evo_dir, "--jobs", "2")
    wait_for(lambda: (out / "manifest.json").exists(), proc)
    os.killpg(proc.pid, signal.SIGINT)  # what a terminal does: parent and workers alike
    proc.wait(timeout=120)
    assert proc.returncode == 130
    (line,) = messages(log.read_text(), "export.build:")
    assert line.startswith("export.build: stopped by SIGINT:") and "KeyboardInterrupt" not in log.read_text()
    check_stopped_folder(out, "SIGINT")
    assert not group_alive(proc.pid)


@pytest.mark.slow
def test_two_exports_racing_for_one_folder(evo_dir, tmp_path):
    out = tmp_path / "shared"
    procs = [start_export(out, tmp_path / f"export{i}.log", "--evo-checkpoint", evo_dir, "--quant", "fp32", "--jobs", "1")
             for i in range(2)]
    deadline = time.monotonic() + 900
    while all(p.poll() is None for p in procs):
        assert time.monotonic() < deadline
        time.sleep(0.2)
    loser = next(i for i, p in enumerate(procs) if p.poll() is not None)
    winner = procs[1 - loser]
    assert procs[loser].returncode == 2
    (line,) = messages((tmp_path / f"export{loser}.log").read_text(), "export.build:")
    assert "being written by another export" in line or "not an empty folder" in line
    if winner.poll() is None:  # the winner goes on undisturbed; stop it to keep the test short
        wait_for(lambda: listed(out), winner)
        winner.send_signal(signal.SIGTERM)
    winner.wait(timeout=120)
    manifest = json.load(open(out / "manifest.json"))
    assert manifest["artifacts"] and all(a["quant"] == "fp32" for a in manifest["artifacts"])
    on_disk = sorted(n for n in listing(out) if n.endswith(ARTIFACT))
    assert on_disk == sorted(a["file"] for a in manifest["artifacts"])  # one writer: nothing orphaned
    assert build_cli.LOCK not in listing(out)


# ------------------------------------------------------------------------------------------------ parity
def _incomplete(m):
    m.update(complete=False, stopped="SIGTERM after 1/4 artifacts")


def _schema2(m):
    m["schema"] = 2


def _outside(m):
    m["artifacts"][0]["file"] = "../../elsewhere.onnx"


def _bad_evo_config(m):
    m["models"]["evo"]["config"]["colour"] = "blue"
    m["models"]["evo"]["provenance"] = "untrained demo weights"


@pytest.mark.parametrize("edit, message", [
    (_incomplete, "is marked incomplete (it was SIGTERM after 1/4 artifacts)"),
    (_schema2, "has schema 2; this runtime reads schema 1"),
    (_outside, "artifact file '../../elsewhere.onnx' is not a name inside the build folder"),
    (_bad_evo_config, "models.evo in manifest.json cannot be loaded (ValueError: unknown keys ['colour'])"),
])
def test_parity_refuses_a_broken_manifest(tiny, tmp_path, capsys, edit, message):
    build = copy_of(tiny, tmp_path, edit)
    before = {n: os.path.getmtime(os.path.join(build, n)) for n in listing(build)}
    assert run_parity(build, tiny, "--record") == 2
    (line,) = messages(capsys.readouterr().err, "error:")  # (transformers may draw a weight-loading bar first)
    assert message in line
    assert {n: os.path.getmtime(os.path.join(build, n)) for n in listing(build)} == before  # nothing written


def test_parity_on_a_missing_folder_or_manifest(tmp_path, capsys):
    assert parity.main([str(tmp_path / "nowhere")]) == 2
    assert "build folder not found" in one_line(capsys.readouterr().err)
    assert parity.main([str(tmp_path)]) == 2
    assert "no manifest.json" in one_line(capsys.readouterr().err)
    (tmp_path / "manifest.json").write_text("{not json")
    assert parity.main([str(tmp_path)]) == 2
    assert "unreadable" in one_line(capsys.readouterr().err)
    assert listing(tmp_path) == ["manifest.json"]


def test_parity_names_a_file_copied_over_an_artifact(tiny, tmp_path, capsys):
    build = copy_of(tiny, tmp_path)
    shutil.copy(os.path.join(build, "evo_onnx_fp32.onnx"), os.path.join(build, "moos_onnx_fp32_32.onnx"))
    assert run_parity(build, tiny, "--record") == 2
    line = one_line(capsys.readouterr().err)
    assert line.startswith("error: moos_onnx_fp32_32.onnx: sha256") and "changed or corrupted" in line
    assert not os.path.exists(os.path.join(build, "parity.json"))


def test_parity_names_a_missing_artifact(tiny, tmp_path, capsys):
    build = copy_of(tiny, tmp_path)
    os.remove(os.path.join(build, "evo_onnx_fp32.onnx"))
    assert run_parity(build, tiny) == 2
    assert "evo_onnx_fp32.onnx: missing from" in one_line(capsys.readouterr().err)


@pytest.fixture(scope="module")
def checked(tiny, tmp_path_factory):
    """One parity --record run on a good build that has a stray artifact and was built by another torch."""
    build = copy_of(tiny, tmp_path_factory.mktemp("checked"), lambda m: m["tool_versions"].update(torch="0.0.1"))
    shutil.copy(os.path.join(build, "evo_onnx_fp32.onnx"), os.path.join(build, "evo_onnx_int8dyn.onnx"))
    os.chmod(os.path.join(build, "manifest.json"), 0o644)
    err = io.StringIO()  # a module fixture cannot use capsys
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = run_parity(build, tiny, "--record")
    return {"build": build, "code": code, "stderr": err.getvalue()}


def test_parity_passes_and_names_a_stray_file(checked):
    assert checked["code"] == 0
    (line,) = messages(checked["stderr"], "warning: 1 file")
    assert line.endswith(": evo_onnx_int8dyn.onnx")
    assert "evo_onnx_int8dyn.onnx" in listing(checked["build"])  # named, never deleted


def test_parity_notes_a_different_toolchain(checked):
    notes = messages(checked["stderr"], "note:")
    assert f"note: torch 0.0.1 built it, {torch.__version__} checks it" in notes


def test_parity_keeps_the_build_files_readable(checked):
    umask = os.umask(0)
    os.umask(umask)
    for name in ("manifest.json", "parity.json", "parity.md"):
        mode = stat.S_IMODE(os.stat(os.path.join(checked["build"], name)).st_mode)
        assert mode == (0o644 if name == "manifest.json" else 0o666 & ~umask), (name, oct(mode))


# ------------------------------------------------------------------------------------------------ bench_device.run
def bench(*args):
    return subprocess.run([sys.executable, "-m", "bench_device.run", *map(str, args)], cwd=ROOT, env=env_here(),
                          capture_output=True, text=True, timeout=600)


def test_bench_refuses_an_artifact_copied_over_another(tiny, tmp_path):
    build = copy_of(tiny, tmp_path)
    shutil.copy(os.path.join(build, "evo_onnx_fp32.onnx"), os.path.join(build, "moos_onnx_fp32_32.onnx"))
    r = bench("--device", "local", "--build", build, "--out", tmp_path / "report")
    assert r.returncode == 2 and r.stdout == ""
    assert "moos_onnx_fp32_32.onnx: sha256" in one_line(r.stderr)
    assert not (tmp_path / "report.json").exists()


def test_bench_refuses_an_incomplete_build(tiny, tmp_path):
    build = copy_of(tiny, tmp_path, _incomplete)
    r = bench("--device", "local", "--build", build, "--out", tmp_path / "report")
    assert r.returncode == 1 and "is marked incomplete" in one_line(r.stderr)
    assert not (tmp_path / "report.json").exists()


@pytest.mark.parametrize("args, code, message", [
    (["--device", "phone"], 1, "unknown device 'phone'"),
    (["--iters", "0"], 2, "--iters must be >= 1"),
])
def test_bench_bad_arguments(tiny, tmp_path, args, code, message):
    r = bench("--build", tiny["build"], "--out", tmp_path / "report", *args)
    assert r.returncode == code and message in one_line(r.stderr)
    assert listing(tmp_path) == []


@pytest.fixture
def adb_env(tmp_path):
    from test_adb_device import ADB, _free_port

    if ADB is None:
        pytest.skip("adb missing: apt-get install adb (`make test` does)")
    home = tmp_path / "home"
    home.mkdir()
    env = {**env_here(), "ANDROID_ADB_SERVER_PORT": str(_free_port()), "HOME": str(home)}
    env.pop("ANDROID_SERIAL", None)
    yield ADB, env
    subprocess.run([ADB, "kill-server"], capture_output=True, timeout=20, env=env)


@pytest.mark.slow
def test_bench_device_lost_mid_run_keeps_the_partial_report(tmp_path, adb_env):
    from adb_loopback_device import Faults, LoopbackAdbDevice

    adb, env = adb_env
    build = tiny_build.make_tiny_build(str(tmp_path / "build"), pte_buckets=(32,), onnx_buckets=(), evo_formats=("xnnpack",),
                                       checkpoints_dir=str(tmp_path / "ck"))
    with LoopbackAdbDevice(faults=Faults(die_on="evo_xnnpack_fp32.pte")) as device:  # the 2nd artifact unplugs it
        stem = tmp_path / "report"
        r = subprocess.run([sys.executable, "-m", "bench_device.run", "--device", f"adb:{device.serial}", "--build", build,
                            "--iters", "2", "--warmup", "0", "--out", str(stem)], cwd=ROOT, env=env, capture_output=True,
                           text=True, timeout=900)
    assert r.returncode == 1
    (line,) = messages(r.stderr, "error:")
    assert "127.0.0.1" in line and "Traceback" not in r.stderr
    report = json.loads(stem.with_suffix(".json").read_text())
    rows = {row["file"]: row for row in report["artifacts"]}
    assert rows["moos_xnnpack_fp32_32.pte"]["status"] == "ok"  # measured before the loss, and kept
    assert rows["evo_xnnpack_fp32.pte"]["status"] == "error" and report["device_lost"] == line[len("error: "):]
    assert "partial" in r.stdout


# ------------------------------------------------------------------------------------------------ MOOSComp API
def test_checkpoint_without_tokenizer_is_refused(bert_dir, tmp_path):
    ck = _checkpoint_copy(bert_dir, tmp_path, "ck")
    for f in ("tokenizer.json", "vocab.txt"):
        (ck / f).unlink(missing_ok=True)
    with pytest.raises(CheckpointError, match="no tokenizer in") as e:
        MOOSCompressor.from_pretrained(ck)
    assert "\n" not in str(e.value)


def test_checkpoint_of_another_vocabulary_is_refused(bert_dir, tmp_path):
    ck = _checkpoint_copy(bert_dir, tmp_path, "ck")
    config = json.loads((ck / "config.json").read_text())
    config["vocab_size"] += 7  # e.g. a tokenizer from a sibling checkpoint
    (ck / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="do not belong together"):
        MOOSCompressor.from_pretrained(ck)


def test_checkpoint_with_llmlingua_added_tokens_loads(tmp_path):
    from checkpoints import make_bert

    ck = make_bert(str(tmp_path / "tiny-bert-base-multilingual-cased"), with_new_tokens=True)
    moos = MOOSCompressor.from_pretrained(ck)  # the model has [NEW0]..[NEW99] rows: nothing resized or refused
    assert moos.torch_module.model.get_input_embeddings().num_embeddings == len(moos.tokenizer)


@pytest.mark.parametrize("text", ["😀😀😀 🎉🎉 🚀", "x" * 150])
def test_window_without_words_and_drop_consecutive(moos, text):
    out = moos.compress_prompt(text, rate=0.5, drop_consecutive=True, force_tokens=["\n", "?"])
    assert isinstance(out["compressed_prompt"], str) and out["compressed_tokens"] >= 0  # LLMLingua-2 raised IndexError


@pytest.mark.parametrize("kwargs, error, message", [
    (dict(force_tokens=[""]), ValueError, "force_tokens holds an empty string"),
    (dict(force_tokens="\n?"), TypeError, "force_tokens must be a list of strings"),
    (dict(force_tokens=["\n", 3]), TypeError, "force_tokens must be strings, not int"),
    (dict(target_token=float("nan")), ValueError, "target_token must be a finite number"),
    (dict(target_token="10"), TypeError, "target_token must be a number, not str"),
    (dict(rate="0.5"), TypeError, "rate must be a number, not str"),
    (dict(rate=0.0), ValueError, "rate must be in (0, 1]"),
    (dict(rate=True), TypeError, "rate must be a number, not bool"),
    (dict(target_token=0, use_context_level_filter=True), ValueError, "target_token must be at least 1"),
    (dict(context_level_rate=float("nan"), use_context_level_filter=True), ValueError, "context_level_rate must be a finite"),
    (dict(context_level_target_token=0, use_context_level_filter=True), ValueError, "context_level_target_token must be at least 1"),
    (dict(force_tokens=[f"t{i}" for i in range(101)]), ValueError, "at most 100 force_tokens"),
])
def test_compress_prompt_bad_arguments(moos, kwargs, error, message):
    contexts = ["The budget is due on Friday.", "Bring the slides. And the notes?", "Lunch is at noon."]
    with pytest.raises(error) as e:
        moos.compress_prompt(contexts, **kwargs)
    assert message in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize("context, error", [("   ", ValueError), (["a", 3], TypeError), (None, TypeError)])
def test_compress_prompt_bad_context(moos, context, error):
    with pytest.raises(error):
        moos.compress_prompt(context)


def test_numpy_numbers_are_accepted(moos):
    text = "The meeting moved to Tuesday at 10am. Bring the budget report."
    assert moos.compress_prompt(text, rate=np.float32(0.5)) == moos.compress_prompt(text, rate=0.5)


def test_a_long_prompt_prints_no_false_length_warning(bert_dir, capfd):
    import transformers

    old = transformers.logging.get_verbosity()
    transformers.logging.set_verbosity_warning()
    try:
        fresh = MOOSCompressor.from_pretrained(bert_dir)
        capfd.readouterr()
        fresh.compress_prompt("word and number 12 " * 400, rate=0.5)
    finally:
        transformers.logging.set_verbosity(old)
    assert "indexing errors" not in capfd.readouterr().err


# ------------------------------------------------------------------------------------------------ EvoComp API
def _evo_inputs(batch=2):
    g = torch.Generator().manual_seed(0)
    return torch.randn(batch, 36, 32, generator=g), torch.randn(batch, 8, 24, generator=g)


@pytest.mark.parametrize("make, error, message", [
    (lambda v, e: (v, e[:1], None), ValueError, "share one batch size >= 1, got 2 and 1"),
    (lambda v, e: (v[:0], e[:0], None), ValueError, "batch size >= 1, got 0"),
    (lambda v, e: (v, e, torch.ones(2, 5)), ValueError, "text_mask must be [B, T] = [2, 8]"),
    (lambda v, e: (v.int(), e, None), TypeError, "visual_tokens must hold floating-point embeddings"),
    (lambda v, e: (v.tolist(), e, None), TypeError, "visual_tokens must be a torch.Tensor or numpy.ndarray"),
    (lambda v, e: (v[..., :16], e, None), ValueError, "expected visual width 32"),
    (lambda v, e: (v[:, :, None], e, None), ValueError, "expected visual_tokens [B, N, Dv]"),
])
def test_evo_bad_inputs(evo, make, error, message):
    visual, text, mask = make(*_evo_inputs())
    with pytest.raises(error) as e:
        evo.compress(visual, text, text_mask=mask)
    assert message in str(e.value) and "\n" not in str(e.value)


def test_evo_numpy_and_float64_inputs(evo):
    v, e = _evo_inputs()
    kept, idx = evo.compress(v, e, ratio=3.0)
    kept_np, idx_np = evo.compress(v.numpy(), e.numpy(), ratio=3.0)
    assert isinstance(kept_np, np.ndarray) and np.array_equal(idx_np, idx.numpy())
    kept64, idx64 = evo.compress(v.double(), e.double(), ratio=3.0)
    assert kept64.dtype == torch.float64 and torch.equal(idx64, idx)  # scored in float32, tokens returned as given
    one, one_idx = evo.compress(v[0].numpy(), e[0].numpy(), ratio=3.0, text_mask=np.ones(8))
    assert one.shape == (12, 32) and np.array_equal(one_idx, idx[0].numpy())


@pytest.mark.parametrize("kwargs, message", [(dict(ratio=0.5), "ratio must be a finite number >= 1"),
                                             (dict(ratio=None, k=99), "k must be an integer in [1, 36]")])
def test_evo_bad_keep_counts(evo, kwargs, message):
    v, e = _evo_inputs()
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        evo.compress(v, e, **kwargs)


def test_evo_checkpoint_folder_missing(tmp_path):
    with pytest.raises(FileNotFoundError, match="checkpoint directory not found") as e:
        EvoCompressor.load(tmp_path / "nope")
    assert "\n" not in str(e.value) and listing(tmp_path) == []
