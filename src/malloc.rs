//! glibc's allocator, set for a run of many threads that mostly wait on the network.
//!
//! Why: glibc gives each thread that finds the allocator busy an arena of its own (up to eight
//! per core), each keeping its own free memory, and raises its mmap threshold whenever a large
//! block is freed, so that later large tables come out of the arenas too. With 32 workers a
//! long run's resident memory kept growing though what it held did not: copying 100,000 tags
//! at the defaults had reached 31.1 MiB after 66,000 of them (an earlier build: 36.6 MiB at the
//! end), while a 20,000-tag run with two arenas and a fixed 128 KiB threshold
//! (`MALLOC_ARENA_MAX=2 MALLOC_MMAP_THRESHOLD_=131072`) levelled off at about 17.7 MiB after
//! 9,000; with them set here, 100,000 tags peaked at 19.8 MiB (BENCHMARKS.md, 2026-12-07). Those two settings are made here, unless the environment sets
//! them itself. musl's allocator (the static binary) has no arenas: nothing is done there.

/// Set the allocator up; call first thing, before any other thread exists.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn tune() {
    let unset = |var: &str| std::env::var_os(var).is_none();
    // SAFETY: mallopt only sets allocator parameters, and no other thread exists yet.
    unsafe {
        if unset("MALLOC_ARENA_MAX") {
            libc::mallopt(libc::M_ARENA_MAX, 2);
        }
        if unset("MALLOC_MMAP_THRESHOLD_") {
            libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024);
        }
    }
}

/// Nothing to set outside glibc.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn tune() {}
