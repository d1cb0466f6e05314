// How many threads the kernels use, and how those threads wait between parallel regions.
//
// Every kernel opens its OpenMP regions with the calling thread's thread count, and each thread's
// share is fixed by that count's schedule, so results are the same bits on one thread or more.
// On a machine other processes share, a thread that spins at a barrier loses its core to them
// and the whole region waits for it: waiting passively (sleeping in the kernel) keeps a busy
// machine from collapsing, and costs a few microseconds per region on an idle one.
#pragma once

#include <cstddef>

namespace ax::kernels {

// Sets the thread count of the calling thread's parallel regions to n; 0 leaves it as it is:
// OpenMP's default, the cores available to the process (libgomp counts the affinity mask), or
// OMP_NUM_THREADS when the user set it.
void set_threads(std::size_t n);
// The thread count parallel regions opened now would use.
std::size_t threads();

// OpenMP (libgomp) reads OMP_WAIT_POLICY once, when its library is loaded, before main runs: a
// program that wants passive waiting must have it in its environment at start. Returns true
// when neither OMP_WAIT_POLICY nor GOMP_SPINCOUNT is set (the user chose nothing), after
// setting OMP_WAIT_POLICY=passive in this process's environment: the caller then re-executes
// itself (the `axiomatic` command does, once, with execv) for the setting to take effect.
bool choose_passive_waiting();

}  // namespace ax::kernels
