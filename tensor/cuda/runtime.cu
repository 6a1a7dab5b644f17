// The CUDA runtime side of the backend: error reporting, device contexts (compute stream, cuBLASLt handle and
// workspace), the caching device allocator with its statistics, host<->device copies with pinned staging,
// device guards, streams and events.
//
// Caching allocator: requests are rounded up (to 512 B below 1 MiB, to 2 MiB above) and served best-fit from
// the free blocks of the same device and stream; a block is only returned to the driver by empty_cache() or
// when cudaMalloc fails (then the cache is emptied and the call retried once). So a steady-state training
// loop makes no cudaMalloc calls after its first step. Blocks are tied to the compute stream they were made
// for. A tensor also used on another stream is marked with record_stream(t, s): when it is freed, events are
// recorded on those streams and the block returns to the pool only after they complete.
#include <algorithm>
#include <chrono>
#include <thread>
#include <atomic>
#include <cstring>
#include <deque>
#include <stdexcept>
#include <map>
#include <memory>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "tensor/check.h"
#include "tensor/cuda/common.cuh"

namespace hydra::cuda {

void throw_cuda_error(cudaError_t err, const char* stmt, const char* file, int line) {
  int dev = -1;
  cudaGetDevice(&dev);
  cudaGetLastError();
  std::string f(file);
  auto pos = f.rfind("/tensor/");
  if (pos != std::string::npos) f = f.substr(pos + 1);
  throw std::runtime_error(HYDRA_FORMAT("CUDA error {} ({}) in `{}` on cuda:{} [{}:{}]", cudaGetErrorName(err),
                                       cudaGetErrorString(err), stmt, dev, f, line));
}

void throw_cublas_error(cublasStatus_t st, const char* stmt, const char* file, int line, const std::string& context) {
  int dev = -1;
  cudaGetDevice(&dev);
  std::string f(file);
  auto pos = f.rfind("/tensor/");
  if (pos != std::string::npos) f = f.substr(pos + 1);
  throw std::runtime_error(HYDRA_FORMAT("cuBLAS error {} in `{}` on cuda:{} ({}) [{}:{}]", static_cast<int>(st), stmt,
                                       dev, context, f, line));
}

bool is_built() { return true; }

// Asked once: the visible devices cannot change within a process, and every allocation and context lookup
// needs the count (cudaGetDeviceCount per call showed up as GEMM wrapper overhead).
int device_count() {
  static const int n = [] {
    int count = 0;
    if (cudaGetDeviceCount(&count) != cudaSuccess) {
      cudaGetLastError();  // clear the "no driver / no device" error
      return 0;
    }
    return count;
  }();
  return n;
}

namespace {

void check_index(int index, const char* what) {
  const int n = device_count();
  HYDRA_CHECK_ENV(index >= 0 && index < n, "{} cuda:{}: no such device ({} CUDA device(s) visible)", what, index, n);
}

// ---------------------------------------------------------------------------------------------------------
// caching allocator

std::atomic<bool> g_poison{false};

class CachingAllocator final : public Allocator {
 public:
  explicit CachingAllocator(int device) : device_(device) {}

  void* allocate(std::size_t nbytes) override {
    void* p = allocate_block(nbytes);
    if (p && g_poison.load()) {
      DeviceGuard guard(device_);
      HYDRA_CUDA_CHECK(cudaMemsetAsync(p, 0xFF, nbytes, context(device_).stream));
    }
    return p;
  }

