"""`proofup demo`: the simulator, an embedded directory, the portal and its worker in one process."""
from __future__ import annotations

import logging
import secrets
import signal
import threading
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urljoin

from werkzeug.serving import make_server

from app import create_app
from app.config import DEMO_ENV_FILE, Settings, env_file_text, load_settings
from app.seed import Seed, load_seed
from app.wiring import Services, build_mail_sender, build_services, build_worker, warm_up_graph

log = logging.getLogger(__name__)
DEMO_METHOD_DELAY_SECONDS = 3.0  # a registered method shows in (simulated) Graph after this
DEMO_CHECK_INTERVAL_SECONDS = 3.0
DEMO_WORKER_INTERVAL_SECONDS = 15.0
DEMO_LOGO = Path(__file__).resolve().parent / "data" / "demo-logo.svg"
# The demo university's face and service desk (PROOFUP_UNIVERSITY_NAME, PROOFUP_DESK_*): fictional values
# (+44 20 7946 0xxx is a range Ofcom keeps for drama), so the pages look as a real deployment's would.
DEMO_BRANDING = dict(
    university_name="University of Test",
    logo_file=str(DEMO_LOGO),
    desk_text="IT Service Desk, Library, ground floor",
    desk_phone="+44 20 7946 0123",
    desk_url="https://servicedesk.uni.test",
    desk_hours="Mon-Fri 8:00-18:00",
    timezone="Europe/Berlin",
)


def _secret_key(state_dir: Path) -> str:
    """Keep one random secret key per demo state dir, so sessions survive a restart of the demo."""
    path = state_dir / "secret-key"
    if not path.exists():
        path.touch(mode=0o600)
        path.write_text(secrets.token_urlsafe(32), encoding="utf-8")
    return path.read_text(encoding="utf-8").strip()


class FormFields(HTMLParser):
    """Collect the first form's action and its named inputs (to drive the sign-in pages without a browser)."""

    def __init__(self, html: str):
        super().__init__()
        self.action, self.fields = "", {}
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "form" and not self.action:
            self.action = attrs.get("action", "")
        if tag == "input" and attrs.get("name"):
            self.fields[attrs["name"]] = attrs.get("value") or ""


def adfs_form_post(auth_uri: str, upn: str, password: str, ca_file: str, code: str = "") -> FormFields:
    """Sign in on the simulated AD FS pages like a browser (a staff account's code when asked); return the form back."""
    from app.adapters.http import make_session

    browser = make_session(ca_file)
    login = browser.get(auth_uri)
    form = FormFields(login.text)
    form.fields.update(UserName=upn, Password=password)
    answer = browser.post(urljoin(login.url, form.action), data=form.fields)
    asked = FormFields(answer.text)
    if code and asked.action.endswith("/adfs/ls/code"):
        asked.fields.update(code=code)
        answer = browser.post(urljoin(answer.url, asked.action), data=asked.fields)
    return FormFields(answer.text)


def sign_in(portal_url: str, upn: str, password: str, ca_file: str):
    """Return (a requests session signed in to a demo portal through the simulated AD FS, the page it landed on)."""
    from app.adapters.http import make_session

    portal = make_session(None)
    auth_uri = portal.get(portal_url + "/sign-in", allow_redirects=False).headers["Location"]
    posted = adfs_form_post(auth_uri, upn, password, ca_file)
    landed = portal.post(posted.action, data=posted.fields)
    landed.raise_for_status()
    return portal, landed.text


def _not_ready(environ, start_response):
    """Answer 503 until the demo's portal is built (the server binds before the app exists)."""
    start_response("503 Service Unavailable", [("Content-Type", "text/plain")])
    return [b"starting"]


