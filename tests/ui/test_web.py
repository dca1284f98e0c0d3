"""The web UI tested as people use it: the Gradio app on localhost driven by headless Chromium (Playwright),
plus gradio_client calls of its API, including 20 concurrent conversations."""

from __future__ import annotations

import os
import shutil
import socket
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

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
def web(tmp_path_factory):
    from ask_oom.ui.serve import make_conversation
    from ask_oom.ui.web import build_app

    settings = Settings(session_db=tmp_path_factory.mktemp("web") / "sessions.sqlite3", max_upload_bytes=1024 * 1024)
    demo = build_app(make_conversation(settings), settings, can_probe=False)
    port = _free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True,
                max_file_size=settings.max_upload_bytes)
    yield f"http://127.0.0.1:{port}/"
    demo.close()


def _shot(page, name: str, tmp_path: Path) -> None:
    """Screenshots go to docs/ when ASK_OOM_SCREENSHOTS=1 (to refresh the README's pictures), else to tmp."""
    target = DOCS if os.environ.get("ASK_OOM_SCREENSHOTS") == "1" else tmp_path
    target.mkdir(exist_ok=True)
    page.screenshot(path=str(target / name), full_page=True)


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (.ci/run installs it)")
def test_browser_paste_log_upload_config_see_diagnosis_chart_and_download(web, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    log = (SEEDS / "moe-llava-phi2" / "train.log").read_text(encoding="utf-8")
    config = SEEDS / "moe-llava-phi2" / "finetune_moe.sh"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        page = browser.new_page(viewport={"width": 1400, "height": 1000}, accept_downloads=True)
        page.goto(web, wait_until="domcontentloaded")
        page.wait_for_selector("#input textarea", timeout=60_000)
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
        browser.close()


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
