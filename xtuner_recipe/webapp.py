"""The web demo: pick a finished run, ask its fine-tuned model and its base model the same question
side by side (answers stream in), and see the report's verdict, figures and loss curve.

    python -m xtuner_recipe.webapp [RESULTS_DIR] [--run NAME] [--port 8501] [--host 127.0.0.1]

It binds to localhost unless --host says otherwise, needs no network, and loads each model once
(shared by every browser tab; one answer at a time per model, the others wait their turn).
"""

import argparse
import json
import os
import queue
import sys
import threading
from pathlib import Path

from xtuner_recipe.chat import ChatError, ChatModel, published_set, resolve
from xtuner_recipe.report import verdict_lines

MAX_NEW_TOKENS = 96
MODELS = ("fine-tuned", "base")


def find_runs(results_dir):
    """{run name: published set or None (not finished)} for the run folders under results_dir."""
    found = {}
    for folder in sorted(Path(results_dir).iterdir()) if Path(results_dir).is_dir() else []:
        if (folder / "build").is_dir() or (folder / "published").exists():
            try:
                found[folder.name] = published_set(folder)
            except ChatError:
                found[folder.name] = None
    return found


def answer_pieces(chat, lock, prompt):
    """The pieces of one streamed answer; generation runs in a thread, one at a time per model."""
    pieces, outcome = queue.Queue(), {}

    def work():
        with lock:
            try:
                outcome["answer"], outcome["stats"] = chat.stream(prompt, write=pieces.put)
            except ChatError as error:
                outcome["error"] = str(error)
            finally:
                pieces.put(None)

    threading.Thread(target=work, daemon=True).start()
    while (piece := pieces.get()) is not None:
        yield piece
    if "error" in outcome:
        yield f"\n\n(not answered: {outcome['error']})"


def score_table(report):
    """measure -> base and fine-tuned figure: the report's scores, then each multiple-choice
    task's accuracy with its standard error."""
    table = {group: {"base": f"{s['base']:.2f}", "fine-tuned": f"{s['merged']:.2f}"}
             for group, s in report["scores"].items()}
    for task, row in report.get("multiple_choice", {}).items():
        table[task] = {label: f"{row[m]['acc']:.3f} ± {row[m]['stderr'] or 0:.3f}"
                       for label, m in (("base", "base"), ("fine-tuned", "merged"))}
    return table


def page(results_dir, first_run=None):
    import streamlit as st

    @st.cache_resource(show_spinner="Loading the model (once for every tab)...")
    def load(model, template, system):
        return ChatModel(model, template, system, MAX_NEW_TOKENS), threading.Lock()

    st.set_page_config(page_title="xtuner-recipe: your assistant", layout="wide")
    st.title("Your fine-tuned assistant")
    runs = find_runs(results_dir)
    finished = {name: path for name, path in runs.items() if path}
    if not finished:
        st.warning(f"No finished run under {results_dir}: run the recipe first (`make run`)."
                   + (f" Not finished yet: {', '.join(runs)}." if runs else ""))
        return
    names = sorted(finished)
    name = st.sidebar.selectbox("Run", names, key="run",
                                index=names.index(first_run) if first_run in names else 0)
    published = finished[name]
    pending = sorted(set(runs) - set(finished))
    if pending:
        st.sidebar.caption(f"Not finished yet: {', '.join(pending)}")
    report = json.loads((published / "report" / "report.json").read_text(encoding="utf-8"))
    st.caption(f"Run: {name}")
    st.sidebar.subheader("Verdict")
    st.sidebar.markdown("\n".join(verdict_lines(report["verdict"])))
    curve = published / "report" / "loss_curve.png"
    if curve.is_file():
        st.sidebar.image(str(curve), caption="training loss")
    st.sidebar.caption(f"Full report: {published / 'report' / 'report.md'}")
    # in the page, not the sidebar: a table there is cut at the sidebar's width
    with st.expander("Scores (the report says what each counts)"):
        st.table(score_table(report))

    try:
        chats = {label: load(*resolve(published, base=(label == "base"))[:3]) for label in MODELS}
    except ChatError as error:
        st.error(str(error))
        return
    history = st.session_state.setdefault(("history", name), [])
    for turn, (asked, answers) in enumerate(history):
        with st.chat_message("user"):
            st.write(asked)
        columns = st.columns(len(MODELS))
        for column, label in zip(columns, MODELS):
            with column.container(key=f"answer-{label}-{turn}"):
                st.caption(label)
                st.write(answers[label])
    prompt = st.chat_input("Ask both models the same question")
    if prompt is None:
        return
    if not prompt.strip():
        st.error("Type a question first.")
        return
    with st.chat_message("user"):
        st.write(prompt)
    answers = {}
    columns = st.columns(len(MODELS))
    for column, label in zip(columns, MODELS):
        with column.container(key=f"answer-{label}-{len(history)}"):
            st.caption(label)
            answers[label] = st.write_stream(answer_pieces(*chats[label], prompt.strip()))
    history.append((prompt, {label: str(text) for label, text in answers.items()}))
    st.container(key=f"answered-{len(history) - 1}").caption("both answered")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results_dir", nargs="?", default="results")
    parser.add_argument("--run", help="the run shown first (default: the first by name)")
    parser.add_argument("--port", type=int, default=8501)
    parser.add_argument("--host", default="127.0.0.1", help="0.0.0.0 to serve other machines")
    args = parser.parse_args(argv)
    if not Path(args.results_dir).is_dir():
        raise SystemExit(f"[xtuner-recipe] {args.results_dir} is not a folder: give the results_dir "
                         "of your runs")
    command = [sys.executable, "-m", "streamlit", "run", __file__,
               "--server.address", args.host, "--server.port", str(args.port),
               "--server.headless", "true", "--browser.gatherUsageStats", "false",
               "--server.fileWatcherType", "none", "--client.toolbarMode", "viewer",
               "--", str(Path(args.results_dir).resolve()), *([args.run] if args.run else [])]
    print(f"[xtuner-recipe] serving {args.results_dir} on http://{args.host}:{args.port}",
          file=sys.stderr)
    os.execv(sys.executable, command)  # the same process: stopping this PID stops the server


def running_in_streamlit():
    try:
        from streamlit.runtime import exists
    except ImportError:
        return False
    return exists()


if __name__ == "__main__":
    if running_in_streamlit():
        page(*sys.argv[1:3])
    else:
        main()
