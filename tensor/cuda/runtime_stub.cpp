// Linked when the build has no CUDA backend (HYDRA_CUDA=OFF or no nvcc): every entry point says so.
#include "tensor/check.h"
#include "tensor/cuda/backend.h"

namespace hydra::cuda {

namespace {
[[noreturn]] void no_cuda(const char* what) {
  HYDRA_CHECK_ENV(false, "{}: this build has no CUDA backend (configured without nvcc or with HYDRA_CUDA=OFF)", what);
}
}  // namespace

bool is_built() { return false; }
int device_count() { return 0; }
std::string device_name(int index) { no_cuda(fmt::format("cuda:{}", index).c_str()); }
std::string runtime_version() { return "built without CUDA"; }
Allocator& allocator(int index) { no_cuda(fmt::format("cannot place a tensor on cuda:{}", index).c_str()); }
int current_device() { no_cuda("cuda::current_device"); }
void set_device(int) { no_cuda("cuda::set_device"); }
DeviceGuard::DeviceGuard(int) : prev_(0) { no_cuda("cuda::DeviceGuard"); }
DeviceGuard::~DeviceGuard() = default;
void synchronize(int) { no_cuda("cuda::synchronize"); }
void defer_device_check(int, const void*, std::function<std::string(int64_t, int64_t)>) {
  no_cuda("cuda::defer_device_check");
}
void raise_deferred_errors(int, bool) {}
StreamHandle compute_stream(int) { no_cuda("cuda::compute_stream"); }
StreamHandle create_stream(int) { no_cuda("cuda::create_stream"); }
void destroy_stream(StreamHandle) { no_cuda("cuda::destroy_stream"); }
Event::Event(int, bool) { no_cuda("cuda::Event"); }
Event::~Event() = default;
void Event::record(StreamHandle) { no_cuda("cuda::Event::record"); }
void Event::wait(StreamHandle) const { no_cuda("cuda::Event::wait"); }
void Event::synchronize() const { no_cuda("cuda::Event::synchronize"); }
bool Event::done() const { no_cuda("cuda::Event::done"); }
float Event::elapsed_ms(const Event&) const { no_cuda("cuda::Event::elapsed_ms"); }
MemoryStats memory_stats(int) { no_cuda("cuda::memory_stats"); }
void reset_peak_memory_stats(int) { no_cuda("cuda::reset_peak_memory_stats"); }
void empty_cache(int) { no_cuda("cuda::empty_cache"); }
void set_poison_allocations(bool) {}
void record_stream(const hydra::Tensor&, StreamHandle) { no_cuda("cuda::record_stream"); }
std::size_t num_pending_frees(int) { return 0; }
void enqueue_delay(StreamHandle, int) { no_cuda("cuda::enqueue_delay"); }

}  // namespace hydra::cuda
