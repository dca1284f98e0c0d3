"""The web UI tested as people use it: the Gradio app on localhost driven by headless Chromium (Playwright),
plus gradio_client calls of its API, including 20 concurrent conversations."""

from __future__ import annotations

import json
import os
import shutil
import socket
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from ask_oom.assistant.settings import Settings

SEEDS = Path(__file__).resolve().parents[1] / "fixtures" / "seeds"
DOCS = Path(__file__).resolve().parents[2] / "docs"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def web_app(tmp_path_factory):
    """The app on a free loopback port, and the typed actions its conversation performed (session id, action)."""
    from ask_oom.ui.serve import make_conversation
    from ask_oom.ui.web import build_app

    settings = Settings(session_db=tmp_path_factory.mktemp("web") / "sessions.sqlite3", max_upload_bytes=1024 * 1024)
    conversation = make_conversation(settings)
    acts: list[tuple[str, str]] = []
    act = conversation.act

    def recorded_act(session_id, action):
        acts.append((session_id, str(action)))
        return act(session_id, action)

    conversation.act = recorded_act
    demo = build_app(conversation, settings, can_probe=False)
    port = _free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True,
                max_file_size=settings.max_upload_bytes)
    yield f"http://127.0.0.1:{port}/", acts
    demo.close()


@pytest.fixture
def web(web_app):
    return web_app[0]


