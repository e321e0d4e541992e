#!/usr/bin/env python3
"""Round-trip test of a FastDFS cluster through the third-party PyPI client py3fdfs.

Usage:
    py3fdfs_roundtrip.py --tracker HOST:PORT [--workdir DIR] [--timeout S] [--step-timeout S]

Run it with the venv made by e2e/py/setup-venv.sh. It uploads one buffer and one file,
downloads both to a buffer and to a file, deletes them, and checks that downloading a
deleted file fails cleanly; then it runs an appender file through append, modify and
truncate, and checks that appending to a normal file is refused. It ends with exactly one summary line,
`py3fdfs: N passed, M failed`, and exits 0 only when nothing failed.

Only calls that work in py3fdfs 2.2.0 are used: its metadata, slave-file, range-download
and `*_by_file` calls are broken on Python 3 whatever the server does (see the protocol
notes for this client).
"""

import argparse
import errno
import os
import re
import shutil
import signal
import sys
import tempfile
import traceback

import fdfs_client
from fdfs_client.client import Fdfs_client, get_tracker_conf
from fdfs_client.exceptions import DataError, FDFSError

# py3fdfs's download_to_file reads 1 KiB at a time and miscounts after a short read,
# so large bodies arriving in uneven TCP segments make it hang. Keeping the files a few
# KiB (and not a multiple of 1 KiB, so the tail path runs) tests the server, not that bug.
BUFFER_SIZE = 1500
FILE_SIZE = 5 * 1024 + 321

# Shape of a remote file name: M<path>/<HH>/<LL>/<name>; the ext we sent must come back.
REMOTE_NAME_RE = re.compile(rb"^M[0-9A-F]{2}/[0-9A-F]{2}/[0-9A-F]{2}/[^/]+$")


class StepTimeout(Exception):
    """A step ran longer than --step-timeout."""


class Skipped(Exception):
    """A step could not run because a step it depends on failed."""


def _on_alarm(signum, frame):
    raise StepTimeout("step timed out")


class Runner:
    """Runs checks in order, prints one line per check, keeps the tally."""

    def __init__(self, step_timeout):
        self.step_timeout = step_timeout
        self.passed = 0
        self.failed = 0
        self.results = {}

    def check(self, name, func, needs=()):
        """Run func(): returning passes (a returned string is printed), raising fails.

        Checks depending on a failed one are counted as failed so that the total is the
        same on every run and a broken upload cannot look like a short green run.
        """
        number = self.passed + self.failed + 1
        try:
            missing = [n for n in needs if not self.results.get(n)]
            if missing:
                raise Skipped("not run: depends on failed " + ", ".join(missing))
            # py3fdfs can spin forever (e.g. the server closes mid-body: recv() returns b""
            # and its read loop never ends), so every step gets a hard wall-clock limit.
            signal.alarm(self.step_timeout)
            try:
                detail = func()
            finally:
                signal.alarm(0)
        except KeyboardInterrupt:
            raise
        except BaseException as exc:  # noqa: BLE001 - see below
            # BaseException on purpose: when py3fdfs cannot connect it retries 10 times and
            # then calls sys.exit() (SystemExit, exit status 0), which would otherwise end
            # the run looking like a success.
            self.failed += 1
            self.results[name] = False
            if isinstance(exc, SystemExit):
                print(f"FAIL {number:2d} {name}: py3fdfs gave up connecting after 10 tries "
                      "and called sys.exit()", flush=True)
                return
            print(f"FAIL {number:2d} {name}: {type(exc).__name__}: {exc}", flush=True)
            # Errors py3fdfs did not anticipate (struct.error, TypeError, ...) usually mean
            # a reply of the wrong shape; where it broke says which field.
            if not isinstance(exc, (Skipped, FDFSError, StepTimeout, AssertionError)):
                traceback.print_exc(file=sys.stdout)
            return
        self.passed += 1
        self.results[name] = True
        suffix = f": {detail}" if isinstance(detail, str) and detail else ""
        print(f"ok   {number:2d} {name}{suffix}", flush=True)


def parse_tracker(value):
    # py3fdfs splits tracker_server on ':' and keeps a single port for all trackers, so
    # only a plain host (IPv4 or name) with a port can be expressed in its client.conf.
    host, sep, port = value.rpartition(":")
    if not sep or not host or ":" in host or not port.isdigit() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT (no IPv6), got {value!r}")
    return host, int(port)


