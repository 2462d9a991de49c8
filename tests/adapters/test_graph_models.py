"""msgraph's typed models in the Graph adapter: Entity's field table without its 1,194 imports, and a warm-up
after which the first diagnosis imports nothing (each check in a fresh interpreter: imports are per process)."""
from __future__ import annotations

from tests.support import fresh_python


def test_entity_field_table_is_the_sdks_own():
    """The lean table must be the SDK's: a field msgraph adds to Entity would otherwise never be read."""
    sdk = fresh_python("""
        import json
        from msgraph.generated.models.entity import Entity
        print(json.dumps(sorted(Entity().get_field_deserializers())))
    """)
    lean = fresh_python("""
        import json
        from app.adapters.graph import _models
        from msgraph.generated.models.entity import Entity
        _models()
        print(json.dumps(sorted(Entity().get_field_deserializers())))
    """)
    assert lean == sdk == ["@odata.type", "id"]


def test_a_parsed_user_keeps_its_id_and_type_and_imports_a_tenth_of_the_models():
    found = fresh_python("""
        import json, sys
        from app.adapters.graph import _models, _parse
        user = _parse({"@odata.type": "#microsoft.graph.user", "id": "u-1", "userPrincipalName": "a@uni.test",
                       "accountEnabled": False}, _models()[0])
        models = [m for m in sys.modules if m.startswith("msgraph.generated.models.")]
        print(json.dumps([user.id, user.odata_type, user.user_principal_name, user.account_enabled, len(models)]))
    """)
    assert found[:4] == ["u-1", "#microsoft.graph.user", "a@uni.test", False]
    assert found[4] < 300  # 1,250 when Entity imported every subclass: 33 MiB and 2.5 s in each process


def test_after_warm_up_a_diagnosis_and_a_pass_import_no_module(simulator_factory):
    """gunicorn workers share what the master's warm-up imported: a first diagnosis that imports more is slow again."""
    simulator = simulator_factory()  # of its own: the pass and the methods added change the students for good
    for kind in ("microsoftAuthenticator", "phone", "fido2", "softwareOath", "hardwareOath", "windowsHelloForBusiness",
                 "email", "platformCredential", "externalAuthentication", "qrCodePin", "futureMethod"):
        simulator.add_method("grace.hopper@uni.test", kind)
    found = fresh_python("""
        import json, os, sys
        from app.adapters.graph import GraphClient

        graph = GraphClient(os.environ["T_AUTHORITY"], os.environ["T_CLIENT_ID"], os.environ["T_SECRET"],
                            os.environ["T_GRAPH_URL"], ca_file=os.environ["T_CA"])
        graph.warm_up()
        before = set(sys.modules)
        seen = {}
        for upn in ("ada.lovelace@uni.test", "barbara.liskov@uni.test", "grace.hopper@uni.test"):
            evidence = graph.gather_evidence(upn)
            seen[upn] = [len(evidence.methods), len(evidence.devices), len(evidence.authenticator_sign_ins),
                         sorted(evidence.errors)]
        user_id = graph.gather_evidence("grace.hopper@uni.test").user.id
        made = graph.create_temporary_access_pass(user_id, lifetime_minutes=60, one_time=True)
        print(json.dumps({"seen": seen, "pass": bool(made.id), "imported": sorted(set(sys.modules) - before)}))
    """, T_AUTHORITY=simulator.entra_authority, T_CLIENT_ID=simulator.graph_client_id,
        T_SECRET=simulator.secret(simulator.graph_client_id), T_GRAPH_URL=simulator.graph_url, T_CA=simulator.ca_file)
    assert all(errors == [] for *_, errors in found["seen"].values()), found["seen"]
    assert found["seen"]["grace.hopper@uni.test"][0] == 12  # the password and the 11 added
    assert max(sign_ins for _, _, sign_ins, _ in found["seen"].values()) > 0  # a sign-in was parsed too
    assert found["pass"]
    assert found["imported"] == [], found["imported"]
