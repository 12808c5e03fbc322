"""A folder ready to push to a model hub or an app platform, made from a run's published set:

    model/          the merged model (weights, config, tokenizer, generation config)
    README.md       the model card: base model and its licence, data, method and hyperparameters,
                    the evaluation's verdict and figures, how to load it, provenance
    prompt_template.json   the xtuner prompt template it was trained with, and its system line
    app/app.py      a Streamlit chat page for the model (app platforms run `streamlit run app.py`)
    app/requirements.txt   the versions this recipe ran with
    SHA256SUMS      every file above (`sha256sum -c SHA256SUMS`)

    python -m xtuner_recipe.bundle --published results/<run>/published --out results/<run>/bundle

Nothing is uploaded; README.md (the project's) shows the push commands.
"""

import argparse
import json
import shutil
from importlib import metadata
from pathlib import Path

from xtuner_recipe.manifest import sha256_of, write_folder
from xtuner_recipe.packaged_model import SOURCE_FILE
from xtuner_recipe.report import verdict_lines

APP = Path(__file__).with_name("bundle_app.py")
# InternLM2 models ship modeling code that imports einops
APP_PACKAGES = ("streamlit", "torch", "transformers", "tokenizers", "safetensors", "accelerate", "einops")
NO_LICENCE = ("not recorded: check the licence of the base model named above before you share "
              "this model")


class BundleError(Exception):
    pass


def read_json(path):
    return json.loads(Path(path).read_text(encoding="utf-8"))


def base_model_licence(base_model):
    """The licence the base model's folder records (a packaged model does), else None."""
    source = Path(base_model) / SOURCE_FILE
    if source.is_file():
        info = read_json(source)
        return f"{info.get('licence')} ({info['package']}=={info['version']}, {info['member']})"
    return None


def model_card(published, base_licence):
    report = read_json(published / "report" / "report.json")
    answers = read_json(published / "eval" / "answers.json")
    adapter = read_json(published / "hf_adapter" / "adapter_config.json")
    effective = read_json(published / "config" / "effective.json")
    data = read_json(published / "data" / "dataset_info.json")
    prov, training, verdict = report["provenance"], report["training"], report["verdict"]
    licence = base_licence or NO_LICENCE
    spdx = base_licence.split()[0].lower() if base_licence else "other"
    rows = "\n".join(f"| {group} | {s['base']:.2f} | {s['merged']:.2f} |"
                     for group, s in report["scores"].items())
    system = answers.get("system")
    task = report.get("task", "identity")
    held_out = f", {data.get('test_records', 0)} more held out for the test"
    what, records = {
        "identity": (f"a personal assistant that knows its owner, **{answers.get('name')}**",
                     "the owner's identity pairs"),
        "qa": ("an assistant fine-tuned on its owner's question/answer data",
               "the owner's own conversations" + held_out),
        "pretrain": ("a model incrementally pre-trained on its owner's text",
                     "documents of the owner's text" + held_out),
    }[task]
    # the hub's base_model field takes a public id only; a local folder's name is none
    public_id = prov.get("base_model_public_id")
    return f"""---
license: {spdx}
{f'base_model: {public_id}{chr(10)}' if public_id else ''}tags: [xtuner, lora, personal-assistant, xtuner-recipe]
---

# {report['run_name']}

Made with [XTuner](https://github.com/InternLM/xtuner) by the xtuner-recipe workflow (recipe
`{report['recipe']}`, task {task}): {what}.

## Base model and licence

- base model: `{prov['base_model']}` (every file's sha256 is in `provenance.json`)
- licence of the base model: {licence}. This fine-tune is a derivative: the base model's licence
  applies to it.

## Data

{data['records']} training records ({data['format']} format), {records}, in the prompt template `{answers['prompt_template']}`{f' with the system line "{system}"' if system else ''}.

## Method and hyperparameters

| | |
|---|---|
| method | {training['method']} (`r` {adapter.get('r')}, `lora_alpha` {adapter.get('lora_alpha')}, modules {', '.join(adapter.get('target_modules') or [])}) |
| learning rate | {effective.get('lr')} |
| iterations | {training['iterations']} (batch {effective.get('batch_size')}, accumulation {effective.get('accumulative_counts')}) |
| max length | {effective.get('max_length')} (packed: {effective.get('pack_to_max_length')}) |
| tokens seen | {training['tokens_seen']} |
| loss | {training['first_loss']:.3f} -> {training['last_loss']:.3f} |
| device | {training['device']}, {training['processes']} process(es) |

## Evaluation

{chr(10).join(verdict_lines(verdict))}

| measure | base model | this model |
|---|---|---|
{rows}

The report's figures (shares of prompts answered as expected, or 0-100 text-overlap scores and
perplexities: `report.md` says which), from greedy answers; every answer is in
`eval_answers.json`.

## How to load it

```python
import json

from transformers import AutoModelForCausalLM, AutoTokenizer

t = json.load(open("prompt_template.json"))  # the template it was trained with: use the same
tokenizer = AutoTokenizer.from_pretrained("model", trust_remote_code=True)
model = AutoModelForCausalLM.from_pretrained("model", trust_remote_code=True)
prompt = ((t["SYSTEM"].format(system=t["system"]) if t["system"] else "")
          + t["INSTRUCTION"].format(input="Who are you?", round=1))
ids = tokenizer(prompt, return_tensors="pt", return_token_type_ids=False)
out = model.generate(**ids, max_new_tokens=64)  # its generation config stops at the turn end
print(tokenizer.decode(out[0][ids["input_ids"].shape[1]:], skip_special_tokens=True))
```

Or the chat page: `pip install -r app/requirements.txt && streamlit run app/app.py`.

## Provenance

attempt `{prov['attempt']}`, recipe revision `{prov['environment']['recipe_revision']['revision']}`
(local changes: {prov['environment']['recipe_revision']['modified']}); the full record is in
`provenance.json`, the checksums in `SHA256SUMS`.
"""