def write_client_conf(path, host, port, timeout):
    # get_tracker_conf only reads connect_timeout (used as the socket timeout for every
    # connect/send/recv, not only connects) and tracker_server. Its config parser raises
    # NameError on [section] lines or lines without '=', so keep the file to plain pairs.
    with open(path, "w", encoding="ascii") as conf:
        conf.write(
            "# written by py3fdfs_roundtrip.py\n"
            f"connect_timeout = {timeout}\n"
            f"network_timeout = {timeout}\n"
            f"tracker_server = {host}:{port}\n"
        )


def check_file_id(file_id, ext):
    """Validate an upload's file ID; return it as text for the log line."""
    # py3fdfs returns bytes IDs and only accepts bytes IDs back (it splits on b'/').
    assert isinstance(file_id, bytes), f"file ID is {type(file_id).__name__}, not bytes"
    group, sep, remote = file_id.partition(b"/")
    assert sep and 0 < len(group) <= 16, f"bad group part in {file_id!r}"
    assert REMOTE_NAME_RE.match(remote), f"bad remote file name in {file_id!r}"
    assert remote.endswith(b"." + ext.encode()), f"{file_id!r} lost the ext {ext!r}"
    return file_id.decode("ascii", "backslashreplace")


def expect_enoent(func):
    """Call func and require a clean ENOENT reply (status byte 2, header-only)."""
    try:
        func()
    except DataError as exc:
        # py3fdfs formats status != 0 as 'Error: <errno>, <strerror>'.
        match = re.search(r"Error:\s*(\d+)", str(exc))
        status = int(match.group(1)) if match else None
        assert status == errno.ENOENT, f"expected status {errno.ENOENT} (ENOENT), got: {exc}"
        return f"refused as expected ({exc})"
    raise AssertionError("download of a deleted file succeeded")


