#!/bin/sh
# Instructions of one M1 kernel pass at 1 thread (callgrind): prof/cg.sh OUTFILE [backend]
PYTHONPATH=$(dirname $0)/../src valgrind --tool=callgrind --callgrind-out-file=$1 \
  /work/main/.venv/bin/python $(dirname $0)/m1k.py ${2:-cython} 1 1 >/dev/null 2>&1
callgrind_annotate --inclusive=yes $1 2>/dev/null | grep -E "omp_fn|_new_pattern|_end_run|pattern_factor|add_cond|dgemm_nn|dsyrk_UN" | grep -v "^ *[0-9,]* *(.*)  /work" 