  void* allocate_block(std::size_t nbytes) {
    if (nbytes == 0) return nullptr;
    const std::size_t size = round_size(nbytes);
    std::lock_guard<std::mutex> lock(mu_);
    stats_.num_allocations++;
    reclaim_pending_locked();
    auto it = free_.lower_bound(size);
    // Best fit, but never hand out a block more than twice the request (large blocks stay for large requests).
    if (it != free_.end() && it->first <= std::max<std::size_t>(2 * size, size + (std::size_t{2} << 20))) {
      void* p = it->second;
      const std::size_t block = it->first;
      free_.erase(it);
      live_[p] = block;
      stats_.in_use_bytes += block;
      stats_.num_cache_hits++;
      stats_.peak_in_use_bytes = std::max(stats_.peak_in_use_bytes, stats_.in_use_bytes);
      return p;
    }
    DeviceGuard guard(device_);
    void* p = nullptr;
    cudaError_t err = cudaMalloc(&p, size);
    if (err != cudaSuccess) {
      cudaGetLastError();
      release_cached_locked();
      err = cudaMalloc(&p, size);
    }
    if (err != cudaSuccess) {
      cudaGetLastError();
      std::size_t free_b = 0, total_b = 0;
      cudaMemGetInfo(&free_b, &total_b);
      HYDRA_CHECK_ENV(false,
                      "CUDA out of memory on cuda:{}: requested {} bytes ({:.2f} MiB); {:.2f} MiB in use by tensors, "
                      "{:.2f} MiB reserved by the allocator, {:.2f} MiB free of {:.2f} MiB on the device",
                      device_, nbytes, nbytes / 1048576.0, stats_.in_use_bytes / 1048576.0,
                      stats_.reserved_bytes / 1048576.0, free_b / 1048576.0, total_b / 1048576.0);
    }
    stats_.num_device_mallocs++;
    stats_.reserved_bytes += size;
    live_[p] = size;
    stats_.in_use_bytes += size;
    stats_.peak_in_use_bytes = std::max(stats_.peak_in_use_bytes, stats_.in_use_bytes);
    return p;
  }

  void deallocate(void* ptr, std::size_t) override {
    if (!ptr) return;
    std::lock_guard<std::mutex> lock(mu_);
    auto it = live_.find(ptr);
    if (it == live_.end()) return;  // not ours: nothing sensible to do in a destructor path
    stats_.in_use_bytes -= it->second;
    auto used = other_streams_.find(ptr);
    if (used == other_streams_.end()) {
      free_.emplace(it->second, ptr);  // only the compute stream used it: stream order makes reuse safe
    } else {
      // Work queued on other streams may still read or write the block: it becomes free only once events
      // recorded on those streams now have completed.
      Pending pend{ptr, it->second, {}};
      DeviceGuard guard(device_);
      for (cudaStream_t s : used->second) {
        cudaEvent_t e = nullptr;
        if (cudaEventCreateWithFlags(&e, cudaEventDisableTiming) == cudaSuccess && cudaEventRecord(e, s) == cudaSuccess)
          pend.events.push_back(e);
      }
      pending_.push_back(std::move(pend));
      other_streams_.erase(used);
    }
    live_.erase(it);
  }

  // Marks a live block as used by work on stream `s` (not the compute stream).
  void record_stream(void* ptr, cudaStream_t s) {
    std::lock_guard<std::mutex> lock(mu_);
    HYDRA_CHECK(live_.count(ptr), "record_stream: pointer {} is not a live block of cuda:{}", ptr, device_);
    if (s == context(device_).stream) return;
    auto& v = other_streams_[ptr];
    if (std::find(v.begin(), v.end(), s) == v.end()) v.push_back(s);
  }
  std::size_t num_pending() {
    std::lock_guard<std::mutex> lock(mu_);
    reclaim_pending_locked();
    return pending_.size();
  }

  void copy_within(void* dst, const void* src, std::size_t n) override {
    if (n == 0) return;
    DeviceGuard guard(device_);
    HYDRA_CUDA_CHECK(cudaMemcpyAsync(dst, src, n, cudaMemcpyDeviceToDevice, context(device_).stream));
  }