def run(args):
    host, port = args.tracker
    workdir = args.workdir or tempfile.mkdtemp(prefix="py3fdfs-")
    os.makedirs(workdir, exist_ok=True)
    runner = Runner(args.step_timeout)
    state = {}

    buffer_data = os.urandom(BUFFER_SIZE)
    file_data = os.urandom(FILE_SIZE)
    # py3fdfs takes the ext from the local name (up to two dotted parts, e.g. tar.gz).
    local_upload = os.path.join(workdir, "upload.dat")
    with open(local_upload, "wb") as f:
        f.write(file_data)

    print(f"py3fdfs {fdfs_client.__version__} against tracker {host}:{port}, workdir {workdir}",
          flush=True)

    def config():
        conf_path = os.path.join(workdir, "client.conf")
        write_client_conf(conf_path, host, port, args.timeout)
        conf = get_tracker_conf(conf_path)
        assert conf["host_tuple"] == (host,) and conf["port"] == port, f"parsed {conf}"
        # One client for the whole run: py3fdfs pools the tracker connection inside it, so
        # every tracker request below goes over the same TCP connection.
        state["client"] = Fdfs_client(conf)
        return conf_path

    def upload_buffer():
        ret = state["client"].upload_by_buffer(buffer_data, "bin")
        state["buffer_id"] = ret["Remote file_id"]
        return check_file_id(state["buffer_id"], "bin")

    def upload_file():
        ret = state["client"].upload_by_filename(local_upload)
        state["file_id"] = ret["Remote file_id"]
        return check_file_id(state["file_id"], "dat")

    def download_to_buffer(key, expected):
        def step():
            ret = state["client"].download_to_buffer(state[key])
            got = ret["Content"]
            assert got == expected, f"got {len(got)} bytes, want {len(expected)} (content differs)"
            return f"{len(got)} bytes match"
        return step

    def download_to_file(key, expected):
        def step():
            target = os.path.join(workdir, f"download-{key}.out")
            state["client"].download_to_file(target, state[key])
            with open(target, "rb") as f:
                got = f.read()
            assert got == expected, f"got {len(got)} bytes, want {len(expected)} (content differs)"
            return f"{len(got)} bytes match in {target}"
        return step

    def delete(key):
        def step():
            state["client"].delete_file(state[key])
            return state[key].decode("ascii", "backslashreplace")
        return step

    def download_deleted(key):
        return lambda: expect_enoent(lambda: state["client"].download_to_buffer(state[key]))

    def unknown_group():
        # Same file name under a group the tracker does not know: the tracker itself must
        # refuse (ENOENT) and keep the connection open, because py3fdfs puts the tracker
        # connection back in its pool after any error and never notices it was closed.
        _, _, remote = state["buffer_id"].partition(b"/")
        return expect_enoent(lambda: state["client"].download_to_buffer(b"nosuchgroup/" + remote))

    def tracker_still_usable():
        # After the tracker's own error reply above, the pooled connection must still
        # carry requests (py3fdfs only drops a pooled connection when sending its header
        # fails, so a closed one costs at least one failed call).
        client = state["client"]
        data = b"tracker connection survived error replies\n"
        file_id = client.upload_by_buffer(data, "txt")["Remote file_id"]
        try:
            got = client.download_to_buffer(file_id)["Content"]
            assert got == data, "content differs"
        finally:
            client.delete_file(file_id)
        return f"upload/download/delete of {file_id.decode('ascii', 'backslashreplace')}"

    def appender_cycle():
        # Appender upload, then append, modify (py3fdfs always writes at offset 0),
        # truncate, each checked by downloading the whole file.
        client = state["client"]
        first = b"appender-start:" + os.urandom(50)
        ret = client.upload_appender_by_buffer(first, "log")
        file_id = ret["Remote file_id"]
        check_file_id(file_id, "log")
        try:
            expect = bytearray(first)
            more = os.urandom(77)
            client.append_by_buffer(more, file_id)
            expect += more
            assert client.download_to_buffer(file_id)["Content"] == bytes(expect), "after append"
            patch = b"MODIFIED"
            client.modify_by_buffer(patch, file_id)
            expect[:len(patch)] = patch
            assert client.download_to_buffer(file_id)["Content"] == bytes(expect), "after modify"
            client.truncate_file(40, file_id)
            assert client.download_to_buffer(file_id)["Content"] == bytes(expect[:40]), "after truncate"
        finally:
            client.delete_file(file_id)
        return f"{file_id.decode('ascii', 'backslashreplace')}: append, modify, truncate"

    def append_to_normal_file_fails():
        # A normal file refuses appends with EINVAL and is left as it was.
        client = state["client"]
        data = b"normal file\n"
        file_id = client.upload_by_buffer(data, "txt")["Remote file_id"]
        try:
            try:
                client.append_by_buffer(b"x", file_id)
            except DataError as e:
                assert str(errno.EINVAL) in str(e), f"expected EINVAL, got {e}"
            else:
                raise AssertionError("append to a normal file succeeded")
            assert client.download_to_buffer(file_id)["Content"] == data, "file changed"
        finally:
            client.delete_file(file_id)
        return "EINVAL, file untouched"

    runner.check("client.conf via get_tracker_conf", config)
    runner.check("upload_by_buffer", upload_buffer, needs=["client.conf via get_tracker_conf"])
    runner.check("upload_by_filename", upload_file, needs=["client.conf via get_tracker_conf"])
    runner.check("download_to_buffer (buffer upload)",
                 download_to_buffer("buffer_id", buffer_data), needs=["upload_by_buffer"])
    runner.check("download_to_buffer (file upload)",
                 download_to_buffer("file_id", file_data), needs=["upload_by_filename"])
    runner.check("download_to_file (buffer upload)",
                 download_to_file("buffer_id", buffer_data), needs=["upload_by_buffer"])
    runner.check("download_to_file (file upload)",
                 download_to_file("file_id", file_data), needs=["upload_by_filename"])
    runner.check("delete_file (buffer upload)", delete("buffer_id"), needs=["upload_by_buffer"])
    runner.check("delete_file (file upload)", delete("file_id"), needs=["upload_by_filename"])
    runner.check("download of deleted buffer upload fails",
                 download_deleted("buffer_id"), needs=["delete_file (buffer upload)"])
    runner.check("download of deleted file upload fails",
                 download_deleted("file_id"), needs=["delete_file (file upload)"])
    runner.check("download from unknown group fails", unknown_group,
                 needs=["upload_by_buffer"])
    runner.check("tracker connection reusable after errors", tracker_still_usable,
                 needs=["client.conf via get_tracker_conf"])
    runner.check("appender upload, append, modify, truncate", appender_cycle,
                 needs=["client.conf via get_tracker_conf"])
    runner.check("append to a normal file fails", append_to_normal_file_fails,
                 needs=["client.conf via get_tracker_conf"])

    if not args.workdir:
        shutil.rmtree(workdir, ignore_errors=True)

    print(f"py3fdfs: {runner.passed} passed, {runner.failed} failed", flush=True)
    return 0 if runner.failed == 0 else 1


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tracker", required=True, type=parse_tracker, metavar="HOST:PORT",
                        help="tracker address (IPv4 or host name)")
    parser.add_argument("--workdir", metavar="DIR",
                        help="keep client.conf and the up/downloaded files here "
                             "(default: a temporary directory, removed afterwards)")
    parser.add_argument("--timeout", type=int, default=10, metavar="S",
                        help="py3fdfs connect_timeout, also its socket read/write timeout "
                             "(default: %(default)s)")
    parser.add_argument("--step-timeout", type=int, default=60, metavar="S",
                        help="wall-clock limit for each check (default: %(default)s)")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGALRM, _on_alarm)
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
