"""explain/ in TensorBoard: images read back from a live TensorBoard server, GIF animations, and the CLI."""

from __future__ import annotations

import io
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import rllab
from explain.commands import explain_run
from explain.report import parse_methods
from explain.tensorboard import SAMPLES_PER_TAG, SCALE_HEIGHT, grid, heat_map, normalise, overlay
from rllab.cli import main
from rllab.frames import gif_bytes

CATCH_STEPS = 9  # a 10-row Catch episode: the ball falls from row 0 to row 9


def _copy_run(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("tb", "resume", "explain"))
    return dst


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as r:
        return r.read()


@pytest.fixture
def tensorboard_server(tmp_path):
    """Start ``tensorboard`` on a logdir; yields a function (logdir -> base URL); always killed."""
    procs: list[subprocess.Popen] = []

    def start(logdir: Path) -> str:
        port = _free_port()
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tensorboard.main",
                "--logdir",
                str(logdir),
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--load_fast",
                "false",
                "--samples_per_plugin",
                f"images={SAMPLES_PER_TAG}",
            ],
            stdout=subprocess.DEVNULL,
            stderr=open(tmp_path / "tensorboard.log", "w"),  # noqa: SIM115  (closed with the process)
            env={**os.environ, "CUDA_VISIBLE_DEVICES": ""},
        )
        procs.append(proc)
        return f"http://127.0.0.1:{port}"

    yield start
    for proc in procs:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _wait_for_tags(base: str, run: str, wanted: set[str], timeout: float = 90.0) -> dict:
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            tags = json.loads(_get(base + "/data/plugin/images/tags"))
            if wanted <= set(tags.get(run, {})):
                return tags[run]
            last = tags
        except OSError as exc:  # server not listening yet
            last = exc
        time.sleep(0.5)
    raise AssertionError(f"TensorBoard did not show {sorted(wanted)} within {timeout}s (last answer: {last!r})")


def _images(base: str, run: str, tag: str) -> list[tuple[int, bytes]]:
    q = urllib.parse.urlencode({"run": run, "tag": tag, "sample": 0})
    entries = json.loads(_get(f"{base}/data/plugin/images/images?{q}"))
    return [(e["step"], _get(f"{base}/data/plugin/images/individualImage?{e['query']}")) for e in entries]


def test_drawing_normalises_float_maps_to_uint8():
    attr = np.zeros((1, 10, 5))
    attr[0, 2, 3] = -4.0
    attr[0, 9, 1] = 2.0
    h = heat_map(attr)
    assert h.shape == (10, 5) and h.max() == 1.0 and h[9, 1] == 0.5
    assert normalise(np.zeros(3)).tolist() == [0, 0, 0]
    ov = overlay(np.zeros((10, 5, 3), np.uint8), h)
    assert ov.dtype == np.uint8 and ov[2, 3].sum() > ov[0, 0].sum()
    assert grid([ov] * 5).shape == (2 * 12 + 2, 3 * 7 + 2, 3)
    gif = Image.open(io.BytesIO(gif_bytes([ov, ov * 0, ov])))
    assert gif.format == "GIF" and gif.n_frames == 3


def test_explanations_round_trip_through_a_live_tensorboard(catch_ppo_path, tmp_path, tensorboard_server):
    run = _copy_run(catch_ppo_path, tmp_path / "catch")
    result = explain_run(
        run, "saliency,greydanus", episodes=1, every=1, metrics=True, seed=3, progress=False, activation_max=True
    )
    assert result["name"] == "explain-action-s3" and result["states"] == CATCH_STEPS
    assert not any(p.name.endswith(".tmp") for p in (run / "tb").iterdir())
    png_dir = Path(result["png_dir"])

    base = tensorboard_server(run / "tb")
    # the maps under their method's rank (TensorBoard opens the first groups), activation maximisation by name
    wanted = {"frame/ep0", "activation_maximisation/left", "activation_maximisation/right"} | {
        f"{m}/ep0/{kind}" for m in ("1_saliency", "2_greydanus") for kind in ("overlay", "heatmap", "grid", "animation")
    }
    tags = _wait_for_tags(base, result["name"], wanted)
    assert tags["1_saliency/ep0/overlay"]["samples"] == 1
    assert result["action_names"] == ["left", "stay", "right"] and result["activation_maximisation"]

    overlays = _images(base, result["name"], "2_greydanus/ep0/overlay")
    assert [step for step, _ in overlays] == list(range(CATCH_STEPS))  # every step, none sampled away
    for step, data in overlays:
        img = Image.open(io.BytesIO(data))
        assert img.format == "PNG" and img.size == (160, 320 + SCALE_HEIGHT)  # 5x10 frame enlarged x32, its scale
        # what TensorBoard serves is the PNG saved beside it
        on_disk = np.asarray(Image.open(png_dir / f"greydanus__ep0__overlay__t{step:04d}.png"))
        np.testing.assert_array_equal(np.asarray(img.convert("RGB")), on_disk)

    ((_, anim),) = _images(base, result["name"], "2_greydanus/ep0/animation")
    gif = Image.open(io.BytesIO(anim))
    assert gif.format == "GIF" and gif.n_frames == CATCH_STEPS
    assert (png_dir / "greydanus__ep0__animation.gif").read_bytes() == anim

    text_tags = json.loads(_get(base + "/data/plugin/text/tags"))
    assert "2_greydanus/config/text_summary" in text_tags[result["name"]]  # torch's add_text suffix
    q = urllib.parse.urlencode({"run": result["name"], "tag": "1_saliency/config/text_summary"})
    text = json.dumps(json.loads(_get(f"{base}/data/plugin/text/text?{q}")))
    assert "saliency" in text and "action" in text

    scalar_tags = json.loads(_get(base + "/data/plugin/scalars/tags"))[result["name"]]
    assert {"2_greydanus/faithfulness/relevance_mass", "3_random/faithfulness/pointing_game"} <= set(scalar_tags)

    # the animation really is in the event file (add_video would have logged nothing with moviepy 2.x)
    acc = EventAccumulator(result["tb_dir"], size_guidance={"images": 0}).Reload()
    assert acc.Images("1_saliency/ep0/animation")[0].encoded_image_string[:4] == b"GIF8"
    metrics = json.loads((png_dir / "metrics.json").read_text())
    assert {r["method"] for r in metrics["metrics"]} == {"saliency", "greydanus", "random"}


