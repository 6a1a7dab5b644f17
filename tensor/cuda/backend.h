#pragma once
// The CUDA backend's host-side interface. Host-only code includes this header (no CUDA headers here).
// Built with CUDA (HYDRA_CUDA=AUTO with nvcc, or ON): tensor/cuda/runtime.cu; built without: runtime_stub.cpp,
// whose functions throw "built without CUDA" (device_count() returns 0 there).
//
// Each device has one context, made on first use: a non-blocking compute stream (every kernel of the
// library runs on it, in order), the cuBLASLt handle and its workspace, and the caching allocator.
#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>

#include "tensor/storage.h"

namespace hydra::cuda {

bool is_built();                 // whether this binary contains the CUDA backend
int device_count();              // 0 without a driver or GPU (never throws)
std::string device_name(int index);
std::string runtime_version();   // e.g. "CUDA runtime 13.0, driver 13.0" or why it is unavailable
Allocator& allocator(int index);  // the device's caching allocator; throws naming the device when unavailable

int current_device();
void set_device(int index);
// Makes `index` the current device for its lifetime, restoring the previous one after.
class DeviceGuard {
 public:
  explicit DeviceGuard(int index);
  ~DeviceGuard();
  DeviceGuard(const DeviceGuard&) = delete;
  DeviceGuard& operator=(const DeviceGuard&) = delete;

 private:
  int prev_;
};

void synchronize(int index);  // waits for the device's compute stream (and any error it raised)

// Deferred device-side input checks. An op that validates its inputs on the device (cross-entropy's targets) does
// not stop the host to read the verdict: it enqueues a copy of {bad_row, bad_value} (two int64 on the device, in
// the compute stream's order; bad_row < 0 = fine) to pinned host memory with defer_device_check, and its message
// formatter. The verdict is raised as std::invalid_argument by the next host synchronisation of that device:
// synchronize(), any device-to-host copy (item(), to(cpu)), or the next defer_device_check once its copy has
// landed. So a bad target still gets its exact message (value, row, V), one synchronisation point later, and a
// training step with valid targets never waits for the check.
void defer_device_check(int device, const void* device_info, std::function<std::string(int64_t, int64_t)> message);
// Raises the first failed deferred check of `device` whose copy has completed (all of them when `wait_all`: the
// caller has just synchronised the compute stream). Checks that passed are dropped.
void raise_deferred_errors(int device, bool wait_all);

// Streams and events, as opaque handles (cudaStream_t / cudaEvent_t inside).
struct StreamHandle {
  void* ptr = nullptr;
  int device = 0;
};
StreamHandle compute_stream(int index);
StreamHandle create_stream(int index);  // an extra non-blocking stream (e.g. for communication); caller destroys
void destroy_stream(StreamHandle s);
class Event {
 public:
  explicit Event(int device, bool timing = true);
  ~Event();
  Event(const Event&) = delete;
  Event& operator=(const Event&) = delete;
  void record(StreamHandle s);
  void wait(StreamHandle s) const;   // make `s` wait for this event
  void synchronize() const;
  bool done() const;  // the work recorded before it has completed (cudaEventQuery; an error throws)
  float elapsed_ms(const Event& end) const;  // both recorded, end after this

 private:
  void* ev_ = nullptr;
  int device_ = 0;
};

}  // namespace hydra::cuda
namespace hydra {
class Tensor;
}
namespace hydra::cuda {
// Stream-aware freeing: marks that work on stream `s` (other than the compute stream) uses t's memory, so the
// block is not handed out again until that work, as queued when t is freed, has completed.
void record_stream(const hydra::Tensor& t, StreamHandle s);
std::size_t num_pending_frees(int index = 0);  // freed blocks still waiting for other streams
// Test aid: work queued on `s` after this call starts only `milliseconds` later (a sleeping host callback).
void enqueue_delay(StreamHandle s, int milliseconds);

// Caching allocator statistics of one device.
struct MemoryStats {
  std::size_t in_use_bytes = 0;      // bytes handed out to live blocks (after rounding)
  std::size_t peak_in_use_bytes = 0;
  std::size_t reserved_bytes = 0;    // bytes obtained from cudaMalloc and not yet returned (in use + cached)
  std::size_t num_device_mallocs = 0;  // cudaMalloc calls made
  std::size_t num_device_frees = 0;    // cudaFree calls made
  std::size_t num_allocations = 0;     // allocate() calls
  std::size_t num_cache_hits = 0;      // allocate() calls served from the cache
};
MemoryStats memory_stats(int index = 0);
void reset_peak_memory_stats(int index = 0);
void empty_cache(int index = 0);  // returns every cached (free) block to the driver
// Test aid: while on, every block the allocator hands out is first filled with 0xFF bytes (NaN in every
// floating dtype, -1 in integers), so an output element a kernel forgets to write fails its comparison.
void set_poison_allocations(bool on);

}  // namespace hydra::cuda
