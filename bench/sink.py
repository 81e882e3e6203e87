"""A smarthost for the benchmarks: accepts every message on loopback and
appends one line per message to a count file, nothing else.
    python3 bench/sink.py PORT COUNTFILE"""
import asyncio
import sys

from aiosmtpd.controller import Controller


class Count:
    def __init__(self, path):
        self.f = open(path, "a", buffering=1)

    async def handle_DATA(self, server, session, envelope):
        self.f.write("%d\n" % len(envelope.content))
        return "250 2.0.0 Ok"


def main():
    port, path = int(sys.argv[1]), sys.argv[2]
    c = Controller(Count(path), hostname="127.0.0.1", port=port)
    c.start()
    print("sink listening on 127.0.0.1:%d" % port, flush=True)
    try:
        asyncio.new_event_loop().run_forever()
    finally:
        c.stop()


if __name__ == "__main__":
    main()