  // Host <-> device. Copies above kStageFrom go through two pinned staging buffers, chunk by chunk, so the
  // host-side memcpy of one chunk overlaps the DMA of the previous one. Host-to-device copies of at most kSlot bytes
  // are asynchronous (a ring of pinned slots); the others return once the data is on the device.
  void copy_to_host(void* host_dst, const void* src, std::size_t n) override {
    if (n == 0) return;
    DeviceGuard guard(device_);
    cudaStream_t s = context(device_).stream;
    if (n < kStageFrom) {
      HYDRA_CUDA_CHECK(cudaMemcpyAsync(host_dst, src, n, cudaMemcpyDeviceToHost, s));
      HYDRA_CUDA_CHECK(cudaStreamSynchronize(s));
    } else {
      std::lock_guard<std::mutex> lock(stage_mu_);
      ensure_staging();
      for (std::size_t off = 0, k = 0; off < n; off += kChunk, ++k) {
        const std::size_t len = std::min(kChunk, n - off);
        char* buf = stage_[k % 2];
        HYDRA_CUDA_CHECK(cudaMemcpyAsync(buf, static_cast<const char*>(src) + off, len, cudaMemcpyDeviceToHost, s));
        HYDRA_CUDA_CHECK(cudaStreamSynchronize(s));
        std::memcpy(static_cast<char*>(host_dst) + off, buf, len);
      }
    }
    raise_deferred_errors(device_, /*wait_all=*/true);  // the stream is drained: every deferred check has landed
  }

  void copy_from_host(void* dst, const void* host_src, std::size_t n) override {
    if (n == 0) return;
    DeviceGuard guard(device_);
    cudaStream_t s = context(device_).stream;
    if (n <= kSlot) {
      // Small copies (scalars, short index lists built on the host) do not wait for the stream: the bytes go into
      // the next pinned slot of a ring and the DMA is queued behind the stream's earlier work. A slot is reused
      // once the event recorded after its previous DMA has completed (so only kSlots copies in flight block).
      std::lock_guard<std::mutex> lock(stage_mu_);
      ensure_slots();
      const std::size_t k = next_slot_++ % kSlots;
      HYDRA_CUDA_CHECK(cudaEventSynchronize(slot_done_[k]));
      std::memcpy(slots_ + k * kSlot, host_src, n);
      HYDRA_CUDA_CHECK(cudaMemcpyAsync(dst, slots_ + k * kSlot, n, cudaMemcpyHostToDevice, s));
      HYDRA_CUDA_CHECK(cudaEventRecord(slot_done_[k], s));
      return;
    }
    if (n < kStageFrom) {
      HYDRA_CUDA_CHECK(cudaMemcpyAsync(dst, host_src, n, cudaMemcpyHostToDevice, s));
      HYDRA_CUDA_CHECK(cudaStreamSynchronize(s));  // the host buffer may be freed right after we return
      return;
    }
    std::lock_guard<std::mutex> lock(stage_mu_);
    ensure_staging();
    for (std::size_t off = 0, k = 0; off < n; off += kChunk, ++k) {
      const std::size_t len = std::min(kChunk, n - off);
      char* buf = stage_[k % 2];
      HYDRA_CUDA_CHECK(cudaEventSynchronize(stage_done_[k % 2]));  // the DMA that last read this buffer is done
      std::memcpy(buf, static_cast<const char*>(host_src) + off, len);
      HYDRA_CUDA_CHECK(cudaMemcpyAsync(static_cast<char*>(dst) + off, buf, len, cudaMemcpyHostToDevice, s));
      HYDRA_CUDA_CHECK(cudaEventRecord(stage_done_[k % 2], s));
    }
    HYDRA_CUDA_CHECK(cudaStreamSynchronize(s));
  }

  MemoryStats stats() {
    std::lock_guard<std::mutex> lock(mu_);
    return stats_;
  }
  void reset_peak() {
    std::lock_guard<std::mutex> lock(mu_);
    stats_.peak_in_use_bytes = stats_.in_use_bytes;
  }
  void empty_cache() {
    std::lock_guard<std::mutex> lock(mu_);
    release_cached_locked();
  }

 private:
  static constexpr std::size_t kStageFrom = std::size_t{4} << 20;
  static constexpr std::size_t kSlot = std::size_t{64} << 10;  // small host-to-device copies: ring of pinned slots
  static constexpr std::size_t kSlots = 64;
  static constexpr std::size_t kChunk = std::size_t{8} << 20;

