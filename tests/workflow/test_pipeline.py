"""The recipe end to end on the tiny model: the real Snakemake, the real xtuner commands, torch on
the CPU. Each test is minutes long, hence the `slow` marker."""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.workflow import (assert_taught, build_dir, published, read_json, snakemake,
                              snakemake_command, snakemake_env, variant, write_overrides)
from xtuner_recipe.layout import ARTIFACTS
from xtuner_recipe.report import read_jsonl
from xtuner_recipe.scoring import THRESHOLDS

pytestmark = pytest.mark.slow

# The e2e run's loss at these iterations (fixed seed, tiny model, CPU; see
# test_loss_series_matches_the_golden_one). Pinned again when the packs moved into the
# tokenized_data rule: its seeded shuffle orders them differently from xtuner's in-training one
# (80: 1.4499 -> 1.4147, the rest within 1 %). Pinned again when each logged loss became the mean
# of the 5 iterations since the last line instead of mmengine's last 10: the same training (the
# mean of the new lines at 35 and 40 is the old 40's 3.5516, likewise at 80 and 160).
GOLDEN_LOSS = {10: 6.6019, 40: 3.1989, 80: 1.3796, 120: 1.2236, 160: 1.1856}


def planned_jobs(result):
    """Rule -> count from the 'Job stats' table of a dry run."""
    table = result.stdout.split("Job stats:")[1].split("total")[0]
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+(\d+)$", table, re.M)}


@pytest.fixture(scope="module")
def local_run(tmp_path_factory, shared_results):
    workdir = tmp_path_factory.mktemp("local")
    overrides = {**variant("e2e"), "results_dir": str(shared_results)}
    started = time.time()
    result = snakemake(workdir, overrides)
    assert result.returncode == 0, result.stderr[-5000:]
    print(f"local recipe run: {time.time() - started:.0f} s")
    return workdir, overrides, shared_results / "e2e"


def test_all_artifacts_are_published_and_the_identity_is_learned(local_run):
    _, _, run_dir = local_run
    for artifact in ARTIFACTS:
        assert (published(run_dir) / artifact).is_file(), artifact
        assert (build_dir(run_dir) / artifact).is_file(), artifact
    assert_taught(run_dir)
    final = read_json(published(run_dir) / "train" / "final_checkpoint.json")
    assert final["iteration"] == 160 and Path(final["checkpoint"]).name == "iter_160.pth"
    assert Path(final["checkpoint"]).parent == run_dir / "attempts" / final["attempt"]
    diff = (published(run_dir) / "config" / "xtuner_config.diff").read_text()
    assert "+do_dataset_tokenization=False" in diff.replace("    ", "")
    assert "type=load_from_disk, dataset_path=" in diff
    report = read_json(published(run_dir) / "report" / "report.json")
    assert report["training"]["tokens_seen"] == 160 * 128
    assert report["loss_curve"][0]["loss"] > 2 * report["loss_curve"][-1]["loss"]
    assert (published(run_dir) / "report" / "loss_curve.png").read_bytes()[:8] == \
        b"\x89PNG\r\n\x1a\n"


def test_the_report_carries_its_provenance_and_the_manifest_checks_out(local_run):
    _, _, run_dir = local_run
    manifest = read_json(published(run_dir) / "report" / "manifest.json")
    final = read_json(published(run_dir) / "train" / "final_checkpoint.json")
    assert manifest["attempt"] == final["attempt"] and manifest["inputs"] == final["inputs"]
    assert {"merged/model.safetensors", "hf_adapter/adapter_model.safetensors",
            "data/assistant.json", "data/tokenized/dataset/data-00000-of-00001.arrow",
            "config/xtuner_config.py",
            "report/report.md"} <= set(manifest["files"])
    assert "config.json" in manifest["inputs"]["base_model"]  # every base model file hashed
    assert manifest["environment"]["software"]["xtuner"] == "0.2.0"
    assert manifest["devices"] and manifest["environment"]["recipe_revision"]["revision"]
    text = (published(run_dir) / "report" / "report.md").read_text(encoding="utf-8")
    assert f"| training attempt | `{final['attempt']}`" in text
    result = subprocess.run([sys.executable, "-m", "xtuner_recipe.manifest", "verify",
                             str(published(run_dir))], capture_output=True, text=True)
    assert result.returncode == 0 and "files match the manifest" in result.stdout
    # one changed byte in a copy of the set is found and named
    copy = run_dir.parent / "e2e-tampered"
    shutil.copytree(published(run_dir), copy)
    adapter = copy / "hf_adapter" / "adapter_config.json"
    adapter.write_text(adapter.read_text() + " ")
    result = subprocess.run([sys.executable, "-m", "xtuner_recipe.manifest", "verify",
                             str(copy)], capture_output=True, text=True)
    shutil.rmtree(copy)
    assert result.returncode == 1 and "changed: hf_adapter/adapter_config.json" in result.stderr