@contextmanager
def _chromium(url: str, **page_options):
    """Headless Chromium on the web UI at `url`, its input box ready: yields (browser, page); closes the browser."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000}, **page_options)
            page.goto(url, wait_until="domcontentloaded")
            page.wait_for_selector("#input textarea", timeout=60_000)
            yield browser, page
        finally:
            browser.close()


def _shot(page, name: str, tmp_path: Path) -> None:
    """Screenshots go to docs/ when ASK_OOM_SCREENSHOTS=1 (to refresh the README's pictures), else to tmp."""
    target = DOCS if os.environ.get("ASK_OOM_SCREENSHOTS") == "1" else tmp_path
    target.mkdir(exist_ok=True)
    page.screenshot(path=str(target / name), full_page=True)


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (.ci/run installs it)")
def test_browser_paste_log_upload_config_see_diagnosis_chart_and_download(web, tmp_path):
    from playwright.sync_api import expect

    log = (SEEDS / "moe-llava-phi2" / "train.log").read_text(encoding="utf-8")
    config = SEEDS / "moe-llava-phi2" / "finetune_moe.sh"
    with _chromium(web, accept_downloads=True) as (_, page):
        _shot(page, "web-empty.png", tmp_path)
        box = page.locator("#input textarea")
        box.fill(log)
        page.locator("#input input[type=file]").set_input_files(str(config))
        expect(page.locator("#input [aria-label='File thumbnail']")).to_have_count(1, timeout=20_000)
        page.locator("#input button.submit-button, #input button:has-text('Diagnose')").first.click()
        chat = page.locator("#chat")
        expect(chat).to_contain_text("ranked causes", timeout=120_000)
        expect(chat).to_contain_text("batch_too_large")
        expect(chat).to_contain_text("per_device_train_batch_size")
        # the before/after chart: two stacked bars and the GPU capacity line
        expect(page.locator("#chart svg rect.bar-before").first).to_be_visible()
        expect(page.locator("#chart svg rect.bar-after").first).to_be_attached()
        expect(page.locator("#chart svg line.capacity")).to_be_attached()
        expect(page.locator("#fixed-config")).to_contain_text("gradient_accumulation_steps")
        _shot(page, "web-diagnosis.png", tmp_path)
        with page.expect_download(timeout=20_000) as dl:
            page.locator("#download").click()
        saved = tmp_path / "downloaded.sh"
        dl.value.save_as(saved)
        fixed = saved.read_text()
        assert "--per_device_train_batch_size 4" in fixed and "--gradient_accumulation_steps 4" in fixed
        page.get_by_role("tab", name="Similar cases").click()
        expect(page.locator("#cases")).to_contain_text("score")
        _shot(page, "web-similar-cases.png", tmp_path)
        # a follow-up in the same conversation
        box.fill("why?")
        page.locator("#input button.submit-button, #input button:has-text('Diagnose')").first.click()
        expect(chat.locator(".message").last).not_to_be_empty(timeout=60_000)


def test_api_chat_with_uploaded_config(web, tmp_path):
    from gradio_client import Client, handle_file

    client = Client(web, verbose=False)
    log = (SEEDS / "moe-llava-phi2" / "train.log").read_text(encoding="utf-8")
    result = client.predict({"text": log, "files": [handle_file(str(SEEDS / "moe-llava-phi2" / "finetune_moe.sh"))]},
                            api_name="/chat")
    history, _box, chart, fixed, diff, download, cases = result[:7]
    answer = history[-1]["content"]
    answer = answer if isinstance(answer, str) else str(answer)
    assert "per_device_train_batch_size" in answer
    assert "bar-before" in chart
    assert "--gradient_accumulation_steps 4" in (fixed if isinstance(fixed, str) else fixed.get("value", ""))
    assert "-" in diff and "+" in diff


def test_uploaded_snapshots_chart_held_against_predicted(web, tmp_path):
    """Memory snapshots dropped into the chat (one per rank) are read as plain data, reconciled with the estimate, and
    charted: the prediction beside what each rank held; a malicious pickle is refused with one line and runs nothing."""
    import os
    import pickle
    import sys

    from gradio_client import Client, handle_file

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
    from test_snapshot_builders import dumps, llama_snapshot

    client = Client(web, verbose=False)
    log = (SEEDS / "moe-llava-phi2" / "train.log").read_text(encoding="utf-8")
    files = [handle_file(str(SEEDS / "moe-llava-phi2" / "finetune_moe.sh"))]
    for rank in (0, 1):
        path = tmp_path / f"rank{rank}.pickle"
        path.write_bytes(dumps(llama_snapshot(extra_activations=rank * 4 * 2**30)))
        files.append(handle_file(str(path)))
    result = client.predict({"text": log, "files": files}, api_name="/chat")
    history, _box, chart = result[:3]
    answer = str(history[-1]["content"])
    assert "Memory snapshots" in answer and "rank 1" in answer
    assert "bar-predicted" in chart and "held r0" in chart and "held r1" in chart

    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    evil = tmp_path / "rank2.pickle"
    evil.write_bytes(pickle.dumps({"segments": [Evil()]}))
    result = Client(web, verbose=False).predict({"text": "", "files": [handle_file(str(evil))]}, api_name="/chat")
    assert "refused" in str(result[0][-1]["content"]) and not marker.exists()


def test_a_paste_in_the_web_ui_diagnoses_like_the_two_files_on_the_command_line(web_app, tmp_path, capsys):
    """Log and config pasted in one message give what `ask-oom diagnose LOG --config FILE` gives: the same primary
    cause leads the answer, and the fixed-config panel holds the same fixed config."""
    import json

    from gradio_client import Client

    from ask_oom.ui.cli import main

    web = web_app[0]
    for seed, config_name in (("moe-llava-phi2", "finetune_moe.sh"), ("deepke-llama2-13b", None)):
        exp = json.loads((SEEDS / seed / "expected.json").read_text(encoding="utf-8"))
        config_path = SEEDS / seed / (config_name or exp["config"])
        log = (SEEDS / seed / "train.log").read_text(encoding="utf-8")
        assert main(["diagnose", str(SEEDS / seed / "train.log"), "--config", str(config_path), "--json",
                     "--allow-symlinks"]) == 0
        cli = json.loads(capsys.readouterr().out)
        paste = f"{log}\n```\n{config_path.read_text(encoding='utf-8')}```\n"
        history, _box, _chart, fixed = Client(web, verbose=False).predict({"text": paste, "files": []}, api_name="/chat")[:4]
        answer = str(history[-1]["content"])
        fixed = fixed if isinstance(fixed, str) else fixed.get("value", "")
        assert f"**{cli['primary_cause']}**" in answer.split("## Why", 1)[1].split("\n2.", 1)[0], seed
        assert fixed.rstrip("\n") == (cli["fixed_config"] or "").rstrip("\n"), seed   # the Code panel drops the last newline


def test_a_switched_deepspeed_config_is_downloadable_under_the_name_the_fix_points_at(web, tmp_path):
    """When the fix changes the DeepSpeed config, the new file is a download of its own, named as the fixed config
    refers to it (the Qwen2.5-32B seed: offload settings change in ds_z3_offload_config.json)."""
    import json

    from gradio_client import Client, handle_file

    seed = SEEDS / "qwen2.5-32b"
    client = Client(web, verbose=False)
    files = [handle_file(str(seed / "train.yaml")), handle_file(str(seed / "ds_z3_offload_config.json"))]
    result = client.predict({"text": (seed / "train.log").read_text(encoding="utf-8") + "\nwe have one H100 96GB",
                             "files": files}, api_name="/chat")
    ds_download = result[-1]
    path = ds_download if isinstance(ds_download, str) else (ds_download or {}).get("value") or ds_download
    assert path, result[-1]
    path = Path(path if isinstance(path, str) else path.get("path"))
    fixed = result[3] if isinstance(result[3], str) else result[3].get("value", "")
    assert f"deepspeed: {path.name}" in fixed or path.name in fixed
    assert "zero_optimization" in json.loads(path.read_text(encoding="utf-8"))


def test_upload_of_disallowed_type_is_refused(web, tmp_path):
    from gradio_client import Client, handle_file

    bad = tmp_path / "payload.exe"
    bad.write_bytes(b"MZ\x00\x00")
    client = Client(web, verbose=False)
    try:
        result = client.predict({"text": "see file", "files": [handle_file(str(bad))]}, api_name="/chat")
    except Exception as exc:  # noqa: BLE001 - gradio may reject the type before our handler runs
        assert "payload.exe" in str(exc) or "type" in str(exc).lower() or "error" in str(exc).lower()
        return
    assert "unsupported file type" in str(result[0][-1]["content"])


def test_twenty_concurrent_browser_sessions_do_not_mix(web):
    """Each client is its own browser session: every answer must carry its own request's number."""
    from gradio_client import Client

    template = ("torch.OutOfMemoryError: CUDA out of memory. Tried to allocate {n}.00 MiB. GPU 0 has a total capacity "
                "of 79.18 GiB of which 10.00 MiB is free. Of the allocated memory 77.00 GiB is allocated by PyTorch, "
                "and 1.20 GiB is reserved by PyTorch but unallocated.")

    def converse(i: int) -> tuple[int, str, str]:
        client = Client(web, verbose=False)
        first = client.predict({"text": template.format(n=200 + i), "files": []}, api_name="/chat")
        second = client.predict({"text": "show the diff again", "files": []}, api_name="/chat")
        return i, str(first[0][-1]["content"]), str(second[0])

    with ThreadPoolExecutor(max_workers=20) as pool:
        results = list(pool.map(converse, range(20)))
    for i, first, history in results:
        assert f"{200 + i}.00 MiB" in first
        others = [f"{200 + j}.00 MiB" for j in range(20) if j != i]
        assert not any(o in history for o in others), f"session {i} saw another session's log"


def browser_event(web: str, session_hash: str, elem_id: str, event: str, data: list, event_data: dict | None = None) -> list:
    """Fire a component's event as the browser does (queue/join + the SSE stream) and return the handler's outputs.
    Button and like events are not client API endpoints, so this speaks the page's own protocol."""
    config = httpx.get(web + "config", timeout=10).json()
    component = next(c["id"] for c in config["components"] if c.get("props", {}).get("elem_id") == elem_id)
    fn_index = next(d["id"] for d in config["dependencies"] if [component, event] in d["targets"])
    joined = httpx.post(web + "gradio_api/queue/join", timeout=10,
                        json={"data": data, "fn_index": fn_index, "trigger_id": component, "session_hash": session_hash,
                              "event_data": event_data})
    return _queue_answer(web, joined, session_hash, f"the {event} of #{elem_id}")


def last_answer(outputs: list) -> str:
    """The text of the last chat message in a handler's outputs."""
    content = outputs[0][-1]["content"]
    return content if isinstance(content, str) else json.dumps(content, ensure_ascii=False)


def test_buttons_and_feedback_in_a_chinese_conversation_answer_in_chinese(web):
    from gradio_client import Client

    client = Client(web, verbose=False)
    log = (SEEDS / "moe-llava-phi2" / "train.log").read_text(encoding="utf-8")
    client.predict({"text": "训练时显存不足，帮我看看：\n" + log, "files": []}, api_name="/chat")
    solved = browser_event(web, client.session_hash, "solved", "click", [[], None])
    assert "已标记为**已解决**" in last_answer(solved) and "Glad it works" not in last_answer(solved)
    assert "为什么？" in json.dumps(solved[8], ensure_ascii=False)       # the follow-ups stay Chinese
    unsolved = browser_event(web, client.session_hash, "unsolved", "click", [[], None])
    assert "已标记为**未解决**" in last_answer(unsolved)
    liked = browser_event(web, client.session_hash, "chat", "like", [[], None], {"index": 1, "value": "x", "liked": True})
    assert "已标记为**已解决**" in last_answer(liked) and len(liked[0]) == 1    # the answer only: no user turn
    disliked = browser_event(web, client.session_hash, "chat", "like", [[], None], {"index": 1, "value": "x", "liked": False})
    assert "已标记为**未解决**" in last_answer(disliked)
    assert "--per_device_train_batch_size" not in json.dumps(disliked[4])  # no config given: no fixed config panel


def test_follow_up_chips_perform_their_actions(web_app):
    """The chip "why?" is the Why action (not text for the parser), and answers as the typed words do."""
    from gradio_client import Client

    web, acts = web_app
    log = (SEEDS / "moe-llava-phi2" / "train.log").read_text(encoding="utf-8")
    typed, clicked = Client(web, verbose=False), Client(web, verbose=False)
    typed.predict({"text": log, "files": []}, api_name="/chat")
    chips = [row[0] for row in clicked.predict({"text": log, "files": []}, api_name="/chat")[7]["samples"]]
    by_words = typed.predict({"text": "why?", "files": []}, api_name="/chat")
    done = len(acts)
    by_chip = browser_event(web, clicked.session_hash, "suggestions", "click", [chips.index("why?"), [], None, None])
    assert [a for _, a in acts[done:]] == ["why"]
    assert last_answer(by_chip) == last_answer(by_words)
    assert by_chip[0][-2]["content"] == by_words[0][-2]["content"]          # the user's turn shows the chip's words
    chips = [row[0] for row in by_chip[8]["samples"]]
    free_text = next(i for i, c in enumerate(chips) if c not in ("why?", "show the diff again", "it worked", "still OOM"))
    done = len(acts)
    answer = browser_event(web, clicked.session_hash, "suggestions", "click", [free_text, [], None, None])
    assert acts[done:] == [] and chips[free_text] in json.dumps(answer[0][-2]["content"])  # a free-text chip is still text


def _serve(db: Path, port: int):
    """The app on `port` over the session database `db` (a fresh Conversation, as a restarted server has)."""
    from ask_oom.ui.serve import make_conversation
    from ask_oom.ui.web import build_app

    settings = Settings(session_db=db, max_upload_bytes=1024 * 1024)
    demo = build_app(make_conversation(settings), settings, can_probe=False)
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True,
                max_file_size=settings.max_upload_bytes)
    return demo


