#!/usr/bin/env bash
# sacct stand-in for a Slurm cluster without accounting storage (no slurmdbd), installed by
# slurm/cluster.sh as /usr/local/bin/sacct, ahead of the real /usr/bin/sacct in PATH.
#
# Without slurmdbd the real sacct fails ("Slurm accounting storage is disabled") and submitit then reports
# every job as UNKNOWN. This script answers the queries submitit makes
#     sacct -o JobID,State,NodeList --parsable2 -j 12 -j 13
# and the common forms of others, from:
#   1. `scontrol -o show job` (the controller keeps ended jobs for MinJobAge seconds), and
#   2. the jobcomp/filetxt log (JobCompLoc in slurm.conf) for jobs that ended earlier; the last record wins.
# Live records override logged ones. Array tasks print as <arrayjobid>_<taskid>; array tasks not yet started
# print as one line <arrayjobid>_[<range>%<throttle>], as the real sacct does. Steps (12.batch) are never
# printed (as with -X).
#
# Supported: -o/--format (with optional %WIDTH), -P/--parsable2, -p/--parsable, --delimiter, -n/--noheader,
# -j/--jobs (repeated or comma-separated; N, N_T, N.step), -s/--state, -b/--brief, SACCT_FORMAT. Other options
# are accepted and ignored (no time window, user or cluster filtering: every known job is listed).
#
# If slurm.conf enables accounting_storage/slurmdbd, or LLADA_SACCT_SHIM=off, the real sacct runs instead.
set -euo pipefail

REAL=/usr/bin/sacct
CONF="${SLURM_CONF:-/etc/slurm/slurm.conf}"

conf_value() { # conf_value KEY: value of KEY= in slurm.conf (case-insensitive), empty if absent
  [[ -r $CONF ]] || return 0
  awk -F= -v k="$(tr '[:upper:]' '[:lower:]' <<<"$1")" '
    { line = $0; sub(/#.*/, "", line); split(line, kv, "="); key = kv[1]; gsub(/[ \t]/, "", key) }
    tolower(key) == k { v = substr(line, index(line, "=") + 1); gsub(/^[ \t]+|[ \t]+$/, "", v); val = v }
    END { print val }' "$CONF"
}

storage=$(conf_value AccountingStorageType)
if [[ ${LLADA_SACCT_SHIM:-on} == off || $storage == *slurmdbd* ]]; then
  exec "$REAL" "$@"
fi

format="${SACCT_FORMAT:-}"
sep="|"
parsable=0 # 0: fixed width, 1: --parsable (trailing separator), 2: --parsable2
header=1
jobs=""
states=""
while (($#)); do
  arg=$1
  shift
  case "$arg" in
  -o | --format | --fields) format=${1:-}; shift || true ;;
  -o* ) format=${arg#-o} ;;
  --format=* | --fields=*) format=${arg#*=} ;;
  -P | --parsable2) parsable=2 ;;
  -p | --parsable) parsable=1 ;;
  --delimiter=*) sep=${arg#*=} ;;
  --delimiter) sep=${1:-|}; shift || true ;;
  -n | --noheader) header=0 ;;
  -j | --jobs) jobs+="${1:-},"; shift || true ;;
  -j*) jobs+="${arg#-j}," ;;
  --jobs=*) jobs+="${arg#*=}," ;;
  -s | --state) states+="${1:-},"; shift || true ;;
  --state=*) states+="${arg#*=}," ;;
  -b | --brief) format="JobID,State,ExitCode" ;;
  -h | --help | --usage)
    sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//'
    exit 0
    ;;
  -V | --version)
    echo "sacct shim (llada_lightning slurm/sacct_shim.sh) over $("$REAL" -V 2>/dev/null || echo slurm)"
    exit 0
    ;;
  --json | --yaml)
    echo "sacct shim: $arg is not supported (no accounting storage)" >&2
    exit 1
    ;;
  # options that take a value, ignored
  -A | --accounts | -C | --clusters | -E | --endtime | -S | --starttime | -f | --file | -F | --flags | \
    -g | --gid | --group | -i | --nnodes | -I | --ncpus | -k | --timelimit-min | -K | --timelimit-max | \
    -M | -N | --nodelist | -q | --qos | -r | --partition | -T | -u | --uid | --user | -W | --wckeys | \
    -x | --associations | --name | --reason | --constraints | --units)
    shift || true
    ;;
  *) ;; # flags (-a, -X, -D, -l, -L, --noconvert, --array, -e, ...) and --opt=value forms: ignored
  esac