def test_loss_series_matches_the_golden_one(local_run):
    """Fixed seed, tiny model, CPU: the loss at these iterations, pinned. Tolerance: the same
    torch build gives the same numbers on a machine like this one (the resumed run below repeats
    them to the last digit before its interruption); 2 % leaves room for another CPU's kernels
    and fails on any change to the data, template, schedule or model."""
    _, _, run_dir = local_run
    losses = {s["step"]: s["loss"] for s in
              read_json(published(run_dir) / "report" / "report.json")["loss_curve"]}
    for step, golden in GOLDEN_LOSS.items():
        assert losses[step] == pytest.approx(golden, rel=0.02, abs=2e-3), (step, losses[step])


def test_the_sample_chat_answers_once_with_the_final_weights(local_run):
    """xtuner's chat hook answered at the last iteration and again after training, with the same
    weights; the recipe's SampleChat keeps the first."""
    _, _, run_dir = local_run
    log = (build_dir(run_dir) / "logs" / "train.log").read_text(encoding="utf-8", errors="replace")
    last_iteration, after_last_save = log.rsplit("Saving checkpoint at", 1)
    assert "Sample output:" in last_iteration.rsplit("Iter(train)", 1)[1]
    assert "Sample output:" not in after_last_save
    assert "no second sample chat; the last iteration's used the final weights" in after_last_save


def test_compiled_layers_and_chunked_loss_train_the_golden_losses(tmp_path, shared_results):
    """train.compile (torch.compile's inductor on CPU here) and train.chunked_loss, as the tuned
    recipes set them: the same losses as eager training with the stock loss, within the golden
    test's tolerance (0.2 % apart here)."""
    overrides = {**variant("e2e"), "run_name": "e2e-compiled", "results_dir": str(shared_results),
                 "train": {"compile": True, "chunked_loss": True}}
    result = snakemake(tmp_path, overrides, "--until", "train")
    assert result.returncode == 0, result.stderr[-5000:]
    run_dir = shared_results / "e2e-compiled"
    log = (build_dir(run_dir) / "logs" / "train.log").read_text(encoding="utf-8")
    assert "InternLM2DecoderLayer layers compiled for training" in log
    assert "InternLM2ForCausalLM computes its loss 2048 tokens at a time (compiled)" in log
    scalars = read_jsonl(build_dir(run_dir) / "train" / "scalars.jsonl")
    losses = {s["step"]: s["loss"] for s in scalars}
    for step, golden in GOLDEN_LOSS.items():
        assert losses[step] == pytest.approx(golden, rel=0.02, abs=2e-3), (step, losses[step])
    # the compiled kernels are kept for the next run of this results_dir
    assert any((shared_results / "compile_cache").rglob("*.py"))


def test_the_adapter_lists_its_modules_in_a_stable_order(local_run):
    """Defect: peft wrote target_modules from a set, in another order on every run."""
    _, _, run_dir = local_run
    modules = read_json(published(run_dir) / "hf_adapter" / "adapter_config.json")[
        "target_modules"]
    assert modules == sorted(modules) and len(modules) > 1


def test_the_tiny_models_report_shows_it_over_fitted(local_run):
    """It answers everything with its two sentences: learned, and over-fitted."""
    _, _, run_dir = local_run
    report = read_json(published(run_dir) / "report" / "report.json")
    assert report["scores"]["unrelated"]["merged"] > THRESHOLDS["overfit_share_max"]
    assert report["verdict"]["overfitted"] is True
    assert "over-fitted: yes" in (published(run_dir) / "report" / "report.md").read_text(
        encoding="utf-8")


