"""The delivery process (mailrelay-deliver): started by mailrelayd for the
first session it needs, ended once no session has been open for a second,
started again for the next message.  Whatever happens to it, mail
accepted is not lost: a delivery process killed in the middle of a
transaction has its messages tried again (after a back-off), and one that
outlived its daemon would deliver beside the next one, so it ends with it.

The TLS files and secrets it reads are checked by mailrelayd at start, as
root and then as the daemon's user (who starts the process whenever mail
comes), and at every reload."""
import os
import pwd
import shutil
import signal
import subprocess
import time

from mrtest import (delivery_pids, make_message, quote, require_root, smarthost_opts, to_crlf,
                    wait_until, write_config)

RCPT = "rcpt@example.net"
SENDER = "sender@example.org"


def submit(d, subject):
    msg = make_message(subject=subject, sender=SENDER, to=(RCPT,))
    r = d.sendmail(["-i", "-f", SENDER, RCPT], msg)
    assert r.rc == 0, r
    return to_crlf(msg)


def alive(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def test_it_ends_when_idle_and_starts_again(daemon, smarthost):
    sh = smarthost()
    d = daemon(smarthosts=[("main", smarthost_opts(sh.port, reuse_time="0s"))])
    assert delivery_pids(d.proc.pid) == []      # none before there is mail
    first = submit(d, "first")
    sh.wait_for(1)
    wait_until(lambda: delivery_pids(d.proc.pid) == [], 10, what="the delivery process gone when idle")
    second = submit(d, "second")
    sh.wait_for(2)
    assert [t.content for t in sh.delivered()] == [first, second]
    assert d.outcomes(status="deferred") == []


def test_a_killed_delivery_process_loses_nothing(daemon, smarthost):
    """SIGKILL in the middle of the data: the message is tried again after
    the back-off, by a new process, and delivered; one line says what
    happened."""
    sh = smarthost()
    sh.hold()                                   # the data waits for release()
    d = daemon(smarthost=sh)
    msg = submit(d, "killed")
    wait_until(lambda: len(delivery_pids(d.proc.pid)) == 1 and sh.all_transactions(), 15,
               what="a transaction under way")
    (child,) = delivery_pids(d.proc.pid)
    os.kill(child, signal.SIGKILL)
    d.wait_for_log(r"mailrelayd: the delivery process ended \(its link closed\); "
                   r"the messages it was sending are tried again$", timeout=10)
    d.wait_for_log(r"mailrelayd: no delivery for 1s$", timeout=10)
    sh.release()
    rec = d.wait_for_record(to=RCPT, status="sent", timeout=30)
    assert rec["attempts"] == "1", rec["line"]   # a try cut short is no attempt
    assert [t.content for t in sh.delivered()] == [msg]
    d.wait_queue_empty(timeout=10)
    d.check_alive()


def test_it_does_not_outlive_the_daemon(daemon, smarthost):
    """mailrelayd SIGKILLed while its delivery process keeps a connection:
    the process ends too (a second one would deliver beside the next
    daemon's)."""
    sh = smarthost()
    d = daemon(smarthosts=[("main", smarthost_opts(sh.port, reuse_time="60s"))])
    submit(d, "before the kill")
    sh.wait_for(1)
    (child,) = delivery_pids(d.proc.pid)
    d.kill()
    wait_until(lambda: not alive(child), 10, what="the delivery process gone with its daemon")


def test_stop_ends_the_delivery_process(daemon, smarthost):
    sh = smarthost()
    d = daemon(smarthosts=[("main", smarthost_opts(sh.port, reuse_time="60s"))])
    submit(d, "before the stop")
    sh.wait_for(1)
    (child,) = delivery_pids(d.proc.pid)
    d.stop()
    assert not alive(child)


def test_a_secret_the_daemon_user_cannot_read_stops_the_start(build, workdir):
    """Read as root it loads; the delivery process runs as the daemon's
    user, who cannot: mailrelayd says so and does not start."""
    require_root("a file only root can read, and a daemon that drops to nobody")
    pwd.getpwnam("nobody")
    secret = os.path.join(workdir, "pw")
    with open(secret, "w") as f:
        f.write("s3cret\n")
    os.chmod(secret, 0o600)
    path, text = write_config(workdir, {"user": quote("nobody")},
                              {"username": quote("relay@relay.test"), "tls": "required",
                               "password_file": quote(secret)}, name="mailrelay.conf")
    line = next(i for i, l in enumerate(text.splitlines(), 1) if "password_file" in l)
    r = subprocess.run([build.mailrelayd, "-f", "-c", path], capture_output=True, text=True, timeout=30)
    assert r.returncode == 78, (r.returncode, r.stderr)
    want = ("mailrelayd: %s:%d: password_file: %s: Permission denied (smarthost main) (as user nobody, "
            "who runs the delivery process: make the file readable by it, e.g. mode 0640, group nobody)"
            % (path, line, secret))
    assert want in r.stderr.splitlines()[-1], r.stderr


def test_a_reload_with_a_bad_tls_file_is_refused(daemon, smarthost, workdir):
    sh = smarthost()
    d = daemon(smarthost=sh)
    missing = os.path.join(workdir, "missing.pem")
    d.config_text = d.config_text.replace("tls = disabled", 'tls = required; tls_ca_file = %s'
                                          % quote(missing), 1)
    with open(d.conf, "w") as f:
        f.write(d.config_text)
    d.hup()
    m = d.wait_for_log(r"mailrelayd: reload refused: (.*); keeping the current configuration$", timeout=10)
    assert "tls_ca_file" in m.group(1) and missing in m.group(1), m.group(0)
    # the configuration running is the old one: plain delivery goes on
    msg = submit(d, "after the refused reload")
    sh.wait_for(1)
    assert [t.content for t in sh.delivered()] == [msg]


def test_frames_a_broken_process_sends_end_it(daemon, smarthost, workdir, build):
    """A delivery process that sends what does not parse is ended and its
    messages tried again: a stand-in program writes garbage on the link."""
    sh = smarthost()
    d = daemon(smarthost=sh, start=False)
    fake = os.path.join(workdir, "bin")
    os.mkdir(fake)
    # mailrelayd runs the mailrelay-deliver beside itself: a copy of it beside the stand-in
    shutil.copy(build.mailrelayd, os.path.join(fake, "mailrelayd"))
    stand_in = os.path.join(fake, "mailrelay-deliver")
    with open(stand_in, "w") as f:
        f.write("#!/bin/sh\n"
                "case \"$*\" in *--check*) exit 0;; esac\n"
                "printf '\\000\\000\\000\\005\\377junk' >&3\n"
                "sleep 5\n")
    os.chmod(stand_in, 0o755)
    d.binary = os.path.join(fake, "mailrelayd")
    d.start()
    submit(d, "to a broken process")
    d.wait_for_log(r"mailrelayd: the delivery process ended \(it sent a frame that does not parse\)", timeout=10)
    d.check_alive()
