# SPDX-License-Identifier: MIT
# Smoke tests of the benchmarks (label bench): every program runs briefly and
# its output must parse (check_output.py); the scripts run at a tiny size;
# benchstats has a unit test.  Included by bench/CMakeLists.txt when tests
# are on.  The whole set takes seconds, not minutes.

set(bench_check ${Python3_EXECUTABLE} ${CMAKE_CURRENT_SOURCE_DIR}/check_output.py)
set(bench_smoke_dir ${CMAKE_CURRENT_BINARY_DIR}/smoke)

# bench_smoke(<name> [CHECK <check_output options...>] COMMAND <argv...>)
function(bench_smoke name)
  cmake_parse_arguments(S "" "" "CHECK;COMMAND" ${ARGN})
  add_test(NAME bench_${name} COMMAND ${bench_check} ${S_CHECK} -- ${S_COMMAND})
  set_tests_properties(bench_${name} PROPERTIES LABELS "bench" TIMEOUT 600)
endfunction()

add_test(NAME bench_stats_unit
         COMMAND ${Python3_EXECUTABLE} ${CMAKE_CURRENT_SOURCE_DIR}/test_benchstats.py)
set_tests_properties(bench_stats_unit PROPERTIES LABELS "bench")

foreach(alloc IN LISTS BENCH_ALLOCATORS)
  if(alloc STREQUAL "hakmem")
    set(name hakmem-${HAKMEM_VARIANT})
  else()
    set(name ${alloc})
  endif()
  set(req --require allocator=${name})
  bench_smoke(random_mixed_${alloc} CHECK ${req} --require iters=200000 --require ws=400
              COMMAND $<TARGET_FILE:bench_random_mixed_${alloc}> 200000 400)
  bench_smoke(mt_mixed_${alloc} CHECK ${req} --require threads=2 --require remote_pct=50
              COMMAND $<TARGET_FILE:bench_mt_mixed_${alloc}> 2 50000 400 16 1024 50)
  # One size per mode: a few hundred ops per measurement.
  bench_smoke(workloads_sizes_${alloc} CHECK ${req} --min-results 52
              COMMAND $<TARGET_FILE:bench_workloads_${alloc}> sizes 2000 10)
  bench_smoke(workloads_realloc_${alloc} CHECK ${req} --min-results 3
              COMMAND $<TARGET_FILE:bench_workloads_${alloc}> realloc 3)
  bench_smoke(workloads_calloc_${alloc} CHECK ${req} --min-results 10
              COMMAND $<TARGET_FILE:bench_workloads_${alloc}> calloc 2 65536)
  # mimalloc 2.0.9 misaligns posix_memalign(256..1024): its issue #700, so
  # only hakmem and glibc are held to misaligned=0.
  if(alloc STREQUAL "mimalloc")
    set(aligned_req ${req})
  else()
    set(aligned_req ${req} --require misaligned=0)
  endif()
  bench_smoke(workloads_aligned_${alloc} CHECK ${aligned_req} --min-results 9
              COMMAND $<TARGET_FILE:bench_workloads_${alloc}> aligned 20000 100)
  bench_smoke(workloads_mid_${alloc} CHECK ${req}
              COMMAND $<TARGET_FILE:bench_workloads_${alloc}> mid 20000)
  bench_smoke(workloads_large_${alloc} CHECK ${req}
              COMMAND $<TARGET_FILE:bench_workloads_${alloc}> large 200 4)
  # The thread shapes, a few thousand ops each; fs-* must report the lines
  # shared (any count: the smoke test asserts that it runs and reports).
  foreach(shape prodcons-pair prodcons-shared server xthread fs-active fs-passive churn)
    if(shape STREQUAL "churn")
      set(shape_iters 20)
    else()
      set(shape_iters 2000)
    endif()
    if(shape MATCHES "^fs-")
      set(shape_req --expect "shared_lines=[0-9]+")
    else()
      set(shape_req)
    endif()
    bench_smoke(threads_${shape}_${alloc} CHECK ${req} --require threads=3 ${shape_req}
                --expect "left_kb=-?[0-9]+"
                COMMAND $<TARGET_FILE:bench_threads_${alloc}> ${shape} 3 ${shape_iters} --wait-ms=20)
  endforeach()
  bench_smoke(cxx_${alloc} CHECK ${req} --require workload=cxx --require iters=20000
              COMMAND $<TARGET_FILE:bench_cxx_${alloc}> 20000 2000)
  bench_smoke(soak_${alloc} CHECK ${req} --expect "^Sample t=[0-9.]+ ops=[0-9]+ ops_per_s=[0-9]+ rss_kb=[0-9]+$"
              COMMAND $<TARGET_FILE:bench_soak_${alloc}> 0.6 0.2)
  if(TARGET micro_${alloc})
    bench_smoke(micro_${alloc} CHECK --min-results 0
                --expect "${name}/malloc_free/16 +[0-9]" --expect "${name}/mixed +[0-9]"
                COMMAND $<TARGET_FILE:micro_${alloc}> --benchmark_min_time=0.002
                "--benchmark_filter=/(malloc_free/16|calloc_free/1024|realloc_chain/1024|memalign_free/64|mixed)$")
  endif()
