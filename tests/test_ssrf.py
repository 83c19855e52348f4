"""SSRF: a callback_url must not become a way into the operator's network.

Checked when the decision is created (400, nothing stored) and again when the callback
connects, against the address the host resolves to then; the request goes to that very
address, so a DNS answer that changes in between (rebinding) cannot redirect it. Only
CALLBACK_ALLOW_PRIVATE=1 lifts the address check.

Acme's agent supplies the URLs; a fake resolver stands in for DNS wherever a host name is
involved, so nothing here needs the network.
"""

import json
import re
import socket

import httpx
import pytest
from django.utils import timezone

from audit.models import AuditEvent
from decisions.models import Decision
from decisions.services import DecisionSpec, decision_cancel, decision_create
from notifications import callbacks, ssrf
from notifications.models import Delivery, DeliveryAttempt
from notifications.services import delivery_attempt
from notifications.ssrf import RefusedAddress, is_public_address, pinned_target
from tests.conftest import ALICE
from tests.receiver import receiver_fixture  # noqa: F401

HOOK_HOST = "hooks.example.test"
PUBLIC = "93.184.215.14"
ANOTHER_PUBLIC = "203.0.113.7"  # TEST-NET-3: nothing answers there
STAGES = [{"approvers": [ALICE], "quorum": "any"}]


class FakeResolver:
    """socket.getaddrinfo for HOOK_HOST answers from a list, one answer per call, the last one
    repeated; every other host goes to the real resolver (the database, the receiver's IP)."""

    def __init__(self, *answers: list[str] | Exception) -> None:
        self.answers = list(answers)
        self.calls = 0
        self._real = socket.getaddrinfo

    def __call__(self, host, port, *args, **kwargs):
        if host != HOOK_HOST:
            return self._real(host, port, *args, **kwargs)
        answer = self.answers[min(self.calls, len(self.answers) - 1)]
        self.calls += 1
        if isinstance(answer, Exception):
            raise answer
        return [
            (
                socket.AF_INET6 if ":" in address else socket.AF_INET,
                socket.SOCK_STREAM,
                socket.IPPROTO_TCP,
                "",
                (address, port, 0, 0) if ":" in address else (address, port),
            )
            for address in answer
        ]


@pytest.fixture
def dns(monkeypatch):
    """Install a FakeResolver: dns(["1.2.3.4"], ["127.0.0.1"]) answers the first call with
    1.2.3.4 and every later one with 127.0.0.1."""

    def install(*answers) -> FakeResolver:
        resolver = FakeResolver(*answers)
        monkeypatch.setattr(socket, "getaddrinfo", resolver)
        return resolver

    return install


def create(api, callback_url: str):
    return api.post(
        "/decisions",
        {"action": "Refund order #1234 for $80", "approver": ALICE, "callback_url": callback_url},
        format="json",
    )


def assert_refused(response) -> str:
    """400 naming callback_url, and nothing stored. Returns the message."""
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["code"] == "invalid"
    assert list(error["fields"]) == ["callback_url"]
    assert not Decision.objects.exists()
    assert not Delivery.objects.exists()
    return error["fields"]["callback_url"][0]


def audit_events(decision_id: str, event: str) -> list[dict]:
    rows = AuditEvent.objects.filter(decision_id=decision_id, event=event).order_by("pk")
    return [json.loads(row.payload) for row in rows]


# --- at create ------------------------------------------------------------------------------

PRIVATE_URLS = [
    "http://127.0.0.1/hook",
    "http://localhost/hook",
    "http://10.0.0.1/",
    "http://172.16.0.1/",
    "http://192.168.1.1/",
    "http://100.64.0.1/",  # CGNAT
    "http://169.254.169.254/latest/meta-data",  # cloud metadata
    "http://[::1]/",
    "http://[fc00::1]/",  # IPv6 unique local
    "http://[fe80::1]/",  # IPv6 link-local
    "http://[::ffff:127.0.0.1]/",  # IPv4-mapped IPv6
    "http://224.0.0.1/",  # multicast
    "http://0.0.0.0/",
    "http://240.0.0.1/",  # reserved
    # other spellings of 127.0.0.1 that resolvers accept
    "http://2130706433/",
    "http://0x7f.1/",
    "http://127.1/",
    "http://0177.0.0.1/",
    "https://127.0.0.1:8443/hook",
]


