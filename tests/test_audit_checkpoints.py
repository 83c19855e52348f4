"""Signed checkpoints leave the database: a storage sink (a directory here; any Django storage,
e.g. an S3-compatible bucket, in production), a Standard Webhooks POST to a compliance
endpoint, GET /audit/checkpoints, and the public key at a well-known URL. verify_audit reads
them back from a directory or a URL."""

import io
import json
from datetime import timedelta

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone
from standardwebhooks.webhooks import Webhook

from audit import signing
from audit.checkpoints import checkpoints_publish
from audit.models import AuditCheckpoint, CheckpointPublication
from organizations.services import api_key_create
from tests.conftest import client_for
from tests.factories import DecisionFactory
from tests.helpers import seal, wait_for
from tests.receiver import Reply, receiver_fixture  # noqa: F401

pytestmark = pytest.mark.django_db(transaction=True)

WEBHOOK_SECRET = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


@pytest.fixture
def sealed_twice(acme_key):
    """Acme's trail sealed in two runs: two checkpoints."""
    DecisionFactory(api_key=acme_key[0])
    seal()
    DecisionFactory(api_key=acme_key[0], action="Refund order #1043")
    seal()
    return list(AuditCheckpoint.objects.filter(organization=acme_key[0].organization).order_by("size"))


# --- storage sink -----------------------------------------------------------------------------


def test_every_checkpoint_is_written_to_storage_once_and_verifies_with_the_public_key(
    acme, sealed_twice, tmp_path
):
    checkpoints_publish()
    checkpoints_publish()  # a second run (beat's sweep) writes nothing twice

    files = sorted((tmp_path / "checkpoints").rglob("*.json"))
    assert [f.relative_to(tmp_path / "checkpoints").as_posix() for f in files] == [
        f"{acme.pk}/{c.size:012d}.json" for c in sealed_twice
    ]
    for path, checkpoint in zip(files, sealed_twice, strict=True):
        document = json.loads(path.read_text())
        assert document["body"] == checkpoint.body
        assert signing.signature_valid(
            body=document["body"], signature=document["signature"], public_key=signing.public_key_text()
        )
        assert json.loads(document["body"])["head_hash"] == checkpoint.head_hash
    publication = CheckpointPublication.objects.get(sink="storage", organization=acme)
    assert publication.size == sealed_twice[-1].size


# --- webhook sink -----------------------------------------------------------------------------


@pytest.fixture
def compliance_endpoint(settings, receiver):
    settings.AUDIT_CHECKPOINT_WEBHOOK_URL = receiver.url("/checkpoints")
    settings.AUDIT_CHECKPOINT_WEBHOOK_SECRET = WEBHOOK_SECRET
    return receiver


def test_the_newest_checkpoint_is_posted_signed_per_standard_webhooks(
    acme, sealed_twice, compliance_endpoint
):
    checkpoints_publish()

    (request,) = [r for r in compliance_endpoint.requests if r.path == "/checkpoints"]
    payload = Webhook(WEBHOOK_SECRET).verify(request.body, request.headers)
    assert payload["type"] == "audit.checkpoint"
    newest = sealed_twice[-1]
    assert payload["data"]["body"] == newest.body
    assert payload["data"]["size"] == newest.size
    assert request.headers["webhook-id"] == f"ckpt_{acme.pk}_{newest.size}"


def test_a_compliance_endpoint_that_is_down_gets_the_checkpoint_later(
    acme, sealed_twice, compliance_endpoint
):
    # given the endpoint fails once
    compliance_endpoint.script(Reply(503))
    checkpoints_publish()
    publication = CheckpointPublication.objects.get(sink="webhook", organization=acme)
    assert (publication.size, publication.failures) == (0, 1)
    assert publication.next_attempt_at > timezone.now()
    assert "503" in publication.last_error

    # when its backoff has passed and the sweep runs again
    CheckpointPublication.objects.filter(pk=publication.pk).update(
        next_attempt_at=timezone.now() - timedelta(seconds=1)
    )
    checkpoints_publish()

    # then it has the newest checkpoint, and the record says so
    publication.refresh_from_db()
    assert (publication.size, publication.failures, publication.last_error) == (sealed_twice[-1].size, 0, "")
    delivered = [r for r in compliance_endpoint.requests if r.path == "/checkpoints"]
    assert len(delivered) == 2
    assert Webhook(WEBHOOK_SECRET).verify(delivered[-1].body, delivered[-1].headers)["data"]["size"] == (
        sealed_twice[-1].size
    )