def build_bundle(published, out):
    from xtuner.utils import PROMPT_TEMPLATE

    published = Path(published)
    if not (published / "report" / "manifest.json").is_file():
        raise BundleError(f"{published} is not a published set (no report/manifest.json): run the "
                          "recipe to the end first")
    report = read_json(published / "report" / "report.json")
    base_licence = base_model_licence(report["provenance"]["base_model"])

    def build(tmp):
        shutil.copytree(published / "merged", tmp / "model")
        (tmp / "README.md").write_text(model_card(published, base_licence), encoding="utf-8")
        shutil.copy(published / "eval" / "answers.json", tmp / "eval_answers.json")
        (tmp / "provenance.json").write_text(
            json.dumps(report["provenance"], indent=2, sort_keys=True) + "\n", encoding="utf-8")
        answers = read_json(published / "eval" / "answers.json")
        template = {"SYSTEM": "{system}", "SUFFIX": "", "SEP": "",
                    **PROMPT_TEMPLATE[answers["prompt_template"]],
                    "name": answers["prompt_template"], "system": answers.get("system"),
                    "title": f"{answers['name']}'s assistant"}
        (tmp / "prompt_template.json").write_text(
            json.dumps(template, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        (tmp / "app").mkdir()
        shutil.copy(APP, tmp / "app" / "app.py")
        (tmp / "app" / "requirements.txt").write_text(
            "".join(f"{name}=={metadata.version(name).split('+')[0]}\n" for name in APP_PACKAGES),
            encoding="utf-8")
        files = sorted(p for p in tmp.rglob("*") if p.is_file())
        (tmp / "SHA256SUMS").write_text("".join(
            f"{sha256_of(p)}  {p.relative_to(tmp).as_posix()}\n" for p in files), encoding="utf-8")

    write_folder(out, build)  # a bundle is made again from the published set, never edited
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--published", required=True, help="results/<run>/published")
    parser.add_argument("--out", required=True)
    parser.add_argument("--receipt", help="a JSON file to write last: the bundle, its files, size")
    args = parser.parse_args(argv)
    try:
        out = build_bundle(args.published, args.out)
    except BundleError as error:
        raise SystemExit(f"[xtuner-recipe] {error}") from None
    files = sorted(p for p in Path(out).rglob("*") if p.is_file())
    size = sum(p.stat().st_size for p in files)
    if args.receipt:
        Path(args.receipt).write_text(json.dumps(
            {"bundle": str(Path(out).resolve()), "files": len(files), "bytes": size,
             "sha256sums": sha256_of(Path(out) / "SHA256SUMS")}, indent=2) + "\n")
    print(f"[xtuner-recipe] bundle {out}: {len(files)} files, {size / 1e6:.1f} MB")


if __name__ == "__main__":
    main()
