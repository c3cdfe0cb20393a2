"""kinema studio: the HTTP API on a real tiny run, the queue, confinement, training, and a real browser.

The browser test drives Debian's chromium through Playwright (``/usr/bin/chromium``, or
``$KINEMA_CHROMIUM``); it skips, saying so, only when no such browser is installed. With
``KINEMA_SCREENSHOTS=DIR`` it also writes screenshots of the main views into DIR.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from kinema.io import read_video
from kinema.studio.app import Limits, Studio, create_app
from kinema.studio.jobs import JobQueue, QueueFull
from kinema.studio.paths import PathRefused, confine

CHROMIUM = os.environ.get("KINEMA_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
RSS_BOUND_MB = 64       # growth of resident memory allowed while 20 generate requests run (measured: ~2 MB)


def quiet(*args):
    pass


@pytest.fixture(scope="module")
def runs(tmp_path_factory, bars_archive, one_thread):
    """RUNS_DIR with a real tiny training run (curves, sample grids, an export, an eval record)
    and an untrained export to compare it with; the archive's folder is the data root."""
    import torch

    from kinema.metrics.evaluate import evaluate
    from kinema.models import build, save_generator
    from kinema.train import get_preset, override, train
    from kinema.train.checkpoint import export_path

    root = tmp_path_factory.mktemp("studio") / "runs"
    cfg = override(get_preset("tiny"), data={"source": str(bars_archive.path)},
                   log={"out": str(root / "tiny"), "log_kimg": 0.004},
                   schedule={"kimg": 0.032})
    result = train(cfg, log=quiet)
    evaluate(["is8_4f"], None, str(result.export), num=8, out=root / "tiny" / "eval.jsonl", log=None)
    torch.manual_seed(1)
    ms = build("mocogan", resolution=32, frames=4, channels=1, width=8)
    scratch = save_generator(export_path(root / "scratch", 0), ms.G, ms.name, ms.kwargs,
                    {"kimg": 0, "fps": 8, "source": str(bars_archive.path)})
    return {"root": root, "export": result.export, "data_root": bars_archive.path.parent,
            "archive": bars_archive.path.name, "scratch": scratch.relative_to(root).as_posix()}


@pytest.fixture(scope="module", autouse=True)
def background_training(bars_archive, tmp_path_factory):
    """A studio whose training run (``kinema train`` in a subprocess) starts with this module, so
    the fresh process's start-up overlaps the other tests; the training test checks and stops it."""
    studio = Studio(tmp_path_factory.mktemp("trainer") / "runs", [bars_archive.path.parent], train_threads=1,
                    log=quiet)
    client = TestClient(create_app(studio))
    name = "from-the-studio"
    reply = client.post("/api/train", json={"name": name, "data": bars_archive.path.name, "preset": "tiny",
                                            "model": "dcgan", "kimg": 1000})
    yield {"studio": studio, "client": client, "reply": reply, "name": name}
    if studio.trainer.running():
        studio.trainer.proc.send_signal(signal.SIGKILL)
    studio.close()


@pytest.fixture()
def studio(runs, tmp_path):
    s = Studio(runs["root"], [runs["data_root"]], train_threads=1, log=quiet)
    yield s
    s.close()


@pytest.fixture()
def client(studio):
    return TestClient(create_app(studio))


@pytest.fixture(scope="module")
def cli_seed3(runs, tmp_path_factory):
    """``kinema generate EXPORT --seeds 3``'s video, decoded."""
    from kinema.cli import main

    out = tmp_path_factory.mktemp("cli") / "out"
    assert main(["generate", str(runs["export"]), "--seeds", "3", "--out", str(out)]) == 0
    return read_video(out / "seed0003.mp4").frames


def wait_job(client, reply, timeout=60.0) -> dict:
    job = reply.json() if hasattr(reply, "json") else reply
    assert "id" in job, job
    end = time.monotonic() + timeout
    while job["state"] in ("queued", "running"):
        assert time.monotonic() < end, job
        time.sleep(0.02)
        job = client.get(f"/api/jobs/{job['id']}").json()
    return job


