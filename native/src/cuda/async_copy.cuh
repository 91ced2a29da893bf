// cp.async: 16 bytes from global to shared memory without passing through registers, so a thread can have many
// loads in flight at once and keep computing while they land; and prefetches into L2. One copy of the inline PTX
// for every kernel that moves data this way (the products, attention, the LoRA expand).
#pragma once

namespace loraserve::cuda {

// Zeros when !valid (nothing is read then, but `global` must still be a valid address).
__device__ inline void copyToShared(void* shared, const void* global, bool valid) {
  const unsigned address = static_cast<unsigned>(__cvta_generic_to_shared(shared));
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(address), "l"(global), "r"(valid ? 16 : 0)
               : "memory");
}

// Closes the group of this thread's copies issued since the last commit (an empty group is allowed).
__device__ inline void commitCopies() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }

// Waits until at most `kPending` of this thread's committed groups are still in flight.
template <int kPending>
__device__ inline void waitForCopyGroups() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(kPending) : "memory");
}

__device__ inline void waitForCopies() { asm volatile("cp.async.wait_all;\n" ::: "memory"); }

}  // namespace loraserve::cuda
