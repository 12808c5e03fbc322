"""Talk to a model the way it was trained: xtuner's prompt template, greedy decoding, answers cut
at the template's stop words. The evaluation and the replay data use it, and so do you:

    python -m xtuner_recipe.chat results/<run>                       # chat with the fine-tuned model
    python -m xtuner_recipe.chat results/<run> --prompt "Who are you?"   # one answer, then exit
    python -m xtuner_recipe.chat results/<run> --base                # the model before fine-tuning
    python -m xtuner_recipe.chat MODEL_DIR --template internlm2_chat [--adapter ADAPTER_DIR]

A run folder gives the merged model, the prompt template and the system line of its published
set; `--adapter` tries an adapter on its base model before merging. Answers stream as they are
generated; /reset forgets the conversation, /exit or Ctrl-D quits, Ctrl-C stops one answer.
"""

import argparse
import json
import sys
import time
from pathlib import Path

from xtuner_recipe import use_runtime_env

WEIGHTS = ("*.safetensors", "pytorch_model*.bin")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json")


class ChatError(Exception):
    """Bad input for the chat, said in one line."""


def build_prompt(template_name, system, prompt, history=()):
    """The text the model sees: the system line, the earlier (prompt, answer) turns, the new
    prompt (xtuner's PROMPT_TEMPLATE, as its own chat tool lays out a conversation)."""
    from xtuner.utils import PROMPT_TEMPLATE

    template = PROMPT_TEMPLATE[template_name]
    text = template.get("SYSTEM", "{system}").format(system=system) if system else ""
    for number, (asked, answered) in enumerate(history, start=1):
        text += (template["INSTRUCTION"].format(input=asked, round=number) + answered
                 + template.get("SUFFIX", "") + template.get("SEP", ""))
    return text + template["INSTRUCTION"].format(input=prompt, round=len(history) + 1)


class ChatModel:
    """A Hugging Face model folder, answering prompts in batches (left-padded, greedy)."""

    def __init__(self, path, template_name, system=None, max_new_tokens=64, device=None,
                 adapter=None):
        use_runtime_env()
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer
        from xtuner.utils import PROMPT_TEMPLATE

        self.torch = torch
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        dtype = torch.bfloat16 if self.device == "cuda" else torch.float32
        self.tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=True)
        self.tokenizer.padding_side = "left"
        model = AutoModelForCausalLM.from_pretrained(path, trust_remote_code=True, torch_dtype=dtype)
        if adapter:
            from peft import PeftModel

            model = PeftModel.from_pretrained(model, adapter)
        self.model = model.to(self.device).eval()
        self.context = getattr(model.config, "max_position_embeddings", None)
        self.template_name, self.system = template_name, system
        self.max_new_tokens = max_new_tokens
        stop_words = PROMPT_TEMPLATE[template_name].get("STOP_WORDS", [])
        unknown = self.tokenizer.unk_token_id
        ids = [self.tokenizer.convert_tokens_to_ids(w) for w in stop_words]
        self.stop_ids = list(dict.fromkeys(
            i for i in [self.tokenizer.eos_token_id, *ids] if isinstance(i, int) and i != unknown))
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token_id = self.stop_ids[0]

    def answers(self, prompts, batch_size=16, on_batch=None):
        """Greedy answers to `prompts`, in order."""
        return self.complete([build_prompt(self.template_name, self.system, p) for p in prompts],
                             batch_size, on_batch)

    def complete(self, texts, batch_size=16, on_batch=None):
        """Greedy continuations of prompt texts (build_prompt's), in order; `on_batch(done,
        total)` after each batch."""
        replies = []
        for start in range(0, len(texts), batch_size):
            replies += self._batch(texts[start:start + batch_size])
            if on_batch:
                on_batch(len(replies), len(texts))
        return replies

    def answer(self, prompt):
        return self.answers([prompt])[0]

    def stream(self, prompt, history=(), write=None):
        """The greedy answer to one more turn, handed to `write` piece by piece as it is made.
        Returns (answer, stats): seconds to the first piece, new tokens, tokens per second."""
        from transformers import TextStreamer

        inputs = self.tokenizer(build_prompt(self.template_name, self.system, prompt, history),
                                return_tensors="pt", add_special_tokens=True).to(self.device)
        inputs.pop("token_type_ids", None)
        length = inputs["input_ids"].shape[1]
        room = self.context - self.max_new_tokens if self.context else None
        if room is not None and length > room:
            raise PromptTooLong(length, room)
        started, first = time.time(), []

        class Pieces(TextStreamer):
            def on_finalized_text(self, text, stream_end=False):
                if text:
                    first or first.append(time.time() - started)
                    if write:
                        write(text)

        with self.torch.no_grad():
            output = self.model.generate(
                **inputs, max_new_tokens=self.max_new_tokens, do_sample=False,
                eos_token_id=self.stop_ids, pad_token_id=self.tokenizer.pad_token_id,
                temperature=None, top_p=None, top_k=None,
                streamer=Pieces(self.tokenizer, skip_prompt=True, skip_special_tokens=True))
        row = output[0, length:].tolist()
        cut = next((n for n, token in enumerate(row) if token in self.stop_ids), len(row))
        seconds = time.time() - started
        stats = {"first_token_s": round(first[0] if first else seconds, 3), "new_tokens": cut,
                 "tokens_per_s": round(cut / seconds, 1) if seconds else None}
        return self.tokenizer.decode(row[:cut], skip_special_tokens=True).strip(), stats

    def _batch(self, texts):
        inputs = self.tokenizer(texts, return_tensors="pt", padding=True,
                                add_special_tokens=True).to(self.device)
        inputs.pop("token_type_ids", None)
        with self.torch.no_grad():
            output = self.model.generate(
                **inputs, max_new_tokens=self.max_new_tokens, do_sample=False,
                eos_token_id=self.stop_ids, pad_token_id=self.tokenizer.pad_token_id,
                temperature=None, top_p=None, top_k=None)
        replies = []
        for row in output[:, inputs["input_ids"].shape[1]:].tolist():
            cut = next((n for n, token in enumerate(row) if token in self.stop_ids), len(row))
            replies.append(self.tokenizer.decode(row[:cut], skip_special_tokens=True).strip())
        return replies


