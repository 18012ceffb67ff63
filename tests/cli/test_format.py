#!/usr/bin/env python3
"""daemon/ is formatted as .clang-format says: `clang-format --dry-run
--Werror` on every .c and .h file, and the names of the files that are not.
Skipped (exit 77) where clang-format is not installed.

Usage: test_format.py SOURCE_ROOT
"""

import os
import shutil
import subprocess
import sys


def main():
    src = sys.argv[1]
    tool = shutil.which("clang-format")
    if not tool:
        print("skip: clang-format is not installed (apt-get install clang-format)")
        return 77
    daemon = os.path.join(src, "daemon")
    files = sorted(os.path.join(daemon, n) for n in os.listdir(daemon) if n.endswith((".c", ".h")))
    bad = []
    for path in files:
        r = subprocess.run([tool, "--dry-run", "--Werror", "--style=file", path], cwd=src,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        if r.returncode != 0:
            bad.append((path, r.stderr.splitlines()[:3]))
    for path, lines in bad:
        print("%s is not formatted (clang-format -i %s):" % (os.path.relpath(path, src), os.path.relpath(path, src)))
        for line in lines:
            print("  " + line)
    print("%d of %d files formatted" % (len(files) - len(bad), len(files)))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