def test_cli_explains_a_vector_agent_and_prints_the_metrics_table(cartpole_ppo_path, tmp_path, capsys):
    run = _copy_run(cartpole_ppo_path, tmp_path / "cartpole")
    rc = main(["explain", str(run), "--method", "ig,ablation", "--metrics", "--seed", "1", "--no-progress"])
    out = capsys.readouterr().out
    assert rc == 0
    assert "integrated_gradients" in out and "ablation" in out and "deletion" in out and "random" in out
    png_dir = run / "explain" / "explain-action-s1"
    assert (png_dir / "ablation__ep0__feature_time__t0000.png").exists()
    assert (png_dir / "integrated_gradients__ep0__feature_bars__t0000.png").exists()
    acc = EventAccumulator(str(run / "tb" / "explain-action-s1"), size_guidance={"images": 0}).Reload()
    assert "2_ablation/ep0/feature_time" in acc.Tags()["images"]
    assert not any(t.startswith("activation_maximisation") for t in acc.Tags()["images"])  # on request only
    # the same seed gives the same numbers; a second run gets its own folder
    assert main(["explain", str(run), "--method", "ig,ablation", "--metrics", "--seed", "1", "--no-progress"]) == 0
    a = json.loads((png_dir / "metrics.json").read_text())["metrics"]
    b = json.loads((run / "explain" / "explain-action-s1-2" / "metrics.json").read_text())["metrics"]
    assert a == b


def test_method_options_on_the_command_line(cartpole_ppo_path, tmp_path):
    assert parse_methods("saliency, occlusion(window=[1,2], stride=2),ig") == [
        ("saliency", {}),
        ("occlusion", {"window": (1, 2), "stride": 2}),
        ("integrated_gradients", {}),
    ]
    assert parse_methods(["ig(n_steps=8)", "integrated_gradients(n_steps=8)"]) == [
        ("integrated_gradients", {"n_steps": 8})
    ]
    run = _copy_run(cartpole_ppo_path, tmp_path / "cartpole")
    assert main(["explain", str(run), "--method", "ig(n_steps=4),occlusion(window=2)", "--no-progress"]) == 0
    described = json.loads((run / "explain" / "explain-action-s0" / "metrics.json").read_text())["methods"]
    by_name = {m["method"]: m for m in described}
    assert by_name["integrated_gradients"]["n_steps"] == 4  # the options reached the methods
    assert by_name["occlusion"]["window"] == [2]


def test_cli_errors_are_one_line_and_leave_nothing_behind(cartpole_ppo_path, tmp_path, capsys):
    dqn = tmp_path / "dqn"
    rllab.train(algo="dqn", env="CartPole-v1", seed=0, steps=300, eval_freq=0, out=dqn, progress=False)
    rc = main(["explain", str(dqn), "--method", "saliency", "--target", "value"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and "critic" in err
    assert not (dqn / "explain").exists() and not any("explain" in p.name for p in (dqn / "tb").iterdir())
    run = _copy_run(cartpole_ppo_path, tmp_path / "cartpole")
    for args, message in (
        (["--method", "greydanus"], "image"),
        (["--method", "nonsense"], "unknown explanation method"),
        (["--method", "ig(steps=4)"], "integrated_gradients takes no option 'steps'; its options: "),
        (["--method", "ablation(baseline=mean"], "unbalanced brackets"),
        (["--method", "ig(n_steps=4),ig"], "given twice with different options"),
        (["--method", "ablation(baseline)"], "method options are key=value"),
    ):
        assert main(["explain", str(run), *args]) == 2
        assert message in capsys.readouterr().err
    assert not (run / "explain").exists()
