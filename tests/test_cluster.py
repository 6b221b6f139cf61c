"""openfrt on a real local Ray cluster: a head node and a worker node (with its own custom
resource, ``site_van``) on this machine, with Ray's TLS on, against PostgreSQL.

Ray is imported only inside fixtures and tests, after the TLS settings are in the environment
(Ray reads them when imported). The cluster is shared by the module's tests and stopped (by its
own process groups, never ``ray stop``) at the end. Tests skip with a reason when PostgreSQL is
not configured or Ray cannot start here.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy import create_engine, select, text
from sqlalchemy.engine import make_url
from cli_users import as_user, authorised_deployment

from openfrt.gallery import Gallery, ImageToEnrol, SubjectInfo
from openfrt.live.walkthrough import one_after_another
from openfrt.records import Category, Cipher, RecordStore, Role
from openfrt.records.models import ReferenceTemplate
from openfrt.vision import EngineConfig, FaceEngine
from test_live_pipeline import IMAGE_SIGNATURES, LFW, UTK, pipeline_templates, walk_video
from test_records import _drop_test_database

pytestmark = pytest.mark.cluster


@pytest.fixture(scope="module")
def cluster() -> Iterator[Any]:
    """Head (1 CPU, resource ``site_gate``) and worker ``van`` (1 CPU, ``site_van``), TLS on."""
    if not os.environ.get("OPENFRT_TEST_POSTGRES_URL"):
        pytest.skip("cluster mode needs PostgreSQL: run .ci/postgres.sh and export OPENFRT_TEST_POSTGRES_URL")
    if "ray" in sys.modules:
        pytest.skip("Ray was imported before this module could give it the TLS settings")
    from openfrt.cluster.local import ClusterStartError, LocalCluster

    root = Path(tempfile.mkdtemp(prefix="ofrt-", dir="/tmp"))  # short: Ray's socket paths must fit 107 bytes
    local = LocalCluster(root, tls=True)
    saved = dict(os.environ)
    try:
        local.start_head(num_cpus=1, resources={"site_gate": 1})
        local.add_node("van", num_cpus=1, resources={"site_van": 1})
    except (ClusterStartError, OSError, subprocess.TimeoutExpired) as exc:
        local.stop()
        shutil.rmtree(root, ignore_errors=True)
        pytest.skip(f"a local Ray cluster could not start here: {exc}")
    os.environ.update(local.environment)  # the TLS settings, for the drivers this process runs
    try:
        yield local
    finally:
        import ray

        ray.shutdown()
        local.stop()
        os.environ.clear()
        os.environ.update(saved)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def driver(cluster: Any) -> Iterator[Any]:
    """This test process joined to the cluster (for node ids, shards and the supervisor)."""
    from openfrt.cluster.settings import connect

    connect(cluster.address)
    import ray

    yield ray


@pytest.fixture
def records(tmp_path: Path, cluster: Any) -> Iterator[dict[str, str]]:
    """A fresh PostgreSQL database and data directory whose watchlist 'wanted' holds S1 (Colin
    Powell, from LFW); the environment to run ``openfrt`` commands on them."""
    if not (UTK.exists() and LFW.exists()):
        pytest.skip(f"needs {UTK} and {LFW} (the shared test data beside the project), which are absent")
    admin_url = os.environ["OPENFRT_TEST_POSTGRES_URL"]
    name = f"openfrt_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    # The test videos are made in tmp_path: it is the footage directory cameras may read.
    env = {**os.environ, "OPENFRT_HOME": str(tmp_path / "home"), "OPENFRT_DATABASE_URL": url, "OPENFRT_FOOTAGE_DIR": str(tmp_path)}
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("OPENFRT_DATABASE_URL", url)
        patch.setenv("OPENFRT_FOOTAGE_DIR", str(tmp_path))
        with RecordStore.open(tmp_path / "home") as store:
            gallery = Gallery(store, FaceEngine(EngineConfig.from_env()))
            gallery.create_watchlist("wanted", purpose="test", authorised_by="Supt A", actor="PC 1",
                                     standing_reason="searched by each test's deployments")
            reference = ImageToEnrol(LFW / "Colin_Powell" / "Colin_Powell_0001.jpg", "ref")
            assert gallery.enrol(SubjectInfo("S1", "Colin Powell", Category.wanted), [reference], actor="PC 1", watchlist="wanted").enrolled
        try:
            yield as_user(env, Role.operator)
        finally:
            _drop_test_database(admin, name)
            admin.dispose()


def live(env: dict[str, str], name: str, sources: dict[str, Path], *extra: str, timeout: float = 600) -> list[dict[str, Any]]:
    """Plan deployment ``name`` on ``sources`` and have it authorised, run ``openfrt live
    --events-json`` on it (all CLI calls of this module go through here) and return its JSON lines."""
    authorised_deployment(env, name, "wanted", {camera: str(video) for camera, video in sources.items()})
    command = [sys.executable, "-m", "openfrt", "live", "--deployment", name, "--events-json", *extra]
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env)
    assert result.returncode == 0, result.stderr[-4000:]
    return json_lines(result.stdout)


def json_lines(stdout: str) -> list[dict[str, Any]]:
    """``--events-json`` output: every line one JSON object (nothing else may reach stdout)."""
    lines = []
    for line in stdout.splitlines():
        try:
            lines.append(json.loads(line))
        except ValueError:
            raise AssertionError(f"not a JSON line on stdout: {line!r}") from None
    return lines


def on_cluster(cluster: Any) -> list[str]:
    """``openfrt live`` options that put camera ``gate`` on the head node and ``van1`` on the worker."""
    return ["--ray-address", cluster.address, "--camera-cpus", "0.5",
            "--camera-resource", "gate=site_gate", "--camera-resource", "van1=site_van"]


def node_names(ray: Any, cluster: Any) -> dict[str, str]:
    """Ray node id -> the name of the local node (from its session directory)."""
    names = {}
    for node in ray.nodes():
        for local in cluster.nodes:
            if node["ObjectStoreSocketName"].startswith(str(local.temp_dir) + "/"):
                names[node["NodeID"]] = local.name
    return names


def scan_for_biometrics(roots: list[Path], templates: list[bytes]) -> list[str]:
    """Files under ``roots`` holding an image signature or the start of one of ``templates``."""
    found = []
    for root in roots:
        for path in root.rglob("*"):
            if path.is_file() and not path.is_symlink():
                data = path.read_bytes()
                if any(signature in data for signature in IMAGE_SIGNATURES) or any(t in data for t in templates):
                    found.append(str(path))
    return found


def camera_processes() -> list[str]:
    """Live processes of camera actors (Ray names an actor's process ``ray::CameraWorker...``)."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            title = (entry / "cmdline").read_bytes().split(b"\0")[0].decode(errors="replace")
        except OSError:
            continue
        if title.startswith("ray::CameraWorker"):
            found.append(f"{entry.name}: {title}")
    return found


def alert_summary(lines: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    return sorted((line["camera"], line["subject"], line["track"], line["time"], round(line["similarity"], 4))
                  for line in lines if line["event"] == "alert")


def camera_counts(env: dict[str, str], deployment: str) -> dict[str, tuple[int, int]]:
    from openfrt.live.deployments import DeploymentService

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("OPENFRT_DATABASE_URL", env["OPENFRT_DATABASE_URL"])
        with RecordStore.open(Path(env["OPENFRT_HOME"])) as store:
            info = DeploymentService(store).get(deployment)
    return {camera.name: (camera.faces_scanned, camera.frames_dropped) for camera in info.cameras}


def test_two_cameras_on_two_nodes_raise_the_same_alerts_and_counts_as_on_one_machine(
    cluster: Any, driver: Any, records: dict[str, str], tmp_path: Path
) -> None:
    sources = {
        "gate": walk_video(tmp_path / "gate.avi", [LFW / "Colin_Powell" / "Colin_Powell_0001.jpg", min(UTK.glob("*.jpg"))]),
        "van1": walk_video(tmp_path / "van.avi", sorted(UTK.glob("*.jpg"))[1:3]),
    }

    here = live(records, "op-here", sources)
    there = live(records, "op-cluster", sources, *on_cluster(cluster))

    placed = {line["camera"]: line["node"] for line in there if line["event"] == "camera"}
    names = node_names(driver, cluster)
    assert {camera: names[node] for camera, node in placed.items()} == {"gate": "head", "van1": "van"}
    assert alert_summary(there) == alert_summary(here) and len(alert_summary(here)) == 1
    record_here, record_there = here[-1], there[-1]
    for key in ("faces_scanned", "alerts", "frames_dropped", "gaps", "cameras"):
        assert record_there[key] == record_here[key], key
    assert camera_counts(records, "op-cluster") == camera_counts(records, "op-here")
    deadline = time.monotonic() + 15  # ray.kill ends the actors' processes within moments
    while camera_processes() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert camera_processes() == [], "a camera actor outlived its deployment (with its snapshot)"
    # The alert's images crossed the cluster sealed: nothing Ray kept or spilled shows them.
    assert scan_for_biometrics(cluster.scan_roots(), []) == []
    assert all(not any(node.spill_dir.iterdir()) for node in cluster.nodes)


def test_a_cluster_deployment_where_nobody_matches_leaves_no_image_or_template_in_rays_directories(
    cluster: Any, records: dict[str, str], tmp_path: Path
) -> None:
    sources = {"gate": walk_video(tmp_path / "gate.avi", sorted(UTK.glob("*.jpg"))[3:5]),
               "van1": walk_video(tmp_path / "van.avi", sorted(UTK.glob("*.jpg"))[5:7])}

    lines = live(records, "op-private", sources, *on_cluster(cluster))

    record = lines[-1]
    assert record["event"] == "record" and record["alerts"] == 0 and record["faces_scanned"] == 4
    engine = FaceEngine(EngineConfig.from_env())
    probes = [probe for video in sources.values() for probe in pipeline_templates(engine, video)]
    assert probes, "the test videos should show detectable faces"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("OPENFRT_DATABASE_URL", records["OPENFRT_DATABASE_URL"])
        with RecordStore.open(Path(records["OPENFRT_HOME"])) as store, store.transaction() as session:
            sealed = session.scalars(select(ReferenceTemplate.vector)).all()
            watchlist = [store.open_template(row, "dlib-resnet@v1").vector.astype(np.float32).tobytes()[:16] for row in sealed]
    assert scan_for_biometrics(cluster.scan_roots(), probes + watchlist) == []
    assert all(not any(node.spill_dir.iterdir()) for node in cluster.nodes), "something spilled from the object store"


def test_a_node_that_dies_moves_its_camera_to_another_node_with_the_gap_recorded_and_its_alert_kept_once(
    cluster: Any, driver: Any, records: dict[str, str], tmp_path: Path
) -> None:
    doomed = cluster.add_node("doomed", num_cpus=1, resources={"site_door": 1})
    video = one_after_another(tmp_path / "door.avi", [LFW / "Colin_Powell" / "Colin_Powell_0001.jpg", *sorted(UTK.glob("*.jpg"))[7:10]])
    authorised_deployment(records, "op-door", "wanted", {"door": str(video)})
    command = [sys.executable, "-m", "openfrt", "live", "--deployment", "op-door", "--events-json", "--realtime",
               "--ray-address", cluster.address, "--camera-resource", "door=site_door"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=records)
    try:
        placed = json.loads(process.stdout.readline())
        assert placed["event"] == "camera" and node_names(driver, cluster)[placed["node"]] == "doomed"
        alert = json.loads(process.stdout.readline())
        assert alert["event"] == "alert" and alert["subject"] == "S1"
        doomed.kill()  # the camera waits for another node of its site ...
        refuge = cluster.add_node("refuge", num_cpus=1, resources={"site_door": 1})  # ... which comes up
        stdout, stderr = process.communicate(timeout=300)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, stderr[-4000:]
    lines = json_lines(stdout)
    moved = [line for line in lines if line["event"] == "camera"]
    assert len(moved) == 1 and moved[0]["restarted"] and node_names(driver, cluster)[moved[0]["node"]] == refuge.name
    record = lines[-1]
    assert [line for line in lines if line["event"] == "alert"] == [], "the alert raised before the node died came again"
    assert record["alerts"] == 1 and record["gaps"] == 1 and record["gap_seconds"] > 0
    assert record["faces_scanned"] >= 2  # Powell, and people who walked past after the restart


def test_the_sharded_index_answers_as_one_index_routes_changes_to_their_shard_and_keeps_shards_encrypted(
    cluster: Any, driver: Any, tmp_path: Path
) -> None:
    from openfrt.cluster.sealing import Seal
    from openfrt.cluster.shards import ShardedIndex
    from openfrt.evaluation.synthetic import PROFILES, Generator, make_dataset
    from openfrt.gallery.index import ExactIndex

    data = make_dataset(Generator(PROFILES["dlib"], seed=18), 60_000, 2_000)
    single = ExactIndex(128)
    single.add(data.ids, data.gallery)
    truth_similarities, truth_ids = single.search(data.queries, 10)
    key = Seal().key

    exact = ShardedIndex(tmp_path / "exact.index", 128, key, 2, approximate=False, cpus=0.25)
    exact.add(data.ids, data.gallery)
    similarities, ids = exact.search(data.queries, 10)
    assert np.array_equal(ids, truth_ids) and np.allclose(similarities, truth_similarities, atol=1e-6)
    exact.close()

    sharded = ShardedIndex(tmp_path / "approx.index", 128, key, 2, cpus=0.25)
    for start in range(0, len(data.ids), 20_000):  # as an import from a custody system would
        sharded.add(data.ids[start : start + 20_000], data.gallery[start : start + 20_000])
    top1 = sharded.search(data.queries, 10)[1][:, 0]
    assert np.mean(top1 == truth_ids[:, 0]) >= 0.999
    held = [shard["templates"] for shard in sharded.memory()]
    assert held == [int(np.sum(data.ids % 2 == number)) for number in range(2)]

    # Deletion and enrolment reach the shard that holds the id, at once.
    gone = int(top1[0])
    assert sharded.remove(np.array([gone])) == 1
    assert gone not in sharded.search(data.queries[:1], 10)[1]
    assert [shard["templates"] for shard in sharded.memory()] == [held[0] - (gone % 2 == 0), held[1] - (gone % 2 == 1)]
    new_id = int(data.ids.max()) + 1
    sharded.add(np.array([new_id]), data.queries[:1])
    assert sharded.search(data.queries[:1], 1)[1][0, 0] == new_id

    # Each shard's file is encrypted: no template is readable in it; it reloads as it was.
    sharded.save(tmp_path / "approx.index", Cipher(key))
    files = sorted(tmp_path.glob("approx.index.shard-*"))
    assert len(files) == 2
    samples = [vector.tobytes()[:16] for vector in data.gallery[::997]]
    assert not any(sample in path.read_bytes() for path in files for sample in samples)
    before = sharded.search(data.queries[:200], 10)
    sharded.close()
    reloaded = ShardedIndex(tmp_path / "approx.index", 128, key, 2, cpus=0.25)
    assert len(reloaded) == len(data.ids)
    assert np.array_equal(reloaded.search(data.queries[:200], 10)[1], before[1])
    os.kill(reloaded.pids[0], signal.SIGKILL)  # Ray restarts the shard; it reopens its file
    assert np.array_equal(reloaded.search(data.queries[:200], 10)[1], before[1])
    reloaded.close()


def test_the_server_runs_deployments_and_the_reference_search_on_the_cluster(
    cluster: Any, driver: Any, records: dict[str, str], tmp_path: Path
) -> None:
    from openfrt.api.context import ServerContext
    from openfrt.api.settings import ServerSettings
    from openfrt.cluster.settings import ClusterSettings
    from openfrt.cluster.shards import ShardedIndex

    settings = ServerSettings(
        home=Path(records["OPENFRT_HOME"]), realtime_files=False,
        cluster=ClusterSettings(address=cluster.address, camera_cpus=0.5, camera_resources={"gate": {"site_gate": 0.01}},
                                index_shards=2, shard_cpus=0.25),
    )
    video = walk_video(tmp_path / "gate.avi", [LFW / "Colin_Powell" / "Colin_Powell_0001.jpg"])
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("OPENFRT_DATABASE_URL", records["OPENFRT_DATABASE_URL"])
        context = ServerContext(settings)
        context.start()
        try:
            context.deployments.create("op-served", purpose="test", location="Test St", watchlist="wanted", actor="PC 1",
                                       cameras={"gate": str(video)})
            context.deployments.authorise("op-served", actor="Supt A")
            context.supervisor.start("op-served", "PC 1")
            deadline = time.monotonic() + 300
            while context.supervisor.running() and time.monotonic() < deadline:
                time.sleep(0.5)
            record = context.deployments.record("op-served")
            assert record.status.value == "ended" and record.alerts == 1 and record.faces_scanned == 1

            _, probe = context.engine.largest_face_template(LFW / "Colin_Powell" / "Colin_Powell_0002.jpg")
            found = context.gallery.search(probe, case_ref="CR/1", reason="test", actor="PC 1")
            index = context.gallery.indexes.index(probe.model_id, probe.vector.size)
            assert isinstance(index, ShardedIndex) and len(index.shards) == 2
            assert found[0].subject == "S1"
            context.gallery.remove_subject("S1", actor="PC 1", reason="test")
            assert context.gallery.search(probe, case_ref="CR/1", reason="test", actor="PC 1") == [] and len(index) == 0
        finally:
            context.close()