endforeach()

bench_smoke(random_mixed_syscalls CHECK --expect "^Syscalls (mmap=[0-9]+ munmap=[0-9]+ madvise=[0-9]+ mremap=[0-9]+ total=[0-9]+|counters=none) ops=100000"
            COMMAND $<TARGET_FILE:bench_random_mixed_hakmem> 100000 400 --warmup=10000 --syscalls)

# LD_PRELOAD into the plain (libc) binary.  A sanitizer build cannot: its
# runtime must be the first library loaded, and an instrumented libhakmem.so
# cannot replace malloc under it.
if(HAKMEM_SANITIZE)
  message(STATUS "bench: LD_PRELOAD smoke tests skipped: HAKMEM_SANITIZE=${HAKMEM_SANITIZE} "
                 "(a sanitizer runtime must come first and owns malloc)")
else()
  bench_smoke(preload_hakmem CHECK --expect "preload=libhakmem"
              --env LD_PRELOAD=$<TARGET_FILE:hakmem_shared>
              COMMAND $<TARGET_FILE:bench_random_mixed_libc> 200000 400)
  bench_smoke(preload_mt_hakmem CHECK --expect "preload=libhakmem"
              --env LD_PRELOAD=$<TARGET_FILE:hakmem_shared>
              COMMAND $<TARGET_FILE:bench_mt_mixed_libc> 2 50000 400 16 1024 50)
  foreach(shape server churn)
    bench_smoke(preload_threads_${shape}_hakmem CHECK --expect "preload=libhakmem"
                --env LD_PRELOAD=$<TARGET_FILE:hakmem_shared>
                COMMAND $<TARGET_FILE:bench_threads_libc> ${shape} 3 20 --life=5 --wait-ms=20)
  endforeach()
  foreach(peer libmimalloc.so.2 libtcmalloc_minimal.so.4)
    find_file(BENCH_${peer}_PATH ${peer} PATHS /usr/lib/x86_64-linux-gnu /usr/lib64 /usr/lib
              NO_DEFAULT_PATH)
    if(BENCH_${peer}_PATH)
      string(REGEX REPLACE "^lib([a-z_]+)\\..*" "\\1" peer_name ${peer})
      bench_smoke(preload_${peer_name} CHECK --expect "preload=${peer}"
                  --env LD_PRELOAD=${BENCH_${peer}_PATH}
                  COMMAND $<TARGET_FILE:bench_random_mixed_libc> 200000 400)
    endif()
  endforeach()
endif()

# The scripts, at a tiny size, on this tree only (the other preset trees may
# not exist).  The preload runs need what the preload tests need.
set(this_tree --build ${HAKMEM_VARIANT}=${CMAKE_BINARY_DIR} --base-dir ${CMAKE_BINARY_DIR})
set(script_allocators hakmem-${HAKMEM_VARIANT} libc)
if(TARGET bench_random_mixed_mimalloc)
  list(APPEND script_allocators mimalloc)
endif()
if(NOT HAKMEM_SANITIZE)
  list(APPEND script_allocators preload-hakmem preload-glibc)
endif()
list(JOIN script_allocators "," script_allocators)
bench_smoke(run_compare CHECK --min-results 0 --expect "^targets" --expect "^written: "
            COMMAND ${Python3_EXECUTABLE} ${CMAKE_CURRENT_SOURCE_DIR}/run_compare
            --workload mixed,mt,sizes,realloc,calloc,aligned,mid,large --runs 2 --scale 0.002
            --allocators ${script_allocators} ${this_tree} --out ${bench_smoke_dir}/compare)
# The big-block rows write hundreds of MiB even at the smallest scale: one
# run, two allocators.
set(big_allocators hakmem-${HAKMEM_VARIANT})
if(NOT HAKMEM_SANITIZE)
  list(APPEND big_allocators preload-glibc)
endif()
list(JOIN big_allocators "," big_allocators)
bench_smoke(run_compare_big CHECK --min-results 0 --expect "flt/op" --expect "^written: "
            COMMAND ${Python3_EXECUTABLE} ${CMAKE_CURRENT_SOURCE_DIR}/run_compare
            --workload big --runs 1 --scale 0.002 --allocators ${big_allocators}
            ${this_tree} --out ${bench_smoke_dir}/compare_big)
