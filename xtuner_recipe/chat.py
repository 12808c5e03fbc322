"""Talk to a model the way it was trained: xtuner's prompt template, greedy decoding, answers cut
at the template's stop words. The evaluation and the replay data use it.
"""

from xtuner_recipe import use_runtime_env


def build_prompt(template_name, system, prompt):
    """The text the model sees for one user turn (xtuner's PROMPT_TEMPLATE)."""
    from xtuner.utils import PROMPT_TEMPLATE

    template = PROMPT_TEMPLATE[template_name]
    text = template.get("SYSTEM", "{system}").format(system=system) if system else ""
    return text + template["INSTRUCTION"].format(input=prompt, round=1)


class ChatModel:
    """A Hugging Face model folder, answering prompts in batches (left-padded, greedy)."""

    def __init__(self, path, template_name, system=None, max_new_tokens=64, device=None):
        use_runtime_env()
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer
        from xtuner.utils import PROMPT_TEMPLATE

        self.torch = torch
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        dtype = torch.bfloat16 if self.device == "cuda" else torch.float32
        self.tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=True)
        self.tokenizer.padding_side = "left"
        self.model = AutoModelForCausalLM.from_pretrained(
            path, trust_remote_code=True, torch_dtype=dtype).to(self.device).eval()
        self.template_name, self.system = template_name, system
        self.max_new_tokens = max_new_tokens
        stop_words = PROMPT_TEMPLATE[template_name].get("STOP_WORDS", [])
        unknown = self.tokenizer.unk_token_id
        ids = [self.tokenizer.convert_tokens_to_ids(w) for w in stop_words]
        self.stop_ids = list(dict.fromkeys(
            i for i in [self.tokenizer.eos_token_id, *ids] if isinstance(i, int) and i != unknown))
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token_id = self.stop_ids[0]

    def answers(self, prompts, batch_size=16):
        """Greedy answers to `prompts`, in order."""
        replies = []
        for start in range(0, len(prompts), batch_size):
            replies += self._batch(prompts[start:start + batch_size])
        return replies

    def answer(self, prompt):
        return self.answers([prompt])[0]

    def _batch(self, prompts):
        texts = [build_prompt(self.template_name, self.system, p) for p in prompts]
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
