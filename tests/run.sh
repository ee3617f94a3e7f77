#!/bin/sh
# Runs each test binary, then prints one closing line: "N passed, N failed" (counting test cases).
# The tests write their files under a fresh $TMPDIR, removed after a green run (kept, and named,
# after a red one).
# OpenMP threads sleep instead of spinning between regions: the suite stays fast on a busy machine
: "${OMP_WAIT_POLICY:=passive}"; export OMP_WAIT_POLICY
tmp=$(mktemp -d "${TMPDIR:-/tmp}/retort-tests.XXXXXX") || exit 1
TMPDIR=$tmp; export TMPDIR
pass=0; fail=0; bad=""
for t in "$@"; do
  out=$("$t" 2>&1); rc=$?
  echo "$out" | grep -E '^(FAIL|ok )' | sed "s|^|$(basename "$t"): |"
  p=$(echo "$out" | sed -n 's/^cases: \([0-9]*\) passed, \([0-9]*\) failed$/\1/p')
  f=$(echo "$out" | sed -n 's/^cases: \([0-9]*\) passed, \([0-9]*\) failed$/\2/p')
  if [ -z "$p" ]; then p=0; f=1; echo "$out" | tail -20; fi
  if [ $rc -ne 0 ] && [ "$f" = 0 ]; then f=1; echo "$(basename "$t"): exited $rc"; echo "$out" | tail -20; fi
  pass=$((pass + p)); fail=$((fail + f))
  [ "$f" != 0 ] && bad="$bad $(basename "$t")"
done
[ -n "$bad" ] && echo "failing:$bad"
if [ $fail -eq 0 ]; then rm -rf "$tmp"; else echo "test files kept in $tmp"; fi
echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
