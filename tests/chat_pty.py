#!/usr/bin/env python3
"""`mobilellm chat` on a terminal (a pty): send a turn, Ctrl-C mid-reply, check the reply stopped
and the conversation goes on with a second turn that reuses the first, then Ctrl-D exits 0.

Usage: chat_pty.py MOBILELLM MODEL.  Exit 0 when all holds; else 1 with what was seen.
"""
import os
import pty
import re
import select
import sys
import time


def main():
    exe, model = sys.argv[1], sys.argv[2]
    # A long context and -n: the reply runs until Ctrl-C stops it.
    argv = [exe, "chat", "-m", model, "-t", "1", "-c", "100000", "-n", "1000000", "--temp", "0"]
    pid, fd = pty.fork()
    if pid == 0:
        os.execv(exe, argv)
    seen = b""

    def read_until(pattern, timeout=60.0):
        nonlocal seen
        start = len(seen)
        deadline = time.monotonic() + timeout
        while not re.search(pattern, seen[start:]):
            left = deadline - time.monotonic()
            if left <= 0:
                fail("timed out waiting for %r" % pattern)
            ready, _, _ = select.select([fd], [], [], left)
            if ready:
                try:
                    chunk = os.read(fd, 65536)
                except OSError:
                    fail("the chat ended while waiting for %r" % pattern)
                if not chunk:
                    fail("the chat ended while waiting for %r" % pattern)
                seen += chunk
        return seen[start:]

    def fail(why):
        sys.stderr.write("chat_pty: %s\n--- terminal ---\n%s\n" % (why, seen[-4000:].decode("utf-8", "replace")))
        try:
            os.kill(pid, 9)
        except OSError:
            pass
        sys.exit(1)

    read_until(rb"> $")
    os.write(fd, b"Hello there\r")
    read_until(rb"(?s)Hello there\r?\n.{64}")  # the echo, then some of the reply
    os.write(fd, b"\x03")  # Ctrl-C: the line discipline sends SIGINT
    first = read_until(rb"stop: [a-z_]+\][^>]*> $")
    if b"stop: cancelled]" not in first:
        fail("the first reply did not stop on Ctrl-C")
    os.write(fd, b"And again\r")
    read_until(rb"(?s)And again\r?\n.{64}")
    os.write(fd, b"\x03")
    second = read_until(rb"stop: [a-z_]+\][^>]*> $")
    m = re.search(rb"\[reused (\d+), evaluated (\d+), generated (\d+) tokens", second)
    if not m or b"stop: cancelled]" not in second:
        fail("no stats line for the second reply")
    reused, evaluated = int(m.group(1)), int(m.group(2))
    first_stats = re.search(rb"\[reused (\d+), evaluated (\d+), generated (\d+) tokens", first)
    turn1 = int(first_stats.group(2)) + int(first_stats.group(3))
    # All of turn 1 is reused but, at most, its last reply token: Ctrl-C may cut the reply inside
    # a UTF-8 character, which the reply's text then ends with U+FFFD instead.
    if reused < turn1 - 1:
        fail("turn 2 reused %d ids, turn 1 had %d" % (reused, turn1))
    os.write(fd, b"\x04")  # Ctrl-D at the prompt: end of input
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            if os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0:
                print("chat_pty: ok: turn 1 %d ids, turn 2 reused %d and evaluated %d" %
                      (turn1, reused, evaluated))
                return
            fail("exit status %r" % status)
        try:
            select.select([fd], [], [], 0.1)
            os.read(fd, 65536)
        except OSError:
            pass
    fail("did not exit after Ctrl-D")


if __name__ == "__main__":
    main()
