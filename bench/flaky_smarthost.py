#!/usr/bin/python3
"""
A flaky smarthost for the long fault run (bench/long.py, issue 14 point 4).

An aiosmtpd server on loopback that, at random, answers 421 at connect,
451 to a RCPT or to the final dot, drops the connection in the middle of
DATA, or is slow (before its greeting or before its answer to the final
dot), and otherwise accepts.  The draws come from one random.Random seeded
with --seed (a random seed when none is given); the seed is printed first,
so a run names the faults it met.  The sessions interleave as the client
and the machine schedule them, so a seed fixes the odds and the draws, not
which message meets which fault.

Every message accepted is recorded by one line appended to --log, written
with a single write(2) on an O_APPEND descriptor before the 250 is sent
(so a line is never lost to a buffer when the run is judged, and a line
means the smarthost took responsibility for the message):

    SEQ QID T_MAIL T_ACCEPT SESSION DIGEST

SEQ is the message's X-Bench-Seq header ("-" when it has none), QID the
queue id of the first Received: field ("-" when none), T_MAIL and T_ACCEPT
the wall-clock times (seconds since the epoch, microseconds) at which the
transaction's MAIL FROM arrived and the 250 to the final dot was decided,
SESSION the session's number and DIGEST the first 16 hex digits of the
SHA-256 of the body (everything after the first empty line, CRLF lines).
A message whose client is already gone when the 250 is decided is not
recorded: nobody heard the 250, and the client will send it again.

"ready PORT" is printed (and flushed) once the server listens.  SIGTERM or
SIGINT stops it; the counts of what it did are then written as JSON to
--stats when given.
"""

import argparse
import asyncio
import hashlib
import json
import logging
import os
import random
import re
import signal
import sys
import time

from aiosmtpd.smtp import SMTP

SEQ_RE = re.compile(rb"(?im)^X-Bench-Seq:[ \t]*([0-9]+)[ \t]*\r?$")
FIRST_FIELD_RE = re.compile(rb"\A(Received:[^\r\n]*(?:\r\n[ \t][^\r\n]*)*)", re.I)
QID_RE = re.compile(rb"\bid ([0-9A-F]{16})\b")


class Faults:
    """The odds of each fault and the draws, with counts of what was done."""

    def __init__(self, args):
        self.rng = random.Random(args.seed)
        self.args = args
        self.counts = {k: 0 for k in (
            "sessions", "connect_421", "slow_greeting", "pipelining_offered",
            "rcpt_451", "drop_in_data", "data_451", "slow_data",
            "accepted", "client_gone")}

    def draw(self, p):
        return self.rng.random() < p

    def delay(self):
        return self.rng.uniform(0.05, self.args.slow_max)

    def count(self, what):
        self.counts[what] += 1


class FlakySMTP(SMTP):
    """aiosmtpd's server with faults at connect and in the middle of DATA
    (the others are in the handler)."""

    def __init__(self, handler, faults, sid, **kw):
        super().__init__(handler, **kw)
        self.faults = faults
        self.sid = sid

    async def _handle_client(self):
        f = self.faults
        f.count("sessions")
        if f.draw(f.args.p_connect_421):
            f.count("connect_421")
            await self.push("421 4.3.2 flaky.test: not now, try again later")
            self.transport.close()
            return
        if f.draw(f.args.p_slow):
            f.count("slow_greeting")
            await asyncio.sleep(f.delay())
            if self.transport is None:
                return
        await super()._handle_client()

    async def smtp_DATA(self, arg):
        f = self.faults
        if not self.envelope.rcpt_tos or arg or not f.draw(f.args.p_drop):
            return await super().smtp_DATA(arg)
        # the connection dropped after a part of the body
        f.count("drop_in_data")
        await self.push("354 End data with <CR><LF>.<CR><LF>")
        try:
            for _ in range(1 + f.rng.randrange(8)):
                await self._reader.readuntil(b"\r\n")
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        if self.transport is not None:
            self.transport.abort()


