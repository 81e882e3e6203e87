"""
Fixtures for the mailrelay integration tests.

  build      paths of the built programs ($MAILRELAY_BUILDDIR, default: repo root)
  smarthost  factory of recording, scriptable SMTP servers on 127.0.0.1
  daemon     factory of running mailrelayd instances, each in its own directory
  workdir    a short private directory (unix socket paths must stay < 108 bytes)
  pki        (session) certificates made with openssl for the TLS tests (tlsutil.PKI)
  smtp_proxy factory of recording proxies that strip or refuse STARTTLS (tlsutil.SMTPProxy)

Every test body runs under a time limit (ini option mailrelay_timeout, or
@pytest.mark.mailrelay_timeout(seconds)), enforced with SIGALRM so that a
hung daemon or client fails the test instead of hanging the suite.
"""

import os
import shutil
import signal
import sys
import tempfile

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import mrtest  # noqa: E402
import tlsutil  # noqa: E402

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def pytest_addoption(parser):
    parser.addini("mailrelay_timeout", "seconds a test body may run", default="90")


def pytest_configure(config):
    config.addinivalue_line("markers",
                            "mailrelay_timeout(seconds): time limit of one test body")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item):
    marker = item.get_closest_marker("mailrelay_timeout")
    limit = float(marker.args[0]) if marker else float(item.config.getini("mailrelay_timeout"))

    def on_alarm(signum, frame):
        raise mrtest.TimeLimitExceeded("test ran longer than %.0fs" % limit)

    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, limit)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)
    if rep.when == "call" and rep.failed:
        # Show what the daemon said and what the smarthosts saw.
        for d in getattr(item, "_mr_daemons", []):
            lines = d.log_lines()
            rep.sections.append(("mailrelayd stderr (%s, last 150 lines)" % d.dir,
                                 "\n".join(lines[-150:])))
        for sh in getattr(item, "_mr_smarthosts", []):
            rep.sections.append(("smarthost %s" % sh.name, sh.summary()))
        for px in getattr(item, "_mr_proxies", []):
            rep.sections.append(("proxy %s" % px.name, px.summary()))


class Build:
    def __init__(self, builddir):
        self.dir = builddir
        self.mailrelayd = os.path.join(builddir, "mailrelayd")
        self.mailrelay_deliver = os.path.join(builddir, "mailrelay-deliver")
        self.mailrelay = os.path.join(builddir, "mailrelay")
        self.sendmail = os.path.join(builddir, "mailrelay-sendmail")


@pytest.fixture(scope="session")
def build():
    builddir = os.path.abspath(os.environ.get("MAILRELAY_BUILDDIR") or REPO_ROOT)
    b = Build(builddir)
    missing = [p for p in (b.mailrelayd, b.mailrelay, b.sendmail)
               if not (os.path.isfile(p) and os.access(p, os.X_OK))]
    if missing:
        pytest.fail("built program(s) not found or not executable: %s "
                    "(build first, or set MAILRELAY_BUILDDIR to the directory holding "
                    "mailrelayd, mailrelay and mailrelay-sendmail)" % ", ".join(missing),
                    pytrace=False)
    return b


@pytest.fixture
def workdir(request):
    d = tempfile.mkdtemp(prefix="mr-", dir="/tmp")
    os.chmod(d, 0o755)
    yield d
    rep = getattr(request.node, "rep_call", None)
    if rep is not None and rep.failed:
        print("kept %s for inspection" % d)
    else:
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def smarthost(request):
    """smarthost(port=None, start=True, name=..., tls_context=None,
    ssl_context=None, require_starttls=False) -> mrtest.Smarthost

    tls_context offers STARTTLS, ssl_context makes an implicit-TLS server
    (see PKI.server_context)."""
    made = []
    request.node._mr_smarthosts = made

    def factory(port=None, start=True, name=None, **tls):
        sh = mrtest.Smarthost(port=port, name=name or "smarthost%d" % (len(made) + 1), **tls)
        made.append(sh)
        if start:
            sh.start()
        return sh

    yield factory
    for sh in made:
        sh.stop()


@pytest.fixture
def daemon(request, build, workdir):
    """daemon(smarthost=SH|port|None, smarthosts=[...], overrides={...}, extra="",
    start=True) -> mrtest.Daemon

    At teardown each daemon still running gets SIGTERM and must exit 0, and
    no stderr may contain a sanitizer report.
    """
    made = []
    request.node._mr_daemons = made

    def factory(smarthost=None, smarthosts=None, overrides=None, extra="", start=True):
        if smarthosts is None:
            smarthosts = [smarthost] if smarthost is not None else []
        sub = os.path.join(workdir, "d%d" % len(made))
        os.mkdir(sub)
        d = mrtest.Daemon(build, sub, smarthosts, overrides, extra)
        made.append(d)
        if start:
            d.start()
        return d

    yield factory
    problems = []
    for d in made:
        problems += d.teardown()
    if problems:
        pytest.fail("; ".join(problems), pytrace=False)


@pytest.fixture(scope="session")
def pki():
    """Certificates for the TLS tests, made once per session with openssl."""
    d = tempfile.mkdtemp(prefix="mr-pki-", dir="/tmp")
    os.chmod(d, 0o755)
    try:
        yield tlsutil.PKI(d)
    finally:
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def smtp_proxy(request):
    """smtp_proxy(upstream=SH|port, mode="strip"|"refuse"|"pass") -> tlsutil.SMTPProxy,
    started; stopped at teardown."""
    made = []
    request.node._mr_proxies = made

    def factory(upstream, mode="strip", name=None):
        port = upstream.port if isinstance(upstream, mrtest.Smarthost) else int(upstream)
        px = tlsutil.SMTPProxy(port, mode=mode, name=name or "proxy%d" % (len(made) + 1))
        made.append(px)
        px.start()
        return px

    yield factory
    for px in made:
        px.stop()