def decode_bytes(data: bytes, tmp: Path, name: str = "served.mp4") -> np.ndarray:
    path = tmp / name
    path.write_bytes(data)
    return read_video(path).frames


# ---------------------------------------------------------------------------------------------
# Confinement.

def test_confine_refuses_traversal_absolute_paths_and_symlinks_out(tmp_path):
    root, outside = tmp_path / "root", tmp_path / "outside"
    (root / "run").mkdir(parents=True)
    outside.mkdir()
    (outside / "secret.txt").write_text("no")
    (root / "link-out").symlink_to(outside)
    (root / "link-in").symlink_to(root / "run")
    assert confine(root, "run/x.mp4") == (root / "run" / "x.mp4").resolve()
    assert confine(root, "link-in") == (root / "run").resolve()          # links that stay inside are fine
    for bad, why in [("../outside/secret.txt", "traversal"), ("run/../../outside", "traversal"),
                     (str(outside / "secret.txt"), "absolute"), ("/etc/passwd", "absolute"), ("~/x", "absolute"),
                     ("link-out/secret.txt", "outside"), ("link-out", "outside"), ("run\\..\\..", "backslash")]:
        with pytest.raises(PathRefused, match=why):
            confine(root, bad)


def test_http_refuses_everything_outside_the_roots(client, runs, tmp_path):
    root = runs["root"]
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "secret.txt").write_text("secret")
    (outside / "config.json").write_text("{}")       # looks like a run
    link = root / "sneaky"
    link.symlink_to(outside)
    try:
        assert "sneaky" not in [r["name"] for r in client.get("/api/runs").json()["runs"]]
        for path in ["../elsewhere/secret.txt", "/etc/passwd", str(outside / "secret.txt"), "sneaky/secret.txt",
                     "tiny/../../elsewhere/secret.txt"]:
            r = client.get("/api/file", params={"path": path})
            assert r.status_code == 403 and "refused" in r.json()["error"], (path, r.text)
            assert "secret" not in r.text.replace("secret.txt", "")
        r = client.get("/api/file?path=%2e%2e%2f%2e%2e%2fetc%2fpasswd")        # URL-encoded ../../etc/passwd
        assert r.status_code == 403
        assert client.get("/api/run", params={"name": "../.."}).status_code == 403
        assert client.post("/api/generate", json={"export": str(runs["export"]), "seeds": "0"}).status_code == 403
        assert client.post("/api/generate", json={"export": "sneaky", "seeds": "0"}).status_code == 403
        # A run folder inside the root whose export weights are a symlink to a file outside it.
        shutil.copy(runs["export"], outside / "w.safetensors")
        (root / "linked").mkdir()
        (root / "linked" / runs["export"].name).symlink_to(outside / "w.safetensors")
        shutil.copy(runs["export"].with_suffix(".json"), root / "linked" / runs["export"].with_suffix(".json").name)
        r = client.post("/api/generate", json={"export": "linked", "seeds": "0"})
        assert r.status_code == 403 and "leads outside the runs folder" in r.json()["error"]
        assert not [e for e in client.get("/api/info").json()["exports"] if e.startswith("linked/")]
        r = client.post("/api/train", json={"name": "x", "data": "../../etc", "preset": "tiny"})
        assert r.status_code == 403 and "traversal" in r.json()["error"]
        r = client.post("/api/train", json={"name": "../escape", "preset": "tiny"})
        assert r.status_code == 400 and "run name" in r.json()["error"]
        r = client.post("/api/edit", json={"op": "reverse", "upload": "tiny/config.json"})
        assert r.status_code == 403                 # only the studio's own uploads are edit sources
        assert client.get("/api/file", params={"path": "tiny/config.json"}).status_code == 200
    finally:
        link.unlink()
        shutil.rmtree(root / "linked", ignore_errors=True)


# ---------------------------------------------------------------------------------------------
# Generation.

