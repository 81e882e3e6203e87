#!/usr/bin/python3
"""A local smarthost for the demo: a real SMTP server (aiosmtpd) on
loopback that writes every message it receives to DIR/N.eml, with the
envelope in DIR/N.env.  Usage: demo-smarthost.py PORT DIR"""
import os
import sys
import time

from aiosmtpd.controller import Controller


class SaveHandler:
    def __init__(self, directory):
        self.directory = directory
        self.count = 0

    async def handle_DATA(self, server, session, envelope):
        self.count += 1
        base = os.path.join(self.directory, str(self.count))
        with open(base + ".env", "w") as f:
            f.write("MAIL FROM:<%s>\n" % envelope.mail_from)
            for r in envelope.rcpt_tos:
                f.write("RCPT TO:<%s>\n" % r)
        with open(base + ".eml.tmp", "wb") as f:
            f.write(envelope.original_content or envelope.content)
        os.rename(base + ".eml.tmp", base + ".eml")
        return "250 2.0.0 OK stored as %d" % self.count


def main():
    port, directory = int(sys.argv[1]), sys.argv[2]
    os.makedirs(directory, exist_ok=True)
    ctl = Controller(SaveHandler(directory), hostname="127.0.0.1", port=port,
                     server_hostname="smarthost.demo")
    ctl.start()
    print("smarthost listening on 127.0.0.1:%d" % port, flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        ctl.stop()


if __name__ == "__main__":
    main()
