#!/usr/bin/env bash
# Peer collectors on the workloads of benches/peers/WORKLOADS.md, written to
# target/peers/results.json (schema: benches/peers/RESULTS.md).
#
#   benches/peers/run.sh [--quick] [--sizes "64 1024"] [--peers "boehm java-g1"]
#                        [--workloads "gcbench churn"] [--threads N] [--timeout SECONDS]
#                        [--heap-factor F] [--out DIR] [--boehm-time-allocs]
#
# Java heaps are -Xms = -Xmx = F x the nominal live size (default F = 2, as Faultline's
# max_heap_bytes), at least 64 MiB. An explicit --heap-factor also limits Boehm's heap to the
# same size (GC_set_max_heap_size), for equal-memory comparisons (issue 14). --out (default target/peers) must be under the repository.
# --boehm-time-allocs times every libgc allocation call and records those >= 50 us as stalls
# (a diagnostic: it slows the Boehm runs down).
#
# Full: 64 MiB and 1 GiB nominal live; --quick: 4 and 16 MiB. Each run is bounded by
# --timeout (default 900 s full, 120 s quick); a run that times out or fails is listed under
# "failed" and the script goes on. A peer that is not available (no libgc, no JDK, a JDK
# without the collector) is listed under "missing". Exits 0 unless the helper cannot be built.
set -uo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
OUT=$ROOT/target/peers
HEAP_FACTOR=2
BOEHM_EXTRA=()
BOEHM_LIMIT=
SIZES="64 1024"
PEERS="boehm boehm-incremental java-zgc java-shenandoah java-g1"
WORKLOADS="binary-trees gcbench fragmentation churn request"
THREADS=2
TIMEOUT=
QUICK=0
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) QUICK=1; SIZES="4 16" ;;
    --sizes) SIZES="$2"; shift ;;
    --peers) PEERS="$2"; shift ;;
    --workloads) WORKLOADS="$2"; shift ;;
    --threads) THREADS="$2"; shift ;;
    --timeout) TIMEOUT="$2"; shift ;;
    --heap-factor) HEAP_FACTOR="$2"; BOEHM_LIMIT=1; shift ;;
    --out) OUT=$(mkdir -p "$2" && cd "$2" && pwd); shift ;;
    --boehm-time-allocs) BOEHM_EXTRA=(--time-allocs) ;;
    *) echo "usage: $0 [--quick] [--sizes S] [--peers P] [--workloads W] [--threads N] [--timeout S] [--heap-factor F] [--out DIR] [--boehm-time-allocs]" >&2; exit 2 ;;
  esac
  shift
done
[ -n "$TIMEOUT" ] || { [ $QUICK = 1 ] && TIMEOUT=120 || TIMEOUT=900; }
mkdir -p "$OUT/java" "$OUT/logs"
RECORDS=$OUT/records.jsonl
: > "$RECORDS"
MISSING=()
FAILED=()
log() { echo "peers: $*" >&2; }

# 1. libgc (Debian's libgc-dev); failure only makes the Boehm peers missing.
if [ ! -e /usr/include/gc/gc.h ]; then
  log "installing libgc-dev"
  { apt-get update && apt-get install -y libgc-dev; } > "$OUT/logs/apt.log" 2>&1 \
    || log "libgc-dev install failed (see $OUT/logs/apt.log)"
fi

# 2. The helper, with the Boehm runner if libgc links.
HELPER=$TARGET/release/faultline-peers
BOEHM=0
if cargo build -q --release -p faultline-peers --features boehm 2> "$OUT/logs/build-boehm.log"; then
  BOEHM=1
else
  log "Boehm runner did not build (see $OUT/logs/build-boehm.log)"
  MISSING+=("boehm, boehm-incremental: libgc (apt libgc-dev) not available or did not link")
  cargo build -q --release -p faultline-peers || { log "helper does not build"; exit 1; }
fi