@pytest.mark.parametrize("url", PRIVATE_URLS)
def test_a_callback_url_to_a_private_address_is_refused_at_create(api, url):
    message = assert_refused(create(api, url))

    assert "refused" in message


@pytest.mark.parametrize(
    "url",
    [
        "ftp://x",
        "file:///etc/passwd",
        "gopher://example.com/",
        "javascript:alert(1)",
        "example.com/hook",
        "https:///hook",
        "https://user:pass@example.com/",
        "https://user@example.com/",
        "https://example.com:99999/",
        "https://exa mple.com/",
        "https://example.com/\r\nX-Injected: 1",
        "https://example.com/" + "a" * (2001 - len("https://example.com/")),
    ],
    ids=[
        "ftp",
        "file",
        "gopher",
        "javascript",
        "no-scheme",
        "no-host",
        "userinfo",
        "user-only",
        "bad-port",
        "space",
        "crlf",
        "2001-chars",
    ],
)
def test_a_callback_url_that_is_not_a_plain_http_url_is_refused_at_create(api, url):
    assert_refused(create(api, url))


def test_a_host_that_does_not_resolve_is_refused_at_create(api, dns):
    dns(socket.gaierror(socket.EAI_NONAME, "Name or service not known"))

    message = assert_refused(create(api, f"https://{HOOK_HOST}/hook"))

    assert "does not resolve" in message


def test_a_host_with_one_private_address_among_public_ones_is_refused_at_create(api, dns):
    # Every address must be public: a connection could go to any of them.
    dns([PUBLIC, "10.1.2.3"])

    message = assert_refused(create(api, f"https://{HOOK_HOST}/hook"))

    assert "10.1.2.3" in message


@pytest.mark.parametrize(
    "url", [f"https://{PUBLIC}/hook", "https://[2606:4700:4700::1111]/hook", f"http://{PUBLIC}:8080/x?y=1"]
)
def test_a_public_address_is_accepted(api, url):
    # A literal IP needs no DNS, so this runs offline.
    response = create(api, url)

    assert response.status_code == 201, response.json()
    assert response.json()["callback_url"] == url


def test_a_host_name_resolving_to_public_addresses_is_accepted(api, dns):
    dns([PUBLIC, "2606:4700:4700::1111"])

    response = create(api, f"https://{HOOK_HOST}/hook")

    assert response.status_code == 201, response.json()


def test_callback_allow_private_lifts_the_address_check(api, settings):
    settings.CALLBACK_ALLOW_PRIVATE = True

    response = create(api, "http://127.0.0.1:9000/hook")

    assert response.status_code == 201, response.json()


def test_callback_allow_private_does_not_lift_the_url_rules(api, settings):
    settings.CALLBACK_ALLOW_PRIVATE = True

    assert_refused(create(api, "https://user:pass@127.0.0.1/hook"))


# --- is_public_address ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "127.255.255.254",
        "10.0.0.1",
        "172.16.0.1",
        "172.31.255.255",
        "192.168.1.1",
        "100.64.0.1",
        "100.127.255.254",
        "169.254.169.254",
        "169.254.0.1",
        "0.0.0.0",  # noqa: S104 (an address to refuse, not one to bind)
        "224.0.0.1",
        "239.255.255.250",
        "240.0.0.1",
        "255.255.255.255",
        "192.0.2.1",  # TEST-NET-1, documentation
        "::",
        "::1",
        "fc00::1",
        "fd12:3456::1",
        "fe80::1",
        "fe80::1%eth0",
        "ff02::1",
        "::ffff:127.0.0.1",
        "::ffff:10.0.0.1",
        "::ffff:169.254.169.254",
    ],
)
def test_private_loopback_link_local_cgnat_multicast_and_reserved_addresses_are_not_public(address):
    assert not is_public_address(address)


