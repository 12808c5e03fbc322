"""Chat with this fine-tuned model: `pip install -r requirements.txt && streamlit run app.py`.

Standalone (copied into a bundle by xtuner_recipe.bundle): it reads the model from ../model and the
prompt template it was trained with from ../prompt_template.json, and streams greedy answers.
"""

import json
import threading
from pathlib import Path

import streamlit as st

BUNDLE = Path(__file__).resolve().parent.parent
TEMPLATE = json.loads((BUNDLE / "prompt_template.json").read_text(encoding="utf-8"))
MAX_NEW_TOKENS = 256


def prompt_text(history, question):
    """The conversation in the training template: system line, earlier turns, the question."""
    t = TEMPLATE
    text = t["SYSTEM"].format(system=t["system"]) if t.get("system") else ""
    for number, (asked, answered) in enumerate(history, start=1):
        text += t["INSTRUCTION"].format(input=asked, round=number) + answered + t["SUFFIX"] + t["SEP"]
    return text + t["INSTRUCTION"].format(input=question, round=len(history) + 1)


@st.cache_resource(show_spinner="Loading the model...")
def load():
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(BUNDLE / "model", trust_remote_code=True)
    model = AutoModelForCausalLM.from_pretrained(BUNDLE / "model", trust_remote_code=True).eval()
    return tokenizer, model, threading.Lock()


def answer(history, question):
    from transformers import TextIteratorStreamer

    tokenizer, model, lock = load()
    ids = tokenizer(prompt_text(history, question), return_tensors="pt")
    ids.pop("token_type_ids", None)
    room = getattr(model.config, "max_position_embeddings", 1 << 30) - MAX_NEW_TOKENS
    if ids["input_ids"].shape[1] > room:
        yield f"(too long: {ids['input_ids'].shape[1]} tokens, this model takes {room}; start over)"
        return
    streamer = TextIteratorStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True)
    with lock:  # one answer at a time; other tabs wait
        worker = threading.Thread(target=model.generate, kwargs=dict(
            **ids, streamer=streamer, max_new_tokens=MAX_NEW_TOKENS, do_sample=False))
        worker.start()
        yield from streamer
        worker.join()


st.set_page_config(page_title=TEMPLATE["title"])
st.title(TEMPLATE["title"])
history = st.session_state.setdefault("history", [])
for asked, answered in history:
    st.chat_message("user").write(asked)
    st.chat_message("assistant").write(answered)
question = st.chat_input("Ask me something")
if question and question.strip():
    st.chat_message("user").write(question)
    with st.chat_message("assistant"):
        reply = st.write_stream(answer(history, question.strip()))
    history.append((question.strip(), str(reply).strip()))
    st.container(key=f"answered-{len(history) - 1}").caption("answered")