  static std::size_t round_size(std::size_t n) {
    if (n < (std::size_t{1} << 20)) return (n + 511) / 512 * 512;
    return (n + (std::size_t{2} << 20) - 1) / (std::size_t{2} << 20) * (std::size_t{2} << 20);
  }
  // Moves blocks whose other-stream events have all completed into the free pool.
  void reclaim_pending_locked() {
    for (auto it = pending_.begin(); it != pending_.end();) {
      bool done = true;
      for (cudaEvent_t e : it->events) {
        const cudaError_t q = cudaEventQuery(e);
        if (q == cudaErrorNotReady) {
          done = false;
          break;
        }
        if (q != cudaSuccess) cudaGetLastError();
      }
      if (!done) {
        ++it;
        continue;
      }
      for (cudaEvent_t e : it->events) cudaEventDestroy(e);
      free_.emplace(it->size, it->ptr);
      it = pending_.erase(it);
    }
  }
  void release_cached_locked() {
    DeviceGuard guard(device_);
    cudaDeviceSynchronize();  // cached blocks may still be read by queued kernels
    reclaim_pending_locked();
    for (auto& [size, p] : free_) {
      cudaFree(p);
      stats_.reserved_bytes -= size;
      stats_.num_device_frees++;
    }
    free_.clear();
  }
  void ensure_staging() {
    if (stage_[0]) return;
    for (int i = 0; i < 2; ++i) {
      HYDRA_CUDA_CHECK(cudaMallocHost(reinterpret_cast<void**>(&stage_[i]), kChunk));
      HYDRA_CUDA_CHECK(cudaEventCreateWithFlags(&stage_done_[i], cudaEventDisableTiming));
      HYDRA_CUDA_CHECK(cudaEventRecord(stage_done_[i], context(device_).stream));
    }
  }

  void ensure_slots() {
    if (slots_) return;
    HYDRA_CUDA_CHECK(cudaMallocHost(reinterpret_cast<void**>(&slots_), kSlot * kSlots));
    for (std::size_t i = 0; i < kSlots; ++i)
      HYDRA_CUDA_CHECK(cudaEventCreateWithFlags(&slot_done_[i], cudaEventDisableTiming));  // unrecorded: ready
  }