def page_load(web: str, stored_session: str | None, query: str = "", session_hash: str | None = None) -> list:
    """The page-load event as the browser fires it: the id from browser storage as its input, the page's query
    string on the join request."""
    config = httpx.get(web + "config", timeout=10).json()
    fn_index = next(d["id"] for d in config["dependencies"] if any(t[1] == "load" for t in d["targets"]))
    session_hash = session_hash or os.urandom(6).hex()
    joined = httpx.post(web + "gradio_api/queue/join" + query, timeout=10,
                        json={"data": [stored_session], "fn_index": fn_index, "trigger_id": None, "session_hash": session_hash})
    return _queue_answer(web, joined, session_hash, "the page load")


def test_session_survives_a_reload_and_a_server_restart(tmp_path):
    """A new client with the same session id (from browser storage or ?session=) gets the conversation back, also
    from a server restarted on the same database; the conversation then goes on in that session."""
    from gradio_client import Client

    db, port = tmp_path / "sessions.sqlite3", _free_port()
    web = f"http://127.0.0.1:{port}/"
    log = (SEEDS / "moe-llava-phi2" / "train.log").read_text(encoding="utf-8")
    demo = _serve(db, port)
    try:
        first = Client(web, verbose=False).predict({"text": log, "files": []}, api_name="/chat")
        answer = last_answer(first)
        sid = next(s for s in {r[0] for r in __import__("sqlite3").connect(db).execute("SELECT id FROM sessions")})
        reloaded = page_load(web, sid)                           # the id kept in the browser's storage
        assert [m["role"] for m in reloaded[0]] == ["user", "assistant"]
        assert last_answer(reloaded)[:200] == answer[:200]
        assert page_load(web, None)[0] == []                     # no id: a fresh page
        assert page_load(web, "no-such-session")[0] == []
        assert page_load(web, None, "?session=slack:C1:1700000000.000100")[0] == []   # only the web UI's own ids
    finally:
        demo.close()
    demo = _serve(db, port)                                      # restarted on the same database
    try:
        page = os.urandom(6).hex()
        restored = page_load(web, None, f"?session={sid}", session_hash=page)   # the id in the URL
        assert len(restored[0]) == 2 and last_answer(restored)[:200] == answer[:200]
        assert "bar-before" in restored[3]                       # the panels come back too
        assert "why?" in json.dumps(restored[8])
        # the conversation goes on in the same session: "why?" is answered from the stored diagnosis
        why = browser_event(web, page, "input", "submit", [{"text": "why?", "files": []}, restored[0], None])
        assert "**Why:" in last_answer(why) and len(why[0]) == 4
        assert len(page_load(web, sid)[0]) == 4
    finally:
        demo.close()


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (.ci/run installs it)")
def test_browser_reload_and_server_restart_resume_the_conversation(tmp_path):
    """In Chromium: diagnose, reload the page, restart the server (same port and database), reload again; the
    conversation is still there and goes on."""
    from playwright.sync_api import expect

    db, port = tmp_path / "sessions.sqlite3", _free_port()
    web = f"http://127.0.0.1:{port}/"
    log = (SEEDS / "moe-llava-phi2" / "train.log").read_text(encoding="utf-8")
    demo = _serve(db, port)
    try:
        with _chromium(web) as (browser, page):
            submit = page.locator("#input button.submit-button, #input button:has-text('Diagnose')").first
            page.locator("#input textarea").fill(log)
            submit.click()
            chat = page.locator("#chat")
            expect(chat).to_contain_text("ranked causes", timeout=120_000)
            page.wait_for_timeout(1500)                                  # the id reaches the browser's storage
            assert "session=" in page.url                                # ...and this tab's address
            other = browser.new_page()                                   # another tab starts a new conversation
            other.goto(web.rstrip("/") + "/?session=" + "0" * 32, wait_until="domcontentloaded")
            other.wait_for_selector("#input textarea", timeout=60_000)
            other.locator("#input textarea").fill("I have 2x A100 80GB")
            other.locator("#input button.submit-button, #input button:has-text('Diagnose')").first.click()
            other.wait_for_timeout(2500)
            other.close()
            page.reload(wait_until="domcontentloaded")
            expect(chat).to_contain_text("ranked causes", timeout=60_000)
            demo.close()
            demo = _serve(db, port)
            page.reload(wait_until="domcontentloaded")
            expect(chat).to_contain_text("ranked causes", timeout=60_000)
            page.locator("#input textarea").fill("why?")
            submit.click()
            expect(chat).to_contain_text("Why:", timeout=60_000)
    finally:
        demo.close()


