"""The allowed-networks rule as webhooks and the MQTT broker use it (camera sources: test_camera_sources.py)."""

from __future__ import annotations

import pytest

from openfrt.net_policy import WEBHOOK_SCHEMES, DestinationRefused, NetworkPolicy, shown_url


def webhook(url: str) -> None:
    NetworkPolicy.from_env().check_url(url, WEBHOOK_SCHEMES, shown_url(url))


def test_without_a_list_no_destination_is_allowed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENFRT_ALLOWED_NETWORKS", raising=False)
    for url in ("https://10.1.2.3/hook", "http://127.0.0.1:8080/hook"):
        with pytest.raises(DestinationRefused, match="no network is allowed"):
            webhook(url)
    with pytest.raises(DestinationRefused, match="no network is allowed"):
        NetworkPolicy.from_env().check_host("127.0.0.1", 1883)


def test_a_list_allows_only_its_networks_and_opens_loopback_only_when_listed_itself(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENFRT_ALLOWED_NETWORKS", "10.0.0.0/8, 0.0.0.0/0")
    webhook("http://10.9.9.9/hook")
    webhook("http://192.0.2.7/hook")
    for url in ("http://127.0.0.1/hook", "http://169.254.169.254/latest/meta-data/", "http://[::ffff:127.0.0.1]/hook"):
        with pytest.raises(DestinationRefused):
            webhook(url)  # 0.0.0.0/0 does not open the server's own addresses
    monkeypatch.setenv("OPENFRT_ALLOWED_NETWORKS", "10.0.0.0/8, 127.0.0.0/8")
    webhook("http://127.0.0.1:9000/hook")
    NetworkPolicy.from_env().check_host("127.0.0.1", 1883)
    with pytest.raises(DestinationRefused):
        webhook("http://192.0.2.7/hook")


@pytest.mark.parametrize("url", ["ftp://10.0.0.1/x", "file:///etc/passwd", "http:///nohost", "http://10.0.0.1:99999/", "rtsp://10.0.0.1/"])
def test_only_http_urls_with_a_host_are_accepted(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENFRT_ALLOWED_NETWORKS", "10.0.0.0/8")
    with pytest.raises(DestinationRefused):
        webhook(url)


def test_a_refusal_never_shows_the_webhooks_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENFRT_ALLOWED_NETWORKS", "10.0.0.0/8")
    with pytest.raises(DestinationRefused) as refused:
        webhook("http://192.0.2.7/hook?t=s3cr3t-token")
    assert "s3cr3t-token" not in str(refused.value)


def test_an_unresolvable_host_is_refused_with_a_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENFRT_ALLOWED_NETWORKS", "10.0.0.0/8")
    with pytest.raises(DestinationRefused, match="cannot be resolved"):
        NetworkPolicy.from_env().check_host("no-such-host.invalid", 1883)


def test_a_url_is_shown_without_credentials_or_query() -> None:
    assert shown_url("https://user:pw@hooks.example:8443/a/b?token=secret") == "https://hooks.example:8443/a/b?…"
    assert shown_url("http://10.0.0.1/hook") == "http://10.0.0.1/hook"