# --- the API ----------------------------------------------------------------------------------


def test_checkpoints_are_listed_oldest_first_page_by_page(acme_key, sealed_twice):
    client = client_for(acme_key[1])

    first = client.get("/audit/checkpoints", {"limit": 1}).json()
    second = client.get(first["next"]).json()

    assert [c["size"] for c in first["results"] + second["results"]] == [c.size for c in sealed_twice]
    assert first["results"][0]["body"] == sealed_twice[0].body
    assert first["results"][0]["algorithm"] == "Ed25519"


def test_another_organizations_checkpoints_are_never_listed(sealed_twice, globex_key):
    response = client_for(globex_key[1]).get("/audit/checkpoints")

    assert response.status_code == 200
    assert response.json()["results"] == []


def test_checkpoints_need_the_audit_scope(acme, sealed_twice):
    agent_only = api_key_create(organization=acme, scopes=["decisions"], name="agent")[1]

    response = client_for(agent_only).get("/audit/checkpoints")

    assert response.status_code == 403
    assert response.json()["error"]["code"]


def test_bad_parameters_are_400_in_json(acme_key):
    for params, field in (({"limit": "0"}, "limit"), ({"colour": "red"}, "colour")):
        response = client_for(acme_key[1]).get("/audit/checkpoints", params)

        assert response.status_code == 400
        assert field in response.json()["error"]["fields"]


def test_the_public_key_is_published_at_a_well_known_url_without_a_key(db):
    response = client_for(None).get("/.well-known/countersign/audit-keys")

    assert response.status_code == 200
    (key,) = response.json()["keys"]
    assert key == {
        "key_id": signing.key_id(),
        "algorithm": "Ed25519",
        "public_key": signing.public_key_text(),
    }


def test_verify_audit_reads_checkpoints_from_the_api(acme, acme_key, sealed_twice, live_server, monkeypatch):
    monkeypatch.setenv("COUNTERSIGN_API_KEY", acme_key[1])
    url = f"{live_server.url}/audit/checkpoints?limit=1"

    out = io.StringIO()
    call_command("verify_audit", "--checkpoints", url, stdout=out, stderr=io.StringIO())
    assert f"against {len(sealed_twice)} checkpoint(s) from outside the database" in out.getvalue()

    # and a checkpoint signed by another key proves nothing (a key that begins with "-", as one
    # in 64 do: given with "=", it is a value, not an option)
    err = io.StringIO()
    with pytest.raises(CommandError, match="NOT intact"):
        call_command(
            "verify_audit",
            "--checkpoints",
            url,
            f"--public-key={another_key_beginning_with_a_dash()}",
            stdout=io.StringIO(),
            stderr=err,
        )
    assert "signature does not verify" in err.getvalue()


def another_key_beginning_with_a_dash() -> str:
    for _ in range(2000):
        key = signing.public_key_text(Ed25519PrivateKey.generate().public_key())
        if key.startswith("-"):
            return key
    raise AssertionError("no key beginning with '-' in 2000 tries")


@pytest.mark.redis
def test_a_seal_run_by_the_worker_sends_the_checkpoint_on_its_own(
    acme, acme_key, compliance_endpoint, celery_worker
):
    # given events to seal, and a real worker consuming the Redis broker
    DecisionFactory(api_key=acme_key[0])

    # when beat's task seals them (sent through the broker as beat sends it)
    from audit.tasks import seal as seal_task

    seal_task.delay()
    wait_for(lambda: AuditCheckpoint.objects.filter(organization=acme).exists())

    # then the seal's commit queued the publication, and the worker sent the newest checkpoint
    newest = AuditCheckpoint.objects.filter(organization=acme).latest("size")
    delivered = wait_for(lambda: [r for r in compliance_endpoint.requests if r.path == "/checkpoints"])
    assert (
        Webhook(WEBHOOK_SECRET).verify(delivered[0].body, delivered[0].headers)["data"]["size"] == newest.size
    )
