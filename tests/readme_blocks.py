"""Run a Markdown file's code blocks in order, as a reader would.

    python tests/readme_blocks.py README.md --scratch DIR --repo ROOT [--replace JSON]

Run it with the Python the blocks should use (tests/test_readme.py makes a
fresh virtualenv and runs it with that venv's Python; this file needs only
the standard library). Every fenced block needs a language:

* ``sh``: run by ``bash -e -o pipefail`` in the scratch directory, with the
  environment this runs in (PATH, DATABASE_URL, ...);
* ``python``: run in one namespace shared by all the file's Python blocks
  (as in one interactive session); a block whose first line is ``# NAME.py``
  is that file, written to the scratch directory instead;
* ``pycon``: a doctest in the same namespace, its output checked (``...``
  matches anything);
* ``text``, ``toml``, ``json``, ``ini``, ``yaml``: shown, not run.

An HTML comment on the line before a block changes how it runs:
``<!-- readme-test: skip: WHY -->`` (the reason, required, is the rest of
the comment),
``<!-- readme-test: cwd: repo -->`` (run in the repository, not the scratch
directory), ``until: TEXT`` (a command that runs until signalled: SIGINT once
its output shows TEXT; it must then exit 0), ``expect: TEXT`` (its output must
show TEXT), ``port: N`` (the literal port N is replaced by a free one),
``timeout: SECONDS`` (default 300); several are separated by ``;``.

``--replace`` maps literal strings to what they stand for here (the README's
example DSNs to the test's own databases); it is applied to every block.

The blocks run until one fails. A report line per block, then a last line
``README-BLOCKS {json}`` with what ran, what was skipped and why, and what
failed.
"""

from __future__ import annotations

import argparse
import doctest
import importlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

RUN = ("sh", "python", "pycon")
SHOWN = ("text", "toml", "json", "ini", "yaml")
DIRECTIVE = re.compile(r"^\s*<!--\s*readme-test:(.*?)-->\s*$")
FENCE = re.compile(r"^(\s*)(```|~~~)\s*([\w+-]*)\s*$")
FILE_BLOCK = re.compile(r"^#\s*([\w./-]+\.py)\s*$")
KNOWN = ("skip", "cwd", "until", "expect", "port", "timeout")


@dataclass
class Block:
    line: int
    language: str
    code: str
    options: dict[str, list[str]] = field(default_factory=dict)

    def option(self, name: str) -> str | None:
        values = self.options.get(name)
        return values[-1] if values else None

    @property
    def where(self) -> str:
        return f"line {self.line}, {self.language}"


