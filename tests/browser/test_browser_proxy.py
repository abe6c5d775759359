"""The browser suite's CSRF cases once more, with nginx terminating TLS in front of Flowlet.

Flowlet serves plain HTTP and trusts only nginx (127.0.0.1); Chromium sees
https://api.example.test:PORT. The CSRF own-origin check, the Secure cookie and HSTS must work
from the scheme and host the browser used, which only the forwarding headers carry.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from browser.test_browser_security import (CSRF_ERROR, Api, _cli, _run_seed_snippet, csrf_token,
                                           open_page, post_note, workspace_files)
from conftest import free_port, make_workspace, run_server
from test_deploy_nginx import NGINX, nginx_config, wait_port

pytestmark = [pytest.mark.browser,
              pytest.mark.skipif(shutil.which("nginx") is None and not Path(NGINX).exists(),
                                 reason="nginx is not installed (scripts/test.sh installs it)")]


@pytest.fixture(scope="module")
def proxied_api(tmp_path_factory, static_site, tls_files):
    root = make_workspace(tmp_path_factory.mktemp("proxied-ws"), workspace_files(static_site.trusted))
    _cli("secrets", "set", "e2e-users", "-w", str(root), "--type", "basic", "--user", "ada",
         "--password-stdin", input="not used here\n")
    _cli("secrets", "set", "e2e-jwt", "-w", str(root), "--type", "jwt", "--hs-key-stdin",
         input="k" * 48 + "\n")
    cert, key = tls_files
    prefix = tmp_path_factory.mktemp("proxied-nginx")
    with run_server(root, "--forwarded-allow-ips", "127.0.0.1") as server:
        port = free_port()
        upstream = server.url.split("//")[1]
        conf = prefix / "nginx.conf"
        conf.write_text(nginx_config([upstream, upstream], port, cert, key, prefix))
        proc = subprocess.Popen([NGINX, "-p", str(prefix), "-c", str(conf), "-e", "stderr"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_port(port, proc)
            yield Api(root, server, f"https://api.example.test:{port}", {})
        finally:
            proc.terminate()
            proc.wait(10)


def test_csrf_from_trusted_origin_through_the_proxy(context, proxied_api, static_site):
    page = open_page(context, static_site.trusted)
    before = proxied_api.count()
    token = csrf_token(page, proxied_api)
    (cookie,) = [c for c in context.cookies() if c["name"] == "csrf"]
    assert cookie["domain"] == "api.example.test" and cookie["secure"] and cookie["sameSite"] == "Strict"
    ok = post_note(page, proxied_api, token, body={"text": "through nginx"})
    assert ok.get("status") == 201, ok
    refused = post_note(page, proxied_api, None)
    assert refused.get("status") == 400 and refused["body"] == CSRF_ERROR
    assert proxied_api.count() == before + 1


def test_seed_snippet_on_the_api_origin_through_the_proxy(context, proxied_api):
    page = context.new_page()
    landing = page.goto(proxied_api.url("/api/count"))
    assert landing.status == 200 and "max-age=" in (landing.headers.get("strict-transport-security") or "")
    before = proxied_api.count()
    result = _run_seed_snippet(page, proxied_api)
    assert result["reported"] is None, result
    (csrf, post) = result["seen"]
    assert csrf["status"] == 200 and post["status"] == 201, result
    assert proxied_api.count() == before + 1