class DemoStack:
    """Start and stop the whole demo; the Playwright journeys and `proofup demo` both use it."""

    def __init__(self, state_dir: str | Path, *, seed: Seed | None = None, directory=None,
                 host: str = "127.0.0.1", port: int = 0, simulator_port: int = 0,
                 method_delay_seconds: float = DEMO_METHOD_DELAY_SECONDS, worker: bool = True,
                 entra_sign_in: bool = False, mail: bool = True, **setting_overrides):
        self.state_dir = Path(state_dir)
        self.seed = seed or load_seed()
        self.host = host
        self.port = port
        self.simulator_port = simulator_port
        self.method_delay_seconds = method_delay_seconds
        self.run_worker = worker
        self.entra_sign_in = entra_sign_in  # sign in through the simulated Entra instead of AD FS
        self.setting_overrides = setting_overrides
        self.directory_file: Path | None = None
        if directory is None:
            from app.adapters.directory_embedded import EmbeddedDirectory

            # Kept in the state directory, so admin commands in another terminal change the same directory.
            self.directory_file = (self.state_dir / "directory.json").resolve()
            directory = EmbeddedDirectory(self.seed, state_file=self.directory_file)
        self.directory = directory
        self.simulator = None
        self.mailbox = None
        self.mailbox_url = ""  # the mailbox page: the demo's mail with clickable links
        if mail:
            from app.demo_mailbox import DemoMailbox

            self.mailbox = DemoMailbox(self.state_dir / "mailbox")
        self.settings: Settings | None = None
        self.services: Services | None = None
        self._portal = None
        self._threads: list[threading.Thread] = []
        self._stop_worker: threading.Event | None = None

    @property
    def portal_url(self) -> str:
        return f"http://{self.host}:{self._portal.server_port}"

    @property
    def app(self):
        """Return the portal's Flask app (for the test client)."""
        return self._portal.app

    @property
    def control_token(self) -> str:
        return (self.state_dir / "simulator" / "control-token").read_text(encoding="utf-8").strip()

    def control(self, method: str, path: str, body: dict | None = None):
        """Call the simulator's control endpoint (faults, request log, tunables); return the decoded answer."""
        from app.adapters.http import make_session
        from app.simulator.control import CONTROL_PREFIX

        session = make_session(self.settings.ca_bundle)
        response = session.request(method, self.simulator.base_url + CONTROL_PREFIX + path, json=body,
                                   headers={"Authorization": f"Bearer {self.control_token}"})
        response.raise_for_status()
        return response.json() if response.content else None

    def signed_in_session(self, upn: str):
        """Return (a requests session signed in to the portal as a seeded user, the page it landed on)."""
        return sign_in(self.portal_url, upn, self.seed.user(upn).password, self.settings.ca_bundle)

    def register_method(self, upn: str, kind: str = "microsoftAuthenticator") -> None:
        """Register a method in the simulated Entra as My Sign-Ins does (Graph shows it after the method delay)."""
        world = self.simulator._server.app.extensions["simulator"].world  # noqa: SLF001 - our own simulator
        world.add_method(world.find_user(upn).id, kind)

    def graph_requests(self, since: int = 0) -> list[dict]:
        """Return the simulator's log of Graph requests (each $batch counts once, its parts are marked)."""
        return [r for r in self.control("GET", f"/requests?since={since}")["requests"]
                if r["path"].startswith("/v1.0") and not r.get("batch_part")]

    def start(self) -> "DemoStack":
        """Start the simulator, then the portal configured against it, then the worker thread."""
        from app.simulator import create_simulator
        from app.simulator.clients import GRAPH_CLIENT_ID, PORTAL_CLIENT_ID, read_client_secrets
        from app.simulator.keys import ensure_tls
        from app.simulator.server import serve_in_background
        from app.simulator.world import Tunables

        sim_dir = self.state_dir / "simulator"
        sim_dir.mkdir(parents=True, exist_ok=True)
        tls = ensure_tls(sim_dir)
        sim_app = create_simulator(sim_dir, self.seed, self.directory,
                                   tunables=Tunables(method_delay_seconds=self.method_delay_seconds))
        self.simulator = serve_in_background(sim_app, self.host, self.simulator_port, tls)
        sim = self.simulator.base_url
        client_secrets = read_client_secrets(sim_dir)
        database = (self.state_dir / "portal.sqlite3").resolve()
        for stale in (database, database.with_name(database.name + "-wal"), database.with_name(database.name + "-shm")):
            # The directory and the simulated cloud start afresh from the seed: so do the grants.
            stale.unlink(missing_ok=True)
        values = dict(
            secret_key=_secret_key(self.state_dir),
            authority=f"{sim}/{self.seed.tenant_id}" if self.entra_sign_in else f"{sim}/adfs",
            client_id=PORTAL_CLIENT_ID,
            client_secret=client_secrets[PORTAL_CLIENT_ID],
            tenant_id=self.seed.tenant_id,
            graph_authority=f"{sim}/{self.seed.tenant_id}",
            graph_client_id=GRAPH_CLIENT_ID,
            graph_client_secret=client_secrets[GRAPH_CLIENT_ID],
            graph_url=f"{sim}/v1.0",
            ca_bundle=str(tls.ca.resolve()),
            ldap_base_dn=self.seed.base_dn,
            required_group_dn=self.seed.required_group_dn,
            bypass_group_dn=self.seed.bypass_group_dn,
            privileged_group_dns=(self.seed.privileged_group_dn,),
            helpdesk_group_dn=self.seed.helpdesk_group_dn,
            auditor_group_dn=self.seed.auditor_group_dn,
            database_url=f"sqlite:///{database}",
            mysignins_url=f"{sim}/security-info",
            replication_wait_seconds=2.0,
            check_interval_seconds=DEMO_CHECK_INTERVAL_SECONDS,
            worker_interval_seconds=DEMO_WORKER_INTERVAL_SECONDS,
            **DEMO_BRANDING,
        )
        if self.mailbox is not None:  # the students' security notices land in the demo's own mailbox
            values.update(self.mailbox.start().settings(sender=f"proofup@{self.seed.tenant_domain}"))
            self.mailbox_url = self.mailbox.serve()
        if self.directory_file is not None:
            values["demo_directory"] = str(self.directory_file)
        # Werkzeug's threaded server speaks HTTP/1.1 with keep-alive: enough for one demo; production uses gunicorn.
        # It binds first (the port may be chosen by the system) so the portal's public address is known.
        self._portal = make_server(self.host, self.port, _not_ready, threaded=True)
        values["public_url"] = f"http://{self.host}:{self._portal.server_port}"
        values.update(self.setting_overrides)
        self.settings = load_settings({}, **values)
        self._write_env_file()
        self.services = build_services(self.settings, directory=self.directory)
        warm_up_graph(self.services)  # the first student's diagnosis then answers as fast as the next one
        self._portal.app = create_app(self.settings, services=self.services)
        self._spawn("proofup-portal", self._portal.serve_forever)
        # The simulated AD FS "register" notice links to the portal, as the web-theme change does (deploy-ad.md).
        sim_app.extensions["simulator"].portal_url = self.portal_url
        if self.run_worker:
            from app.worker import start_worker_thread

            sweeper, lease = build_worker(self.services)
            thread, self._stop_worker = start_worker_thread(sweeper, lease,
                                                            interval=self.settings.worker_interval_seconds,
                                                            confirm_interval=self.settings.confirm_interval_seconds,
                                                            mail=build_mail_sender(self.services),
                                                            keep_lease=False, batches=self.services.batches,
                                                            scans=self.services.scans)
            self._threads.append(thread)
        return self

    @property
    def env_file(self) -> Path:
        return self.state_dir / DEMO_ENV_FILE

    def _write_env_file(self) -> None:
        """Write the demo's settings where `proofup ... --demo STATE_DIR` reads them (demo secrets only)."""
        self.env_file.touch(mode=0o600)
        self.env_file.write_text("# Written by `proofup demo`: the settings of the running demo (demo data only).\n"
                                 + env_file_text(self.settings), encoding="utf-8")

    def _spawn(self, name: str, target) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def stop(self) -> None:
        """Stop the worker, the portal and the simulator."""
        if self._stop_worker is not None:
            self._stop_worker.set()
        if self._portal is not None:
            self._portal.shutdown()
        if self.simulator is not None:
            self.simulator.shutdown()
        if self.mailbox is not None:
            self.mailbox.stop()
        for thread in self._threads:
            thread.join(timeout=5)
        if self.services is not None:
            self.services.close()

    def __enter__(self) -> "DemoStack":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def banner(self) -> str:
        """Say where the portal is and who can sign in (demo data only)."""
        passwords = {u.password for u in self.seed.users}
        lines = [
            "",
            f"ProofUp Portal demo: open {self.portal_url}",
            f"  simulated AD FS, Entra, Graph and My Sign-Ins at {self.simulator.base_url} "
            "(the browser may warn about its throw-away certificate: accept it for this demo)",
            f"  state (database, certificates) in {self.state_dir.resolve()}",
            *([f"  mail to students (security notices, invites) is kept in {self.mailbox.folder.resolve()} "
               "as .eml files: open one in any mail program or text editor",
               f"  or read it at {self.mailbox_url} (an invite's link is one click away)"] if self.mailbox else []),
            "",
            "Demo sign-ins" + (f" (password for all: {passwords.pop()})" if len(passwords) == 1 else "") + ":",
        ]
        width = max(len(u.upn) for u in self.seed.users)
        for user in self.seed.users:
            if user.staff_role:
                continue
            where = "" if user.in_entra and user.in_directory else (
                " (not in Entra)" if not user.in_entra else " (not in AD)")
            lines.append(f"  {user.upn.ljust(width)}  {user.state}{where}")
        if self.seed.staff:
            lines += ["", f"Service desk console: {self.portal_url}/helpdesk (the simulated AD FS asks staff for a "
                          "one-time code after the password):"]
            lines += [f"  {u.upn.ljust(width)}  {u.staff_role}, code {u.staff_mfa}" for u in self.seed.staff]
        lines += ["", "Try ada.lovelace@uni.test (stuck: half-registered). Stop with Ctrl+C.", ""]
        if self.directory_file is not None:
            demo = f"--demo {self.state_dir.resolve()}"
            lines += [
                "Admin commands against this demo, in a second terminal (the same virtual environment):",
                f"  proofup diagnose {demo} ada.lovelace@uni.test",
                f"  proofup grant {demo} ada.lovelace@uni.test --minutes 30 --reason 'ticket 1'",
                f"  proofup release {demo} ada.lovelace@uni.test --reason 'done'",
                f"  proofup worker {demo} --once",
                "",
            ]
        return "\n".join(lines)


def _stop_on_sigterm(_signum, _frame) -> None:
    raise KeyboardInterrupt  # `kill` or a service manager stops the demo as cleanly as Ctrl+C


def run_demo(*, port: int = 8000, simulator_port: int = 8443, state_dir: str = "var/demo",
             host: str = "127.0.0.1", remedy: str = "bypass") -> int:
    """Run the demo in the foreground until Ctrl+C."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no access line for every status poll
    stack = DemoStack(state_dir, host=host, port=port, simulator_port=simulator_port, remedy=remedy)
    try:
        stack.start()
    except (OSError, SystemExit) as exc:  # Werkzeug exits (SystemExit) when the portal's port is taken
        print(f"proofup demo: cannot start: {exc} (ports {port} and {simulator_port} must be free; "
              "try --port and --simulator-port)")
        stack.stop()
        return 3
    print(stack.banner(), flush=True)
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        print("stopping the demo")
    finally:
        stack.stop()
    return 0
