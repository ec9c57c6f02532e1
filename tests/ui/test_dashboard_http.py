"""The dashboard's HTTP edges through the gateway, without a browser: the session cookie is a
credential for /ui only, login and logout refuse other origins (CSRF) and bad input, pages refuse
bad query parameters with a clear error, and what a tenant stored is escaped, never markup."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import httpx
import pytest

from tests.support.jobs import Cleanup, http_job
from tests.support.sink import Sink
from tests.support.waiting import eventually

FAR_FUTURE = {"type": "once", "at": "2099-01-01T00:00:00Z"}


@pytest.fixture
async def browserless(env: dict[str, str]) -> AsyncIterator[httpx.AsyncClient]:
    """A client with no key, as a browser is: only the cookie (when given) says who it is."""
    async with httpx.AsyncClient(base_url=env["DUETIME_URL"], timeout=30) as client:
        yield client


def _origin(env: dict[str, str]) -> dict[str, str]:
    return {"Origin": env["DUETIME_URL"]}


async def test_login_sets_a_strict_httponly_cookie_scoped_to_the_dashboard(
    browserless: httpx.AsyncClient, env: dict[str, str],
) -> None:
    resp = await browserless.post("/ui/login", headers=_origin(env),
                                  data={"key": env["DUETIME_API_KEY"], "next": "/ui/failures"})
    assert resp.status_code == 303 and resp.headers["location"] == "/ui/failures"
    cookie = resp.headers["set-cookie"]
    assert cookie.startswith(f"duetime_ui={env['DUETIME_API_KEY']};")
    for attribute in ("HttpOnly", "Path=/ui", "SameSite=strict"):
        assert attribute.lower() in cookie.lower(), cookie
    # Plain http here: Secure would make the browser drop it (it is set behind https).
    assert "secure" not in cookie.lower()
    assert "max-age" not in cookie.lower()  # a session cookie


@pytest.mark.parametrize("headers", [
    {"Origin": "http://evil.example"},
    {"Referer": "http://evil.example/ui/login"},
    {},  # neither: a form post from a browser always has one
])
async def test_login_from_another_origin_is_refused(
    browserless: httpx.AsyncClient, env: dict[str, str], headers: dict[str, str],
) -> None:
    resp = await browserless.post("/ui/login", headers=headers,
                                  data={"key": env["DUETIME_API_KEY"]})
    assert resp.status_code == 403
    assert "set-cookie" not in resp.headers
    assert "own login page" in resp.text


@pytest.mark.parametrize(("form", "message"), [
    ({"key": ""}, "enter an API key"),
    ({"key": "dtk_x; Path=/"}, "not an API key"),
    ({"key": 'dtk_"quoted"'}, "not an API key"),
    ({"key": "k" * 300}, "not an API key"),
    ({"key": "dtk_ok", "pad": "x" * 5000}, "too large"),
])
async def test_login_refuses_bad_input_with_a_clear_message(
    browserless: httpx.AsyncClient, env: dict[str, str], form: dict[str, str], message: str,
) -> None:
    resp = await browserless.post("/ui/login", headers=_origin(env), data=form)
    assert resp.status_code == 400
    assert message in resp.text
    assert "set-cookie" not in resp.headers


async def test_login_refuses_a_body_that_is_not_a_form(
    browserless: httpx.AsyncClient, env: dict[str, str],
) -> None:
    resp = await browserless.post("/ui/login", headers=_origin(env), content=b"key=\xff\xfe")
    assert resp.status_code == 400 and "could not be read" in resp.text


@pytest.mark.parametrize("target", ["//evil.example/ui/", "https://evil.example/",
                                    "/jobs", "/ui\\@evil.example", "/ui/x\r\nSet-Cookie: a=b"])
async def test_login_never_sends_the_browser_off_the_dashboard(
    browserless: httpx.AsyncClient, env: dict[str, str], target: str,
) -> None:
    resp = await browserless.post("/ui/login", headers=_origin(env),
                                  data={"key": env["DUETIME_API_KEY"], "next": target})
    assert resp.status_code == 303 and resp.headers["location"] == "/ui/jobs"


async def test_the_cookie_is_a_credential_for_the_dashboard_only(
    browserless: httpx.AsyncClient, env: dict[str, str],
) -> None:
    cookie = {"Cookie": f"duetime_ui={env['DUETIME_API_KEY']}"}
    assert (await browserless.get("/ui/jobs", headers=cookie)).status_code == 200
    for path in ("/jobs", "/stats", "/uix", "/ui-jobs"):
        resp = await browserless.get(path, headers=cookie)
        assert resp.status_code == 401, (path, resp.status_code)


async def test_an_unknown_cookie_goes_back_to_the_login_page_and_is_cleared(
    browserless: httpx.AsyncClient,
) -> None:
    resp = await browserless.get("/ui/jobs?state=active",
                                 headers={"Cookie": "duetime_ui=dtk_revoked-or-never-issued"})
    assert resp.status_code == 303
    assert resp.headers["location"] == "/ui/login?next=%2Fui%2Fjobs%3Fstate%3Dactive&rejected=1"
    assert "duetime_ui=;" in resp.headers["set-cookie"]
    assert "max-age=0" in resp.headers["set-cookie"].lower()


async def test_logout_clears_the_cookie_and_needs_this_sites_origin(
    browserless: httpx.AsyncClient, env: dict[str, str],
) -> None:
    cookie = {"Cookie": f"duetime_ui={env['DUETIME_API_KEY']}"}
    refused = await browserless.post("/ui/logout", headers={**cookie,
                                                             "Origin": "http://evil.example"})
    assert refused.status_code == 403 and "set-cookie" not in refused.headers
    resp = await browserless.post("/ui/logout", headers={**cookie, **_origin(env)})
    assert resp.status_code == 303 and resp.headers["location"] == "/ui/login"
    assert resp.headers["set-cookie"].startswith('duetime_ui="";') or \
        resp.headers["set-cookie"].startswith("duetime_ui=;")
    assert "max-age=0" in resp.headers["set-cookie"].lower()


@pytest.mark.parametrize(("path", "status", "says"), [
    ("/ui/jobs?state=bogus", 422, "state"),
    ("/ui/jobs?state=active&state=paused", 422, "given more than once"),
    ("/ui/jobs?stat=paused", 422, "unknown query parameter"),
    ("/ui/jobs?cursor=not-a-cursor", 422, "cursor"),
    ("/ui/jobs?limit=501", 422, "limit"),
    ("/ui/jobs?created_after=yesterday", 422, "RFC 3339"),
    ("/ui/jobs/some-job?run_status=exploded", 422, "run_status"),
    ("/ui/jobs/some-job?page=2", 422, "unknown query parameter"),
    ("/ui/failures?window=week", 422, "hour or day"),
    ("/ui/alerts?kind=bogus", 422, "kind"),
    ("/ui/alerts?cursor=not-a-cursor", 422, "cursor"),
    ("/ui/alerts?since=yesterday", 422, "RFC 3339"),
    ("/ui/jobs/%E2%80%AEnot%20an%20id", 404, "no such job"),
    ("/ui/jobs/" + "x" * 300, 404, "no such job"),
    ("/ui/static/secret.txt", 404, "Not found"),
    ("/ui/static/..%2F..%2Fapi.py", 404, "Not found"),
])
async def test_pages_refuse_bad_input_with_a_clear_error(
    api: httpx.AsyncClient, path: str, status: int, says: str,
) -> None:
    resp = await api.get(path)
    assert resp.status_code == status, resp.text
    assert says.lower() in resp.text.lower()


async def test_pages_forbid_inline_script_and_caching(api: httpx.AsyncClient) -> None:
    resp = await api.get("/ui/jobs")
    csp = resp.headers["content-security-policy"]
    assert "script-src 'self';" in csp and "unsafe-inline" not in csp
    assert "form-action 'self'" in csp and "frame-ancestors 'none'" in csp
    assert resp.headers["cache-control"] == "no-store"
    assert "<script>" not in resp.text  # the one script is a file of its own


async def test_what_a_tenant_stored_is_shown_as_text_never_as_markup(
    api: httpx.AsyncClient, jobs: Cleanup, sink: Sink,
) -> None:
    tag = uuid.uuid4().hex[:8]
    name = f'<img src=x onerror="alert(1)">{tag}'
    job_id = await jobs.create(api, http_job(sink.url(f"/ui/{tag}"), FAR_FUTURE, name=name,
                                             labels={"note": "</pre><script>x()</script>"}))
    for path in (f"/ui/jobs?q={tag}", f"/ui/jobs/{job_id}"):
        page = (await api.get(path)).text
        assert "<img src=x" not in page and "<script>x()" not in page, path
        assert "&lt;img src=x onerror=" in page, path


async def test_the_next_fire_times_mark_a_daylight_saving_change(
    api: httpx.AsyncClient, jobs: Cleanup, sink: Sink,
) -> None:
    # Noon on the 1st, Berlin time: ten months always cross at least one DST change there.
    schedule = {"type": "cron", "expression": "0 12 1 * *", "timezone": "Europe/Berlin"}
    job_id = await jobs.create(api, http_job(sink.url("/ui/dst"), schedule, name="ui-dst"))
    page = (await api.get(f"/ui/jobs/{job_id}")).text
    preview = (await api.get(f"/jobs/{job_id}/preview", params={"count": 10})).json()
    for at in preview["next_run_times"]:
        assert f'datetime="{at}"' in page
    assert page.count("12:00:00</td>") == 10  # local noon every time, on both sides of a change
    assert ("DST change: UTC+01:00 → UTC+02:00" in page) or \
        ("DST change: UTC+02:00 → UTC+01:00" in page)


async def test_the_alerts_page_lists_a_failure_for_its_tenant_only(
    api: httpx.AsyncClient, api_b: httpx.AsyncClient, jobs: Cleanup,
) -> None:
    spec = http_job("http://127.0.0.1:18999/nothing-listens", {"type": "now"},
                    retry={"max_attempts": 1})
    job_id = await jobs.create(api, spec)

    async def shown() -> bool:
        return f'href="/ui/jobs/{job_id}#run-' in (await api.get("/ui/alerts?kind=failure")).text

    await eventually(shown, timeout=30)
    assert job_id not in (await api_b.get("/ui/alerts")).text
    assert job_id not in (await api.get("/ui/alerts?kind=recovered")).text
