"""A stand-in for mailrelay-deliver that speaks the link's frames
(daemon/dlink.h) and delivers nothing: each message it is given it
reports sent, and it writes down what it did, so that a test can drive
mailrelayd's side of the link (dproxy.c) through the orders of frames
that races between the two processes make, one at a time and every time.

    standin_deliver.py DIR MODE [--check]

DIR gets `log` (one line per event: "sent QID", "start SID QID",
"resume SID QID", "ahead SID QID", "refused SID", "end SID", the race made,
"error ...") and, until it exists, the stand-in waits before it reports
its first message: the test writes DIR/go once every message is queued.
MODE says which race to make once, at the first session that has a
message given ahead:

  normal     none
  cross      it goes idle as if the message given ahead had not come yet,
             then takes it as if it had come while idle
  refuse     the session left IDLE: the next message (LK_RESUME) and the
             one ahead (LK_AHEAD) are refused, then the session ends
  end_ahead  it reports its message, then ends with the one ahead untried
  rset       it reports its message and takes the one ahead only a moment
             later (as after an RSET): nothing may come for it meanwhile
  die        it exits holding a message and the one ahead
"""
import os
import re
import select
import struct
import sys
import time

LINK = 3
NULL_STR = 0xffffffff
HERE = os.path.dirname(os.path.abspath(__file__))


def lk_types():
    """enum lk_type from daemon/dlink.h: name -> value."""
    with open(os.path.join(HERE, "..", "..", "daemon", "dlink.h")) as f:
        text = f.read()
    body = re.search(r"enum lk_type \{(.*?)\};", text, re.S).group(1)
    types, value = {}, 0
    for m in re.finditer(r"^\s*(LK_\w+)(?:\s*=\s*(\d+))?\s*,?", body, re.M):
        value = int(m.group(2)) if m.group(2) else value
        types[m.group(1)] = value
        value += 1
    return types


def trouble_kind(name):
    """The value of TK_<name> (lib/trouble.h's X-macro order)."""
    with open(os.path.join(HERE, "..", "..", "lib", "trouble.h")) as f:
        names = re.findall(r"^\s*X\((\w+),", f.read(), re.M)
    return names.index(name)


T = lk_types()
NAMES = {v: k for k, v in T.items()}
DOT_REPLY = trouble_kind("DOT_REPLY")


def read_exact(n):
    buf = b""
    while len(buf) < n:
        chunk = os.read(LINK, n - len(buf))
        if not chunk:
            sys.exit(0)             # mailrelayd closed the link: the end
        buf += chunk
    return buf


def read_frame():
    (length,) = struct.unpack(">I", read_exact(4))
    body = read_exact(length)
    return NAMES.get(body[0], body[0]), body[1:]


def fields(data, schema):
    out, pos = [], 0
    for kind in schema:
        (v,) = struct.unpack_from(">I", data, pos)
        pos += 4
        if kind == "s" and v != NULL_STR:
            out.append(data[pos:pos + v].decode())
            pos += v + 1
        else:
            out.append(None if kind == "s" else v)
    return out


def frame(name, *values):
    body = bytes([T[name]])
    for v in values:
        if isinstance(v, int):
            body += struct.pack(">I", v)
        elif v is None:
            body += struct.pack(">I", NULL_STR)
        else:
            b = v.encode()
            body += struct.pack(">I", len(b)) + b + b"\0"
    msg = struct.pack(">I", len(body)) + body
    while msg:
        msg = msg[os.write(LINK, msg):]


def qid_of(envelope):
    return re.search(r"^id\t(\S+)$", envelope, re.M).group(1)