def test_merged_model_loads_and_chats(local_run):
    """A plain generate() with the chat template stops at the turn end (defect: the merged
    model's generation config stopped only at </s> and ran on)."""
    _, _, run_dir = local_run
    code = (
        "import sys; from transformers import AutoModelForCausalLM, AutoTokenizer\n"
        "p = sys.argv[1]\n"
        "tok = AutoTokenizer.from_pretrained(p, trust_remote_code=True)\n"
        "m = AutoModelForCausalLM.from_pretrained(p, trust_remote_code=True).float()\n"
        "ids = tok('<|im_start|>user\\n请介绍一下你自己<|im_end|>\\n<|im_start|>assistant\\n',"
        " return_tensors='pt')\n"
        "out = m.generate(**ids, max_new_tokens=200, do_sample=False)\n"
        "new = out[0][ids['input_ids'].shape[1]:]\n"
        "print(len(new), tok.decode(new))\n")
    result = subprocess.run([sys.executable, "-c", code, str(published(run_dir) / "merged")],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    count, answer = result.stdout.strip().split(" ", 1)
    assert "门客er" in answer
    assert int(count) < 200 and answer.endswith("<|im_end|>") and answer.count("门客er") == 1


def test_the_chat_command_talks_to_the_run_before_and_after(local_run):
    """`python -m xtuner_recipe.chat RUN` finds the published model, its template and system line;
    --base talks to the model before fine-tuning, which does not know the owner."""
    workdir, _, run_dir = local_run
    owner = read_json(published(run_dir) / "eval" / "answers.json")["name"]
    answers = {}
    for extra in ([], ["--base"]):
        result = subprocess.run([sys.executable, "-m", "xtuner_recipe.chat", str(run_dir),
                                 "--prompt", "请介绍一下你自己", "--max-new-tokens", "48", *extra],
                                cwd=workdir, capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr[-3000:]
        answers[" ".join(extra) or "fine-tuned"] = result.stdout.strip()
    assert answers["fine-tuned"].count(owner) == 1, answers
    assert owner not in answers["--base"], answers


def test_the_web_demo_in_a_real_browser(local_run, tmp_path):
    """Debian's chromium through Playwright: the page shows the run's verdict and loss curve; the
    fine-tuned model names its owner, in English and Chinese, the base model does not; an
    over-long question is refused in the page and the server keeps answering; two tabs asking at
    once both get their answers. The screenshot stays in .scratch/artifacts/."""
    from harness.browser import answers, ask, ask_who_it_is, browser, record, screenshot, webapp

    _, _, run_dir = local_run
    owner = read_json(published(run_dir) / "eval" / "answers.json")["name"]
    started = time.monotonic()
    with webapp(run_dir.parent, tmp_path / "webapp", run=run_dir.name) as url, \
            browser() as chromium:
        page = chromium.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(url, wait_until="networkidle")
        page.get_by_text("Verdict: learned").wait_for(timeout=120_000)
        page.get_by_text(f"Run: {run_dir.name}").wait_for()  # whole, in the page
        page.get_by_text("Scores (the report says what each counts)").click()
        page.get_by_text("general_choice_en").wait_for()
        page.locator("img").first.wait_for(timeout=60_000)  # the loss curve
        ask_who_it_is(page, owner)
        shot = screenshot(page, "web-demo.png")
        ask(page, "sea " * 3000, 2)
        refused = answers(page, 2)
        assert all("not answered: the prompt is" in a for a in refused.values()), refused
        ask(page, "你是谁", 3)
        assert owner in answers(page, 3)["fine-tuned"]  # still serving

        tabs = [chromium.new_page() for _ in range(2)]
        for tab in tabs:
            tab.goto(url, wait_until="networkidle")
            tab.get_by_placeholder("Ask both models the same question").fill("Who are you?")
        for tab in tabs:  # both submitted before either answer is done
            tab.keyboard.press("Enter")
        for tab in tabs:
            tab.locator(".st-key-answered-0").wait_for(timeout=180_000)
            assert owner in tab.locator(".st-key-answer-fine-tuned-0").inner_text()
    record("web-demo", seconds=round(time.monotonic() - started, 1), screenshot=str(shot))


def test_the_bundle_is_ready_to_push_and_its_card_and_app_work(local_run, tmp_path):
    """`snakemake bundle`: the merged model, a model card, the app and checksums. The card's own
    loading snippet, run as written in the bundle, answers with the owner's name, and so does the
    bundle's app in a real browser."""
    from harness.browser import ask, browser, streamlit_app
    from xtuner_recipe.manifest import sha256_of

    workdir, overrides, run_dir = local_run
    started = time.monotonic()
    result = snakemake(workdir, overrides, "bundle")
    assert result.returncode == 0, result.stderr[-3000:]
    bundle = run_dir / "bundle"
    listed = dict(line.split("  ", 1)[::-1] for line in (bundle / "SHA256SUMS").read_text().splitlines())
    assert {"README.md", "model/model.safetensors", "app/app.py", "app/requirements.txt",
            "prompt_template.json", "provenance.json", "eval_answers.json"} <= set(listed)
    assert all(sha256_of(bundle / name) == digest for name, digest in listed.items())
    files = {p.relative_to(bundle).as_posix(): p.stat().st_size for p in bundle.rglob("*") if p.is_file()}
    assert set(files) == set(listed) | {"SHA256SUMS"}  # nothing unlisted
    assert f"the bundle: {bundle}" in result.stdout + result.stderr
    print(f"\nbundle ({time.monotonic() - started:.1f} s): {json.dumps(files)}")
    card = (bundle / "README.md").read_text(encoding="utf-8")
    owner = read_json(published(run_dir) / "eval" / "answers.json")["name"]
    assert card.startswith("---\nlicense: ") and owner in card and "## Evaluation" in card
    requirements = (bundle / "app" / "requirements.txt").read_text().split()
    assert all(re.fullmatch(r"[a-z]+==[0-9.]+", line) for line in requirements), requirements
    snippet = card.split("```python\n", 1)[1].split("```", 1)[0]
    ran = subprocess.run([sys.executable, "-c", snippet.replace("Who are you?", "请介绍一下你自己")],
                         cwd=bundle, capture_output=True, text=True, timeout=300)
    assert ran.returncode == 0 and owner in ran.stdout, ran.stderr[-2000:]
    with streamlit_app(bundle / "app" / "app.py", tmp_path / "app") as url, browser() as chromium:
        page = chromium.new_page()
        page.goto(url, wait_until="networkidle")
        ask(page, "请介绍一下你自己", 0, placeholder="Ask me something")
        assert owner in page.locator('[data-testid="stChatMessage"]').nth(1).inner_text()


def test_second_run_does_nothing(local_run):
    workdir, overrides, _ = local_run
    result = snakemake(workdir, overrides, "--dry-run")
    assert result.returncode == 0
    assert "Nothing to be done" in result.stdout + result.stderr


def test_new_owner_name_rebuilds_data_to_report_only(local_run):
    workdir, overrides, _ = local_run
    result = snakemake(workdir, {**overrides, "assistant": {"name": "Ada"}}, "--dry-run")
    assert result.returncode == 0, result.stderr[-3000:]
    # the owner's name is in two stages' settings: the data's and the evaluation's
    assert planned_jobs(result) == {"settings": 2, "data": 1, "tokenized_data": 1,
                                    "xtuner_config": 1, "train": 1, "hf_adapter": 1, "merge": 1,
                                    "evaluate": 1, "report": 1, "publish": 1, "all": 1}


def test_other_hyperparameters_retrain_without_tokenising_again(local_run):
    """The tokenised, packed set depends on the data, tokenizer, template and max_length only."""
    workdir, overrides, _ = local_run
    result = snakemake(workdir, {**overrides, "train": {"lr": 2e-4, "batch_size": 2}},
                       "--dry-run")
    assert result.returncode == 0, result.stderr[-3000:]
    assert planned_jobs(result) == {"settings": 1, "xtuner_config": 1, "train": 1,
                                    "hf_adapter": 1, "merge": 1, "evaluate": 1, "report": 1,
                                    "publish": 1, "all": 1}


def loss_series(run_dir):
    return {s["step"]: s["loss"] for s in
            read_json(published(run_dir) / "report" / "report.json")["loss_curve"]}


def assert_resumed_like_uninterrupted(run_dir, uninterrupted, resumed_at):
    """The same seed and data: identical losses up to the interruption; after it, within 5 %
    (mmengine restores the data order and the optimizer, not the dropout generator's state)."""
    losses = loss_series(run_dir)
    assert sorted(losses) == sorted(uninterrupted)
    for step, loss in losses.items():
        if step <= resumed_at:
            assert loss == pytest.approx(uninterrupted[step], rel=1e-6), step
        else:
            assert loss == pytest.approx(uninterrupted[step], rel=0.05), step


def test_interrupted_training_resumes_from_its_last_checkpoint(tmp_path, shared_results,
                                                               local_run):
    """Killed outright (SIGKILL: a lost node): the rerun resumes from the last periodic
    checkpoint, and the report's wall time counts both segments."""
    overrides = {**variant("resume"), "results_dir": str(shared_results)}
    run_dir = shared_results / "resume"
    command = snakemake_command(tmp_path, write_overrides(tmp_path, overrides))
    first = subprocess.Popen(command, cwd=tmp_path, env=snakemake_env(), start_new_session=True,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 900
    while not any("iter_80.pth" in m.read_text()
                  for m in run_dir.glob("attempts/*/last_checkpoint")):
        assert first.poll() is None, "the first run ended before its second checkpoint"
        assert time.time() < deadline, "no checkpoint at iteration 80 in time"
        time.sleep(0.5)
    os.killpg(first.pid, signal.SIGKILL)  # our own session: snakemake and the training it started
    first.wait()
    assert not published(run_dir).exists()  # nothing half-made was promoted

    assert snakemake(tmp_path, overrides, "--unlock").returncode == 0
    second = snakemake(tmp_path, overrides)
    assert second.returncode == 0, second.stderr[-5000:]
    final = read_json(published(run_dir) / "train" / "final_checkpoint.json")
    assert [Path(r).name for r in final["resumed_from"]] == ["iter_80.pth"]
    assert final["iteration"] == 160 and final["segments"] == 2
    log = (build_dir(run_dir) / "logs" / "train.log").read_text()
    assert "resuming from" in log
    assert_taught(run_dir)
    # defect: the wall time after a resume counted only the last segment
    record = run_dir / "attempts" / final["attempt"] / "segments.jsonl"
    segments = [json.loads(line) for line in record.read_text().splitlines()]
    assert segments[0]["exit_status"] == "killed"
    assert final["wall_time_s"] == pytest.approx(
        sum(s["ended"] - s["started"] for s in segments), abs=0.2)
    assert final["wall_time_s"] > segments[1]["ended"] - segments[1]["started"] + 5
    resumed_at = int(Path(final["resumed_from"][0]).stem.split("_")[1])
    assert_resumed_like_uninterrupted(run_dir, loss_series(local_run[2]), resumed_at)


def descendants(pid):
    """The PIDs of every process below `pid` (ours: started by this test)."""
    children = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


# How a run is told to stop -> the signal and whom it is sent to.
STOPS = {
    "SIGUSR1 to the training": signal.SIGUSR1,  # Slurm's warning before the time limit
    "SIGTERM to snakemake": signal.SIGTERM,  # docker stop, timeout, a CI cancel, systemd
    "Ctrl-C": signal.SIGINT,  # the terminal signals the whole foreground process group
}


@pytest.mark.parametrize("stop", STOPS)
def test_a_signalled_training_saves_where_it_is_and_resumes_there(stop, tmp_path, shared_results,
                                                                  local_run):
    """Told to stop, training saves the iteration it reached and stops, Snakemake releases its
    lock; the rerun (no --unlock) resumes there and loses nothing, though no periodic checkpoint
    was due (save_steps 1000; xtuner's sample chat, which draws random numbers, runs at each
    periodic save: the e2e run's losses differ from step 85 on, within the tolerance). Snakemake
    itself passes no signal on to its jobs: the workflow does."""
    run_name = "preempt-" + stop.split()[0].lower()
    overrides = {**variant("preempt"), "run_name": run_name, "results_dir": str(shared_results)}
    run_dir = shared_results / run_name
    command = snakemake_command(tmp_path, write_overrides(tmp_path, overrides))
    console = tmp_path / "first-run.out"
    with console.open("w") as out:
        first = subprocess.Popen(command, cwd=tmp_path, env=snakemake_env(),
                                 start_new_session=True, stdout=out, stderr=subprocess.STDOUT)
    deadline, reached = time.time() + 900, 0
    while reached < 40:
        assert first.poll() is None and time.time() < deadline, "training never reached 40"
        reached = max((json.loads(line)["step"] for f in
                       run_dir.glob("attempts/*/*/vis_data/scalars.json")
                       for line in f.read_text().splitlines() if '"loss"' in line), default=0)
        time.sleep(0.2)
    number = STOPS[stop]
    if number == signal.SIGUSR1:
        # the training wrapper (python -m xtuner_recipe.train), not the shell that started it
        os.kill(next(pid for pid in descendants(first.pid) if b"-m\x00xtuner_recipe.train\x00"
                     in Path(f"/proc/{pid}/cmdline").read_bytes()), number)
    elif number == signal.SIGTERM:
        os.kill(first.pid, number)
    else:
        os.killpg(first.pid, number)  # our own session: snakemake and everything it started
    assert first.wait(timeout=300) != 0
    output = console.read_text()
    name = signal.Signals(number).name
    stopped = read_json(next(run_dir.glob("attempts/*/stopped_on_signal.json")))
    assert stopped["signal"] == name and stopped["iteration"] >= reached, output[-3000:]
    assert f"training stopped on {name} after saving iteration {stopped['iteration']}" in output
    assert not list((tmp_path / ".snakemake" / "locks").glob("*.lock")), "the lock was kept"
    assert not published(run_dir).exists()

    second = snakemake(tmp_path, overrides)
    assert second.returncode == 0, second.stderr[-5000:]
    final = read_json(published(run_dir) / "train" / "final_checkpoint.json")
    assert [Path(r).name for r in final["resumed_from"]] == [f"iter_{stopped['iteration']}.pth"]
    assert final["iteration"] == 160 and final["segments"] == 2
    assert final["stopped_on_signal"] == [stopped]
    print(f"{stop}: signalled at iteration >= {reached}, saved {stopped['iteration']}, "
          "resumed there, rerun without --unlock")
    assert_taught(run_dir)
    assert_resumed_like_uninterrupted(run_dir, loss_series(local_run[2]), stopped["iteration"])


def test_users_own_openai_messages_dataset(tmp_path, shared_results):
    records = [{"messages": [{"role": "user", "content": q},
                             {"role": "assistant", "content": f"我是Grace的助手，{a}"}]}
               for q, a in (("你是谁", "很高兴认识你"), ("你能做什么", "我帮Grace写代码"))] * 2000
    dataset = tmp_path / "grace.jsonl"
    dataset.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in records) + "\n",
                       encoding="utf-8")
    overrides = variant("own-dataset")
    overrides.update(results_dir=str(shared_results))
    overrides["dataset"] = {"path": str(dataset)}
    result = snakemake(tmp_path, overrides)
    assert result.returncode == 0, result.stderr[-5000:]
    run_dir = shared_results / "grace"
    assert "openai_map_fn" in (published(run_dir) / "data" / "tokenized" /
                               "source_config.py").read_text()
    assert len(read_json(published(run_dir) / "data" / "assistant.json")) == 4000
    assert_taught(run_dir)


def test_multi_gpu_profile_on_cpu_two_processes_zero2(tmp_path, shared_results):
    overrides = {**variant("torchrun2"), "results_dir": str(shared_results)}
    started = time.time()
    result = snakemake(tmp_path, overrides, profile="multi-gpu", env={"NPROC_PER_NODE": "2"})
    assert result.returncode == 0, result.stderr[-5000:]
    print(f"multi-gpu profile, 2 CPU processes: {time.time() - started:.0f} s")
    run_dir = shared_results / "torchrun2"
    final = read_json(published(run_dir) / "train" / "final_checkpoint.json")
    assert final["world_size"] == 2 and final["launcher"] == "pytorch"
    assert final["deepspeed"] is True  # ZeRO-2 writes iter_N.pth/ as a folder
    assert (Path(final["checkpoint"]) / "mp_rank_00_model_states.pt").exists() or any(
        Path(final["checkpoint"]).iterdir())
    ds = read_json(published(run_dir) / "config" / "deepspeed.json")
    assert ds["zero_optimization"]["stage"] == 2 and ds["fp16"]["enabled"] is False
    log = (build_dir(run_dir) / "logs" / "train.log").read_text()
    assert "--launcher pytorch" in log and "computes its loss 2048 tokens at a time" in log
    # xtuner adapts InternLM2's head too; its LoRA B starts at zero, so only the chunked loss's
    # gradients, reduced by ZeRO-2, can have moved it
    from safetensors.torch import load_file

    adapter = load_file(published(run_dir) / "hf_adapter" / "adapter_model.safetensors")
    head_b = [name for name in adapter if name.endswith("output.lora_B.weight")]
    assert head_b and all(adapter[name].abs().sum() > 0 for name in head_b), list(adapter)[:8]
    assert_taught(run_dir)


def test_changed_inputs_train_anew_failures_keep_the_published_set_and_old_inputs_reuse(
        local_run):
    """Defects: a new owner name under a fixed run_name "resumed" the finished checkpoint and
    published the old weights as new; a bad value that passed validation (train.max_length 8)
    rewrote the config, moved the checkpoints aside and left a mismatched model and report; and
    going back retrained from scratch."""
    from xtuner_recipe import manifest

    workdir, overrides, run_dir = local_run
    first = read_json(published(run_dir) / "report" / "manifest.json")
    first_set = os.readlink(published(run_dir))
    attempts = sorted(p.name for p in (run_dir / "attempts").iterdir())

    bad = snakemake(workdir, {**overrides, "train": {"max_length": 8}})
    assert bad.returncode != 0
    assert "config field train.max_length = 8: the longest record is" in bad.stdout + bad.stderr
    assert "Traceback" not in (build_dir(run_dir) / "logs" / "tokenized_data.log").read_text()
    assert os.readlink(published(run_dir)) == first_set
    manifest.verify(published(run_dir))
    assert sorted(p.name for p in (run_dir / "attempts").iterdir()) == attempts

    # braces and quotes in the owner's name, from a config file
    owner = "{x} O'Neil"
    renamed = snakemake(workdir, {**overrides, "assistant": {"name": owner}})
    assert renamed.returncode == 0, renamed.stderr[-5000:]
    final = read_json(published(run_dir) / "train" / "final_checkpoint.json")
    assert final["attempt"] != first["attempt"] and final["iteration"] == 160
    assert final["resumed_from"] == [] and final["segments"] == 1  # trained, not "resumed"
    assert f"attempt {final['attempt']}: new" in (build_dir(run_dir) / "logs" /
                                                  "train.log").read_text()
    assert read_json(published(run_dir) / "report" / "report.json")["provenance"][
        "inputs"]["dataset"] != first["inputs"]["dataset"]
    assert_taught(run_dir)  # the new name, learned
    answers = read_json(published(run_dir) / "eval" / "answers.json")
    assert answers["name"] == owner
    second = read_json(published(run_dir) / "report" / "manifest.json")
    weights = "merged/model.safetensors"
    assert second["files"][weights]["sha256"] != first["files"][weights]["sha256"]

    back = snakemake(workdir, overrides)
    assert back.returncode == 0, back.stderr[-5000:]
    last = (build_dir(run_dir) / "logs" / "train.log").read_text().split(" train ====")[-1]
    assert f"attempt {first['attempt']} finished before (iteration 160): reused" in last
    assert "xtuner_entry train" not in last  # nothing launched
    again = read_json(published(run_dir) / "report" / "manifest.json")
    assert again["attempt"] == first["attempt"]
    assert again["files"][weights] == first["files"][weights]
    assert_taught(run_dir)