def _queue_answer(web: str, joined, session_hash: str, what: str):
    """The output of the queued event `joined`, read from Gradio's event stream."""
    joined.raise_for_status()
    with httpx.stream("GET", web + "gradio_api/queue/data", params={"session_hash": session_hash}, timeout=120) as stream:
        for line in stream.iter_lines():
            msg = json.loads(line[5:]) if line.startswith("data:") else {}
            if msg.get("msg") == "process_completed" and msg.get("event_id") == joined.json()["event_id"]:
                assert msg.get("success", True), msg
                return msg["output"]["data"]
    raise AssertionError(f"no answer to {what}")


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (.ci/run installs it)")
def test_browser_answer_opens_at_its_summary_and_long_lines_stay_inside(web, tmp_path):
    """A long answer opens at its first line (the summary), not at its bottom; a config line of 400 characters wraps
    inside the conversation and the fixed-config panel instead of running past them."""
    from playwright.sync_api import expect

    log = (SEEDS / "moe-llava-phi2" / "train.log").read_text(encoding="utf-8")
    config = (SEEDS / "moe-llava-phi2" / "finetune_moe.sh").read_text(encoding="utf-8")
    long_path = "/data/" + "/".join(f"very_long_directory_name_{i}" for i in range(14)) + "/llava_instruct.json"
    config = config.replace("--deepspeed ./scripts/zero2.json \\", f"--deepspeed ./scripts/zero2.json \\\n    --data_path {long_path} \\")
    assert len(max(config.splitlines(), key=len)) > 400
    path = tmp_path / "finetune_moe.sh"
    path.write_text(config, encoding="utf-8")
    with _chromium(web) as (_, page):
        page.locator("#input textarea").fill(log)
        page.locator("#input input[type=file]").set_input_files(str(path))
        expect(page.locator("#input [aria-label='File thumbnail']")).to_have_count(1, timeout=20_000)
        page.locator("#input button.submit-button, #input button:has-text('Diagnose')").first.click()
        expect(page.locator("#chat")).to_contain_text("ranked causes", timeout=120_000)
        expect(page.locator("#fixed-config")).to_contain_text("very_long_directory_name_13", timeout=20_000)
        page.wait_for_timeout(1000)
        where = page.evaluate("""() => {
            const rows = document.querySelectorAll('#chat .message-row.bot-row');
            const row = rows[rows.length - 1];
            const box = row.closest('[role=log]');
            return {offset: row.getBoundingClientRect().top - box.getBoundingClientRect().top,
                    scrollTop: box.scrollTop, bottom: box.scrollHeight - box.clientHeight, height: row.offsetHeight,
                    boxHeight: box.clientHeight};
        }""")
        assert where["height"] > where["boxHeight"], where          # a long answer: its top and bottom differ
        assert abs(where["offset"]) <= 4, where                      # its first line is at the top of the panel
        assert where["scrollTop"] < where["bottom"] - 100, where     # not scrolled to its end
        expect(page.locator("#chat .message-row.bot-row").last).to_contain_text("CUDA out of memory on GPU")
        wide = page.evaluate("""() => {
            const out = [];
            for (const pre of document.querySelectorAll('#chat pre')) {
                const bubble = pre.closest('.message-row').getBoundingClientRect();
                const r = pre.getBoundingClientRect();
                if (pre.scrollWidth > pre.clientWidth + 1 || r.right > bubble.right + 1)
                    out.push({text: pre.textContent.slice(0, 60), sw: pre.scrollWidth, cw: pre.clientWidth});
            }
            for (const id of ['#fixed-config', '#diff']) {
                const panel = document.querySelector(id);
                const scroller = panel && panel.querySelector('.cm-scroller');
                if (scroller && scroller.offsetParent !== null && scroller.scrollWidth > scroller.clientWidth + 1)
                    out.push({panel: id, sw: scroller.scrollWidth, cw: scroller.clientWidth});
            }
            return out;
        }""")
        assert wide == [], wide
        assert page.evaluate("document.querySelectorAll('#chat pre').length") >= 2   # the diff and the fixed config
        _shot(page, "web-long-lines.png", tmp_path)