@pytest.mark.parametrize(
    "address", ["93.184.215.14", "8.8.8.8", "1.1.1.1", "2606:4700:4700::1111", "::ffff:8.8.8.8"]
)
def test_internet_addresses_are_public(address):
    assert is_public_address(address)


# IPv6 spellings that a translator or relay delivers to an IPv4 address (possibly one inside
# our network): each is judged as that IPv4 address. Teredo's client address is stored XORed
# with 0xffffffff: 80ff:fffe is 127.0.0.1, 5601:5601 is 169.254.169.254.
TEREDO = "2001:0:4136:e378:8000:63bf"  # server 65.54.227.120 (public), flags, port
IPV6_SPELLINGS_OF_PRIVATE_IPV4 = {
    "nat64-loopback": "64:ff9b::7f00:1",
    "nat64-metadata": "64:ff9b::169.254.169.254",
    "nat64-private": "64:ff9b::10.0.0.1",
    "nat64-local-use": "64:ff9b:1::a00:1",
    "nat64-local-use-public": "64:ff9b:1::8.8.8.8",  # local-use: only our own translator answers
    "6to4-loopback": "2002:7f00:1::1",
    "6to4-metadata": "2002:a9fe:a9fe::",
    "6to4-private": "2002:c0a8:101:1::1",
    "compatible-loopback": "::127.0.0.1",
    "compatible-metadata": "::a9fe:a9fe",
    "siit-loopback": "::ffff:0:127.0.0.1",
    "siit-metadata": "::ffff:0:a9fe:a9fe",
    "teredo-loopback-client": f"{TEREDO}:80ff:fffe",
    "teredo-metadata-client": f"{TEREDO}:5601:5601",
    "teredo-private-server": "2001:0:a00:1:8000:63bf:f7f7:f7f7",
    # ISATAP: any prefix, public ones included; the interface id ::0:5efe / ::200:5efe then v4
    "isatap-metadata": "2a00:1450:4001::5efe:a9fe:a9fe",
    "isatap-private": "2a00:1450:4001::200:5efe:10.0.0.1",
}


@pytest.mark.parametrize(
    "address", IPV6_SPELLINGS_OF_PRIVATE_IPV4.values(), ids=IPV6_SPELLINGS_OF_PRIVATE_IPV4.keys()
)
def test_ipv6_spellings_of_private_or_metadata_ipv4_addresses_are_not_public(address):
    assert not is_public_address(address)


@pytest.mark.parametrize(
    "address",
    [
        "64:ff9b::8.8.8.8",
        "2002:808:808::1",
        "::ffff:0:8.8.8.8",
        f"{TEREDO}:f7f7:f7f7",
        "2a00:1450:4001::200:5efe:8.8.8.8",
    ],
    ids=["nat64", "6to4", "siit", "teredo", "isatap"],
)
def test_ipv6_spellings_of_public_ipv4_addresses_are_public(address):
    # Judged as the IPv4 address they carry (8.8.8.8), not refused wholesale.
    assert is_public_address(address)


@pytest.mark.parametrize(
    "address", IPV6_SPELLINGS_OF_PRIVATE_IPV4.values(), ids=IPV6_SPELLINGS_OF_PRIVATE_IPV4.keys()
)
def test_a_callback_url_to_an_ipv6_spelling_of_a_private_ipv4_is_refused_at_create(api, address):
    message = assert_refused(create(api, f"https://[{address}]/hook"))

    assert "refused" in message


def test_a_host_resolving_to_a_nat64_spelling_of_the_metadata_address_is_refused_at_create(api, dns):
    dns(["64:ff9b::a9fe:a9fe"])

    message = assert_refused(create(api, f"https://{HOOK_HOST}/hook"))

    assert "64:ff9b::a9fe:a9fe" in message


# --- at connect -----------------------------------------------------------------------------


