"""The simulated Entra's state on its own: seeding, visibility delays, the lagging report's view, sizes."""
from __future__ import annotations

import datetime as dt

from app.seed import load_seed
from app.simulator import create_simulator
from app.simulator.world import AUTHENTICATOR_APP_ID, PASSWORD_METHOD_ID, Tunables, World


def kinds(methods):
    return sorted(m.kind for m in methods)


def test_seed_states_become_methods_sign_ins_and_devices():
    world = World(load_seed())
    ada, barbara = world.find_user("ADA.LOVELACE@uni.test"), world.find_user("barbara.liskov@uni.test")
    assert kinds(world.methods_of(ada.id)) == ["password"]
    assert [m.id for m in world.methods_of(ada.id)] == [PASSWORD_METHOD_ID]
    assert len([s for s in world.sign_ins if s.user_id == ada.id and s.app_id == AUTHENTICATOR_APP_ID]) == 3
    assert world.devices_of(ada.id) and not world.has_usable_strong_method(ada.id)
    assert kinds(world.methods_of(barbara.id)) == ["microsoftAuthenticator", "password"]
    assert world.has_usable_strong_method(barbara.id)
    assert world.find_user("radia.perlman@uni.test") is None  # in AD only
    assert world.find_user("dennis.ritchie@uni.test").account_enabled is False


def test_new_methods_show_after_the_delay_and_deleted_ones_linger_in_the_past():
    world = World(load_seed(), tunables=Tunables(method_delay_seconds=30))
    grace = world.find_user("grace.hopper@uni.test")
    method = world.add_method(grace.id, "phone")
    assert kinds(world.methods_of(grace.id)) == ["password"]
    assert kinds(world.registered_methods(grace.id)) == ["password", "phone"]  # My Sign-Ins shows it at once
    world.clock.advance(31)
    assert kinds(world.methods_of(grace.id)) == ["password", "phone"]
    world.delete_method(method)
    assert kinds(world.methods_of(grace.id)) == ["password"]
    a_second_ago = world.clock.now() - dt.timedelta(seconds=1)
    assert kinds(world.methods_of(grace.id, at=a_second_ago)) == ["password", "phone"]


def test_directory_bucket_is_sized_for_the_seeded_tenant(tmp_path):
    lines = ["default_password: Test-Only-Password-1", "users:"]
    lines += [f"  - {{upn: student{i}@uni.test}}" for i in range(60)]
    (tmp_path / "seed.yaml").write_text("\n".join(lines))
    app = create_simulator(tmp_path / "state", load_seed(tmp_path / "seed.yaml"))
    assert app.extensions["simulator"].throttle.limits == {"directory": 5000, "reports": 5}