def test_generate_over_http_equals_kinema_generate(client, cli_seed3, tmp_path):
    t0 = time.monotonic()
    job = wait_job(client, client.post("/api/generate", json={"export": "tiny", "seeds": "3"}))
    latency = time.monotonic() - t0
    assert job["state"] == "done", job
    video = client.get(f"/api/jobs/{job['id']}/video.mp4")
    assert video.status_code == 200 and video.headers["content-type"] == "video/mp4"
    frames = decode_bytes(video.content, tmp_path)
    assert frames.shape == cli_seed3.shape and np.array_equal(frames, cli_seed3)
    # Downloads: GIF and PNG grid, served as attachments.
    gif = client.get(f"/api/jobs/{job['id']}/video.gif?download=1")
    assert gif.content[:6] == b"GIF89a" and "attachment" in gif.headers["content-disposition"]
    png = client.get(f"/api/jobs/{job['id']}/grid.png?download=1")
    assert png.content[:8] == b"\x89PNG\r\n\x1a\n"
    assert client.get(f"/api/jobs/{job['id']}/../../secret.mp4").status_code == 404
    assert client.get(f"/api/jobs/{job['id']}/model.safetensors").status_code == 404
    assert client.get("/api/jobs/999999").json()["error"].startswith("job 999999: unknown or expired")
    print(f"generate seed 3 (32x32x4), submit to done over HTTP: {latency * 1000:.0f} ms")


def test_bad_requests_get_one_line_errors(client, studio, tmp_path):
    cases = [({"export": "tiny", "seeds": "abc"}, "seeds: 'abc' is not a number"),
             ({"export": "tiny", "seeds": "0-99"}, "this studio allows 64 per request"),
             ({"export": "tiny", "seeds": "0", "frames": 9999}, "frames: 9999 is outside 1..256"),
             ({"export": "tiny", "seeds": "0", "class": "3"}, "unconditional"),
             ({"export": "tiny", "seeds": "0", "truncation": "x"}, "truncation: expected a number"),
             ({"export": "nothing-here", "seeds": "0"}, "not found")]   # (404)
    for body, message in cases:
        r = client.post("/api/generate", json=body)
        if r.status_code == 202:   # errors only the generator can see arrive with the job
            job = wait_job(client, r)
            assert job["state"] == "error" and message in job["error"], (body, job)
        else:
            assert r.status_code in (400, 404) and message in r.json()["error"], (body, r.text)
        assert "\n" not in (r.json().get("error") or "")
    assert client.post("/api/generate", content=b"not json", headers={"content-type": "application/json"}).json() \
        == {"error": "request body: not valid JSON"}
    # Uploads: the same I/O errors as the CLI, and a size cap.
    r = client.post("/api/upload?name=notes.mp4", content=b"this is not a video")
    assert r.status_code == 400 and "notes.mp4: not a video file" in r.json()["error"]
    r = client.post("/api/upload?name=empty.mp4", content=b"")
    assert r.status_code == 400 and "empty file" in r.json()["error"]
    small = Studio(studio.runs_dir, limits=Limits(max_upload_mb=0.001), log=quiet)
    try:
        r = TestClient(create_app(small)).post("/api/upload?name=big.mp4", content=b"\0" * 5000)
        assert r.status_code == 413 and "limit of 0.001 MiB" in r.json()["error"]
    finally:
        small.close()
    assert not [p for p in studio.uploads.iterdir() if "notes" in p.name or "empty" in p.name]


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise OSError("no VmRSS")