class PromptTooLong(ChatError):
    def __init__(self, length, room):
        super().__init__(f"the prompt is {length} tokens with the conversation before it, this model "
                         f"takes at most {room} (its context less the tokens kept for the answer): "
                         "ask something shorter")
        self.length, self.room = length, room


def check_model_folder(folder):
    """A folder transformers can load: config, weights and a tokenizer, else what is missing."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ChatError(f"{folder} is not a folder")
    missing = [what for what, found in (
        ("config.json", (folder / "config.json").is_file()),
        ("weights (*.safetensors or pytorch_model*.bin)",
         any(any(folder.glob(p)) for p in WEIGHTS)),
        ("a tokenizer (tokenizer.json, tokenizer.model or vocab.json)",
         any((folder / f).is_file() for f in TOKENIZER_FILES))) if not found]
    if missing:
        raise ChatError(f"{folder} is not a complete model folder: it lacks {' and '.join(missing)} "
                        "(half-written or moved?); point at a merged model or a run folder")
    return folder


def published_set(target):
    """The published set of a run folder (or the set itself), or None when `target` is no run."""
    target = Path(target)
    for candidate in (target, target / "published"):
        if (candidate / "report" / "manifest.json").is_file():
            return candidate
    if (target / "build").is_dir():
        raise ChatError(f"{target} has no published set yet: its run has not finished (run the "
                        "recipe again; a set appears only when every step succeeded)")
    return None


def resolve(target, base=False, template=None, system=None):
    """(model folder, template, system, name) for a run folder or a model folder."""
    if not Path(target).exists():
        raise ChatError(f"{target} does not exist: give a run folder (results/<run>) or a model folder")
    found = published_set(target)
    if found is None:
        if base:
            raise ChatError("--base needs a run folder (it reads the base model from its manifest)")
        if not template:
            raise ChatError(f"{target} is a model folder: name its prompt template with --template "
                            "(e.g. internlm2_chat)")
        return check_model_folder(target), template, system, Path(target).name
    answers = json.loads((found / "eval" / "answers.json").read_text(encoding="utf-8"))
    manifest = json.loads((found / "report" / "manifest.json").read_text(encoding="utf-8"))
    model = found / "merged"
    if base:
        recorded = Path(manifest["base_model"])
        # a relative path is relative to the working folder the recipe ran in (results_dir's parent)
        model = next((p for p in (recorded, found.resolve().parents[2] / recorded) if p.is_dir()),
                     recorded)
    return (check_model_folder(model), template or answers["prompt_template"],
            system if system is not None else answers.get("system"),
            f"{manifest.get('run_name', Path(target).name)} ({'base' if base else 'fine-tuned'})")


def say_stats(numbers):
    print(f"[xtuner-recipe] first token {numbers['first_token_s']} s, {numbers['new_tokens']} "
          f"tokens, {numbers['tokens_per_s']} tokens/s", file=sys.stderr)


def write_now(text):
    sys.stdout.write(text)
    sys.stdout.flush()  # a piece of an answer has no newline: show it as it comes


def converse(chat, read=input, write=write_now, stats=False):
    """The interactive loop: one streamed answer per line until /exit or end of input."""
    history = []
    while True:
        try:
            prompt = read(">>> " if sys.stdin.isatty() else "").strip()
        except (EOFError, KeyboardInterrupt):
            write("\n")
            return
        if prompt in ("/exit", "/quit"):
            return
        if prompt == "/reset":
            history = []
            print("[xtuner-recipe] conversation forgotten", file=sys.stderr)
            continue
        if not prompt:
            print("[xtuner-recipe] empty prompt: type a question, /reset or /exit",
                  file=sys.stderr)
            continue
        while True:
            try:
                answer, numbers = chat.stream(prompt, history, write)
                break
            except PromptTooLong as error:
                if not history:  # the prompt alone does not fit: say so, keep chatting
                    print(f"[xtuner-recipe] {error}", file=sys.stderr)
                    answer = None
                    break
                history = history[1:]  # forget the oldest turn and try again
            except KeyboardInterrupt:
                print("\n[xtuner-recipe] answer stopped", file=sys.stderr)
                answer = None
                break
        write("\n")
        if answer is not None:
            history.append((prompt, answer))
            if stats:
                say_stats(numbers)


def check_stack():
    """The chat needs the recipe's Python packages: a Python without them (the system's, not
    .venv's) gets the fix, not a traceback."""
    try:
        import torch  # noqa: F401
        import transformers  # noqa: F401
    except ImportError as error:
        raise ChatError(
            f"{error.name} is not installed for {sys.executable}: run `make install`, then "
            "`.venv/bin/python -m xtuner_recipe.chat ...` (or `export PATH=$PWD/.venv/bin:$PATH`"
            " once per shell)") from None


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n\n", 1)[1])
    parser.add_argument("target", help="a run folder (results/<run>) or a model folder")
    parser.add_argument("--prompt", help="answer this one prompt, then exit")
    parser.add_argument("--base", action="store_true", help="the run's model before fine-tuning")
    parser.add_argument("--adapter", help="an adapter folder (hf_adapter) applied to the model")
    parser.add_argument("--template", help="xtuner prompt template (default: the run's)")
    parser.add_argument("--system", help="system line (default: the run's)")
    parser.add_argument("--max-new-tokens", type=int, default=256)
    parser.add_argument("--stats", action="store_true",
                        help="time to first token and tokens/s after each answer (stderr)")
    args = parser.parse_args(argv)
    try:
        check_stack()
        if args.prompt is not None and not args.prompt.strip():
            raise ChatError("--prompt is empty: give the question to answer")
        model, template, system, name = resolve(args.target, args.base, args.template, args.system)
        if args.adapter:
            check_adapter = Path(args.adapter) / "adapter_config.json"
            if not check_adapter.is_file():
                raise ChatError(f"{args.adapter} is not an adapter folder (no adapter_config.json)")
        loaded = time.time()
        chat = ChatModel(model, template, system, args.max_new_tokens, adapter=args.adapter)
        print(f"[xtuner-recipe] {name}: {model}{' + ' + args.adapter if args.adapter else ''}, "
              f"template {template}, loaded in {time.time() - loaded:.1f} s", file=sys.stderr)
        if args.prompt is not None:
            answer, numbers = chat.stream(args.prompt.strip(), write=write_now)
            sys.stdout.write("\n")
            if args.stats:
                say_stats(numbers)
            return
        print("[xtuner-recipe] /reset forgets the conversation, /exit or Ctrl-D quits",
              file=sys.stderr)
        converse(chat, stats=args.stats)
    except ChatError as error:
        print(f"[xtuner-recipe] {error}", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
