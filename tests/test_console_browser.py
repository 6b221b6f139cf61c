"""The console in a real browser (Playwright driving Debian's Chromium) against a real
``openfrt serve``: logging in, the first administrator's set-up, enrolment by upload with
quality feedback, a deployment on a walk-through video whose alert arrives live and is
adjudicated into the published record, a retrospective search, the audit log, and refusals for
roles without the permission.

With ``OPENFRT_SCREENSHOTS=1`` the tests also save the README's screenshots to
``docs/screenshots/`` (off by default, so a test run leaves the tree clean).
"""

from __future__ import annotations

import csv
import json
import os
import math
import re
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

import httpx
import numpy as np
import pytest
from conftest import SAMPLES, SHARED
from test_live_pipeline import walk_video
from playwright.sync_api import Browser, BrowserContext, Locator, Page, expect, sync_playwright
from sqlalchemy import select, update

from openfrt.gallery import Gallery
from openfrt.live.deployments import DeploymentService, RunningDeployment
from openfrt.live.events import AlertEvent
from openfrt.live.walkthrough import FaceSet, Walkthrough, WalkthroughConfig, generate, one_face_screen
from openfrt.records import Category, RecordStore, ReferenceImage, ReferenceTemplate, Subject, Watchlist
from openfrt.records.models import WatchlistMember
from openfrt.vision import EngineConfig, FaceEngine, Template, compare

CHROMIUM = Path("/usr/bin/chromium")
FACES = SHARED / "faces"
MISSING = [f"{path} ({what})" for path, what in ((CHROMIUM, "Debian's Chromium: apt-get install chromium"),
                                                 (FACES / "lfw", "the shared LFW faces"), (SAMPLES, "the shared sample images"))
           if not path.exists()]
pytestmark = pytest.mark.skipif(bool(MISSING), reason=f"needs {'; '.join(MISSING)}, which is absent")

CHROMIUM_ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SCREENSHOTS = Path(__file__).resolve().parents[1] / "docs" / "screenshots"
PASSWORD = "correct horse battery staple"
USERS = {"admin-1": "admin", "operator-1": "operator", "operator-2": "operator", "authoriser-1": "authorising_officer",
         "authoriser-2": "authorising_officer", "engagement-1": "engagement_officer", "auditor-1": "auditor"}

def lenient_threshold() -> float:
    """1% under the default model's floor for a one-subject watchlist: lenient enough that the
    one watchlisted passer is recognised from a different photograph, and below the floor, so
    the deployment using it needs a second authorising officer's approval (for an uncalibrated
    model every threshold does: then its 1:1 threshold)."""
    from openfrt.evaluation.calibration import floor_threshold

    embedder = FaceEngine(EngineConfig.from_env()).embedder
    floor = floor_threshold(embedder.model_id, 1)
    return embedder.default_threshold if floor is None else math.floor(990 * floor) / 1000  # the form takes 3 decimals

#: Four LFW passers, one of them watchlisted with another image of them enrolled, the others
#: single-image LFW identities (so UTKFace is not needed); large faces, each in view for two
#: seconds; eight seconds at 10 fps, played in real time by the server as a camera would be.
WALK = WalkthroughConfig(size=(640, 360), fps=10.0, passers=4, watchlisted=1, face_heights=(90.0, 130.0),
                         walk_seconds=(2.0, 2.5), gap_seconds=(1.5, 2.0), lfw_passers_by=1.0, seed=1)


#: Phone widths the console must fit one-handed (a common Android and a common iPhone width).
PHONES = (360, 390)

#: Subjects of the crafted alerts' watchlist: LFW identities, with why each is on the list.
LISTED = {"Colin_Powell": "wanted on warrant 0101/26 for robbery", "Serena_Williams": "missing person, at risk",
          "Gerhard_Schroeder": "suspect in the High St assault"}


def lfw_image(identity: str, number: int) -> Path:
    """The ``number``-th image (from 0) of an LFW identity in the shared half."""
    return sorted((FACES / "lfw" / identity).glob("*.jpg"))[number]


def screenshot(page: Page, name: str, at: Locator | None = None) -> None:
    """Save a README screenshot when ``OPENFRT_SCREENSHOTS=1``, scrolled to ``at`` (else the top)."""
    if os.environ.get("OPENFRT_SCREENSHOTS") == "1":
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        if at is None:
            page.evaluate("window.scrollTo(0, 0)")
        else:
            at.evaluate("element => element.scrollIntoView({block: 'start'})")
        page.screenshot(path=str(SCREENSHOTS / f"{name}.png"))


def fits(page: Page) -> None:
    """Nothing on the page is wider than the screen: no sideways scrolling."""
    width, inner = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
    assert width <= inner, f"{page.url} is {width} px wide on a {inner} px screen"


def within_screen(page: Page, locator: Locator) -> None:
    """``locator`` can be scrolled to and lies within the screen's width."""
    locator.scroll_into_view_if_needed()
    expect(locator).to_be_visible()
    box = locator.bounding_box()
    assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= page.viewport_size["width"] + 0.5, (box, page.viewport_size)  # type: ignore[index]


