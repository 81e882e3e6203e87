"""bash completion of mailrelay (completion/mailrelay).

bash runs with the script sourced and the completion function driven the
way readline drives it (COMP_WORDS, COMP_CWORD); the tests assert the
candidates it offers: commands, options, queue ids from a running
daemon's listing (held ones for release, the others for hold), and
smarthost names for oauth2.
"""
import os
import subprocess

from mrtest import client_env, make_message, smarthost_opts

SCRIPT = os.path.join(os.path.dirname(__file__), "..", "..", "completion", "mailrelay")


def complete(words):
    """The candidates for the last of words (the word being completed)."""
    prog = ('source "$0" || exit 3\n'
            'COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1))\n'
            'COMP_LINE="$*"; COMP_POINT=${#COMP_LINE}\n'
            '_mailrelay || exit 4\n'
            'printf "%s\\n" "${COMPREPLY[@]}"\n')
    p = subprocess.run(["bash", "--norc", "--noprofile", "-c", prog, SCRIPT] + list(words),
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=client_env(),
                       timeout=20)
    assert p.returncode == 0, p
    return sorted(l for l in p.stdout.decode().splitlines() if l)


def test_commands_and_their_options(build):
    m = build.mailrelay
    assert complete([m, ""]) == sorted(["-c", "check-config", "queue", "status", "show",
                                        "flush", "hold", "release", "delete", "oauth2",
                                        "test", "version"])
    assert complete([m, "s"]) == ["show", "status"]
    assert complete([m, "-c", "/x.conf", "qu"]) == ["queue"]
    assert complete([m, "queue", "--"]) == ["--json"]
    assert complete([m, "status", "-"]) == ["--json"]
    assert complete([m, "check-config", "-"]) == ["--show", "-c"]
    assert complete([m, "delete", "--"]) == ["--all"]
    assert complete([m, "oauth2", ""]) == ["authorize", "token"]
    assert complete([m, "oauth2", "token", ""]) == ["--smarthost"]
    assert complete([m, "version", ""]) == []
    assert complete([m, "test", "--"]) == ["--from", "--json", "--probe", "--smarthost", "--to"]
    assert complete([m, "test", "--to", ""]) == []       # an address: nothing to offer


def test_config_file_argument_completes_file_names(build, workdir):
    path = os.path.join(workdir, "relay-test one.conf")   # a space: one candidate, not two
    open(path, "w").close()
    assert complete([build.mailrelay, "-c", os.path.join(workdir, "relay-t")]) == [path]


def test_queue_ids_from_the_listing(daemon, build):
    d = daemon()                       # no smarthost: mail stays queued
    ids = []
    for n in range(3):
        r = d.sendmail(["-f", "s%d@example.org" % n, "rcpt@example.net"],
                       make_message(sender="s%d@example.org" % n))
        assert r.rc == 0, r
        ids.append(d.accepted_id(sender="s%d@example.org" % n))
    held = ids[0]
    assert d.mailrelay(["hold", held]).rc == 0
    pre = [build.mailrelay, "-c", d.conf]

    assert complete(pre + ["flush", ""]) == sorted(ids)
    assert complete(pre + ["show", ""]) == sorted(ids)
    assert complete(pre + ["delete", ""]) == sorted(ids)
    assert complete(pre + ["release", ""]) == [held]
    assert complete(pre + ["hold", ""]) == sorted(ids[1:])
    # a prefix narrows, in either case; show takes one id, then --body
    assert complete(pre + ["flush", ids[1][:15].lower()]) == [ids[1]]
    assert complete(pre + ["show", ids[1], ""]) == []
    assert complete(pre + ["show", ids[1], "-"]) == ["--body"]
    # several ids may follow flush, hold, release and delete
    assert complete(pre + ["delete", ids[1], ""]) == sorted(ids)


def test_no_daemon_no_ids_no_noise(build, workdir):
    conf = os.path.join(workdir, "none.conf")
    with open(conf, "w") as f:
        f.write('spool_dir = "%s"\ncontrol_socket = "%s"\n'
                % (os.path.join(workdir, "nospool"), os.path.join(workdir, "no.sock")))
    assert complete([build.mailrelay, "-c", conf, "flush", ""]) == []


def test_smarthost_names_for_oauth2(build, workdir):
    conf = os.path.join(workdir, "sh.conf")
    with open(conf, "w") as f:
        for name in ("primary", "backup"):
            f.write("smarthost %s {\n" % name)
            for k, v in smarthost_opts(25).items():
                f.write("    %s = %s\n" % (k, v))
            f.write("}\n")
    assert complete([build.mailrelay, "-c", conf, "oauth2", "token", "--smarthost", ""]) == \
        ["backup", "primary"]
    assert complete([build.mailrelay, "-c", conf, "oauth2", "authorize", "--smarthost", "p"]) == \
        ["primary"]
    assert complete([build.mailrelay, "-c", conf, "test", "--probe", "--smarthost", ""]) == \
        ["backup", "primary"]
