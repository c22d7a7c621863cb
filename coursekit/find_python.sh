#!/bin/sh
# Which Python interpreter `make` builds .venv with: prints its path, or says in one sentence what to install.
#
#   coursekit/find_python.sh "3.13 3.12 3.11"            the newest of python3.13, python3.12, python3.11,
#                                                        then python3 if its version is one of them
#   coursekit/find_python.sh "3.13 3.12 3.11" python3.12 only that interpreter (make PYTHON=...)
#
# Plain sh, no Python of its own: it runs before any virtualenv exists. An interpreter counts only
# if it runs (a pyenv shim of a version not selected does not), its version is one of the list
# (the Pythons constraints-<version>.txt exist for), and it has the venv module with ensurepip
# (Debian and Ubuntu ship that separately, as python3.X-venv). Exit 0 found, 1 not found.
versions=$1
shift
if [ $# -gt 0 ]; then
    candidates=$1
else
    candidates=
    for version in $versions; do candidates="$candidates python$version"; done
    candidates="$candidates python3"
fi
seen=
for candidate in $candidates; do
    path=$(command -v "$candidate" 2>/dev/null) || continue
    version=$("$path" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null) || continue
    case " $versions " in
    *" $version "*) ;;
    *)
        seen="$seen, $candidate is $version"
        continue
        ;;
    esac
    if ! "$path" -c 'import ensurepip, venv' >/dev/null 2>&1; then
        seen="$seen, $candidate ($version) lacks its venv module (Debian/Ubuntu: sudo apt install python$version-venv)"
        continue
    fi
    echo "$path"
    exit 0
done
accepted=
for version in $versions; do  # newest first in, oldest first out: "3.11, 3.12 or 3.13"
    case $accepted in
    "") accepted=$version ;;
    *" or "*) accepted="$version, ${accepted%% or *} or ${accepted#* or }" ;;
    *) accepted="$version or $accepted" ;;
    esac
done
found=${seen#, }
echo "make needs Python $accepted (found: ${found:-none}); install one (https://www.python.org/downloads/, Homebrew: brew install python@3.13, Debian/Ubuntu: sudo apt install python3.12-venv) or name it: make PYTHON=/path/to/python3.12 ..." >&2
exit 1