done
[[ -n $format ]] || format="JobID,JobName,Partition,Account,AllocCPUS,State,ExitCode"
((parsable)) || sep=" "

jobcomp=/dev/null
if [[ $(conf_value JobCompType) == *filetxt* ]]; then
  loc=$(conf_value JobCompLoc)
  [[ -n $loc && -r $loc ]] && jobcomp=$loc
fi
live=$(scontrol -o show job 2>/dev/null || true)

awk -v want_jobs="$jobs" -v want_states="$states" -v format="$format" -v sep="$sep" \
  -v parsable="$parsable" -v header="$header" '
function parse(line,    n, i, tok, eq, key, t) {   # fills rec[] from "Key=value Key=value ..." tokens
  for (key in rec) delete rec[key]
  n = split(line, t, " ")
  key = ""
  for (i = 1; i <= n; i++) {
    tok = t[i]
    eq = index(tok, "=")
    if (eq > 1 && substr(tok, 1, eq - 1) ~ /^[A-Za-z][A-Za-z0-9_:\/]*$/) {
      key = substr(tok, 1, eq - 1); rec[key] = substr(tok, eq + 1)
    } else if (key != "") {
      rec[key] = rec[key] " " tok   # a value with spaces
    }
  }
}
function val(k) { return (k in rec) ? rec[k] : "" }
function clean(v) { return (v == "(null)" || v == "Unknown" || v == "N/A") ? "" : v }
function field(name,    lname, v) {
  lname = tolower(name)
  if (lname == "jobid") return id
  if (lname == "jobidraw") return val("JobId")
  if (lname == "jobname") return ("JobName" in rec) ? val("JobName") : val("Name")
  if (lname == "state") return val("JobState")
  if (lname == "nodelist") { v = clean(val("NodeList")); return v == "" ? "None assigned" : v }
  if (lname == "exitcode") return val("ExitCode")
  if (lname == "derivedexitcode") return val("DerivedExitCode")
  if (lname == "partition") return val("Partition")
  if (lname == "account") return clean(val("Account"))
  if (lname == "qos") return clean(val("QOS"))
  if (lname == "alloccpus" || lname == "ncpus") return ("NumCPUs" in rec) ? val("NumCPUs") : val("ProcCnt")
  if (lname == "nnodes") return ("NumNodes" in rec) ? val("NumNodes") : val("NodeCnt")
  if (lname == "start") return val("StartTime")
  if (lname == "end") return val("EndTime")
  if (lname == "submit") return val("SubmitTime")
  if (lname == "eligible") return val("EligibleTime")
  if (lname == "elapsed") return val("RunTime")
  if (lname == "timelimit") return val("TimeLimit")
  if (lname == "workdir") return val("WorkDir")
  if (lname == "reason") return clean(val("Reason"))
  if (lname == "user") { v = val("UserId"); sub(/\(.*/, "", v); return v }
  if (lname == "uid") { v = val("UserId"); sub(/.*\(/, "", v); sub(/\).*/, "", v); return v }
  if (lname == "group") { v = val("GroupId"); sub(/\(.*/, "", v); return v }
  if (lname == "gid") { v = val("GroupId"); sub(/.*\(/, "", v); sub(/\).*/, "", v); return v }
  if (lname == "arrayjobid") return val("ArrayJobId")
  if (lname == "arraytaskid") return val("ArrayTaskId")
  if (lname == "alloctres" || lname == "reqtres") return ("TRES" in rec) ? val("TRES") : val("Tres")
  if (lname == "cluster") return clean(val("Cluster"))
  if (lname == "restarts") return val("Restarts")
  return ""
}
# Does the requested id w (N, N_T, N.step) select this record?
function selects(w,    main, task, lo, hi, r, n, i, parts, b) {
  sub(/\..*/, "", w)
  if (w == "") return 0
  if (index(w, "_") == 0) return (w == val("JobId") || w == val("ArrayJobId"))
  main = substr(w, 1, index(w, "_") - 1); task = substr(w, index(w, "_") + 1)
  if (main != val("ArrayJobId")) return 0
  r = val("ArrayTaskId"); sub(/%.*/, "", r)
  n = split(r, parts, ",")
  for (i = 1; i <= n; i++) {
    if (split(parts[i], b, "-") == 2) { if (task + 0 >= b[1] + 0 && task + 0 <= b[2] + 0) return 1 }
    else if (parts[i] == task) return 1
  }
  return 0
}
function state_ok(s,    i, w) {
  if (nstates == 0) return 1
  sub(/ .*/, "", s)
  for (i = 1; i <= nstates; i++) { w = toupper(wstates[i]); if (w == s || ((w in abbrev) && abbrev[w] == s)) return 1 }
  return 0
}
function pad(v, w) {
  if (w <= 0) w = 10
  if (length(v) > w) v = substr(v, 1, w - 1) "+"
  return sprintf("%-" w "s", v)
}
BEGIN {
  nf = split(format, fields, ",")
  for (i = 1; i <= nf; i++) {
    width[i] = 0
    if (index(fields[i], "%") > 0) { width[i] = substr(fields[i], index(fields[i], "%") + 1) + 0; sub(/%.*/, "", fields[i]) }
    if (width[i] == 0) width[i] = (tolower(fields[i]) == "jobid") ? 12 : 10
  }
  ncanon = split("JobID JobIDRaw JobName State NodeList ExitCode DerivedExitCode Partition Account QOS AllocCPUS NCPUS NNodes Start End Submit Eligible Elapsed Timelimit WorkDir Reason User UID Group GID ArrayJobID ArrayTaskID AllocTRES ReqTRES Cluster Restarts", canon, " ")
  for (i = 1; i <= ncanon; i++) canonical[tolower(canon[i])] = canon[i]
  for (i = 1; i <= nf; i++) if (tolower(fields[i]) in canonical) fields[i] = canonical[tolower(fields[i])]
  nwant = split(want_jobs, wj, ",")
  nstates = split(want_states, wstates, ",")
  split("BF:BOOT_FAIL CA:CANCELLED CD:COMPLETED CF:CONFIGURING CG:COMPLETING DL:DEADLINE F:FAILED NF:NODE_FAIL OOM:OUT_OF_MEMORY PD:PENDING PR:PREEMPTED R:RUNNING RQ:REQUEUED RS:RESIZING RV:REVOKED S:SUSPENDED TO:TIMEOUT", ab, " ")
  for (i in ab) { split(ab[i], kv, ":"); abbrev[kv[1]] = kv[2] }
  for (i = 1; i <= nstates; i++) if (wstates[i] == "") { nstates = i - 1; break }
}
{
  parse($0)
  if (!("JobId" in rec)) next
  if ("ArrayJobId" in rec && val("ArrayTaskId") != "") {
    t = val("ArrayTaskId")
    id = (t ~ /^[0-9]+$/) ? val("ArrayJobId") "_" t : val("ArrayJobId") "_[" t "]"
    k1 = val("ArrayJobId") + 0; k2 = t; sub(/[^0-9].*/, "", k2); k2 = k2 + 0
  } else {
    id = val("JobId"); k1 = id + 0; k2 = -1
  }
  if (nwant > 0) {
    ok = 0
    for (i = 1; i <= nwant; i++) if (wj[i] != "" && selects(wj[i])) { ok = 1; break }
    if (!ok) next
  }
  if (!state_ok(val("JobState"))) next
  out = ""
  for (i = 1; i <= nf; i++) {
    v = field(fields[i])
    gsub(/\|/, "/", v)
    if (parsable) out = out (i > 1 ? sep : "") v
    else out = out (i > 1 ? " " : "") pad(v, width[i])
  }
  if (parsable == 1) out = out sep
  # One line per job record (raw JobId); later records (live ones come last) replace earlier ones.
  line[val("JobId")] = k1 "\t" k2 "\t" out
}
END {
  if (header) {
    h = ""; u = ""
    for (i = 1; i <= nf; i++) {
      if (parsable) h = h (i > 1 ? sep : "") fields[i]
      else {
        h = h (i > 1 ? " " : "") pad(fields[i], width[i])
        d = sprintf("%" width[i] "s", ""); gsub(/ /, "-", d); u = u (i > 1 ? " " : "") d
      }
    }
    if (parsable == 1) h = h sep
    print "-1\t0\t" h
    if (!parsable) print "-1\t1\t" u
  }
  for (k in line) print line[k]
}' "$jobcomp" - <<<"$live" | sort -t "$(printf '\t')" -k1,1n -k2,2n -s | cut -f3-
