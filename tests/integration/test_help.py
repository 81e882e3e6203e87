"""Help where a user looks for it (issue 12, point 5): `mailrelay --help`,
`mailrelay COMMAND --help` for every command, `mailrelay-sendmail --help`,
each on stdout with exit 0; an unknown flag or command is one line on
stderr saying what was expected, exit 64 (EX_USAGE).  None needs a daemon
or a configuration."""
import os

import pytest

from mrtest import run

COMMANDS = {
    "check-config": "[-c FILE] [--show]",
    "queue": "[--json]",
    "status": "[--json|--prometheus]",
    "show": "ID [--body]",
    "flush": "[ID...]",
    "hold": "ID...",
    "release": "ID...",
    "delete": "ID... | --all",
    "oauth2": "token|authorize --smarthost NAME",
    "test": "--to ADDR [--from ADDR] [--smarthost NAME] [--json] | --probe",
    "version": "",
}


@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_mailrelay_help_lists_every_command(build, flag):
    r = run([build.mailrelay, flag])
    assert (r.rc, r.err_text) == (0, ""), r
    lines = r.out_text.splitlines()
    assert lines[0] == "usage: mailrelay [-c FILE] COMMAND [ARGS]", lines
    for name, args in COMMANDS.items():
        assert any(l.strip().startswith(("%s %s" % (name, args)).strip()) for l in lines), (name, lines)
    assert lines[-1] == "See mailrelay(8).", lines


@pytest.mark.parametrize("name", sorted(COMMANDS))
@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_every_command_has_help(build, name, flag):
    r = run([build.mailrelay, name, flag])
    assert (r.rc, r.err_text) == (0, ""), r
    lines = r.out_text.splitlines()
    assert lines[0] == ("usage: mailrelay [-c FILE] %s %s" % (name, COMMANDS[name])).rstrip(), lines
    assert lines[-1] == "See mailrelay(8).", lines
    # every option the synopsis names is explained
    for word in COMMANDS[name].replace("[", " ").replace("]", " ").replace("|", " ").split():
        if word.startswith("-"):
            assert any(l.lstrip().startswith(word) for l in lines[1:]), (word, lines)


def test_help_after_other_arguments_still_helps(build):
    r = run([build.mailrelay, "show", "0123456789ABCDEF", "--help"])
    assert r.rc == 0 and r.out_text.startswith("usage: mailrelay [-c FILE] show ID [--body]"), r


@pytest.mark.parametrize("argv, line", [
    (["-x", "queue"], 'mailrelay: unknown option "-x": expected -c FILE, --help or --version '
                      'before the command (mailrelay --help)'),
    (["--bogus"], 'mailrelay: unknown option "--bogus": expected -c FILE, --help or --version '
                  'before the command (mailrelay --help)'),
    (["-c"], "mailrelay: -c needs a file name (mailrelay --help)"),
    (["frobnicate"], 'mailrelay: unknown command "frobnicate": expected one of check-config, queue, '
                     'status, show, flush, hold, release, delete, oauth2, test, version (mailrelay --help)'),
    (["queue", "--jsn"], 'mailrelay: queue: unknown option "--jsn": expected --json '
                         '(mailrelay queue --help)'),
    (["status", "--jason"], 'mailrelay: status: unknown option "--jason": expected --json, '
                            '--prometheus (mailrelay status --help)'),
    (["check-config", "--shwo"], 'mailrelay: check-config: unknown option "--shwo": expected -c, '
                                 '--show (mailrelay check-config --help)'),
    (["flush", "-a"], 'mailrelay: flush: unknown option "-a": it takes no option '
                      '(mailrelay flush --help)'),
    (["delete", "--everything"], 'mailrelay: delete: unknown option "--everything": expected --all '
                                 '(mailrelay delete --help)'),
    (["show", "0123456789ABCDEF", "--bdy"], 'mailrelay: show: unknown option "--bdy": expected '
                                            '--body (mailrelay show --help)'),
    (["oauth2", "token", "--smarthst", "m"], 'mailrelay: oauth2: unknown option "--smarthst": '
                                             'expected --smarthost (mailrelay oauth2 --help)'),
    (["version", "now"], "mailrelay: version: usage: mailrelay [-c FILE] version "
                         "(mailrelay version --help)"),
    (["queue", "--json", "extra"], "mailrelay: queue: usage: mailrelay [-c FILE] queue [--json] "
                                   "(mailrelay queue --help)"),
])
def test_unknown_flags_say_what_was_expected(build, argv, line):
    r = run([build.mailrelay] + argv)
    assert (r.rc, r.out_text, r.err_text.splitlines()) == (64, "", [line]), r


def test_version_flag(build):
    r = run([build.mailrelay, "--version"])
    assert r.rc == 0 and r.out_text.startswith("mailrelay "), r


@pytest.mark.parametrize("name", ["mailrelay-sendmail", "sendmail"])
def test_sendmail_help(build, workdir, name):
    prog = build.sendmail
    if name != "mailrelay-sendmail":
        prog = os.path.join(workdir, name)
        os.symlink(build.sendmail, prog)
    r = run([prog, "--help"], data=b"never read\n")
    assert (r.rc, r.err_text) == (0, ""), r
    lines = r.out_text.splitlines()
    assert lines[0] == "usage: %s [OPTIONS] [--] [RECIPIENT...] < MESSAGE" % name, lines
    for flag in ("-t", "-i, -oi", "-f, -r ADDR", "-bp", "-bs", "-q", "-C, -c FILE"):
        assert any(l.lstrip().startswith(flag) for l in lines), (flag, lines)
    assert lines[-1] == "See mailrelay-sendmail(8).", lines


OPTIONS = "-t -i -f -r -F -B -N -R -V -bm -bp -bs -bv -bi -q -v -C -c -L -h -O -o -G -U"


@pytest.mark.parametrize("argv, line", [
    (["-j", "rcpt@example.net"], "mailrelay-sendmail: unknown option -j: expected one of %s "
                                 "(mailrelay-sendmail --help)" % OPTIONS),
    (["--verbose"], "mailrelay-sendmail: unknown option --verbose: expected one of %s "
                    "(mailrelay-sendmail --help)" % OPTIONS),
    (["-bx"], "mailrelay-sendmail: mode -bx is not supported: expected -bm, -bp, -bs, -bv or -bi "
              "(mailrelay-sendmail --help)"),
    (["-tx"], "mailrelay-sendmail: unknown option -tx: expected -t alone "
              "(mailrelay-sendmail --help)"),
])
def test_sendmail_unknown_flags_say_what_was_expected(build, argv, line):
    r = run([build.sendmail] + argv, data=b"Subject: x\n\nbody\n")
    assert (r.rc, r.out_text, r.err_text.splitlines()) == (64, "", [line]), r


@pytest.mark.parametrize("name, first", [
    ("mailq", "usage: mailq [-C FILE]"),
    ("newaliases", "usage: newaliases [-C FILE]"),
])
def test_mailq_and_newaliases_help(build, workdir, name, first):
    prog = os.path.join(workdir, name)
    os.symlink(build.sendmail, prog)
    r = run([prog, "--help"])
    assert (r.rc, r.err_text) == (0, ""), r
    lines = r.out_text.splitlines()
    assert lines[0] == first and lines[-1] == "See mailrelay-sendmail(8).", lines
