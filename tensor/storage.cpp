#include "tensor/storage.h"

#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <new>
#include <vector>

#include "tensor/check.h"
#include "tensor/cuda/backend.h"

namespace hydra {
namespace {

// CPU allocator: 64-byte aligned blocks. Blocks of 1 MiB and more are cached after free, keyed by their size
// class (sizes rounded up to 1/8 of their power of two), and reused by later requests of the same class: large
// tensors are allocated every step, and returning them to the OS means page-faulting them in again each time.
// The cache holds at most kMaxCached bytes; past that, freed blocks go back to the system.
class CpuAllocator final : public Allocator {
 public:
  static constexpr std::size_t kCacheFrom = std::size_t{1} << 20;
  static constexpr std::size_t kMaxCached = std::size_t{4} << 30;

  void* allocate(std::size_t nbytes) override {
    if (nbytes == 0) return nullptr;
    const std::size_t size = size_class(nbytes);
    if (size >= kCacheFrom) {
      std::lock_guard<std::mutex> lock(mu_);
      auto it = free_.find(size);
      if (it != free_.end() && !it->second.empty()) {
        void* p = it->second.back();
        it->second.pop_back();
        cached_ -= size;
        return p;
      }
    }
    void* p = std::aligned_alloc(64, size);
    HYDRA_CHECK_ENV(p != nullptr, "cpu allocator: out of memory allocating {} bytes ({} bytes cached)", nbytes,
                    cached_);
    return p;
  }
  void deallocate(void* ptr, std::size_t nbytes) override {
    const std::size_t size = size_class(nbytes);
    if (size >= kCacheFrom) {
      std::lock_guard<std::mutex> lock(mu_);
      if (cached_ + size <= kMaxCached) {
        free_[size].push_back(ptr);
        cached_ += size;
        return;
      }
    }
    std::free(ptr);
  }
  ~CpuAllocator() override {
    for (auto& [size, blocks] : free_)
      for (void* p : blocks) std::free(p);
  }

 private:
  static std::size_t size_class(std::size_t n) {
    n = (n + 63) / 64 * 64;
    if (n < kCacheFrom) return n;
    std::size_t p = std::size_t{1} << (63 - __builtin_clzll(n));  // largest power of two <= n
    const std::size_t step = p / 8;
    return (n + step - 1) / step * step;
  }
  std::mutex mu_;
  std::map<std::size_t, std::vector<void*>> free_;
  std::size_t cached_ = 0;
  void copy_within(void* dst, const void* src, std::size_t n) override { std::memcpy(dst, src, n); }
  void copy_to_host(void* dst, const void* src, std::size_t n) override { std::memcpy(dst, src, n); }
  void copy_from_host(void* dst, const void* src, std::size_t n) override { std::memcpy(dst, src, n); }
};

}  // namespace

Allocator& allocator_for(const Device& device) {
  static CpuAllocator cpu;
  if (device.is_cpu()) return cpu;
  return cuda::allocator(device.index);  // throws when the build or the machine has no such device
}

Storage::Storage(std::size_t nbytes, Device device)
    : nbytes_(nbytes), device_(device), allocator_(&allocator_for(device)) {
  data_ = allocator_->allocate(nbytes);
}

Storage::~Storage() {
  if (data_) allocator_->deallocate(data_, nbytes_);
}

}  // namespace hydra