# 3. Java: compile once; probe each collector.
declare -A JGC=([java-zgc]=-XX:+UseZGC [java-shenandoah]=-XX:+UseShenandoahGC [java-g1]=-XX:+UseG1GC)
declare -A JAVA_OK=()
if command -v javac > /dev/null && command -v java > /dev/null \
   && javac -d "$OUT/java" benches/peers/java/Workloads.java 2> "$OUT/logs/javac.log"; then
  JVER=$(java -version 2>&1 | head -1)
  for p in java-zgc java-shenandoah java-g1; do
    if java "${JGC[$p]}" -version > /dev/null 2>&1; then JAVA_OK[$p]=1
    else MISSING+=("$p: $JVER refuses ${JGC[$p]}"); fi
  done
else
  MISSING+=("java-zgc, java-shenandoah, java-g1: no JDK (java/javac) or javac failed")
fi

# 4. Runs.
run_one() { # peer workload mib
  local peer=$1 w=$2 mib=$3 tag="$1-$2-$3" rc
  local tflag=() ; { [ "$w" = churn ] || [ "$w" = request ]; } && tflag=(--threads "$THREADS")
  case $peer in
    boehm|boehm-incremental)
      [ $BOEHM = 1 ] || return 0
      local inc=(); [ $peer = boehm-incremental ] && inc=(--incremental)
      local bmax=(); [ -n "$BOEHM_LIMIT" ] && bmax=(--max-heap-mib $(( mib * HEAP_FACTOR < 64 ? 64 : mib * HEAP_FACTOR )))
      timeout "$TIMEOUT" "$HELPER" boehm --workload "$w" --live-mib "$mib" "${tflag[@]}" "${inc[@]}" "${bmax[@]}" \
        "${BOEHM_EXTRA[@]}" > "$OUT/logs/$tag.json" 2> "$OUT/logs/$tag.err"; rc=$?
      ;;
    java-*)
      [ -n "${JAVA_OK[$peer]:-}" ] || return 0
      # Heap = F x nominal live (F = 2: Faultline's max_heap_bytes); at least 64 MiB so that
      # every collector starts (JVM metadata, TLABs and region sizes dominate tiny heaps).
      local heap=$(( mib * HEAP_FACTOR )); [ $heap -lt 64 ] && heap=64
      rm -f "$OUT/logs/$tag.safepoint.log" "$OUT/logs/$tag.gc.log"
      timeout "$TIMEOUT" java "${JGC[$peer]}" -Xms${heap}m -Xmx${heap}m -Xss64m \
        "-Xlog:safepoint:file=$OUT/logs/$tag.safepoint.log:timenanos,uptimenanos" \
        "-Xlog:gc:file=$OUT/logs/$tag.gc.log:timenanos" \
        -cp "$OUT/java" Workloads "$w" "$mib" "$THREADS" > "$OUT/logs/$tag.out" 2> "$OUT/logs/$tag.err"; rc=$?
      if [ $rc = 0 ]; then
        "$HELPER" java-record --peer "$peer" --workload "$w" --live-mib "$mib" "${tflag[@]}" \
          --stdout "$OUT/logs/$tag.out" --safepoint-log "$OUT/logs/$tag.safepoint.log" \
          --gc-log "$OUT/logs/$tag.gc.log" --note-prefix "java -Xms${heap}m -Xmx${heap}m" \
          > "$OUT/logs/$tag.json" 2>> "$OUT/logs/$tag.err"; rc=$?
      fi
      ;;
  esac
  if [ $rc = 0 ]; then
    cat "$OUT/logs/$tag.json" >> "$RECORDS"
    log "$tag ok"
  else
    local why="exit $rc"; [ $rc = 124 ] && why="timed out after ${TIMEOUT}s"
    FAILED+=("$tag: $why (logs: ${OUT#"$ROOT"/}/logs/$tag.*)")
    log "$tag FAILED: $why"
  fi
}

for mib in $SIZES; do
  for w in $WORKLOADS; do
    for p in $PEERS; do run_one "$p" "$w" "$mib"; done
  done
done

args=(merge --records "$RECORDS" --out "$OUT/results.json")
for m in "${MISSING[@]}"; do args+=(--missing "$m"); done
for f in "${FAILED[@]}"; do args+=(--failed "$f"); done
"$HELPER" "${args[@]}"
exit 0
