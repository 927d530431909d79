"""A headless Chromium driven by selenium, remote-controlled over stdin/stdout.

Run by the dashboard's lab test on the lab's ``client`` machine (``lab.exec_argv``), where
the nodes' addresses are reachable: one JSON command per line in, one JSON answer per line
out.  Commands::

    {"op": "get", "url": "http://198.18.0.1:9694/"}
    {"op": "type", "css": "#password", "text": "..."}
    {"op": "click", "css": "#submit"}
    {"op": "js", "script": "return document.title"}        -> {"ok": true, "value": ...}
    {"op": "wait", "js": "<expression>", "timeout": 10}     -> {"ok": true, "seconds": 1.2}
    {"op": "quit"}

A command that fails answers ``{"ok": false, "error": "...", "url": ..., "text": <the
page's text>}``.  Chromium runs with a fresh profile in the directory given (removed at the
end), as root without its sandbox, and without any of its background connections (the
machine has no internet: they would only fail).  Standalone on purpose (stdlib and selenium
only): it runs by path, inside the client machine's namespaces.
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import sys
import time
from typing import Any

from selenium import webdriver
from selenium.common.exceptions import TimeoutException, WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--disable-extensions", "--window-size=1280,1600"]


def start(profile: str) -> webdriver.Chrome:
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in [*FLAGS, f"--user-data-dir={profile}/chromium"]:
        options.add_argument(flag)
    service = Service(CHROMEDRIVER, log_output=f"{profile}/chromedriver.log")
    driver = webdriver.Chrome(service=service, options=options)
    driver.set_page_load_timeout(30)
    return driver


def answer(driver: webdriver.Chrome, cmd: dict[str, Any]) -> dict[str, Any]:
    op = cmd.get("op")
    if op == "get":
        driver.get(cmd["url"])
        return {"ok": True, "url": driver.current_url}
    if op == "type":
        field = driver.find_element(By.CSS_SELECTOR, cmd["css"])
        field.clear()
        field.send_keys(cmd["text"])
        return {"ok": True}
    if op == "click":
        driver.find_element(By.CSS_SELECTOR, cmd["css"]).click()
        return {"ok": True}
    if op == "js":
        return {"ok": True, "value": driver.execute_script(cmd["script"])}
    if op == "wait":
        t0 = time.monotonic()
        WebDriverWait(driver, float(cmd.get("timeout", 10)), poll_frequency=0.1).until(
            lambda d: d.execute_script("return !!(" + cmd["js"] + ")"))
        return {"ok": True, "seconds": round(time.monotonic() - t0, 3)}
    if op == "screenshot":
        driver.save_screenshot(cmd["path"])
        return {"ok": True}
    return {"ok": False, "error": f"unknown op {op!r}"}


def page_text(driver: webdriver.Chrome) -> str:
    try:
        return str(driver.execute_script("return document.body ? document.body.innerText : ''"))
    except WebDriverException:
        return ""


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--profile", required=True, help="a fresh directory (removed at the end)")
    args = ap.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # so that `finally` runs
    driver = None
    try:
        driver = start(args.profile)
        print(json.dumps({"ok": True, "ready": True}), flush=True)
        for line in sys.stdin:
            cmd = json.loads(line)
            if cmd.get("op") == "quit":
                break
            try:
                reply = answer(driver, cmd)
            except (TimeoutException, WebDriverException, KeyError) as exc:
                reply = {"ok": False, "error": f"{type(exc).__name__}: {exc}".strip()[:2000],
                         "url": driver.current_url, "text": page_text(driver)[:4000]}
            print(json.dumps(reply), flush=True)
    finally:
        if driver is not None:
            driver.quit()  # chromedriver and every Chromium process it started
        shutil.rmtree(args.profile, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