def parse(text: str) -> list[Block]:
    """The fenced blocks of *text*, with the directive before each."""
    blocks: list[Block] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        indent, fence, language = m.group(1), m.group(2), m.group(3)
        start = i
        body: list[str] = []
        i += 1
        while i < len(lines) and lines[i].strip() != fence:
            line = lines[i]
            body.append(line[len(indent):] if line.startswith(indent) else line.lstrip())
            i += 1
        if i == len(lines):
            raise SystemExit(f"line {start + 1}: a code block is never closed")
        i += 1
        options: dict[str, list[str]] = {}
        before = start - 1
        while before >= 0 and not lines[before].strip():
            before -= 1
        d = DIRECTIVE.match(lines[before]) if before >= 0 else None
        if d and d.group(1).strip().startswith("skip:"):  # the reason is the rest
            options["skip"] = [d.group(1).strip()[len("skip:"):].strip()]
        elif d:
            for item in d.group(1).split(";"):
                key, colon, value = item.partition(":")
                key = key.strip()
                if not colon or key not in KNOWN:
                    raise SystemExit(f"line {before + 1}: bad readme-test directive {item!r}")
                options.setdefault(key, []).append(value.strip())
        blocks.append(Block(start + 1, language, "\n".join(body) + "\n", options))
    return blocks


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Runner:
    def __init__(self, scratch: Path, repo: Path, replace: dict[str, str]) -> None:
        self.scratch = scratch
        self.repo = repo
        self.replace = replace
        self.namespace: dict[str, Any] = {"__name__": "__main__"}

    def code(self, block: Block) -> str:
        code = block.code
        for old, new in self.replace.items():
            code = code.replace(old, new)
        for port in block.options.get("port", []):
            code = re.sub(rf"\b{re.escape(port)}\b", str(free_port()), code)
        return code

    def run(self, block: Block) -> str:
        """Run *block*; return a note on what was done; raise on failure."""
        code = self.code(block)
        cwd = self.repo if block.option("cwd") == "repo" else self.scratch
        timeout = float(block.option("timeout") or 300)
        if block.language == "sh":
            return self._sh(block, code, cwd, timeout)
        first = code.splitlines()[0] if code.strip() else ""
        file_block = FILE_BLOCK.match(first)
        if block.language == "python" and file_block:
            (self.scratch / file_block.group(1)).write_text(code, encoding="utf-8")
            return f"wrote {file_block.group(1)}"
        importlib.invalidate_caches()  # pip installed packages since the last block
        previous = os.getcwd()
        os.chdir(cwd)
        try:
            if block.language == "python":
                exec(compile(code, f"<README.md {block.where}>", "exec"), self.namespace)
                return "ran"
            return self._pycon(block, code)
        finally:
            os.chdir(previous)

    def _pycon(self, block: Block, code: str) -> str:
        parser = doctest.DocTestParser()
        test = parser.get_doctest(code, self.namespace, f"README.md {block.where}",
                                  "README.md", block.line)
        runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
        result = runner.run(test, clear_globs=False)
        self.namespace.update(test.globs)
        if result.failed:
            raise AssertionError(f"{result.failed} of {result.attempted} examples failed")
        return f"{result.attempted} examples"

    def _sh(self, block: Block, code: str, cwd: Path, timeout: float) -> str:
        until = block.option("until")
        proc = subprocess.Popen(
            ["bash", "-e", "-o", "pipefail", "-c", code], cwd=cwd, stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
        )
        assert proc.stdout is not None
        chunks: list[bytes] = []
        stream = proc.stdout
        reader = threading.Thread(
            target=lambda: chunks.extend(iter(lambda: stream.read1(65536), b"")), daemon=True)
        reader.start()
        deadline = time.monotonic() + timeout
        signalled = False
        while proc.poll() is None:
            if time.monotonic() > deadline:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                reader.join(5)
                self._echo(chunks)
                raise AssertionError(f"still running after {timeout:g} s")
            if until and not signalled and until.encode() in b"".join(chunks):
                os.killpg(proc.pid, signal.SIGINT)
                signalled = True
            time.sleep(0.05)
        reader.join(10)
        output = self._echo(chunks)
        if until and not signalled:
            raise AssertionError(f"exited with status {proc.returncode} before showing {until!r}")
        if proc.returncode != 0:
            raise AssertionError(f"exited with status {proc.returncode}")
        for text in block.options.get("expect", []):
            if text not in output:
                raise AssertionError(f"its output does not show {text!r}")
        return "ran" + (" until interrupted" if until else "")

    @staticmethod
    def _echo(chunks: list[bytes]) -> str:
        output = b"".join(chunks).decode(errors="replace")
        sys.stdout.write(output)
        sys.stdout.flush()
        return output


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("markdown", type=Path)
    ap.add_argument("--scratch", type=Path, required=True)
    ap.add_argument("--repo", type=Path, required=True)
    ap.add_argument("--replace", default="{}", help="JSON object: literal -> replacement")
    args = ap.parse_args(argv)
    blocks = parse(args.markdown.read_text(encoding="utf-8"))
    runner = Runner(args.scratch.resolve(), args.repo.resolve(), json.loads(args.replace))
    sys.path.insert(0, str(runner.scratch))  # the files the blocks write, as for a script there
    os.chdir(runner.scratch)
    report: dict[str, Any] = {"blocks": len(blocks), "ran": [], "shown": [], "skipped": [],
                              "failed": None}
    for n, block in enumerate(blocks, 1):
        head = f"=== block {n} ({args.markdown.name} {block.where})"
        if block.language in SHOWN:
            report["shown"].append(block.line)
            continue
        if block.language not in RUN:
            report["failed"] = {"line": block.line, "error": f"language {block.language!r} is "
                                f"neither run ({', '.join(RUN)}) nor shown ({', '.join(SHOWN)})"}
            print(f"{head}: {report['failed']['error']}", flush=True)
            break
        if "skip" in block.options:
            reason = block.option("skip") or ""
            if not reason:
                report["failed"] = {"line": block.line, "error": "skipped without a reason"}
                print(f"{head}: skipped without a reason", flush=True)
                break
            report["skipped"].append({"line": block.line, "reason": reason})
            print(f"{head}: skipped: {reason}", flush=True)
            continue
        print(f"{head}", flush=True)
        started = time.monotonic()
        try:
            note = runner.run(block)
        except BaseException as exc:  # a block's SystemExit too: it failed
            traceback.print_exc()
            report["failed"] = {"line": block.line, "error": f"{type(exc).__name__}: {exc}"}
            print(f"=== block {n}: FAILED: {report['failed']['error']}", flush=True)
            break
        sys.stdout.flush()
        report["ran"].append(block.line)
        print(f"=== block {n}: ok ({note}; {time.monotonic() - started:.1f} s)", flush=True)
    print("README-BLOCKS " + json.dumps(report), flush=True)
    return 1 if report["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