class Handler:
    def __init__(self, faults, logfd):
        self.f = faults
        self.logfd = logfd

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        session.host_name = hostname
        if self.f.draw(0.5):
            self.f.count("pipelining_offered")
            responses.insert(len(responses) - 1, "250-PIPELINING")
        return responses

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        envelope.bench_t_mail = time.time()
        return "250 2.1.0 Ok"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if self.f.draw(self.f.args.p_rcpt_451):
            self.f.count("rcpt_451")
            return "451 4.3.0 flaky.test: recipient deferred, try again later"
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 2.1.5 Ok"

    async def handle_DATA(self, server, session, envelope):
        f = self.f
        if f.draw(f.args.p_data_451):
            f.count("data_451")
            return "451 4.3.0 flaky.test: message deferred, try again later"
        if f.draw(f.args.p_slow):
            f.count("slow_data")
            await asyncio.sleep(f.delay())
        content = envelope.original_content
        if server.transport is None or server.transport.is_closing():
            f.count("client_gone")
            return "250 2.0.0 Ok (nobody hears this)"
        m = SEQ_RE.search(content.split(b"\r\n\r\n", 1)[0])
        seq = m.group(1).decode() if m else "-"
        m = FIRST_FIELD_RE.match(content)
        m = QID_RE.search(m.group(1).replace(b"\r\n", b"")) if m else None
        qid = m.group(1).decode() if m else "-"
        sep = content.find(b"\r\n\r\n")
        body = content[sep + 4:] if sep >= 0 else b""
        digest = hashlib.sha256(body).hexdigest()[:16]
        t_mail = getattr(envelope, "bench_t_mail", 0.0)
        line = "%s %s %.6f %.6f %d %s\n" % (seq, qid, t_mail, time.time(), server.sid, digest)
        os.write(self.logfd, line.encode())
        f.count("accepted")
        return "250 2.0.0 Ok: queued as %s" % seq


async def serve(args):
    faults = Faults(args)
    logfd = os.open(args.log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    handler = Handler(faults, logfd)
    loop = asyncio.get_running_loop()
    sids = iter(range(1, 1 << 62))

    def factory():
        return FlakySMTP(handler, faults, next(sids), hostname="flaky.test",
                         decode_data=False, enable_SMTPUTF8=True, timeout=120)

    server = await loop.create_server(factory, host=args.host, port=args.port,
                                      reuse_address=True)
    port = server.sockets[0].getsockname()[1]
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print("ready %d" % port, flush=True)
    await stop.wait()
    server.close()
    if args.stats:
        tmp = args.stats + ".tmp"
        with open(tmp, "w") as fh:
            json.dump(faults.counts, fh)
        os.rename(tmp, args.stats)
    os.close(logfd)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[1],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0, help="0: a free port (printed)")
    ap.add_argument("--log", required=True, help="one line per accepted message")
    ap.add_argument("--stats", help="the counts of faults, as JSON, at exit")
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--p-connect-421", type=float, default=0.03)
    ap.add_argument("--p-rcpt-451", type=float, default=0.03)
    ap.add_argument("--p-data-451", type=float, default=0.03)
    ap.add_argument("--p-drop", type=float, default=0.03, help="drop in the middle of DATA")
    ap.add_argument("--p-slow", type=float, default=0.05, help="slow greeting, slow final reply")
    ap.add_argument("--slow-max", type=float, default=1.5, help="the longest slowness, seconds")
    args = ap.parse_args()
    if args.seed is None:
        args.seed = random.SystemRandom().randrange(1 << 32)
    print("flaky_smarthost: seed %d" % args.seed, flush=True)
    # aiosmtpd logs every session and every dropped connection
    logging.getLogger("mail.log").setLevel(logging.CRITICAL)
    asyncio.run(serve(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