# The thread shapes (22 runs each time): once, two allocators, so that the
# sanitizer build stays within the time limit; every allocator runs each
# shape in the threads_* tests above.
# No "targets" check: they compare the fast and standard builds, which the
# observe tree's run does not include.
bench_smoke(run_compare_threads CHECK --min-results 0 --expect "^written: "
            --expect "fs-active threads=1"
            COMMAND ${Python3_EXECUTABLE} ${CMAKE_CURRENT_SOURCE_DIR}/run_compare
            --workload prodcons,server,xthread,fs-active,fs-passive,churn --runs 1 --scale 0.002
            --wait-ms 10 --allocators hakmem-${HAKMEM_VARIANT},libc ${this_tree}
            --out ${bench_smoke_dir}/compare-threads)
if(HAKMEM_VARIANT STREQUAL "observe")
  bench_smoke(run_compare_observe CHECK --min-results 0 --expect "^per-class hits"
              COMMAND ${Python3_EXECUTABLE} ${CMAKE_CURRENT_SOURCE_DIR}/run_compare
              --observe --iters 100000 ${this_tree} --out ${bench_smoke_dir}/observe)
endif()
bench_smoke(run_syscalls CHECK --min-results 0 --expect "^written: "
            COMMAND ${Python3_EXECUTABLE} ${CMAKE_CURRENT_SOURCE_DIR}/run_syscalls
            --iters 1e5 --warmup 1e4 --no-peers --counters-allocator hakmem-${HAKMEM_VARIANT}
            --strace-allocator hakmem-${HAKMEM_VARIANT}
            ${this_tree} --out ${bench_smoke_dir}/syscalls)
bench_smoke(run_soak CHECK --min-results 0 --expect "drift" --expect "^written: "
            COMMAND ${Python3_EXECUTABLE} ${CMAKE_CURRENT_SOURCE_DIR}/run_soak
            --duration 1.5 --interval 0.25 --allocators hakmem-${HAKMEM_VARIANT}
            ${this_tree} --out ${bench_smoke_dir}/soak)

# The big-block programs: one short run of each mode per allocator, and the
# peers through LD_PRELOAD of the plain binary where they are installed.
foreach(alloc IN LISTS BENCH_ALLOCATORS)
  if(alloc STREQUAL "hakmem")
    set(name hakmem-${HAKMEM_VARIANT})
  else()
    set(name ${alloc})
  endif()
  bench_smoke(big_blocks_${alloc} CHECK --require allocator=${name} --require live=4
              --expect "minflt=[0-9]+"
              COMMAND $<TARGET_FILE:bench_big_${alloc}> blocks 256K 5M 4 50)
  bench_smoke(big_rewrite_${alloc} CHECK --require allocator=${name}
              --require workload=big-rewrite
              --expect "first_write_s=[0-9.]+ rewrite_s=[0-9.]+"
              COMMAND $<TARGET_FILE:bench_big_${alloc}> rewrite 256K 5M 4 50)
  # Not under a sanitizer: its runtime maps its own memory, which a lowered
  # RLIMIT_AS refuses ("Failed to mmap").
  if(NOT HAKMEM_SANITIZE)
    bench_smoke(big_aspace_${alloc} CHECK --min-results 0
                --expect "^Aspace size=2097152 vmsize_per_block=[0-9]+ blocks_under_limit=[0-9]+"
                COMMAND $<TARGET_FILE:bench_big_${alloc}> aspace)
  endif()
  bench_smoke(big_mt_${alloc} CHECK --require allocator=${name} --require threads=3
              COMMAND $<TARGET_FILE:bench_big_${alloc}> mt 3 6000 100 3)
endforeach()
if(NOT HAKMEM_SANITIZE)
  foreach(peer libtcmalloc_minimal.so.4 libjemalloc.so.2)
    find_file(BENCH_BIG_${peer}_PATH ${peer} PATHS /usr/lib/x86_64-linux-gnu /usr/lib64 /usr/lib
              NO_DEFAULT_PATH)
    if(BENCH_BIG_${peer}_PATH)
      string(REGEX REPLACE "^lib([a-z_]+)\\..*" "\\1" peer_name ${peer})
      bench_smoke(preload_big_${peer_name} CHECK --expect "preload=${peer}"
                  --env LD_PRELOAD=${BENCH_BIG_${peer}_PATH}
                  COMMAND $<TARGET_FILE:bench_big_libc> blocks 1M 4M 4 50)
    endif()
  endforeach()
  bench_smoke(preload_big_hakmem CHECK --expect "preload=libhakmem"
              --env LD_PRELOAD=$<TARGET_FILE:hakmem_shared>
              COMMAND $<TARGET_FILE:bench_big_libc> mt 3 6000 100 3)
endif()