def test_a_host_that_turns_private_after_create_is_refused_at_connect_and_nothing_is_sent(api, dns, receiver):
    # given: a resolver that answers public at create and 127.0.0.1 (where our receiver
    # listens, on the URL's port) afterwards: DNS rebinding
    resolver = dns([PUBLIC], ["127.0.0.1"])
    response = create(api, f"http://{HOOK_HOST}:{receiver.port}/hook")
    assert response.status_code == 201, response.json()
    decision_id = response.json()["id"]
    assert api.post(f"/decisions/{decision_id}/cancel").status_code == 200
    delivery = Delivery.objects.get(decision_id=decision_id, kind=Delivery.Kind.CALLBACK)

    # when
    delivery_attempt(delivery_id=delivery.pk)

    # then: checked again at connect, refused for good, and not one request got through
    assert resolver.calls == 2
    assert receiver.requests == []
    delivery.refresh_from_db()
    assert delivery.status == Delivery.Status.FAILED
    assert "127.0.0.1" in delivery.last_error
    [logged] = DeliveryAttempt.objects.filter(delivery=delivery)
    assert (logged.ok, logged.status_code) == (False, None)
    [failed] = audit_events(decision_id, "callback.failed")
    assert "127.0.0.1" in failed["reason"]
    assert not audit_events(decision_id, "callback.delivered")


@pytest.mark.parametrize("address", ["64:ff9b::7f00:1", "2002:7f00:1::1", "::ffff:0:127.0.0.1"])
def test_a_host_that_turns_into_an_ipv6_spelling_of_loopback_is_refused_at_connect(acme_key, dns, address):
    # given: public at create, then (rebinding) an IPv6 spelling of 127.0.0.1
    resolver = dns([PUBLIC], [address])
    url = f"https://{HOOK_HOST}/hook"
    ssrf.check_callback_url(url, allow_private=False)
    decision, _ = decision_create(
        api_key=acme_key[0], spec=DecisionSpec(action="Deploy", stages=STAGES, callback_url=url)
    )
    decision_cancel(decision=decision, actor="acme agent")
    delivery = Delivery.objects.get(decision=decision, kind=Delivery.Kind.CALLBACK)

    # when
    delivery_attempt(delivery_id=delivery.pk)

    # then: the same guard refused it at connect, for good
    assert resolver.calls == 2
    delivery.refresh_from_db()
    assert delivery.status == Delivery.Status.FAILED
    assert address in delivery.last_error
    [failed] = audit_events(decision.id, "callback.failed")
    assert "refused" in failed["reason"]


def test_the_callback_connects_to_the_address_that_was_checked(
    acme_key, dns, receiver, settings, monkeypatch
):
    # given: private addresses allowed (the receiver is on 127.0.0.1), and a resolver that
    # answers 127.0.0.1 once and then an address where nothing listens. Had the HTTP client
    # resolved the name again, the request would have gone there and timed out.
    settings.CALLBACK_ALLOW_PRIVATE = True
    monkeypatch.setattr(callbacks, "TIMEOUT", httpx.Timeout(2.0))
    resolver = dns(["127.0.0.1"], [ANOTHER_PUBLIC])
    url = f"http://{HOOK_HOST}:{receiver.port}/hook"
    decision, _ = decision_create(
        api_key=acme_key[0], spec=DecisionSpec(action="Deploy", stages=STAGES, callback_url=url)
    )
    decision_cancel(decision=decision, actor="acme agent")
    delivery = Delivery.objects.get(decision=decision, kind=Delivery.Kind.CALLBACK)

    # when
    delivery_attempt(delivery_id=delivery.pk)

    # then: one look-up, the request at the checked address, the name kept in Host
    assert resolver.calls == 1
    [request] = receiver.requests
    assert request.headers["host"] == f"{HOOK_HOST}:{receiver.port}"
    assert request.path == "/hook"
    delivery.refresh_from_db()
    assert delivery.status == Delivery.Status.SENT