def test_twenty_concurrent_generates_complete_in_order_within_memory(client, studio):
    if not Path("/proc/self/status").exists():
        pytest.skip("resident memory is read from /proc (Linux)")
    client.post("/api/generate", json={"export": "tiny", "seeds": "0"})   # warm the model cache
    time.sleep(0.5)
    base, peak, done = _rss_mb(), [0.0], threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], _rss_mb())
            time.sleep(0.01)

    sampler = threading.Thread(target=sample)
    sampler.start()
    replies, barrier = [None] * 20, threading.Barrier(20)

    def post(i):
        barrier.wait()
        replies[i] = client.post("/api/generate", json={"export": "tiny", "seeds": f"{i * 4}-{i * 4 + 3}",
                                                        "frames": 4})
    t0 = time.monotonic()
    threads = [threading.Thread(target=post, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(r.status_code == 202 for r in replies), [r.text for r in replies]
    jobs = [wait_job(client, r) for r in replies]
    elapsed = time.monotonic() - t0
    done.set()
    sampler.join()
    assert all(j["state"] == "done" for j in jobs), [j["error"] for j in jobs]
    ids = sorted(j["id"] for j in jobs)
    # First in, first out: the worker took them in submission order, one at a time.
    started = [i for i in studio.queue.started_order if i in ids]
    assert started == ids
    ends = [studio.queue.jobs[i].finished for i in ids]
    starts = [studio.queue.jobs[i].started for i in ids]
    assert all(e <= s for e, s in zip(ends, starts[1:]))           # never two at once
    assert max(r.json()["position"] for r in replies) >= 2           # some waited, with their place shown
    grew = peak[0] - base
    assert grew < RSS_BOUND_MB, f"resident memory grew by {grew:.0f} MB (bound {RSS_BOUND_MB} MB)"
    waits = sorted(j["queued_s"] + j["run_s"] for j in jobs)
    print(f"20 concurrent generate requests (4 seeds each): all done in {elapsed:.2f} s; per request submit->done "
          f"median {waits[10]:.2f} s, max {waits[-1]:.2f} s; run {np.median([j['run_s'] for j in jobs]):.3f} s each; "
          f"RSS {base:.0f} MB -> peak {peak[0]:.0f} MB (+{grew:.0f} MB, bound {RSS_BOUND_MB})")


def test_job_queue_positions_order_and_limit(tmp_path):
    gate, ran = threading.Event(), []
    queue = JobQueue(tmp_path / "jobs", max_pending=3, keep=2)
    queue.start()
    try:
        def work(job):
            gate.wait(10)
            ran.append(job.id)
            return {"files": []}

        jobs = [queue.submit("test", "0", work)]
        end = time.monotonic() + 60
        while jobs[0].state != "running" and time.monotonic() < end:
            time.sleep(0.01)
        jobs += [queue.submit("test", str(i), work) for i in range(1, 4)]   # one runs, three wait
        assert [queue.position(j) for j in jobs] == [0, 1, 2, 3]
        with pytest.raises(QueueFull, match="queue full: 3 jobs are waiting"):
            queue.submit("test", "one too many", work)
        gate.set()
        while any(j.state != "done" for j in jobs) and time.monotonic() < end:
            time.sleep(0.01)
        assert ran == [j.id for j in jobs]
        assert sorted(queue.jobs) == [jobs[2].id, jobs[3].id]          # only the newest `keep` are kept
        assert not jobs[0].folder.exists()
    finally:
        gate.set()
        queue.close()


# ---------------------------------------------------------------------------------------------
# Runs, compare, interpolate, edit.

def test_runs_curves_samples_and_states(client, runs, tmp_path):
    from kinema.train.status import write_status

    listed = {r["name"]: r for r in client.get("/api/runs").json()["runs"]}
    tiny = listed["tiny"]
    assert tiny["model"] == "mocogan" and tiny["state"]["state"] == "finished" and tiny["kimg"] == 0.032
    assert "loss/D" in tiny["metrics"] and listed["scratch"]["state"]["state"] == "incomplete"
    run = client.get("/api/run", params={"name": "tiny"}).json()
    assert run["config"]["schedule"]["kimg"] == 0.032
    assert len(run["samples"]) == 1 and run["samples"][0]["png"].endswith(".png")
    assert client.get("/api/file", params={"path": run["samples"][0]["png"]}).content[:4] == b"\x89PNG"
    assert [e["metric"] for e in run["evals"]] == ["is8_4f"]
    log = client.get("/api/run/log", params={"name": "tiny"}).json()
    records = [json.loads(x) for x in (runs["root"] / "tiny" / "log.jsonl").read_text().splitlines()]
    assert log["kimg"] == [r["kimg"] for r in records] and log["series"]["loss/D"] == [r.get("loss/D") for r in records]
    # A run stopped by NaN shows as diverged, with the loop's message.
    bad = runs["root"] / "nan-run"
    write_status(bad, "diverged", message="loss G is nan at 0.008 kimg (step 2); stopping without saving")
    (bad / "config.json").write_text((runs["root"] / "tiny" / "config.json").read_text())
    try:
        state = {r["name"]: r for r in client.get("/api/runs").json()["runs"]}["nan-run"]["state"]
        assert state["state"] == "diverged" and "loss G is nan" in state["detail"]
    finally:
        shutil.rmtree(bad)


def test_compare_interpolate_and_edit(client, runs, tmp_path):
    job = wait_job(client, client.post("/api/compare", json={"a": "tiny", "b": "scratch", "seeds": "0-3",
                                                              "metric": "is8_4f", "num": 8}))
    assert job["state"] == "done", job
    table = {row["measure"]: row for row in job["result"]["table"]}
    assert table["model"]["a"] == table["model"]["b"] == "mocogan" and table["kimg"]["b"] == 0
    # Motion measures against real clips of the training archive (it lies under the data root).
    assert table["motion: real clips"]["a"] == f"32 from {runs['data_root'] / runs['archive']}"
    distance = table["motion: motion_distance"]
    assert 0 <= distance["a"] <= 1 and 0 <= distance["b"] <= 1 and distance["a"] != distance["b"]
    assert "motion: displacement_ratio" in table
    assert table["eval is8_4f @0.032 kimg"]["a"] > 0 and table["eval is8_4f @0.032 kimg"]["b"] is None
    now = table["eval is8_4f now (n=8, builtin extractor)"]
    assert now["a"] == pytest.approx(table["eval is8_4f @0.032 kimg"]["a"])  # same seeds, same number
    a = decode_bytes(client.get(f"/api/jobs/{job['id']}/a.mp4").content, tmp_path, "a.mp4")
    assert a.shape[0] == 4

    interp = wait_job(client, client.post("/api/interpolate", json={"export": "tiny", "seed_a": 3, "seed_b": 5,
                                                                     "steps": 4}))
    clips = interp["result"]["clips"]
    assert len(clips) == 5
    first = decode_bytes(client.get(f"/api/jobs/{interp['id']}/{clips[0]}").content, tmp_path, "c0.mp4")
    gen3 = wait_job(client, client.post("/api/generate", json={"export": "tiny", "seeds": "3"}))
    same = decode_bytes(client.get(f"/api/jobs/{gen3['id']}/video.mp4").content, tmp_path, "g3.mp4")
    assert np.array_equal(first, same)                     # the slider's left end is seed A itself

    def edit(body):
        job = wait_job(client, client.post("/api/edit", json=body))
        assert job["state"] == "done", job
        return job, job["result"]["shape"]

    _, shape = edit({"job": gen3["id"], "op": "reverse"})
    assert shape[0] == 4
    _, shape = edit({"job": gen3["id"], "op": "trim", "start": 0.125, "end": 0.375})   # 8 fps: frames 1, 2
    assert shape[0] == 2
    _, shape = edit({"job": gen3["id"], "op": "speed", "factor": 2})
    assert shape[0] == 2
    _, shape = edit({"job": gen3["id"], "op": "upscale", "scale": 4})
    assert shape[1:3] == [128, 128]
    up = client.post("/api/upload?name=clip.mp4", content=client.get(f"/api/jobs/{gen3['id']}/video.mp4").content)
    assert up.status_code == 200 and up.json()["frames"] == 4
    faded, _ = edit({"upload": up.json()["upload"], "op": "fade", "fade_in": 0.25})
    frames = decode_bytes(client.get(f"/api/jobs/{faded['id']}/video.mp4").content, tmp_path, "fade.mp4")
    assert frames[0].max() <= 20 and np.abs(frames[2:].astype(int) - same[2:]).mean() < 2   # re-encoded once more
    r = client.post("/api/edit", json={"job": gen3["id"], "op": "upscale", "scale": 8, "model": "../x2.safetensors"})
    assert r.status_code == 403
    job = wait_job(client, client.post("/api/edit", json={"job": gen3["id"], "op": "trim", "start": 5}))
    assert job["state"] == "error" and "trim: start (5.0 s) is past the end" in job["error"]


# ---------------------------------------------------------------------------------------------
# Training from the studio.

def test_train_from_the_studio_and_stop_cleanly(background_training):
    from kinema.train import list_exports

    studio, client, name = background_training["studio"], background_training["client"], background_training["name"]
    out = studio.runs_dir / name
    assert background_training["reply"].status_code == 200, background_training["reply"].text
    again = client.post("/api/train", json={"name": name + "b", "data": "builtin:moving_digits", "preset": "tiny"})
    assert again.status_code == 409 and "already in progress" in again.json()["error"]
    end = time.monotonic() + 120
    while not (out / "log.jsonl").is_file() or not (out / "log.jsonl").stat().st_size:
        assert studio.trainer.running() and time.monotonic() < end, client.get("/api/train").json()
        time.sleep(0.05)
    live = client.get("/api/train").json()
    assert live["active"] and live["state"]["state"] == "running" and live["total_kimg"] == 1000
    assert any("model dcgan" in line for line in live["log"])
    assert client.post("/api/train/stop").status_code == 200
    studio.trainer.proc.wait(60)
    final = client.get("/api/train").json()
    assert final["returncode"] == 0 and final["state"]["state"] == "stopped"
    assert final["state"]["detail"] == "signal" and list_exports(out)     # the CLI's save on SIGTERM
    assert client.post("/api/train/stop").status_code == 400
    listed = {r["name"]: r for r in client.get("/api/runs").json()["runs"]}[name]
    assert listed["model"] == "dcgan" and listed["state"]["state"] == "stopped"


def test_cli_binds_loopback_unless_told_otherwise(tmp_path, capsys):
    from kinema.cli import main

    assert main(["studio", str(tmp_path / "runs"), "--host", "0.0.0.0"]) == 2
    assert "not a loopback address; add --expose" in capsys.readouterr().err
    # With --expose it warns before serving; here the port is taken, so the server stops at once.
    with socket.socket() as taken:
        taken.bind(("0.0.0.0", 0))
        taken.listen()
        with pytest.raises(SystemExit):
            main(["studio", str(tmp_path / "runs"), "--host", "0.0.0.0", "--expose",
                  "--port", str(taken.getsockname()[1])])
    assert "WARNING: serving on 0.0.0.0" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------
# A real browser.

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture()
def server(studio):
    import uvicorn

    config = uvicorn.Config(create_app(studio), host="127.0.0.1", port=_free_port(), log_level="warning")
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    end = time.monotonic() + 20
    while not srv.started:
        assert thread.is_alive() and time.monotonic() < end, "uvicorn did not start"
        time.sleep(0.02)
    yield f"http://127.0.0.1:{config.port}"
    srv.should_exit = True
    thread.join(10)


@pytest.fixture()
def page(tmp_path):
    if not Path(CHROMIUM).is_file():
        pytest.skip(f"no browser: {CHROMIUM} is not installed (apt-get install chromium; .ci/run does)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        ctx = pw.chromium.launch_persistent_context(tempfile.mkdtemp(dir=tmp_path), executable_path=CHROMIUM,
                                                    headless=True, args=CHROMIUM_ARGS,
                                                    viewport={"width": 1280, "height": 900})
        try:
            yield ctx.new_page()
        finally:
            ctx.close()


def test_browser_generate_play_errors_and_traversal(server, page, cli_seed3, runs, tmp_path):
    shots = os.environ.get("KINEMA_SCREENSHOTS")
    shot = (lambda name: page.screenshot(path=str(Path(shots) / f"studio-{name}.png"), full_page=True)) if shots \
        else (lambda name: None)
    if shots:
        Path(shots).mkdir(parents=True, exist_ok=True)
    page.set_default_timeout(60000)
    page.goto(server + "/")
    page.wait_for_selector("#runs-table tbody tr.pick")
    page.click("text=tiny")
    page.wait_for_selector("#run-plots svg")
    assert page.locator("#run-plots svg").count() >= 2 and page.locator("#sample-img").get_attribute("src")
    shot("runs")

    # Generate seed 3: the <video> plays, and its decoded frames are kinema generate --seeds 3.
    page.click("#tab-generate")
    page.select_option("#gen-export", runs["export"].relative_to(runs["root"]).as_posix())
    page.fill("#gen-seeds", "3")
    page.click("#gen-go")
    page.wait_for_function("() => { const v = document.getElementById('gen-video'); "
                           "return !v.hidden && v.readyState >= 2 && v.currentTime > 0.05; }")
    state = page.evaluate("() => { const v = document.getElementById('gen-video'); "
                          "return {src: v.src, paused: v.paused, w: v.videoWidth, h: v.videoHeight}; }")
    assert not state["paused"] and (state["w"], state["h"]) == (32, 32)
    t1 = page.evaluate("document.getElementById('gen-video').currentTime")
    page.wait_for_function(f"() => document.getElementById('gen-video').currentTime != {t1}")   # still playing
    served = page.request.get(state["src"]).body()
    assert np.array_equal(decode_bytes(served, tmp_path), cli_seed3)
    assert page.locator("#gen-links a").count() == 3
    page.click("#int-go")
    page.wait_for_function("() => document.getElementById('int-video').readyState >= 2")
    page.fill("#int-slider", "4")
    page.dispatch_event("#int-slider", "input")
    page.wait_for_function("() => document.getElementById('int-video').src.endsWith('clip04.mp4')")
    shot("generate")

    # A bad request shows its error in the page; so does a path outside the runs folder.
    page.fill("#gen-seeds", "3-1")
    page.click("#gen-go")
    page.wait_for_function("() => document.getElementById('gen-error').textContent.includes('ends before it starts')")
    page.fill("#gen-seeds", "3")
    page.evaluate("() => { const o = document.createElement('option'); o.value = o.textContent = '../../../etc'; "
                  "document.getElementById('gen-export').appendChild(o); }")
    page.select_option("#gen-export", "../../../etc")
    page.click("#gen-go")
    page.wait_for_function("() => document.getElementById('gen-error').textContent.includes('refused')")
    assert "path traversal" in page.text_content("#gen-error")
    status = page.evaluate("async () => (await fetch('/api/file?path=..%2F..%2F..%2Fetc%2Fpasswd')).status")
    assert status == 403

    if shots:  # the remaining views, for the docs
        page.click("#tab-compare")
        page.select_option("#cmp-a", runs["export"].relative_to(runs["root"]).as_posix())
        page.select_option("#cmp-b", runs["scratch"])
        page.click("#cmp-go")
        page.wait_for_selector("#cmp-table:not([hidden]) tbody tr")
        page.wait_for_function("() => document.getElementById('cmp-b-video').readyState >= 2")
        shot("compare")
        page.click("#tab-edit")
        page.select_option("#edit-op", "fade")
        page.click("#edit-go")
        page.wait_for_function("() => document.getElementById('edit-video').readyState >= 2")
        shot("edit")
        page.click("#tab-train")
        page.select_option("#train-data", runs["archive"])
        page.select_option("#train-preset", "tiny")
        page.fill("#train-name", "shot-run")
        page.fill("#train-kimg", "1000")
        page.click("#train-go")
        page.wait_for_function("() => document.getElementById('train-log').textContent.includes('model mocogan')",
                               timeout=240000)
        page.wait_for_timeout(1500)
        shot("train")
        page.click("#train-stop")
        page.wait_for_function("() => document.getElementById('train-state').textContent.includes('stopped')",
                               timeout=240000)
        shutil.rmtree(runs["root"] / "shot-run", ignore_errors=True)