  int device_;
  std::mutex mu_;
  struct Pending {
    void* ptr;
    std::size_t size;
    std::vector<cudaEvent_t> events;
  };
  std::multimap<std::size_t, void*> free_;
  std::unordered_map<void*, std::size_t> live_;
  std::unordered_map<void*, std::vector<cudaStream_t>> other_streams_;
  std::vector<Pending> pending_;
  MemoryStats stats_;
  std::mutex stage_mu_;
  char* stage_[2] = {nullptr, nullptr};
  cudaEvent_t stage_done_[2] = {nullptr, nullptr};
  char* slots_ = nullptr;
  cudaEvent_t slot_done_[kSlots] = {};
  std::size_t next_slot_ = 0;
};

struct Registry {
  std::mutex mu;
  std::vector<std::unique_ptr<DeviceContext>> contexts;
  std::vector<std::unique_ptr<CachingAllocator>> allocators;
};
Registry& registry() {
  static Registry* r = new Registry();  // never destroyed: tensors may outlive static destruction order
  return *r;
}

}  // namespace

// ---------------------------------------------------------------------------------------------------------
// contexts

DeviceContext& context(int device) {
  Registry& r = registry();
  std::lock_guard<std::mutex> lock(r.mu);
  if (r.contexts.empty()) r.contexts.resize(std::max(device_count(), 1));
  HYDRA_CHECK_ENV(device >= 0 && device < static_cast<int>(r.contexts.size()) && device < device_count(),
                  "cuda:{}: no such device ({} CUDA device(s) visible)", device, device_count());
  auto& ctx = r.contexts[device];
  if (!ctx) {
    ctx = std::make_unique<DeviceContext>();
    ctx->device = device;
    int prev = 0;
    HYDRA_CUDA_CHECK(cudaGetDevice(&prev));
    HYDRA_CUDA_CHECK(cudaSetDevice(device));
    HYDRA_CUDA_CHECK(cudaStreamCreateWithFlags(&ctx->stream, cudaStreamNonBlocking));
    HYDRA_CUBLAS_CHECK(cublasLtCreate(&ctx->lt), "creating the cuBLASLt handle");
    ctx->workspace_bytes = std::size_t{32} << 20;
    HYDRA_CUDA_CHECK(cudaMalloc(&ctx->workspace, ctx->workspace_bytes));
    HYDRA_CUDA_CHECK(cudaSetDevice(prev));
  }
  return *ctx;
}

Allocator& allocator(int index) {
  check_index(index, "cannot place a tensor on");
  context(index);
  Registry& r = registry();
  std::lock_guard<std::mutex> lock(r.mu);
  if (r.allocators.size() < r.contexts.size()) r.allocators.resize(r.contexts.size());
  auto& a = r.allocators[index];
  if (!a) a = std::make_unique<CachingAllocator>(index);
  return *a;
}

static CachingAllocator& caching(int index) { return static_cast<CachingAllocator&>(allocator(index)); }
MemoryStats memory_stats(int index) { return caching(index).stats(); }
void reset_peak_memory_stats(int index) { caching(index).reset_peak(); }
void empty_cache(int index) { caching(index).empty_cache(); }
void set_poison_allocations(bool on) { g_poison = on; }
void record_stream(const Tensor& t, StreamHandle s) {
  if (!t.defined() || t.storage()->data() == nullptr) return;
  HYDRA_CHECK(t.is_cuda() && t.device().index == s.device, "record_stream: tensor on {} used on a stream of cuda:{}",
              t.device(), s.device);
  caching(s.device).record_stream(t.storage()->data(), static_cast<cudaStream_t>(s.ptr));
}
std::size_t num_pending_frees(int index) { return caching(index).num_pending(); }
void enqueue_delay(StreamHandle s, int milliseconds) {
  auto* ms = new int(milliseconds);
  HYDRA_CUDA_CHECK(cudaLaunchHostFunc(
      static_cast<cudaStream_t>(s.ptr),
      [](void* p) {
        std::this_thread::sleep_for(std::chrono::milliseconds(*static_cast<int*>(p)));
        delete static_cast<int*>(p);
      },
      ms));
}

std::string device_name(int index) {
  check_index(index, "device_name:");
  cudaDeviceProp prop{};
  HYDRA_CUDA_CHECK(cudaGetDeviceProperties(&prop, index));
  return HYDRA_FORMAT("{} (sm_{}{}, {} SMs, {:.1f} GiB)", prop.name, prop.major, prop.minor, prop.multiProcessorCount,
                     prop.totalGlobalMem / double(1 << 30));
}

std::string runtime_version() {
  int rt = 0, drv = 0;
  cudaRuntimeGetVersion(&rt);
  if (cudaDriverGetVersion(&drv) != cudaSuccess) drv = 0;
  cudaGetLastError();
  return HYDRA_FORMAT("CUDA runtime {}.{}, driver {}", rt / 1000, (rt % 1000) / 10,
                     drv ? HYDRA_FORMAT("{}.{}", drv / 1000, (drv % 1000) / 10) : std::string("none"));
}

int current_device() {
  int d = 0;
  HYDRA_CUDA_CHECK(cudaGetDevice(&d));
  return d;
}
void set_device(int index) {
  check_index(index, "set_device:");
  HYDRA_CUDA_CHECK(cudaSetDevice(index));
}
DeviceGuard::DeviceGuard(int index) : prev_(current_device()) {
  if (index != prev_) HYDRA_CUDA_CHECK(cudaSetDevice(index));
}
DeviceGuard::~DeviceGuard() { cudaSetDevice(prev_); }

void synchronize(int index) {
  DeviceGuard g(index);
  HYDRA_CUDA_CHECK(cudaStreamSynchronize(context(index).stream));
  raise_deferred_errors(index, /*wait_all=*/true);
}

// ---------------------------------------------------------------------------------------------------------
// Deferred device checks: a FIFO per device of {pinned slot, event, message}. Slots come from one pinned block
// of kDeferredSlots × 2 int64 per device (no cudaMallocHost per check); events are pooled.
namespace {
constexpr int kDeferredSlots = 256;

struct DeferredCheck {
  int slot;
  cudaEvent_t ev;
  std::function<std::string(int64_t, int64_t)> message;
};

struct DeferredChecks {
  std::mutex mu;
  int64_t* host = nullptr;  // kDeferredSlots × {bad_row, bad_value}, pinned
  std::vector<int> free_slots;
  std::vector<cudaEvent_t> free_events;
  std::deque<DeferredCheck> pending;
};

DeferredChecks& deferred_checks(int device) {
  static std::mutex mu;
  static std::unordered_map<int, std::unique_ptr<DeferredChecks>> all;
  std::lock_guard<std::mutex> lock(mu);
  auto& d = all[device];
  if (!d) d = std::make_unique<DeferredChecks>();
  return *d;
}

// Pops the completed checks (all of them when wait_all) and returns the first failure's message ("" if none).
std::string collect_deferred(DeferredChecks& d, bool wait_all) {
  std::string error;
  std::lock_guard<std::mutex> lock(d.mu);
  while (!d.pending.empty()) {
    DeferredCheck& c = d.pending.front();
    if (wait_all) {
      HYDRA_CUDA_CHECK(cudaEventSynchronize(c.ev));
    } else {
      const cudaError_t q = cudaEventQuery(c.ev);
      if (q == cudaErrorNotReady) break;  // later checks were enqueued after this one
      HYDRA_CUDA_CHECK(q);
    }
    const int64_t row = d.host[2 * c.slot], value = d.host[2 * c.slot + 1];
    if (row >= 0 && error.empty()) error = c.message(row, value);
    d.free_slots.push_back(c.slot);
    d.free_events.push_back(c.ev);
    d.pending.pop_front();
  }
  return error;
}
}  // namespace

void raise_deferred_errors(int device, bool wait_all) {
  const std::string error = collect_deferred(deferred_checks(device), wait_all);
  if (!error.empty()) throw std::invalid_argument(error);
}

void defer_device_check(int device, const void* device_info, std::function<std::string(int64_t, int64_t)> message) {
  DeviceGuard g(device);
  DeferredChecks& d = deferred_checks(device);
  bool full = false;
  {
    std::lock_guard<std::mutex> lock(d.mu);
    full = d.host != nullptr && d.free_slots.empty();
  }
  // Earlier verdicts are collected first but raised only after this check is enqueued, so it is never lost.
  std::string error = collect_deferred(d, /*wait_all=*/full);
  {
    std::lock_guard<std::mutex> lock(d.mu);
    if (d.host == nullptr) {
      HYDRA_CUDA_CHECK(cudaMallocHost(reinterpret_cast<void**>(&d.host), sizeof(int64_t) * 2 * kDeferredSlots));
      for (int i = kDeferredSlots - 1; i >= 0; --i) d.free_slots.push_back(i);
    }
    const int slot = d.free_slots.back();
    cudaEvent_t ev;
    if (d.free_events.empty()) {
      HYDRA_CUDA_CHECK(cudaEventCreateWithFlags(&ev, cudaEventDisableTiming));
    } else {
      ev = d.free_events.back();
      d.free_events.pop_back();
    }
    cudaStream_t s = context(device).stream;
    HYDRA_CUDA_CHECK(cudaMemcpyAsync(d.host + 2 * slot, device_info, 2 * sizeof(int64_t), cudaMemcpyDeviceToHost, s));
    HYDRA_CUDA_CHECK(cudaEventRecord(ev, s));
    d.free_slots.pop_back();
    d.pending.push_back({slot, ev, std::move(message)});
  }
  if (!error.empty()) throw std::invalid_argument(error);
}

StreamHandle compute_stream(int index) { return {context(index).stream, index}; }
StreamHandle create_stream(int index) {
  DeviceGuard g(index);
  cudaStream_t s = nullptr;
  HYDRA_CUDA_CHECK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
  return {s, index};
}
void destroy_stream(StreamHandle s) {
  if (s.ptr) cudaStreamDestroy(static_cast<cudaStream_t>(s.ptr));
}

Event::Event(int device, bool timing) : device_(device) {
  DeviceGuard g(device);
  cudaEvent_t e = nullptr;
  HYDRA_CUDA_CHECK(cudaEventCreateWithFlags(&e, timing ? cudaEventDefault : cudaEventDisableTiming));
  ev_ = e;
}
Event::~Event() {
  if (ev_) cudaEventDestroy(static_cast<cudaEvent_t>(ev_));
}
void Event::record(StreamHandle s) {
  HYDRA_CUDA_CHECK(cudaEventRecord(static_cast<cudaEvent_t>(ev_), static_cast<cudaStream_t>(s.ptr)));
}
void Event::wait(StreamHandle s) const {
  HYDRA_CUDA_CHECK(cudaStreamWaitEvent(static_cast<cudaStream_t>(s.ptr), static_cast<cudaEvent_t>(ev_), 0));
}
void Event::synchronize() const { HYDRA_CUDA_CHECK(cudaEventSynchronize(static_cast<cudaEvent_t>(ev_))); }
bool Event::done() const {
  const cudaError_t err = cudaEventQuery(static_cast<cudaEvent_t>(ev_));
  if (err == cudaErrorNotReady) return false;
  HYDRA_CUDA_CHECK(err);
  return true;
}
float Event::elapsed_ms(const Event& end) const {
  float ms = 0;
  HYDRA_CUDA_CHECK(cudaEventElapsedTime(&ms, static_cast<cudaEvent_t>(ev_), static_cast<cudaEvent_t>(end.ev_)));
  return ms;
}

Geom make_geom(const Tensor& t, const char* op) {
  HYDRA_CHECK(t.dim() <= kMaxDims, "{}: CUDA kernels take tensors of rank <= {}, got shape {}", op, kMaxDims,
              shape_str(t.shape()));
  // The same row-major order in fewer dims (cheaper geom_offset): size-1 dims are dropped, and a dim merges into
  // the one before it when stepping over all of it lands on the previous dim's next element (stride[p] ==
  // stride[d]·size[d]); e.g. a last-dim slice (B, T, F) of (B, T, 2F) becomes (B·T, F) with strides (2F, 1).
  Geom g;
  for (int d = 0; d < t.dim(); ++d) {
    if (t.size(d) == 1) continue;
    if (g.ndim > 0 && g.stride[g.ndim - 1] == t.stride(d) * t.size(d)) {
      g.size[g.ndim - 1] *= t.size(d);
      g.stride[g.ndim - 1] = t.stride(d);
      continue;
    }
    g.size[g.ndim] = t.size(d);
    g.stride[g.ndim] = t.stride(d);
    ++g.ndim;
  }
  return g;
}

void ensure_dynamic_smem(const void* kernel, std::size_t bytes, int device, const char* op, const char* name) {
  constexpr std::size_t kDefault = 48 * 1024;  // what every kernel may use without opting in
  if (bytes <= kDefault) return;
  static std::mutex mu;
  static std::map<std::pair<const void*, int>, std::size_t> set;  // (kernel, device) → bytes opted into
  std::lock_guard<std::mutex> lock(mu);
  std::size_t& have = set[{kernel, device}];
  if (have >= bytes) return;
  int optin = 0;
  HYDRA_CUDA_CHECK(cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, device));
  HYDRA_CHECK_ENV(bytes <= static_cast<std::size_t>(optin),
                  "{}: {} needs {} bytes of shared memory per block, the device allows {}", op, name, bytes, optin);
  HYDRA_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(bytes)));
  have = bytes;
}

}  // namespace hydra::cuda
