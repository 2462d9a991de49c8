"""`proofup simulator`: one command that starts it and says where everything is; bad options stop it cleanly."""
from __future__ import annotations

import pytest

from app.cli import main as proofup
from app.simulator.cli import main


def test_start_prints_base_url_ca_and_seeded_users(simulator):
    printed = simulator.output.read_text()
    assert f"ProofUp simulator at {simulator.base_url}" in printed
    assert f"CA certificate:   {simulator.ca_file}" in printed
    for user in simulator.seed.users:
        assert f"{user.upn}" in printed and user.state in printed
    assert simulator.user("ada.lovelace@uni.test").password not in printed
    assert all(secret not in printed for secret in simulator.secrets.values())


@pytest.mark.parametrize("args, message", [
    (["--port", "0"], "--port must be between 1 and 65535"),
    (["--seed", "/nonexistent/seed.yaml"], "cannot read seed file"),
    (["--directory", "ldap"], "PROOFUP_LDAP_URL"),
])
def test_bad_options_stop_with_a_message(tmp_path, monkeypatch, capsys, args, message):
    for name in ("PROOFUP_LDAP_URL", "PROOFUP_LDAP_BIND_DN", "PROOFUP_LDAP_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    assert main(["--state-dir", str(tmp_path / "state"), *args]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "state" / "ca.pem").exists(), "nothing is made when the start is refused"


def test_proofup_simulator_is_the_same_command(capsys):
    with pytest.raises(SystemExit) as done:
        proofup(["simulator", "--help"])
    assert done.value.code == 0 and "--state-dir" in capsys.readouterr().out