# -- the server and the browser ------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def serving(home: Path) -> Iterator[str]:
    """``openfrt serve`` on ``home`` until the block ends; yields its base URL once it answers.
    Its administrator also allows the documentation network (192.0.2.0/24), where the
    integrations test's webhook and broker are (nothing answers there)."""
    allowed = ",".join(filter(None, [os.environ.get("OPENFRT_ALLOWED_NETWORKS"), "192.0.2.0/24"]))
    env = {**os.environ, "OPENFRT_HOME": str(home), "OPENFRT_ALLOWED_NETWORKS": allowed}
    port = free_port()
    home.mkdir(parents=True, exist_ok=True)
    log_path = home.parent / f"{home.name}-server.log"
    with log_path.open("w") as log:
        process = subprocess.Popen([sys.executable, "-m", "openfrt", "serve", "--host", "127.0.0.1", "--port", str(port)],
                                   env=env, stdout=log, stderr=subprocess.STDOUT)
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 120
            while True:
                assert process.poll() is None, f"openfrt serve exited: {log_path.read_text()}"
                try:
                    if httpx.get(f"{base}/api/setup", timeout=2).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, "openfrt serve did not answer within 120 s"
                time.sleep(0.3)
            yield base
        finally:
            process.terminate()
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@pytest.fixture(scope="module")
def server_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The server's data directory, which an officer's CLI on the same machine also uses."""
    return tmp_path_factory.mktemp("console") / "home"


@pytest.fixture(scope="module")
def server(server_home: Path) -> Iterator[str]:
    """A server on a fresh data directory with one user per role, made with the CLI: the first
    administrator locally, the others with that administrator's own token."""
    home = server_home
    env = {**os.environ, "OPENFRT_HOME": str(home)}
    env.pop("OPENFRT_TOKEN", None)
    openfrt = [sys.executable, "-m", "openfrt"]
    (admin, _), *others = USERS.items()
    subprocess.run([*openfrt, "users", "create", admin, "--role", "admin", "--password-stdin"], input=PASSWORD, text=True,
                   env=env, check=True, capture_output=True, timeout=120)
    env["OPENFRT_TOKEN"] = cli_token(env, admin)
    creating = [subprocess.Popen([*openfrt, "users", "create", name, "--role", role, "--password-stdin"], stdin=subprocess.PIPE,
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
                for name, role in others]
    for process in creating:
        output, _ = process.communicate(PASSWORD, timeout=120)
        assert process.returncode == 0, output
    with serving(home) as base:
        yield base


def cli_token(env: dict[str, str], name: str) -> str:
    """``openfrt login NAME``: the user's own API token, for the CLI (``OPENFRT_TOKEN``)."""
    login = subprocess.run([sys.executable, "-m", "openfrt", "login", name, "--password-stdin", "--json"], input=PASSWORD,
                           text=True, env=env, check=True, capture_output=True, timeout=120)
    return json.loads(login.stdout)["token"]


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def log_in(browser: Browser, server: str) -> Iterator[Callable[[str], Page]]:
    """Open a fresh browser session on a desktop screen and log in through the form as the user named."""
    with browser_sessions(browser, server) as open_as:
        yield lambda name: open_as(name, viewport={"width": 1280, "height": 800})


@pytest.fixture
def phone(browser: Browser, server: str) -> Iterator[Callable[[str, int], Page]]:
    """Log in through the form on a phone of the width given (touch, mobile layout)."""
    with browser_sessions(browser, server) as open_as:
        yield lambda name, width: open_as(name, viewport={"width": width, "height": 800}, is_mobile=True, has_touch=True,
                                          device_scale_factor=2)


@contextmanager
def browser_sessions(browser: Browser, server: str) -> Iterator[Callable[..., Page]]:
    """Log in as a user in a fresh browser context made with the options given; closes them all."""
    contexts: list[BrowserContext] = []

    def open_as(name: str, **options: object) -> Page:
        context = browser.new_context(base_url=server, **options)  # type: ignore[arg-type]
        context.set_default_timeout(15_000)
        contexts.append(context)
        page = context.new_page()
        page.goto("/login")
        page.get_by_label("User name").fill(name)
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Log in").click()
        page.wait_for_url(lambda url: "/login" not in url)
        return page

    try:
        yield open_as
    finally:
        for context in contexts:
            context.close()


@contextmanager
def api_session(server: str, name: str) -> Iterator[httpx.Client]:
    """An HTTP client logged in as ``name``, sending the CSRF header with every request."""
    with httpx.Client(base_url=server, timeout=60) as client:
        answer = client.post("/api/session", json={"name": name, "password": PASSWORD})
        answer.raise_for_status()
        client.headers["X-CSRF-Token"] = answer.json()["csrf_token"]
        yield client


def create_watchlist_in_console(page: Page, name: str, purpose: str) -> None:
    """Create a watchlist with the watchlists page's form and wait for its page."""
    page.goto("/watchlists")
    form = page.get_by_test_id("new-watchlist")
    form.get_by_label("Name", exact=True).fill(name)
    form.get_by_label("Purpose").fill(purpose)
    form.get_by_role("button", name="Create watchlist").click()
    page.wait_for_url(f"**/watchlists/{name}")


def plan_in_console(page: Page, name: str, watchlist: str, cameras: str, purpose: str = "locate people wanted in the town centre",
                    location: str = "Market Square", threshold: float | None = None) -> Locator:
    """Fill in and send the deployments page's planning form; returns the form."""
    plan = page.get_by_test_id("new-deployment")
    plan.get_by_label("Name", exact=True).fill(name)
    plan.locator("select[name=watchlist]").select_option(watchlist)
    plan.get_by_label("Purpose").fill(purpose)
    plan.get_by_label("Location").fill(location)
    plan.get_by_label("Cameras, one per line").fill(cameras)
    if threshold is not None:
        plan.get_by_label("Threshold (optional; default: the watchlist's)").fill(str(threshold))
    plan.get_by_role("button", name="Plan deployment").click()
    return plan


# -- test data -----------------------------------------------------------------------------------


def labelled_sex(identity: str) -> str:
    """The data set's own gender label of an LFW identity: what the officer records in the test."""
    with (FACES / "lfw" / "labels.csv").open(newline="") as labels:
        return next(row["gender"] for row in csv.DictReader(labels) if row["identity"] == identity)


@pytest.fixture(scope="module")
def walk(server_home: Path) -> Walkthrough:
    """The walk-through video, in the server's footage directory (the only place a camera file
    may come from); its watchlisted passer has a different reference image to enrol."""
    engine = FaceEngine(EngineConfig.from_env())
    video = server_home / "footage" / "walk.mp4"
    video.parent.mkdir(parents=True, exist_ok=True)
    return generate(WALK, FaceSet(FACES, screen=one_face_screen(engine)), video)


@pytest.fixture(scope="module")
def watchlisted(server: str, walk: Walkthrough) -> str:
    """Watchlist 'walkthrough' holding the video's watchlisted passer (made through the API);
    returns the passer's identity, which is their subject id."""
    passer = next(p for p in walk.passers if p.on_watchlist)
    # The watchlist keeps its calibrated threshold; the deployment searches it at a lenient one.
    with api_session(server, "authoriser-1") as client:
        client.post("/api/watchlists", json={"name": "walkthrough", "purpose": "people wanted on warrant"}).raise_for_status()
        enrolled = client.post(
            "/api/subjects",
            data={"subject_id": passer.identity, "display_name": passer.identity.replace("_", " "), "category": "wanted",
                  "legal_basis": "test data (LFW)", "watchlist": "walkthrough",
                  "listed_because": "wanted on warrant 0042/26 for burglary"},
            files=[("images", ("reference.jpg", Path(passer.reference_image or "").read_bytes(), "image/jpeg"))],
        )
        assert enrolled.status_code == 201, enrolled.text
    return passer.identity


class AlertMaker:
    """Raises alerts into the server's database from this process, as an ``openfrt live`` process
    on the same database would: a deployment of watchlist ``listed`` started here, with crafted
    candidate scores around its threshold (the watchlist's, whatever the model)."""

    def __init__(self, store: RecordStore, running: RunningDeployment) -> None:
        self.store = store
        self.running = running
        self.threshold = running.threshold
        self.tracks = 0

    def raise_alert(self, subject: str, candidates: tuple[tuple[str, float], ...] = ()) -> int:
        self.tracks += 1
        probe = lfw_image(subject, 1).read_bytes()
        scored = ((subject, (1 + self.threshold) / 2), *candidates)
        return self.running.raise_alert(AlertEvent(
            camera="gate", track_id=self.tracks, subject=subject, similarity=scored[0][1], source_time=float(self.tracks),
            wall_time=datetime.now(timezone.utc), probe_crop=probe, frame=probe, candidates=scored,
        ))


@pytest.fixture(scope="module")
def alerts(server: str, server_home: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[AlertMaker]:
    with api_session(server, "authoriser-1") as client:
        client.post("/api/watchlists", json={"name": "listed", "purpose": "people wanted in the town centre"}).raise_for_status()
        for subject, reason in LISTED.items():
            enrolled = client.post(
                "/api/subjects",
                data={"subject_id": subject, "display_name": subject.replace("_", " "), "category": "wanted",
                      "legal_basis": "test data (LFW)", "watchlist": "listed", "listed_because": reason},
                files=[("images", ("reference.jpg", lfw_image(subject, 0).read_bytes(), "image/jpeg"))],
            )
            assert enrolled.status_code == 201, enrolled.text
    camera = tmp_path_factory.mktemp("cameras") / "gate.mp4"  # never opened: the alerts are made here
    camera.write_bytes(b"not opened")
    with RecordStore.open(server_home) as store:
        service = DeploymentService(store, Gallery(store, FaceEngine(EngineConfig.from_env())))
        service.create("town-centre", purpose="locate people wanted in the town centre", location="Market Square",
                       watchlist="listed", actor="operator-1", cameras={"gate": str(camera)})
        service.authorise("town-centre", actor="authoriser-1", reason="people wanted in the town centre are expected there")
        running = service.start("town-centre", "operator-1")
        yield AlertMaker(store, running)
        running.end("operator-1")


# -- the tests -----------------------------------------------------------------------------------


def test_logging_in_leads_to_the_page_asked_for_and_the_menu_shows_only_what_the_role_may_use(
    browser: Browser, server: str, log_in: Callable[[str], Page]
) -> None:
    context = browser.new_context(base_url=server)
    page = context.new_page()
    page.goto("/alerts")
    assert page.url.endswith("/login?next=/alerts")
    page.get_by_label("User name").fill("operator-1")
    page.get_by_label("Password").fill("not the password")
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_test_id("login-error")).to_contain_text("Wrong user name or password")

    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url("**/alerts")
    expect(page.get_by_test_id("who")).to_have_text("operator-1 · operator")
    menu = page.get_by_role("navigation", name="Sections").get_by_role("link")
    expect(menu).to_have_text(["Alerts", "Deployments", "Watchlists", "Subjects", "Search", "Footage", "Transparency"])

    page.get_by_test_id("logout").click()
    page.wait_for_url("**/login")
    page.goto("/search")
    assert "/login?next=/search" in page.url
    context.close()

    engagement = log_in("engagement-1")
    assert engagement.url.endswith("/alerts")
    expect(engagement.get_by_role("navigation", name="Sections").get_by_role("link")).to_have_text(
        ["Alerts", "Deployments", "Transparency"])
    auditor = log_in("auditor-1")
    assert auditor.url.endswith("/deployments")


def test_the_first_administrator_is_created_with_the_set_up_code_and_manages_users_and_tokens(
    browser: Browser, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    with serving(home) as base:
        code = (home / "setup-code").read_text().strip()
        page = browser.new_page(base_url=base)
        page.goto("/alerts")
        page.wait_for_url("**/setup")  # no users yet: logging in is impossible, set-up is next
        form = page.get_by_test_id("setup-form")
        form.get_by_label("Set-up code").fill("not the code")
        form.get_by_label("Administrator's user name").fill("admin-1")
        form.get_by_label("Password", exact=True).fill(PASSWORD)
        form.get_by_label("Password again").fill(PASSWORD)
        form.get_by_role("button", name="Create administrator").click()
        expect(form.locator(".message")).to_contain_text("wrong set-up code")
        form.get_by_label("Set-up code").fill(code)
        form.get_by_role("button", name="Create administrator").click()
        page.wait_for_url("**/users")
        assert not (home / "setup-code").exists()

        create = page.get_by_test_id("new-user")
        create.get_by_label("User name").fill("operator-2")
        create.get_by_label("Display name (optional)").fill("J. Jones")
        create.get_by_label("Rank and number (optional)").fill("PC 1234")
        create.get_by_label("Role").select_option("operator")
        create.get_by_label("Initial password").fill(PASSWORD)
        create.get_by_role("button", name="Create user").click()
        row = page.locator("tr[data-user=operator-2]")
        expect(row).to_contain_text("operator")
        expect(row.locator("[data-field=public-name]")).to_have_text("PC 1234 J. Jones")

        expect(page.get_by_test_id("no-tokens")).to_be_visible()
        token = page.get_by_test_id("new-token")
        token.get_by_label("What your own token is for").fill("nightly retention job")
        token.get_by_role("button", name="Create my token").click()
        secret = page.get_by_test_id("token-secret")
        expect(secret).to_have_text(re.compile(r"^ofrt_"))
        expect(page.get_by_test_id("no-tokens")).to_have_count(0)  # the new token is listed at once
        expect(page.get_by_test_id("tokens").locator("tbody tr")).to_have_count(1)
        expect(page.get_by_test_id("tokens")).to_contain_text("nightly retention job")
        answer = httpx.get(f"{base}/api/users", headers={"Authorization": f"Bearer {secret.inner_text()}"})
        assert answer.status_code == 200  # the token acts as the administrator who made it...
        csrf = page.locator("meta[name=csrf-token]").get_attribute("content") or ""
        for_someone_else = page.request.post("/api/users/operator-2/tokens", data={"label": "as the operator"},
                                             headers={"X-CSRF-Token": csrf})
        assert for_someone_else.status == 403  # ...and nobody else

        # Promotion, a new role, a forgotten password, a leave of absence and a return.
        row.get_by_test_id("manage").click()
        manage = page.get_by_test_id("manage-user")
        manage.get_by_label("Rank and number").fill("Sgt 45")
        manage.get_by_role("button", name="Save name and rank").click()
        expect(row.locator("[data-field=public-name]")).to_have_text("Sgt 45 J. Jones")
        manage.get_by_label("Role").select_option("engagement_officer")
        manage.get_by_role("button", name="Change role").click()
        expect(row.locator("[data-field=role]")).to_have_text("engagement officer")
        manage.get_by_label("New password").fill("a fresh passphrase for PC")
        manage.get_by_role("button", name="Reset password").click()
        expect(manage.get_by_test_id("user-password").locator(".message")).to_have_text("Password reset; their sessions have ended.")
        manage.get_by_test_id("close-manage").click()
        page.on("dialog", lambda dialog: dialog.accept())
        row.get_by_test_id("disable").click()
        expect(row.locator("[data-field=state]")).to_have_text("disabled")
        row.get_by_test_id("enable").click()
        expect(row.locator("[data-field=state]")).to_have_text("active")
        assert httpx.post(f"{base}/api/session", json={"name": "operator-2", "password": "a fresh passphrase for PC"}).status_code == 200

        page.goto("/deployments")  # administrators run retention on demand (nothing is due here)
        page.get_by_test_id("run-retention").click()
        expect(page.get_by_test_id("retention-result")).to_contain_text("Deleted 0 image(s) of alerts raised before")
        page.close()


def face_of(person: Path, group: Path) -> list[float]:
    """The box (x, y, w, h) of ``person``'s face in the photo ``group``, found by the engine."""
    engine = FaceEngine(EngineConfig.from_env())
    _, known = engine.largest_face_template(person, person.name)
    rgb = engine.load(group, group.name)
    faces = engine.detector.detect(rgb)
    templates = engine.embedder.embed(rgb, faces)
    return list(max(zip(faces, templates), key=lambda pair: compare(known, pair[1]))[0].box)


def overlap(a: list[float], b: list[float]) -> float:
    """Intersection over union of two (x, y, w, h) boxes."""
    width = max(0.0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    height = max(0.0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    return width * height / (a[2] * a[3] + b[2] * b[3] - width * height)


def test_a_watchlist_is_created_and_a_subject_enrolled_by_upload_with_quality_feedback_per_image(
    log_in: Callable[[str], Page]
) -> None:
    page = log_in("authoriser-1")
    create_watchlist_in_console(page, "high-street", "people wanted for violent offences")
    expect(page.get_by_test_id("fitness")).to_contain_text("TPIR")
    expect(page.get_by_test_id("watchlist-size")).to_have_text("0")

    enrol = page.get_by_test_id("enrol-form")
    enrol.get_by_label("Subject id").fill("sample-obama")
    enrol.get_by_label("Display name").fill("obama (sample image)")
    enrol.get_by_label("Legal basis for holding the images").fill("test data (face_recognition samples)")
    enrol.get_by_label("Why on high-street").fill("wanted for a test of the console")
    photos = [str(SAMPLES / "obama.jpg"), str(SAMPLES / "two_people.jpg")]
    enrol.get_by_test_id("enrol-images").set_input_files(photos)
    enrol.get_by_role("button", name="Enrol into high-street").click()

    feedback = page.get_by_test_id("image-feedback")
    expect(feedback).to_have_count(2)
    expect(feedback.nth(0)).to_have_attribute("data-accepted", "true")
    expect(feedback.nth(0).get_by_test_id("image-quality")).to_contain_text("px high")
    expect(feedback.nth(0).get_by_test_id("image-quality")).to_contain_text("sharpness")
    expect(feedback.nth(1)).to_have_attribute("data-accepted", "false")
    expect(feedback.nth(1)).to_contain_text("refused (several faces)")
    expect(page.get_by_test_id("enrol-result")).to_have_attribute("data-enrolled", "false")

    # The photo with two people is shown with a box per face; the officer picks the subject's.
    boxes = feedback.nth(1).get_by_test_id("face-box")
    expect(boxes).to_have_count(2)
    wanted = face_of(SAMPLES / "obama.jpg", SAMPLES / "two_people.jpg")
    drawn = [[float(v) for v in (boxes.nth(i).get_attribute("data-box") or "").split(",")] for i in range(2)]
    pick = max(range(2), key=lambda i: overlap(drawn[i], wanted))
    boxes.nth(pick).click()
    expect(boxes.nth(pick)).to_have_attribute("aria-pressed", "true")
    expect(feedback.nth(1).get_by_test_id("face-choice")).to_contain_text(f"Face {pick + 1} chosen")
    screenshot(page, "enrolment", at=page.get_by_test_id("enrol-feedback"))
    enrol.get_by_role("button", name="Enrol into high-street").click()
    expect(page.get_by_test_id("enrol-result")).to_have_attribute("data-enrolled", "true")
    expect(feedback).to_have_count(2)
    expect(feedback.nth(1)).to_contain_text("stored as reference image #")

    # Sending the same photographs again (a second click) stores nothing twice, and says so.
    enrol.get_by_role("button", name="Enrol into high-street").click()
    expect(page.get_by_test_id("enrol-result")).to_contain_text("Nothing new stored for subject")
    expect(feedback.get_by_test_id("image-duplicate")).to_have_count(2)
    expect(feedback.get_by_test_id("image-duplicate").first).to_contain_text("the subject already has it as reference image #")

    page.reload()
    expect(page.get_by_test_id("watchlist-size")).to_have_text("1")
    expect(page.get_by_test_id("members")).to_contain_text("sample-obama")
    expect(page.get_by_test_id("members")).to_contain_text("wanted for a test of the console")
    page.goto("/subjects/sample-obama")  # one image is removed, for an audited reason
    figures = page.locator("figure[data-image]")
    expect(figures).to_have_count(2)
    figures.first.get_by_test_id("remove-image").click()
    page.get_by_test_id("remove-image-dialog").get_by_label("Reason (audited)").fill("a better photograph replaces it")
    page.get_by_test_id("confirm-remove-image").click()
    expect(figures).to_have_count(1)


def test_a_deployment_on_a_video_raises_an_alert_live_that_is_adjudicated_into_the_published_record(
    browser: Browser, server: str, server_home: Path, log_in: Callable[[str], Page], watchlisted: str, walk: Walkthrough
) -> None:
    operator = log_in("operator-1")
    assert operator.url.endswith("/alerts")
    expect(operator.get_by_test_id("live-status")).to_have_attribute("data-state", "live")
    expect(operator.get_by_test_id("queue-empty")).to_be_visible()
    operator.evaluate("window.sameDocument = true")

    # One officer plans; another, an authorising officer, authorises and starts.
    operator.goto("/deployments")
    plan_in_console(operator, "high-street-1", "walkthrough", f"gate={walk.video}", purpose="locate people wanted on warrant",
                    location="Test Street, north entrance", threshold=lenient_threshold())
    expect(operator.locator("[data-deployment-row='high-street-1']")).to_be_visible()
    # Below the floor: a second authorising officer approves it, with a justification, before it can be authorised.
    second = log_in("authoriser-2")
    second.goto("/deployments/high-street-1")
    floor = second.get_by_test_id("threshold-floor")
    expect(floor).to_contain_text("below the floor")
    floor.get_by_label("Justification").fill("one known subject, recognised from a different photograph")
    floor.get_by_test_id("approve-threshold").click()
    expect(second.get_by_test_id("threshold-floor")).to_have_attribute("data-approved", "true")
    operator.goto("/alerts")
    expect(operator.get_by_test_id("live-status")).to_have_attribute("data-state", "live")
    operator.evaluate("window.sameDocument = true")

    authoriser = log_in("authoriser-1")
    authoriser.goto("/deployments")
    row = authoriser.locator("[data-deployment-row='high-street-1']")
    row.get_by_test_id("authorise").click()
    authorising = authoriser.get_by_test_id("authorise-dialog")
    authorising.get_by_test_id("authorise-reason").fill("wanted offenders are expected at the north entrance")
    authorising.get_by_test_id("confirm-authorise").click()
    expect(row.get_by_role("cell", name="authoriser-1")).to_be_visible()
    row.get_by_test_id("start").click()
    expect(row.locator("[data-field=status]")).to_have_text("running")
    camera = authoriser.get_by_test_id("live-high-street-1").locator("tr[data-camera=gate]")
    expect(camera.locator("[data-field=faces_scanned]")).to_have_text(re.compile(r"^[1-9]"), timeout=30_000)
    screenshot(authoriser, "deployments")

    card = operator.get_by_test_id("alert-queue").get_by_test_id("alert-card")
    expect(card).to_have_count(1, timeout=60_000)
    expect(card.get_by_test_id("alert-name")).to_have_text(watchlisted.replace("_", " "))
    expect(card.get_by_test_id("alert-subject")).to_have_text(f"({watchlisted})")
    assert operator.evaluate("window.sameDocument") is True, "the alert should arrive without reloading the page"
    for image in ("probe", "reference"):
        card.locator(f"img[data-field={image}]").wait_for()
        assert operator.evaluate(f"document.querySelector('[data-testid=alert-card] img[data-field={image}]').naturalWidth") > 0
    card.get_by_test_id("show-frame").click()
    expect(card.locator("img[data-field=frame]")).to_be_visible()
    card.get_by_test_id("show-frame").click()
    card.get_by_test_id("show-frame").blur()
    screenshot(operator, "alerts")
    colleague = log_in("operator-2")  # a second officer watching the same queue
    expect(colleague.get_by_test_id("alert-queue").get_by_test_id("alert-card")).to_have_count(1)

    # A verdict recorded by mistake is corrected on the card: from a blank form, for a stated reason.
    card.get_by_test_id("outcome").select_option("engaged")
    card.get_by_label("Note").fill("spoke to the person; identity confirmed from documents")
    sex = labelled_sex(watchlisted)
    card.get_by_test_id("perceived-sex").select_option(sex)
    card.get_by_test_id("false-alert").click()
    done = operator.get_by_test_id("alert-done").get_by_test_id("alert-card")
    expect(done.get_by_test_id("alert-verdict")).to_contain_text("false alert · outcome: engaged · by operator-1")
    expect(operator.get_by_test_id("queue-empty")).to_be_visible()
    # The colleague's console shows the verdict as it is made, without reloading.
    seen = colleague.get_by_test_id("alert-done").get_by_test_id("alert-card")
    expect(seen.get_by_test_id("alert-verdict")).to_contain_text("false alert · outcome: engaged · by operator-1")
    expect(colleague.get_by_test_id("queue-empty")).to_be_visible()
    done.get_by_test_id("correct").click()
    expect(done.get_by_test_id("perceived-sex")).to_have_value("")  # nothing of the first verdict carries over
    expect(done.get_by_label("Note")).to_have_value("")
    done.get_by_test_id("confirm").click()  # no reason given: the browser keeps the form
    expect(done.get_by_test_id("adjudication-form")).to_be_visible()
    done.get_by_test_id("correction-reason").fill("pressed the wrong button: the documents confirmed the identity")
    done.get_by_test_id("outcome").select_option("engaged")
    done.get_by_test_id("perceived-sex").select_option(sex)
    done.get_by_test_id("confirm").click()
    expect(done.get_by_test_id("alert-verdict")).to_contain_text("confirmed match · outcome: engaged · by operator-1")
    expect(done.get_by_test_id("alert-verdict")).not_to_contain_text("spoke to the person")
    history = done.get_by_test_id("history-entry")
    expect(history).to_have_count(2)
    expect(history.nth(0)).to_contain_text("false alert · outcome: engaged · by operator-1")
    expect(history.nth(0)).to_contain_text("note: spoke to the person; identity confirmed from documents")
    expect(history.nth(1)).to_contain_text("Corrected because: pressed the wrong button")
    expect(done.get_by_test_id("correct")).to_be_visible()
    expect(done.get_by_test_id("hold-form")).to_have_count(0)  # an operator may not hold images
    expect(seen.get_by_test_id("alert-verdict")).to_contain_text("confirmed match · outcome: engaged · by operator-1")

    # A verdict changed where no console hears of it (the CLI on the server) leaves the colleague's
    # card stale: their correction is refused, and the card then shows what was decided.
    seen.get_by_test_id("correct").click()
    seen.get_by_test_id("correction-reason").fill("the person was not stopped")
    alert_id = seen.get_attribute("data-alert-id")
    officer = {**os.environ, "OPENFRT_HOME": str(server_home)}
    officer["OPENFRT_TOKEN"] = cli_token(officer, "engagement-1")
    cli = subprocess.run([sys.executable, "-m", "openfrt", "alerts", "adjudicate", str(alert_id), "--correcting", "confirmed_match",
                          "--status", "no_further_action", "--outcome", "no_action", "--reason", "no engagement took place"],
                         env=officer, capture_output=True, text=True, timeout=120)
    assert cli.returncode == 0, cli.stderr
    seen.get_by_test_id("false-alert").click()
    expect(seen.get_by_test_id("alert-message")).to_contain_text("already no_further_action (no_action), decided by engagement-1")
    expect(seen.get_by_test_id("alert-verdict")).to_contain_text("no further action · outcome: no action · by engagement-1")
    expect(seen.get_by_test_id("adjudication-form")).to_be_hidden()
    seen.get_by_test_id("correct").click()  # now knowingly replacing engagement-1's verdict
    seen.get_by_test_id("correction-reason").fill("body-worn video shows the engagement")
    seen.get_by_test_id("outcome").select_option("engaged")
    seen.get_by_test_id("perceived-sex").select_option(sex)
    seen.get_by_test_id("confirm").click()
    expect(seen.get_by_test_id("alert-verdict")).to_contain_text("confirmed match · outcome: engaged · by operator-2")
    expect(seen.get_by_test_id("alert-message")).to_have_text("")
    expect(done.get_by_test_id("alert-verdict")).to_contain_text("confirmed match · outcome: engaged · by operator-2")

    # The file ends, the deployment ends by itself and its record counts the confirmed alert.
    authoriser.goto("/deployments/high-street-1")
    expect(authoriser.get_by_test_id("deployment-status")).to_have_text("ended", timeout=60_000)
    expect(authoriser.get_by_test_id("record-true-alerts")).to_have_text("1")
    expect(authoriser.get_by_test_id("record-engagements")).to_have_text("1")
    expect(authoriser.get_by_test_id("record-pending")).to_have_text("0")
    assert authoriser.request.get("/api/watchlists/walkthrough").status == 404  # made for it: destroyed at its end

    # The authorising officer keeps the images past retention for a recorded reason, then lifts the hold.
    authoriser.goto("/alerts")
    authoriser.get_by_test_id("alert-filter").select_option("")
    held = authoriser.get_by_test_id("alert-done").get_by_test_id("alert-card")
    expect(held.get_by_test_id("alert-retention")).to_contain_text("deleted when retention falls due")
    expect(held.get_by_test_id("correct")).to_have_count(0)  # adjudication is not theirs
    held.get_by_test_id("hold").click()  # no reason given: the browser refuses the form
    expect(held.get_by_test_id("release-form")).to_be_hidden()
    held.get_by_label("Legal reason to keep the images").fill("evidence in case 01/2345/26")
    held.get_by_test_id("hold").click()
    expect(held.get_by_test_id("alert-retention")).to_contain_text("held past retention by authoriser-1")
    expect(held.get_by_test_id("alert-retention")).to_contain_text("evidence in case 01/2345/26")
    expect(held.get_by_test_id("hold-form")).to_be_hidden()
    held.get_by_label("Why the hold ends").fill("case closed")
    held.get_by_test_id("release").click()
    expect(held.get_by_test_id("alert-retention")).to_contain_text("deleted when retention falls due")

    public = browser.new_page(base_url=server, viewport={"width": 1280, "height": 800})  # nobody logged in
    public.goto("/transparency")
    record = public.locator("[data-testid=record-row][data-deployment='high-street-1']")
    expect(record.locator("[data-field=true_alerts]")).to_have_text("1")
    group = public.locator(f"[data-testid=group-row][data-group='sex:{sex}']")
    expect(group.locator("[data-field=true_alerts]")).to_have_text("1")
    for chart in ("chart-deployments", "chart-months", "chart-groups"):
        expect(public.get_by_test_id(chart)).to_be_visible()
        assert public.evaluate(f"document.querySelector('[data-testid={chart}]').naturalWidth") > 0
    screenshot(public, "transparency")
    public.close()


def test_a_retrospective_search_by_upload_lists_ranked_candidates_as_leads(
    log_in: Callable[[str], Page], watchlisted: str, walk: Walkthrough
) -> None:
    still = next(Path(p.video_image) for p in walk.passers if p.identity == watchlisted)
    page = log_in("operator-1")
    page.goto("/search")
    form = page.get_by_test_id("search-form")
    form.get_by_label("Case reference").fill("CASE-0001")
    form.get_by_label("Reason for the search").fill("identify a suspect from a still of the incident")
    form.get_by_test_id("search-image").set_input_files(str(still))
    form.get_by_role("button", name="Search").click()

    candidates = page.get_by_test_id("candidate")
    expect(candidates.first).to_be_visible()
    expect(candidates.first).to_have_attribute("data-subject", watchlisted)
    scores = [float(text.split()[-1]) for text in candidates.locator("[data-field=similarity]").all_inner_texts()]
    assert scores == sorted(scores, reverse=True)
    expect(page.get_by_test_id("leads-note")).to_contain_text("leads for review, not identifications")
    # The face searched, beside each candidate's reference image, and what each score means.
    assert page.get_by_test_id("probe-crop").evaluate("image => image.naturalWidth") > 0
    expect(candidates.first.locator("img[data-field=reference]")).to_have_js_property("complete", True)
    assert candidates.first.locator("img[data-field=reference]").evaluate("image => image.naturalWidth") > 0
    expect(candidates.first.locator("[data-field=meaning]")).to_contain_text("searches for people who are not in the database")
    screenshot(page, "search", at=page.get_by_test_id("search-results"))

    # A clip: the best view of a face is searched, and shown.
    form.get_by_test_id("search-image").set_input_files(str(walk.video))
    form.get_by_role("button", name="Search").click()
    expect(page.get_by_test_id("probe-caption")).to_contain_text("the best view of a face in the clip")
    assert page.get_by_test_id("probe-crop").evaluate("image => image.naturalWidth") > 0


def test_a_subject_and_a_watchlist_are_deleted_from_their_pages_with_an_audited_reason(server: str, log_in: Callable[[str], Page]) -> None:
    with api_session(server, "authoriser-1") as client:
        client.post("/api/watchlists", json={"name": "to-destroy", "purpose": "short-lived test list"}).raise_for_status()
        enrolled = client.post(
            "/api/subjects", data={"subject_id": "erase-me", "display_name": "Erase Me", "category": "wanted",
                                   "legal_basis": "test data (face_recognition samples)", "watchlist": "to-destroy"},
            files=[("images", ("obama.jpg", (SAMPLES / "obama.jpg").read_bytes(), "image/jpeg"))],
        )
        assert enrolled.status_code == 201, enrolled.text

    operator = log_in("operator-1")  # may view subjects but not remove them
    operator.goto("/subjects/erase-me")
    expect(operator.get_by_test_id("delete-form")).to_have_count(0)

    page = log_in("authoriser-1")
    page.goto("/subjects/erase-me")
    form = page.get_by_test_id("delete-form")
    form.get_by_label("Reason (audited)").fill("no longer wanted: warrant withdrawn")
    form.get_by_test_id("delete").click()  # not yet confirmed: the browser keeps the form
    expect(page).to_have_url(re.compile(r"/subjects/erase-me$"))
    form.get_by_test_id("delete-sure").check()
    form.get_by_test_id("delete").click()
    page.wait_for_url("**/subjects")
    assert page.request.get("/api/subjects/erase-me").status == 404

    page.goto("/watchlists/to-destroy")
    expect(page.get_by_test_id("watchlist-size")).to_have_text("0")
    form = page.get_by_test_id("delete-form")
    form.get_by_label("Reason (audited)").fill("operation finished")
    form.get_by_test_id("delete-sure").check()
    form.get_by_test_id("delete").click()
    page.wait_for_url("**/watchlists")
    assert page.request.get("/api/watchlists/to-destroy").status == 404

    auditor = log_in("auditor-1")
    reasons = {(entry["action"], entry["target"]): entry["reason"] for entry in auditor.request.get("/api/audit?limit=200").json()}
    assert reasons["subject.remove", "erase-me"] == "no longer wanted: warrant withdrawn"
    assert reasons["watchlist.delete", "to-destroy"] == "operation finished"


def test_a_role_without_the_permission_gets_the_403_page_and_the_api_refuses_it_too(log_in: Callable[[str], Page]) -> None:
    page = log_in("engagement-1")
    response = page.goto("/search")
    assert response is not None and response.status == 403
    expect(page.get_by_test_id("message")).to_have_text(
        "Your role (engagement officer) may not search. Ask an administrator if your duties need it.")
    assert page.goto("/audit").status == 403  # type: ignore[union-attr]

    csrf = page.locator("meta[name=csrf-token]").get_attribute("content") or ""
    refused = page.request.post("/api/search", headers={"X-CSRF-Token": csrf},
                                multipart={"case_ref": "CASE-0002", "reason": "curiosity",
                                           "image": {"name": "still.jpg", "mimeType": "image/jpeg",
                                                     "buffer": (SAMPLES / "obama.jpg").read_bytes()}})
    assert refused.status == 403 and "may not search" in refused.json()["detail"]
    assert page.request.get("/api/subjects").status == 403
    assert page.request.get("/api/audit").status == 403


def test_the_auditor_filters_the_audit_log_and_verifies_its_hash_chain(log_in: Callable[[str], Page]) -> None:
    page = log_in("auditor-1")
    page.goto("/audit")
    expect(page.get_by_test_id("audit-entry").first).to_be_visible()

    filters = page.get_by_test_id("audit-filters")
    filters.get_by_label("What").select_option(label="User created")
    filters.get_by_role("button", name="Filter").click()
    page.wait_for_url("**/audit?*action=user.create*")
    actions = page.get_by_test_id("audit-entry").locator("[data-field=action]").all_inner_texts()
    assert len(actions) >= len(USERS) and set(actions) == {"User created user.create"}
    details = page.get_by_test_id("audit-details").first
    details.locator("summary").click()
    expect(details.locator("dt")).to_have_text(["display name", "rank", "role"])  # every detail, in words

    with page.expect_download() as download:
        page.get_by_test_id("export-csv").click()
    exported = list(csv.DictReader(Path(download.value.path()).open(newline="")))
    assert len(exported) == len(actions) and {row["action_name"] for row in exported} == {"User created"}

    page.goto("/audit")
    page.get_by_test_id("verify-chain").click()
    expect(page.get_by_test_id("verification")).to_contain_text("Chain intact")
    expect(page.get_by_test_id("verification")).to_have_attribute("data-ok", "true")
    anchor = page.get_by_test_id("new-anchor").inner_text().rpartition(" ")[2]
    page.get_by_test_id("anchor").fill(anchor)  # as if read back from where it was kept
    page.get_by_test_id("verify-chain").click()
    expect(page.get_by_test_id("verification")).to_contain_text("the anchor still in place")
    page.get_by_test_id("anchor").fill(f"{anchor.partition(':')[0]}:{'0' * 64}")
    page.get_by_test_id("verify-chain").click()
    expect(page.get_by_test_id("verification")).to_have_attribute("data-ok", "false")
    expect(page.get_by_test_id("verification")).to_contain_text("the log was rewritten from there on")
    page.get_by_test_id("anchor").fill("")
    page.get_by_test_id("verify-chain").click()
    expect(page.get_by_test_id("verification")).to_have_attribute("data-ok", "true")
    screenshot(page, "audit")


def test_an_administrator_adds_a_webhook_and_a_broker_and_retries_a_dead_letter(
    server: str, server_home: Path, log_in: Callable[[str], Page], monkeypatch: pytest.MonkeyPatch
) -> None:
    from test_monitoring import dead_letter

    monkeypatch.setenv("OPENFRT_ALLOWED_NETWORKS", "127.0.0.0/8")  # for the dead letter's receiver, made here
    delivery = dead_letter(server_home)
    page = log_in("admin-1")
    page.on("dialog", lambda dialog: dialog.accept())
    try:
        page.goto("/integrations")
        form = page.get_by_test_id("new-webhook")
        form.get_by_label("Name").fill("control-room")
        form.get_by_label("URL").fill("https://192.0.2.10/openfrt?token=abc")  # documentation addresses: nothing answers
        form.get_by_label("alert.raised", exact=True).check()
        form.get_by_label("deployment.ended", exact=True).check()
        form.get_by_role("button", name="Add webhook").click()
        expect(page.get_by_test_id("webhook-secret")).to_have_text(re.compile(r"^\S{32,}$"))  # made by the server, shown once

        page.goto("/integrations")
        row = page.locator("tr[data-destination=control-room]")
        expect(row).to_contain_text("alert.raised, deployment.ended")
        expect(row).to_contain_text("https://192.0.2.10/openfrt?…")
        row.get_by_role("button", name="Send images").click()  # confirmed in the dialog; audited
        expect(page.locator("tr[data-destination=control-room]").get_by_role("button", name="Stop sending")).to_be_visible()

        broker = page.get_by_test_id("set-broker")
        broker.get_by_label("Host").fill("192.0.2.11")
        broker.get_by_label("User name (optional)").fill("openfrt")
        broker.get_by_label("Password (optional)").fill("broker-password")
        broker.get_by_role("button", name="Use this broker").click()
        expect(page.get_by_test_id("broker")).to_contain_text("192.0.2.11:1883")
        expect(page.get_by_test_id("broker")).not_to_contain_text("broker-password")
        screenshot(page, "integrations")

        page.locator(f"tr[data-delivery='{delivery}']").get_by_role("button", name="Retry").click()
        expect(page.locator(f"tr[data-delivery='{delivery}']")).to_have_count(0)
    finally:  # the module's other tests run deployments on this server: their events need not go anywhere
        with api_session(server, "admin-1") as client:
            for name in ("control-room", "mqtt", "down"):
                client.delete(f"/api/events/destinations/{name}")


@pytest.mark.parametrize("width", PHONES)
def test_on_a_phone_an_engagement_officer_gets_the_alert_card_whole_and_adjudicates_it_one_handed(
    phone: Callable[[str, int], Page], alerts: AlertMaker, width: int
) -> None:
    page = phone("engagement-1", width)
    page.add_init_script("""
        window.signalled = {vibrations: [], notifications: []};
        navigator.vibrate = (pattern) => { window.signalled.vibrations.push(pattern); return true; };
        window.Notification = class { constructor(title, options) { window.signalled.notifications.push([title, options.body]); }
            addEventListener() {} static get permission() { return 'granted'; } static requestPermission() { return Promise.resolve('granted'); } };
        Object.defineProperty(document, 'visibilityState', {get: () => 'hidden'});
    """)
    page.reload()
    expect(page.get_by_test_id("live-status")).to_have_attribute("data-state", "live")
    fits(page)
    within_screen(page, page.get_by_test_id("logout"))
    page.get_by_test_id("notify").tap()
    expect(page.get_by_test_id("notify")).to_have_attribute("aria-pressed", "true")

    above, below = alerts.threshold + (1 - alerts.threshold) / 10, alerts.threshold - 0.02
    alert_id = alerts.raise_alert("Colin_Powell", (("Serena_Williams", above), ("Gerhard_Schroeder", below)))
    card = page.locator(f"[data-testid=alert-card][data-alert-id='{alert_id}']")
    expect(card).to_be_visible(timeout=20_000)
    expect(card.get_by_test_id("alert-name")).to_have_text("Colin Powell")
    expect(card.get_by_test_id("alert-category")).to_have_text("wanted")
    expect(card.get_by_test_id("alert-listed")).to_have_text(LISTED["Colin_Powell"])
    expect(card.get_by_test_id("alert-others")).to_contain_text("Serena Williams (Serena_Williams")
    expect(card.get_by_test_id("alert-others")).not_to_contain_text("Gerhard")  # below the threshold: not listed
    for image in ("probe", "reference"):
        expect(card.locator(f"img[data-field={image}]")).to_have_js_property("complete", True)
        assert card.locator(f"img[data-field={image}]").evaluate("image => image.naturalWidth") > 0
    assert page.evaluate("window.signalled.vibrations.length") == 1
    assert page.evaluate("window.signalled.notifications") == [["openfrt: new alert", "Camera gate, deployment town-centre. Open the alert queue to review it."]]
    fits(page)
    box = card.bounding_box()
    assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= width
    if width == PHONES[-1]:
        screenshot(page, "alerts-phone", at=card)

    within_screen(page, card.get_by_test_id("outcome"))
    card.get_by_test_id("outcome").select_option("engaged")
    within_screen(page, card.get_by_test_id("false-alert"))
    card.get_by_test_id("false-alert").tap()
    expect(card.get_by_test_id("alert-verdict")).to_contain_text("false alert · outcome: engaged · by engagement-1")
    fits(page)


def test_a_watchlist_says_what_it_will_find_in_words_and_members_are_picked_from_a_search(
    log_in: Callable[[str], Page], alerts: AlertMaker
) -> None:
    page = log_in("authoriser-1")
    create_watchlist_in_console(page, "station", "people wanted at the station")

    search = page.get_by_test_id("member-search")
    search.fill("se")  # matches Serena Williams, and nobody else yet on no list
    hit = page.locator("[data-testid=member-hit][data-subject=Serena_Williams]")
    hit.get_by_role("checkbox").check()
    search.fill("Colin")
    page.locator("[data-testid=member-hit][data-subject=Colin_Powell]").get_by_role("checkbox").check()
    page.get_by_test_id("add-members").get_by_label("Why they are on this list").fill("wanted on warrant 77/26")
    page.get_by_role("button", name="Add the chosen subjects").click()
    members = page.get_by_test_id("members").locator("tbody tr")
    expect(members).to_have_count(2)
    expect(page.locator("[data-member=Serena_Williams]")).to_contain_text("wanted on warrant 77/26")

    fitness = page.request.get("/api/watchlists/station").json()["fitness"]
    said = page.get_by_test_id("fitness")
    expect(page.get_by_test_id("fitness-finds")).to_contain_text(f"Finds about {round(fitness['tpir'] * 100)} in 100 people on this list")
    expect(page.get_by_test_id("fitness-false-alerts")).to_contain_text("false alert per")
    assert "ok" not in (said.get_attribute("class") or "").split()  # never an all-clear
    if fitness["tpir"] < 0.5:
        expect(page.get_by_test_id("fitness-warning").first).to_contain_text("will not be found")
    screenshot(page, "watchlist")

    search.fill("Colin")
    expect(page.locator("[data-testid=member-hit][data-subject=Colin_Powell]")).to_contain_text("already on the list")
    expect(page.locator("[data-testid=member-hit][data-subject=Colin_Powell]").get_by_role("checkbox")).to_be_disabled()

    page.locator("[data-member=Serena_Williams]").get_by_test_id("remove-member").click()
    dialog = page.get_by_test_id("remove-member-dialog")
    expect(dialog).to_contain_text("Remove Serena_Williams from station")
    dialog.get_by_label("Reason (audited)").fill("found safe")
    dialog.get_by_test_id("confirm-remove-member").click()
    expect(page.locator("[data-member=Serena_Williams]")).to_have_count(0)
    expect(members).to_have_count(1)


def test_a_plan_is_checked_changed_and_cancelled_and_authorising_and_stopping_say_why(
    log_in: Callable[[str], Page], server: str, alerts: AlertMaker, tmp_path: Path
) -> None:
    with api_session(server, "authoriser-1") as client:  # its own list: one that ends may be destroyed with its deployment
        client.post("/api/watchlists", json={"name": "market", "purpose": "people wanted at the market"}).raise_for_status()
        client.post("/api/watchlists/market/members", json={"subjects": ["Colin_Powell"], "reason": "wanted on warrant"}).raise_for_status()
        client.post("/api/watchlists", json={"name": "fair", "purpose": "people wanted at the fair"}).raise_for_status()
    planner, officer = log_in("operator-1"), log_in("authoriser-1")
    planner.goto("/deployments")
    plan = plan_in_console(planner, "market-day", "market", f"gate={tmp_path / 'no-such-file.mp4'}")
    expect(plan.locator(".message")).to_contain_text("source not found")  # caught while planning, not at the start
    frames = walk_video(tmp_path / "gate.avi", [lfw_image("Colin_Powell", 2)], frames=600)  # a minute, played in real time
    plan.get_by_label("Cameras, one per line").fill(f"gate={frames}")
    plan.get_by_role("button", name="Plan deployment").click()
    expect(planner.locator("[data-deployment-row='market-day']")).to_be_visible()

    officer.goto("/deployments")
    row = officer.locator("[data-deployment-row='market-day']")
    row.get_by_test_id("authorise").click()
    dialog = officer.get_by_test_id("authorise-dialog")
    dialog.get_by_role("button", name="Back").click()  # thought better of it: nothing happens
    expect(dialog).to_be_hidden()
    row.get_by_test_id("authorise").click()
    dialog.get_by_test_id("confirm-authorise").click()  # no reason: the browser keeps the dialog open
    expect(dialog).to_be_visible()
    dialog.get_by_test_id("authorise-reason").fill("market day: wanted offenders expected")
    dialog.get_by_test_id("confirm-authorise").click()
    expect(row.locator("td").nth(4)).to_have_text("operator-1")  # planned by
    expect(row.locator("td").nth(5)).to_have_text("authoriser-1")  # authorised by

    # A change to the plan withdraws its authority, which is then given again.
    page = planner
    page.goto("/deployments/market-day")
    edit = page.get_by_test_id("edit-deployment")
    edit.get_by_label("Location").fill("Market Square, east side")
    edit.get_by_role("button", name="Save the changes").click()
    expect(page.get_by_test_id("authorised-by")).to_have_text("not yet authorised")
    expect(page.get_by_test_id("edit-deployment").get_by_label("Location")).to_have_value("Market Square, east side")
    officer.goto("/deployments/market-day")
    officer.get_by_test_id("authorise").click()
    officer.get_by_test_id("authorise-reason").fill("market day, east side")
    officer.get_by_test_id("confirm-authorise").click()
    expect(officer.get_by_test_id("authorised-by")).to_have_text("authoriser-1")
    page.reload()
    page.get_by_test_id("start").click()
    expect(page.get_by_test_id("deployment-status")).to_have_text("running")
    page.get_by_test_id("stop").click()
    page.get_by_test_id("stop-reason").fill("the market closed early")
    page.get_by_test_id("confirm-stop").click()
    expect(page.get_by_test_id("deployment-status")).to_have_text("ended", timeout=30_000)

    page.goto("/deployments")
    plan_in_console(page, "called-off", "fair", f"gate={frames}")  # "market" was destroyed with market-day
    expect(page.locator("[data-deployment-row='called-off']")).to_be_visible()
    page.goto("/deployments/called-off")
    cancel = page.get_by_test_id("cancel-deployment")
    cancel.get_by_label("Reason (audited)").fill("the event was called off")
    cancel.get_by_test_id("cancel").click()
    page.wait_for_url("**/deployments")
    expect(page.locator("[data-deployment-row='called-off']")).to_have_count(0)
    public = page.request.get(f"{server}/api/records").json()["deployments"]
    assert "called-off" not in {record["deployment"] for record in public}

    # The published record names the authorising officer by rank and name, never the log-in name.
    with api_session(server, "admin-1") as admin:
        admin.patch("/api/users/authoriser-1", json={"display_name": "A. Smith", "rank": "Insp 12"}).raise_for_status()
        try:
            public_page = page.context.browser.new_page(base_url=server)  # type: ignore[union-attr]
            public_page.goto("/transparency")
            expect(public_page.locator("[data-testid=record-row][data-deployment='market-day']")).to_contain_text("Insp 12 A. Smith")
            expect(public_page.get_by_test_id("records")).not_to_contain_text("authoriser-1")
            public_page.close()
        finally:
            admin.patch("/api/users/authoriser-1", json={"display_name": "authoriser-1", "rank": ""}).raise_for_status()

    auditor = log_in("auditor-1")

    def reason(action: str, target: str) -> str:
        return auditor.request.get(f"/api/audit?action={action}&target={target}&limit=1").json()[0]["reason"]  # the newest

    assert reason("deployment.authorise", "market-day") == "market day, east side"
    assert reason("deployment.stop", "market-day") == "the market closed early"
    assert reason("deployment.cancel", "called-off") == "the event was called off"


#: The pages each role opens, checked on phones (one of each kind, with data in it).
PAGES = {"operator-1": ["/alerts", "/deployments", "/deployments/town-centre", "/watchlists", "/watchlists/listed", "/subjects",
                        "/subjects/Colin_Powell", "/search", "/footage"],
         "authoriser-1": ["/watchlists/listed", "/deployments"],
         "auditor-1": ["/audit", "/deployments", "/transparency"],
         "admin-1": ["/users", "/deployments"]}


@pytest.mark.parametrize("width", PHONES)
def test_every_page_fits_a_phone_with_log_out_in_reach(
    phone: Callable[[str, int], Page], browser: Browser, server: str, alerts: AlertMaker, width: int
) -> None:
    alerts.raise_alert("Serena_Williams")  # so that the queue, the audit log and the records have rows
    for user, paths in PAGES.items():
        page = phone(user, width)
        for path in paths:
            assert page.goto(path).status == 200, path  # type: ignore[union-attr]
            fits(page)
            within_screen(page, page.get_by_test_id("logout"))
        page.context.close()
    public = browser.new_page(base_url=server, viewport={"width": width, "height": 800}, is_mobile=True, has_touch=True)
    for path in ("/transparency", "/login"):
        public.goto(path)
        fits(public)
    public.close()


def test_a_start_that_fails_leaves_the_deployment_planned_with_the_failure_shown_and_unpublished(
    log_in: Callable[[str], Page], server: str, server_home: Path, tmp_path: Path
) -> None:
    # A watchlist of another model's templates, as one enrolled before the server's model changed.
    with RecordStore.open(server_home) as store:
        gallery = Gallery(store, FaceEngine(EngineConfig.from_env()))
        gallery.create_watchlist("old-model", purpose="enrolled with a retired model", authorised_by="authoriser-1",
                                 actor="authoriser-1")
        with store.transaction() as session:
            session.execute(update(Watchlist).where(Watchlist.name == "old-model").values(model_id="retired-model@1"))
            template = Template(np.random.default_rng(5).normal(size=128), "retired-model", "1")
            reference = ReferenceImage(image=store.cipher.encrypt(b"jpeg"), media_type="image/jpeg", face_box=[0, 0, 1, 1],
                                       templates=[ReferenceTemplate(model_id="retired-model@1", vector=store.seal_template(template))])
            session.add(Subject(id="retired-1", display_name="Retired One", category=Category.wanted, images=[reference]))
            session.flush()
            watchlist_id = session.scalar(select(Watchlist.id).where(Watchlist.name == "old-model"))
            session.add(WatchlistMember(watchlist_id=watchlist_id, subject_id="retired-1", reason="test"))
    video = walk_video(tmp_path / "gate.avi", [lfw_image("Colin_Powell", 3)], frames=20)
    page, officer = log_in("operator-1"), log_in("authoriser-1")
    page.goto("/deployments")
    plan_in_console(page, "wrong-model", "old-model", f"gate={video}")
    expect(page.locator("[data-deployment-row='wrong-model']")).to_be_visible()
    second = log_in("authoriser-2")  # a model without a calibration needs a second authorising officer's approval
    second.goto("/deployments/wrong-model")
    second.get_by_test_id("threshold-floor").get_by_label("Justification").fill("a test of a failing start")
    second.get_by_test_id("approve-threshold").click()
    expect(second.get_by_test_id("threshold-floor")).to_have_attribute("data-approved", "true")
    officer.goto("/deployments/wrong-model")
    officer.get_by_test_id("authorise").click()
    officer.get_by_test_id("authorise-reason").fill("a test of a failing start")
    officer.get_by_test_id("confirm-authorise").click()
    expect(officer.get_by_test_id("authorised-by")).to_have_text("authoriser-1")
    page.goto("/deployments/wrong-model")
    expect(page.get_by_test_id("start")).to_be_visible()
    page.get_by_test_id("start").click()
    expect(page.locator("#deployments-message")).to_contain_text("retired-model@1")
    expect(page.locator("#deployments-message")).to_contain_text("openfrt models migrate")  # the fix, named
    page.reload()
    expect(page.get_by_test_id("deployment-status")).to_have_text("planned")
    # Refused before it started (the watchlist's model is checked first), so there is no failed
    # start to note; a start that fails once running goes back to planned with its failure noted
    # (test_console_records.py).
    expect(page.get_by_test_id("start-failure")).to_have_count(0)
    public = page.request.get(f"{server}/api/records").json()["deployments"]
    assert "wrong-model" not in {record["deployment"] for record in public}
