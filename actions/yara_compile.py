"""Compile YARA rules in a child process: `validate_yara_rules` runs this file, never imports it.

Run as `python -I yara_compile.py SECONDS BYTES` with the rules as UTF-8 on standard input.
It caps its own processor time and address space before it imports the compiler, so a rule
file that would take too long or too much memory stops here, not in a web worker. It writes
{"errors": [...]} as JSON: the compiler's error details (line, column, title, labels), empty
when the rules compile. It needs only the standard library and yara-x.
"""

import json
import resource
import sys

# A rule file has more errors than anyone reads; the portal shows ten.
MAX_ERRORS = 10
MEMORY_EXIT_STATUS = 3


def main() -> None:
    seconds, memory = int(sys.argv[1]), int(sys.argv[2])
    resource.setrlimit(resource.RLIMIT_CPU, (seconds, seconds + 1))
    resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    try:
        import yara_x

        source = sys.stdin.buffer.read().decode("utf-8")
        # An `include` would read files from the portal's own disk and echo them in errors.
        compiler = yara_x.Compiler(includes_enabled=False)
        try:
            compiler.add_source(source)
            compiler.build()
        except yara_x.CompileError as error:
            errors = compiler.errors()[:MAX_ERRORS] or [{"title": str(error)}]
        else:
            errors = []
    except MemoryError:
        sys.exit(MEMORY_EXIT_STATUS)
    json.dump({"errors": errors}, sys.stdout)


if __name__ == "__main__":
    main()