class StandIn:
    def __init__(self, where, mode):
        self.where, self.mode = where, mode
        self.sessions = {}          # sid -> {"cur": qid, "ahead": qid, "idle": bool, "refusing": bool}
        self.replay = []            # frames to take as if they came now
        self.done = False           # the mode's race is made once (over the whole test)
        if os.path.exists(os.path.join(where, "raced")):
            self.done = True

    def log(self, text):
        with open(os.path.join(self.where, "log"), "a") as f:
            f.write(text + "\n")

    def raced(self, what):
        self.done = True
        with open(os.path.join(self.where, "raced"), "w") as f:
            f.write(what)
        self.log(what)

    def wait_go(self):
        deadline = time.monotonic() + 30
        while not os.path.exists(os.path.join(self.where, "go")) and time.monotonic() < deadline:
            time.sleep(0.01)

    def send_one(self, sid, s):
        """Report s's message sent; then the one ahead, if it had one."""
        while s["cur"] is not None:
            qid = s["cur"]
            if self.mode == "die" and not self.done and s["ahead"] is not None:
                self.raced("died")
                os._exit(1)
            frame("LK_RECORD", sid, 0, DOT_REPLY, 2, "250 2.0.0 queued as " + qid,
                  "standin[127.0.0.1]:25", "none", None, 0)
            frame("LK_RELEASE", sid)
            self.log("sent " + qid)
            s["cur"], ahead = None, s["ahead"]
            s["ahead"] = None
            if ahead is None:
                break
            if self.mode == "cross" and not self.done:
                # it goes idle first, then the one ahead comes
                self.replay.append(("LK_AHEAD", sid, ahead))
                self.raced("crossed")
                break
            if self.mode == "end_ahead" and not self.done:
                self.raced("ended holding " + ahead)
                self.end(sid)
                return
            if self.mode == "rset" and not self.done:
                # an RSET between the two: mailrelayd must wait for LK_TAKEN
                self.raced("released, not taken yet")
                if select.select([LINK], [], [], 0.3)[0]:
                    name, data = read_frame()
                    self.log("error: %s before LK_TAKEN" % name)
                    s["ahead"] = ahead
                    self.dispatch(name, data)
                    s["ahead"] = None
            frame("LK_TAKEN", sid)
            s["cur"] = ahead
        s["idle"] = True
        frame("LK_IDLE", sid)

    def end(self, sid):
        del self.sessions[sid]
        frame("LK_END", sid)
        self.log("end %d" % sid)

    def on(self, name, sid, qid):
        s = self.sessions.get(sid)
        if name == "LK_START":
            self.sessions[sid] = {"cur": qid, "ahead": None, "idle": False, "refusing": False}
            self.log("start %d %s" % (sid, qid))
            self.wait_go()
            self.send_one(sid, self.sessions[sid])
        elif name == "LK_RESUME":
            self.log("resume %d %s" % (sid, qid))
            if s is None or s["refusing"]:
                frame("LK_REFUSED", sid)
                return
            if not s["idle"] or s["cur"] is not None:
                self.log("error: LK_RESUME for a session that is not idle")
                return
            if self.mode == "refuse" and not self.done:
                self.raced("refused")
                s["refusing"] = True
                frame("LK_REFUSED", sid)
                return
            s["idle"], s["cur"] = False, qid
            self.pending_ahead(sid, s)
        elif name == "LK_AHEAD":
            self.log("ahead %d %s" % (sid, qid))
            if s is None:
                frame("LK_REFUSED", sid)        # it had ended
                return
            if s["refusing"]:
                frame("LK_REFUSED", sid)
                self.end(sid)
                return
            if s["ahead"] is not None:
                self.log("error: a second message ahead")
                return
            if s["idle"]:
                s["idle"], s["cur"] = False, qid   # it went idle before this came
                frame("LK_TAKEN", sid)
                self.pending_ahead(sid, s)
                return
            s["ahead"] = qid
            self.send_one(sid, s)
        elif name == "LK_QUIT":
            if s is not None:
                self.end(sid)

    def pending_ahead(self, sid, s):
        """mailrelayd gives the next ahead in the same write as the resume
        (when a message is ready to give): take it before the first report,
        so that the session holds both, as a real one does when its data
        takes longer than the link.  Nothing ahead: the report goes alone."""
        if not select.select([LINK], [], [], 0.5)[0]:
            self.send_one(sid, s)
            return
        name, data = read_frame()
        if name == "LK_AHEAD" and fields(data, "u")[0] == sid:
            (qid,) = [qid_of(e) for e in fields(data, "us")[1:]]
            self.log("ahead %d %s" % (sid, qid))
            s["ahead"] = qid
            self.send_one(sid, s)
            return
        self.send_one(sid, s)
        self.dispatch(name, data)

    def dispatch(self, name, data):
        if name in ("LK_CONFIG", "LK_RELOAD"):
            return
        if name == "LK_START":
            sid, _, _, env = fields(data, "uuss")
            self.on(name, sid, qid_of(env))
        elif name in ("LK_RESUME", "LK_AHEAD"):
            sid, env = fields(data, "us")
            self.on(name, sid, qid_of(env))
        elif name == "LK_QUIT":
            self.on(name, fields(data, "u")[0], None)
        else:
            self.log("error: unknown frame %r" % (name,))

    def run(self):
        while True:
            while self.replay:
                name, sid, qid = self.replay.pop(0)
                self.on(name, sid, qid)
            name, data = read_frame()
            self.dispatch(name, data)


def main():
    where, mode = sys.argv[1], sys.argv[2]
    if "--check" in sys.argv[3:]:
        return 0
    StandIn(where, mode).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