def test_a_host_that_does_not_resolve_at_connect_is_retried_not_failed(acme_key, dns, receiver):
    # given: accepted earlier; now its DNS is down (a blip, most likely)
    dns([PUBLIC], socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution"))
    url = f"https://{HOOK_HOST}/hook"
    ssrf.check_callback_url(url, allow_private=False)
    decision, _ = decision_create(
        api_key=acme_key[0], spec=DecisionSpec(action="Deploy", stages=STAGES, callback_url=url)
    )
    decision_cancel(decision=decision, actor="acme agent")
    delivery = Delivery.objects.get(decision=decision, kind=Delivery.Kind.CALLBACK)

    # when
    before = timezone.now()
    delivery_attempt(delivery_id=delivery.pk)

    # then
    delivery.refresh_from_db()
    assert delivery.status == Delivery.Status.PENDING
    assert delivery.next_attempt_at > before
    assert "does not resolve" in delivery.last_error
    assert not audit_events(decision.id, "callback.failed")


def test_a_stored_url_that_is_not_http_fails_at_connect(acme_key, receiver):
    # The API refuses such URLs; a row written some other way (admin, shell, an old version)
    # still never makes the sender try an ftp:// or credentialed URL.
    decision, _ = decision_create(
        api_key=acme_key[0], spec=DecisionSpec(action="Deploy", stages=STAGES, callback_url="ftp://x/hook")
    )
    decision_cancel(decision=decision, actor="acme agent")
    delivery = Delivery.objects.get(decision=decision, kind=Delivery.Kind.CALLBACK)

    delivery_attempt(delivery_id=delivery.pk)

    delivery.refresh_from_db()
    assert delivery.status == Delivery.Status.FAILED
    assert "invalid callback URL" in delivery.last_error
    assert receiver.requests == []


# --- pinned_target --------------------------------------------------------------------------


@pytest.fixture
def resolves_to(monkeypatch):
    def install(*addresses: str) -> None:
        monkeypatch.setattr(ssrf, "resolve", lambda host, port: list(addresses))

    return install


def test_an_https_target_connects_to_the_checked_address_and_keeps_the_name_for_host_and_sni(resolves_to):
    resolves_to(PUBLIC)

    target = pinned_target(f"https://{HOOK_HOST}/v1/hook?tenant=acme#frag", allow_private=False)

    assert target.url == f"https://{PUBLIC}:443/v1/hook?tenant=acme"
    assert target.host_header == HOOK_HOST
    # TLS is still verified against the name, not the address
    assert target.sni_hostname == HOOK_HOST


def test_an_http_target_with_a_port_keeps_the_port_in_host_and_has_no_sni(resolves_to):
    resolves_to(PUBLIC)

    target = pinned_target(f"http://{HOOK_HOST}:8080", allow_private=False)

    assert target.url == f"http://{PUBLIC}:8080/"
    assert target.host_header == f"{HOOK_HOST}:8080"
    assert target.sni_hostname is None


def test_an_ipv6_address_is_bracketed_in_the_pinned_url(resolves_to):
    resolves_to("2606:4700:4700::1111")

    target = pinned_target(f"https://{HOOK_HOST}/hook", allow_private=False)

    assert target.url == "https://[2606:4700:4700::1111]:443/hook"
    assert target.host_header == HOOK_HOST


def test_an_ipv6_literal_url_keeps_its_brackets_in_host(resolves_to):
    resolves_to("2606:4700:4700::1111")

    target = pinned_target("https://[2606:4700:4700::1111]:8443/hook", allow_private=False)

    assert target.url == "https://[2606:4700:4700::1111]:8443/hook"
    assert target.host_header == "[2606:4700:4700::1111]:8443"


def test_pinned_target_refuses_a_private_answer_unless_allowed(resolves_to):
    resolves_to("10.0.0.7")

    with pytest.raises(RefusedAddress, match=re.escape("10.0.0.7")):
        pinned_target(f"https://{HOOK_HOST}/hook", allow_private=False)
    assert pinned_target(f"https://{HOOK_HOST}/hook", allow_private=True).url == "https://10.0.0.7:443/hook"
