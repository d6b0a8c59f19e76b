"""Check that every native library in a Lambda zip is built for the function's architecture.

    python scripts/check_lambda_architecture.py dist/chatkit-lambda-arm64.zip arm64

A zip for arm64 cannot be run on these x86_64 machines; this at least proves that pip chose
aarch64 wheels for every package with compiled code (a package with none for the target
would fail the build, and one built for the wrong machine fails the function's start). Exits
non-zero, naming the libraries that do not match.
"""

import struct
import sys
import zipfile

# ELF e_machine values.
MACHINES = {62: "x86_64", 183: "arm64"}


def native_libraries(archive: str) -> dict[str, str]:
    """Each shared library in the zip, with the architecture its ELF header names."""
    found = {}
    with zipfile.ZipFile(archive) as package:
        for name in package.namelist():
            if not (name.endswith(".so") or ".so." in name.rsplit("/", 1)[-1]):
                continue
            with package.open(name) as library:
                header = library.read(20)
            if header[:4] != b"\x7fELF":
                continue
            (machine,) = struct.unpack("<H", header[18:20])
            found[name] = MACHINES.get(machine, f"machine {machine}")
    return found


def main() -> None:
    archive, architecture = sys.argv[1], sys.argv[2]
    libraries = native_libraries(archive)
    if not libraries:
        sys.exit(f"FAILED: no native library in {archive}: not a Lambda package with its dependencies")
    wrong = {name: found for name, found in libraries.items() if found != architecture}
    if wrong:
        listed = "\n".join(f"  {name}: {found}" for name, found in sorted(wrong.items()))
        sys.exit(
            f"FAILED: {len(wrong)} of {len(libraries)} native libraries are not {architecture}:\n{listed}"
        )
    print(f"ok: all {len(libraries)} native libraries in {archive} are {architecture}")


if __name__ == "__main__":
    main()
