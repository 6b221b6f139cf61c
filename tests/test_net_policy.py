"""The allowed-networks rule for outgoing connections (webhooks, the MQTT broker)."""

from __future__ import annotations

import pytest

from openfrt.net_policy import NetworkNotAllowedError, check_host_allowed, check_url_allowed, shown_url


@pytest.mark.parametrize("url", [
    "http://127.0.0.1:8080/hook", "http://localhost/hook", "http://169.254.169.254/latest/meta-data/",
    "http://[::1]/hook", "http://[::ffff:127.0.0.1]/hook", "http://0.0.0.0/hook", "http://224.0.0.1/hook",
])
def test_without_a_list_loopback_link_local_and_special_addresses_are_refused(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENFRT_ALLOWED_NETWORKS", raising=False)
    with pytest.raises(NetworkNotAllowedError, match="outside the allowed networks"):
        check_url_allowed(url)


def test_without_a_list_other_addresses_are_allowed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENFRT_ALLOWED_NETWORKS", raising=False)
    check_url_allowed("https://10.1.2.3/hook")
    check_url_allowed("http://192.0.2.7:8080/hook?token=x")


def test_a_list_allows_only_its_networks_and_opens_loopback_only_when_listed_itself(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENFRT_ALLOWED_NETWORKS", "10.0.0.0/8, 0.0.0.0/0")
    check_url_allowed("http://10.9.9.9/hook")
    check_url_allowed("http://192.0.2.7/hook")
    with pytest.raises(NetworkNotAllowedError):
        check_url_allowed("http://127.0.0.1/hook")  # 0.0.0.0/0 does not open loopback
    monkeypatch.setenv("OPENFRT_ALLOWED_NETWORKS", "10.0.0.0/8 127.0.0.0/8")
    check_url_allowed("http://127.0.0.1:9000/hook")
    check_host_allowed("127.0.0.1", 1883)
    with pytest.raises(NetworkNotAllowedError):
        check_url_allowed("http://192.0.2.7/hook")
    with pytest.raises(NetworkNotAllowedError):
        check_url_allowed("http://169.254.169.254/")


@pytest.mark.parametrize("url", ["ftp://10.0.0.1/x", "file:///etc/passwd", "http:///nohost", "10.0.0.1/hook", "http://10.0.0.1:99999/"])
def test_only_http_urls_with_a_host_are_accepted(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENFRT_ALLOWED_NETWORKS", raising=False)
    with pytest.raises(NetworkNotAllowedError):
        check_url_allowed(url)


def test_a_bad_list_and_an_unresolvable_host_are_refused_with_a_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENFRT_ALLOWED_NETWORKS", "10.0.0.0/8, not-a-network")
    with pytest.raises(NetworkNotAllowedError, match="not a network"):
        check_url_allowed("http://10.0.0.1/")
    monkeypatch.delenv("OPENFRT_ALLOWED_NETWORKS")
    with pytest.raises(NetworkNotAllowedError, match="cannot be resolved"):
        check_host_allowed("no-such-host.invalid")


def test_a_url_is_shown_without_credentials_or_query() -> None:
    assert shown_url("https://user:pw@hooks.example:8443/a/b?token=secret") == "https://hooks.example:8443/a/b?…"
    assert shown_url("http://10.0.0.1/hook") == "http://10.0.0.1/hook"
