"""Every evaluation CLI against a table of bad inputs: eval.lm (run, score, calibrate), eval.rl, eval.video,
eval.transfer and evolve.run.

Each case must end with status 2 and exactly one line on stderr, `error: ...`, naming the option, file, line
or field; no traceback; no model loaded (the child process never imports transformers, which every model
loader needs); no file changed outside the case's output folder (the bad inputs, the repository); and the
shipped checkpoints byte-identical afterwards.

The cases run in child processes forked from tests/cli_runner.py, which imports torch and the CLIs once, so a
case costs well under a second instead of the seconds `python -m` spends importing torch; two cases also
run through `python -m` itself (tests/test_cli_errors.py has one per CLI).
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import REPO
from eval.lm.builtin_tasks import MAX_NEW_TOKENS

NAMM = REPO / "checkpoints" / "namm-smollm2"
DT_HOPPER = REPO / "checkpoints" / "dt-hopper"
DT_WALKER = REPO / "checkpoints" / "dt-walker2d"
CONFIG = REPO / "configs" / "evolve_smollm2_cpu.yaml"
SKIPPED = {".git", "__pycache__", ".pytest_cache"}


def _lb_row(**changes) -> str:
    row = {"input": "Which type?", "context": "Some text.", "answers": ["A"], "length": 3, "dataset": "trec",
           "language": "en", "all_classes": ["A", "B"], "_id": "x1"}
    return json.dumps({**row, **changes}) + "\n"


def _pred_row(**changes) -> str:
    row = {"id": "passkey-1000-0-0", "prediction": "123", "cache_fraction": 1.0, "fraction_at_update": 1.0,
           "prompt_tokens": 900, "processed_tokens": 908, "seconds": 0.5, "settings": {}}
    return json.dumps({**row, **changes}) + "\n"


def _safetensors_header_only() -> bytes:
    header = json.dumps({"w": {"dtype": "F32", "shape": [4, 4], "data_offsets": [0, 64]}}).encode()
    return struct.pack("<Q", len(header)) + header + b"\0" * 10  # 54 of the 64 data bytes missing


def _copy_dt(target: Path, **meta_changes) -> None:
    shutil.copytree(DT_HOPPER, target)
    meta = json.loads((target / "dt_meta.json").read_text())
    meta.update(meta_changes)
    (target / "dt_meta.json").write_text(json.dumps(meta))


def _make_read_only(folder: Path) -> None:
    """As root, mode bits do not stop writes: the folder is made immutable instead."""
    folder.mkdir()
    if os.geteuid() == 0:
        done = subprocess.run(["chattr", "+i", str(folder)], capture_output=True)
        if done.returncode != 0:
            pytest.skip("cannot make a folder read-only for root here (chattr +i failed)")
    else:
        folder.chmod(0o555)


def _undo_read_only(folder: Path) -> None:
    if os.geteuid() == 0:
        subprocess.run(["chattr", "-i", str(folder)], capture_output=True)
    folder.chmod(0o755)


def build_workspace(w: Path) -> None:
    """The bad inputs, each in its own file or folder under `w`."""
    (w / "empty").mkdir()
    (w / "a_file").write_text("not a folder\n")
    for name, row in (("lb-answers", _lb_row(answers=[1, 2])), ("lb-classes", _lb_row(all_classes=5)),
                      ("lb-id", _lb_row(_id=[1])), ("lb-ok", _lb_row())):
        (w / name).mkdir()
        (w / name / "trec.jsonl").write_text(row)
    (w / "lb-utf").mkdir()
    (w / "lb-utf" / "trec.jsonl").write_bytes(b'{"input": "caf\xe9"}\n')
    (w / "ib-missing").mkdir()
    (w / "ib-missing" / "passkey.jsonl").write_text(json.dumps({"id": 0, "context": "x", "input": "y",
                                                                "options": []}) + "\n")
    for name, row in (("preds-pred", _pred_row(prediction=12345)), ("preds-frac", _pred_row(cache_fraction="abc")),
                      ("preds-json", "{oops\n")):
        (w / name / "preds" / "full").mkdir(parents=True)
        (w / name / "preds" / "full" / "passkey.jsonl").write_text(row)
    for name, row in (("score-answers", {"pred": "x", "answers": [1, 2]}),
                      ("score-classes", {"pred": "x", "answers": ["y"], "all_classes": 5}),
                      ("score-pred", {"pred": 7, "answers": ["y"]}), ("score-ok", {"pred": "x", "answers": ["y"]})):
        (w / name).mkdir()
        (w / name / "trec.jsonl").write_text(json.dumps(row) + "\n")
    (w / "model-bert").mkdir()
    (w / "model-bert" / "config.json").write_text(json.dumps({"model_type": "bert"}))
    (w / "model-trunc").mkdir()
    (w / "model-trunc" / "config.json").write_text(json.dumps({"model_type": "llama", "max_position_embeddings": 2048}))
    (w / "model-trunc" / "model.safetensors").write_bytes(_safetensors_header_only())
    _copy_dt(w / "dt-trunc")
    weights = (w / "dt-trunc" / "model.safetensors").read_bytes()
    (w / "dt-trunc" / "model.safetensors").write_bytes(weights[: len(weights) // 2])
    _copy_dt(w / "dt-std", state_std=[1.0] * 5)
    _copy_dt(w / "dt-env", env="walker2d")
    _copy_dt(w / "dt-utf")
    (w / "dt-utf" / "dt_meta.json").write_bytes(b'{"env": "hop\xffper"}')
    (w / "rl-stored" / "policies").mkdir(parents=True)
    (w / "rl-stored" / "policies" / "window.0123456789ab.json").write_text(
        json.dumps({"settings": {}, "result": {"return_mean": "high"}}))
    (w / "video-stored" / "policies").mkdir(parents=True)
    (w / "video-stored" / "policies" / "full.0123456789ab.json").write_text(
        json.dumps({"settings": {}, "result": {"per_task": {}, "m_avg": "high", "cache_fraction": 0.5,
                                               "seconds_per_item": 1.0, "decode_frames_per_second": 9.0}}))
    (w / "mlvu-utf" / "json").mkdir(parents=True)
    (w / "mlvu-utf" / "json" / "1_count.json").write_bytes(b'[{"video": "v\xff.mp4"}]')
    (w / "mlvu-schema" / "json").mkdir(parents=True)
    (w / "mlvu-schema" / "json" / "1_count.json").write_text(
        json.dumps([{"video": "v.mp4", "candidates": ["1", "2"], "answer": "1"}]))
    (w / "bad.yaml").write_bytes(b"fitness: toy\nname: caf\xe9\n")
    _make_read_only(w / "ro")


O = "{out}"  # the case's own output folder (does not exist before the case)
LM = ["eval.lm", "--out-dir", O]
RL = ["eval.rl", "--out-dir", O]
VIDEO = ["eval.video", "--out-dir", O]
TRANSFER = ["eval.transfer", "--out-dir", O]
SCORE = ["eval.lm", "score", "--benchmark", "longbench"]
EVOLVE = ["evolve.run", "--config", str(CONFIG), "--out", O]

# (case, argv, words the one line must hold); {w}: the workspace of bad inputs, {out}: the output folder
CASES = [
    # eval.lm run: numbers
    ("lm-length-huge", LM + ["--length", "99999999"], "--length 99999999: prompts of 99999999 tokens"),
    ("lm-n-huge", LM + ["--n", "99999999"], "--n: 99999999 items of 1000 tokens"),
    ("lm-max-length-huge", LM + ["--benchmark", "longbench", "--data-dir", "{w}/lb-ok", "--tasks", "trec",
                                 "--max-length", "99999999"], "--max-length: must be at most 8192"),
    ("lm-tasks", LM + ["--tasks", "nope"], "--tasks: unknown name 'nope'"),
    # eval.lm run: model folders by kind
    ("lm-model-etc", LM + ["--model", "{etc}"], "not a model folder (no config.json)"),
    ("lm-model-empty", LM + ["--model", "{w}/empty"], "empty: not a model folder (no config.json)"),
    ("lm-model-namm", LM + ["--model", str(NAMM)], "a NAMM checkpoint (a memory policy), not a language model"),
    ("lm-model-dt", LM + ["--model", str(DT_HOPPER)], "model_type 'decision_transformer' is not a supported"),
    ("lm-model-missing", LM + ["--model", "{w}/no/such"], "no/such: folder not found"),
    ("lm-model-family", LM + ["--model", "{w}/model-bert"], "config.json model_type 'bert'"),
    ("lm-model-truncated", LM + ["--model", "{w}/model-trunc"], "model.safetensors: the header describes"),
    ("lm-model-file", LM + ["--model", "{w}/a_file"], "a_file: a file, not a model folder"),
    # eval.lm run: data rows by schema
    ("lm-longbench-answers", LM + ["--benchmark", "longbench", "--data-dir", "{w}/lb-answers", "--tasks", "trec"],
     "trec.jsonl:1: field 'answers' must be a list of strings, got a list holding int"),
    ("lm-longbench-classes", LM + ["--benchmark", "longbench", "--data-dir", "{w}/lb-classes", "--tasks", "trec"],
     "trec.jsonl:1: field 'all_classes' must be a list of strings or null"),
    ("lm-longbench-id", LM + ["--benchmark", "longbench", "--data-dir", "{w}/lb-id", "--tasks", "trec"],
     "trec.jsonl:1: field '_id' must be a string or a number"),
    ("lm-longbench-utf8", LM + ["--benchmark", "longbench", "--data-dir", "{w}/lb-utf", "--tasks", "trec"],
     "trec.jsonl:1: not UTF-8 text"),
    ("lm-infinitebench-field", LM + ["--benchmark", "infinitebench", "--data-dir", "{w}/ib-missing", "--tasks",
                                     "passkey"], "passkey.jsonl:1: missing field 'answer'"),
    ("lm-data-dir-file", LM + ["--benchmark", "longbench", "--data-dir", "{w}/a_file", "--tasks", "trec"],
     "--data-dir {w}/a_file: folder not found"),
    ("lm-pred-number", ["eval.lm", "--policies", "full", "--out-dir", "{w}/preds-pred"],
     "passkey.jsonl:1: field 'prediction' must be a string, got 12345"),
    ("lm-pred-fraction", ["eval.lm", "--policies", "full", "--out-dir", "{w}/preds-frac"],
     "passkey.jsonl:1: field 'cache_fraction' must be a number, got 'abc'"),
    ("lm-pred-json", ["eval.lm", "--policies", "full", "--out-dir", "{w}/preds-json"],
     "passkey.jsonl:1: not valid JSON"),
    # eval.lm run: output folders
    ("lm-out-file", ["eval.lm", "--out-dir", "{w}/a_file"], "--out-dir {w}/a_file: is a file, not a folder"),
    ("lm-out-under-file", ["eval.lm", "--out-dir", "{w}/a_file/run"], "is a file, so the folder cannot be made"),
    ("lm-out-read-only", ["eval.lm", "--out-dir", "{w}/ro/run"], "where it would be made, is not writable"),
    ("lm-out-locked", LM, "eval.lm output folder is in use by process"),
    # eval.lm calibrate
    ("cal-lengths-abc", ["eval.lm", "calibrate", "--lengths", "200,abc"],
     "--lengths: expected comma-separated whole numbers, got 'abc'"),
    ("cal-lengths-0", ["eval.lm", "calibrate", "--lengths", "0"], "--lengths: each value must be at least 64, got 0"),
    ("cal-lengths-huge", ["eval.lm", "calibrate", "--lengths", "99999999"],
     f"--lengths: each value must be at most {8192 - max(MAX_NEW_TOKENS.values())}"),  # the longest answer fits
    ("cal-tasks", ["eval.lm", "calibrate", "--tasks", "nope"], "--tasks: unknown name 'nope'"),
    ("cal-n-0", ["eval.lm", "calibrate", "--n", "0"], "--n: must be at least 1, got 0"),
    ("cal-n-huge", ["eval.lm", "calibrate", "--n", "99999999", "--lengths", "1000"], "--n: 99999999 items"),
    ("cal-model-namm", ["eval.lm", "calibrate", "--model", str(NAMM)], "a NAMM checkpoint"),
    ("cal-out-folder", ["eval.lm", "calibrate", "--out", "{w}/empty"], "--out {w}/empty: is a folder, expected a file"),
    # eval.lm score
    ("score-answers", SCORE + ["{w}/score-answers", "--out", "{out}/s.json"],
     "trec.jsonl:1: field 'answers' must be a list of strings"),
    ("score-classes", SCORE + ["{w}/score-classes", "--out", "{out}/s.json"],
     "trec.jsonl:1: field 'all_classes' must be a list of strings or null, got int"),
    ("score-pred", SCORE + ["{w}/score-pred", "--out", "{out}/s.json"], "trec.jsonl:1: field 'pred' must be a string"),
    ("score-missing-dir", SCORE + ["{w}/no-such", "--out", "{out}/s.json"], "no-such: prediction folder not found"),
    ("score-tasks", SCORE + ["{w}/score-ok", "--tasks", "nope", "--out", "{out}/s.json"],
     "--tasks: unknown longbench task(s) nope"),
    ("score-out-folder", SCORE + ["{w}/score-ok", "--out", "{w}/empty"], "--out {w}/empty: is a folder"),
    ("score-out-under-file", SCORE + ["{w}/score-ok", "--out", "{w}/a_file/s.json"], "a_file is a file"),
    ("score-out-read-only", SCORE + ["{w}/score-ok", "--out", "{w}/ro/s.json"], "ro/s.json: its folder is not writable"),
    # eval.rl
    ("rl-dt-namm", RL + ["--dt", str(NAMM)], "a NAMM checkpoint (a memory policy), not a Decision Transformer"),
    ("rl-dt-walker-on-hopper", RL + ["--env", "hopper", "--dt", str(DT_WALKER)],
     "config.json: field 'state_dim' is 17, but hopper's states have 11 values"),
    ("rl-dt-truncated", RL + ["--dt", "{w}/dt-trunc"], "dt-trunc/model.safetensors: the header describes"),
    ("rl-dt-state-std", RL + ["--dt", "{w}/dt-std"], "dt_meta.json: field 'state_std' must be 11 finite numbers"),
    ("rl-dt-env", RL + ["--dt", "{w}/dt-env"], "dt_meta.json: field 'env' is 'walker2d'"),
    ("rl-dt-utf8", RL + ["--dt", "{w}/dt-utf"], "dt-utf/dt_meta.json: not UTF-8 text"),
    ("rl-dt-empty", RL + ["--dt", "{w}/empty"], "empty: not a model folder (no config.json)"),
    ("rl-dt-video", RL + ["--dt", str(REPO / "checkpoints" / "llava-video-tiny")], "is not a Decision Transformer"),
    ("rl-env", RL + ["--env", "nope"], "--env: unknown environment 'nope'"),
    ("rl-max-steps-huge", RL + ["--max-steps", "99999999"], "--max-steps: must be at most 1000"),
    ("rl-batch-huge", RL + ["--batch", "99999999"], "--batch: must be at most 1024"),
    ("rl-stored-result", ["eval.rl", "--out-dir", "{w}/rl-stored"], "field 'result.return_mean' must be a number"),
    ("rl-out-file", ["eval.rl", "--out-dir", "{w}/a_file"], "--out-dir {w}/a_file: is a file, not a folder"),
    ("rl-out-read-only", ["eval.rl", "--out-dir", "{w}/ro/rl"], "is not writable"),
    ("rl-out-locked", RL, "eval.rl output folder is in use by process"),
    # eval.video
    ("video-model-namm", VIDEO + ["--model", str(NAMM)], "a NAMM checkpoint (a memory policy), not a video model"),
    ("video-model-dt", VIDEO + ["--model", str(DT_HOPPER)], "model_type 'decision_transformer' is not a video model"),
    ("video-model-empty", VIDEO + ["--model", "{w}/empty"], "not a video model folder"),
    ("video-model-missing", VIDEO + ["--model", "{w}/no/such"], "no/such: folder not found"),
    ("video-model-lm", VIDEO + ["--model", "{w}/model-trunc"], "model_type 'llama' is not a video model"),
    ("video-device-absent", VIDEO + ["--device", "cuda:7"], "--device cuda:7: this machine has"),
    ("video-device-bad", VIDEO + ["--device", "nope"], "--device: 'nope' is not a device"),
    ("video-frames-huge", VIDEO + ["--frames", "99999999"], "--frames: must be at most 1024"),
    ("video-n-test-huge", VIDEO + ["--n-test", "99999999"], "--n-test: must be at most 5000"),
    ("video-stored-result", ["eval.video", "--out-dir", "{w}/video-stored"], "field 'result.m_avg' must be a number"),
    ("video-mlvu-utf8", VIDEO + ["--benchmark", "mlvu", "--data-dir", "{w}/mlvu-utf"], "1_count.json: not UTF-8 text"),
    ("video-mlvu-schema", VIDEO + ["--benchmark", "mlvu", "--data-dir", "{w}/mlvu-schema"],
     "1_count.json: record 0 lacks field 'question'"),
    ("video-mlvu-empty", VIDEO + ["--benchmark", "mlvu", "--data-dir", "{w}/empty"], "no MLVU annotation json files"),
    ("video-out-file", ["eval.video", "--out-dir", "{w}/a_file"], "--out-dir {w}/a_file: is a file, not a folder"),
    ("video-out-read-only", ["eval.video", "--out-dir", "{w}/ro/video"], "is not writable"),
    ("video-out-locked", VIDEO, "eval.video output folder is in use by process"),
    # eval.transfer: its own options, then every evaluation's, before the first runs
    ("transfer-lengths-abc", TRANSFER + ["--lengths", "1000,abc"], "--lengths: expected comma-separated whole numbers"),
    ("transfer-lengths-short", TRANSFER + ["--lengths", "10"], "--lengths: each value must be at least 64"),
    ("transfer-lengths-huge", TRANSFER + ["--lengths", "1000,99999"], "--length 99999: prompts of 99999 tokens"),
    ("transfer-n-huge", TRANSFER + ["--n", "99999999"], "--n: 99999999 items"),
    ("transfer-episodes-0", TRANSFER + ["--episodes", "0"], "--episodes: must be at least 1"),
    ("transfer-episodes-huge", TRANSFER + ["--episodes", "99999999"], "--episodes: must be at most 1024"),
    ("transfer-ckpt-empty", TRANSFER + ["--ckpt", "{w}/empty"], "not a NAMM checkpoint folder (no config.json)"),
    ("transfer-protocols", TRANSFER + ["--protocols", "nope"], "--protocols: unknown name 'nope'"),
    ("transfer-only", TRANSFER + ["--only", "nope"], "--only: unknown nope"),
    ("transfer-out-file", ["eval.transfer", "--out-dir", "{w}/a_file"], "--out-dir {w}/a_file: is a file"),
    ("transfer-out-read-only", ["eval.transfer", "--out-dir", "{w}/ro/transfer"], "is not writable"),
    # evolve.run
    ("evolve-out-file", ["evolve.run", "--config", str(CONFIG), "--out", "{w}/a_file"], "--out {w}/a_file: is a file"),
    ("evolve-out-read-only", ["evolve.run", "--config", str(CONFIG), "--out", "{w}/ro/evolve"], "is not writable"),
    ("evolve-config-utf8", ["evolve.run", "--config", "{w}/bad.yaml", "--out", O], "bad.yaml:2: not UTF-8 text"),
    ("evolve-config-folder", ["evolve.run", "--config", "{w}/empty", "--out", O], "empty: config file not found"),
    ("evolve-prompt-length-huge", EVOLVE + ["stages.0.prompt_length=99999999"],
     "field 'stages.0.prompt_length' is 99999999, more than the model's context of 8192 tokens"),
]


def _snapshot(root: Path, skip: set[str]) -> dict:
    found = {}
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if d not in SKIPPED and os.path.join(folder, d) not in skip]
        for name in files:
            path = os.path.join(folder, name)
            if path in skip:
                continue
            stat = os.stat(path)
            found[path] = (stat.st_size, stat.st_mtime_ns)
    return found


def _checkpoint_digest() -> str:
    digest = hashlib.sha256()
    for path in sorted((REPO / "checkpoints").rglob("*")):
        if path.is_file():
            digest.update(str(path.relative_to(REPO)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


class Runner:
    def __init__(self, env: dict):
        self.process = subprocess.Popen([sys.executable, str(Path(__file__).with_name("cli_runner.py"))],
                                        cwd=REPO, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert json.loads(self.process.stdout.readline())["ready"]

    def run(self, module, argv, cwd, logs: Path, timeout=120) -> tuple[int, str, bool]:
        request = {"module": module, "argv": argv, "cwd": str(cwd), "stdout": str(logs / "out.txt"),
                   "stderr": str(logs / "err.txt"), "timeout": timeout}
        self.process.stdin.write(json.dumps(request) + "\n")
        self.process.stdin.flush()
        answer = json.loads(self.process.stdout.readline())
        return answer["rc"], (logs / "err.txt").read_text(errors="replace"), answer["transformers"]

    def close(self):
        self.process.stdin.close()
        self.process.wait(timeout=60)


def _env(home: Path) -> dict:
    return {"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin", "HOME": str(home), "OMP_NUM_THREADS": "1",
            "PYTHONDONTWRITEBYTECODE": "1", "CUDA_VISIBLE_DEVICES": os.environ.get("CUDA_VISIBLE_DEVICES", "")}


@pytest.fixture(scope="module")
def setting(tmp_path_factory):
    root = tmp_path_factory.mktemp("bad_inputs")
    work, home = root / "w", root / "home"
    work.mkdir()
    home.mkdir()
    build_workspace(work)
    before = _checkpoint_digest()
    runner = Runner(_env(home))
    yield {"root": root, "work": work, "home": home, "runner": runner}
    runner.close()
    _undo_read_only(work / "ro")
    assert _checkpoint_digest() == before, "a shipped checkpoint changed"


def _argv(argv, work: Path, out: Path) -> list[str]:
    etc = os.path.relpath("/etc", work)  # an existing folder that is no model, by a relative path with ".."
    return [a.replace("{w}", str(work)).replace("{out}", str(out)).replace("{etc}", etc) for a in argv]


@pytest.mark.parametrize("case, argv, words", CASES, ids=[c[0] for c in CASES])
def test_a_bad_input_is_one_line_with_status_2_before_any_model_loads(setting, case, argv, words):
    from core.lock import FolderLock

    work = setting["work"]
    out = setting["root"] / "outs" / case
    argv = _argv(argv, work, out)
    words = words.replace("{w}", str(work))
    logs = setting["root"] / "logs" / case
    logs.mkdir(parents=True)
    lock = FolderLock(out).acquire() if case.endswith("-locked") else None
    outside = {str(out)} | {value for option, value in zip(argv, argv[1:]) if option in ("--out-dir", "--out")}
    watched = (work, REPO, setting["home"])
    before = [_snapshot(root, outside) for root in watched]
    try:
        rc, err, loaded = setting["runner"].run(argv[0], argv[1:], work, logs)
    finally:
        if lock is not None:
            lock.release()
    lines = err.strip().splitlines()
    assert rc == 2, f"{case}: status {rc}\n{err[-3000:]}"
    assert "Traceback" not in err, err[-3000:]
    assert len(lines) == 1 and lines[0].startswith("error: "), f"{case}: stderr is not one line:\n{err[-3000:]}"
    assert words in lines[0], f"{case}: {lines[0]!r} does not say {words!r}"
    assert not loaded, f"{case}: the command imported transformers (a model loader) before refusing"
    after = [_snapshot(root, outside) for root in watched]
    for root, old, new in zip(watched, before, after):
        assert old == new, f"{case}: files changed outside the output folder under {root}: " \
                           f"{sorted(set(old.items()) ^ set(new.items()))[:5]}"


@pytest.mark.parametrize("argv, words", [
    (["eval.lm", "--length", "99999999"], "--length 99999999: prompts of 99999999 tokens"),
    (["eval.video", "--model", str(NAMM)], "a NAMM checkpoint (a memory policy), not a video model"),
])
def test_the_same_through_python_dash_m(setting, argv, words):
    """The real entry point: a fresh interpreter, `python -m`, within a few seconds (torch's import)."""
    out = setting["root"] / "outs" / ("m-" + argv[0])
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", *argv, "--out-dir", str(out)], cwd=setting["work"],
                          capture_output=True, text=True, timeout=300, env=_env(setting["home"]))
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1 and words in lines[0], done.stderr[-3000:]
    assert not out.exists()
    assert time.perf_counter() - started < 120
