"""The sendmail client on the trust boundary: what it refuses before
anything is sent.
"""
import os

import pytest

from mrtest import make_message, one_line, to_crlf

SENDER = "sender@example.org"
RCPT = "rcpt@example.net"


def maildrop_files(d):
    md = os.path.join(d.spool, "maildrop")
    return sorted(os.listdir(md)) if os.path.isdir(md) else []


# ---------------------------------------------------------------------------
# a NUL byte

@pytest.mark.parametrize("running", [True, False])
def test_nul_byte_is_refused_at_submission(daemon, smarthost, running):
    sh = smarthost()
    d = daemon(sh)
    if not running:
        d.stop()
    r = d.sendmail(["-i", "-f", SENDER, RCPT], b"Subject: nul\n\nline one\nbefore\0after\n")
    assert r.rc == 65, r
    line = one_line(r.err_text)
    assert "NUL" in line and "line 4" in line, line
    assert maildrop_files(d) == []
    # the next message is the only one that arrives
    ok = make_message(subject="after the NUL")
    assert d.sendmail(["-i", "-f", SENDER, RCPT], ok).rc == 0
    if not running:
        d.start()
    sh.wait_for(1, timeout=20)
    d.wait_queue_empty()
    assert [t.content for t in sh.delivered()] == [to_crlf(ok)]
