#include "tensor/storage.h"

#include <cstdlib>
#include <cstring>
#include <new>

#include "tensor/check.h"
#include "tensor/cuda/backend.h"

namespace hydra {
namespace {

class CpuAllocator final : public Allocator {
 public:
  void* allocate(std::size_t nbytes) override {
    if (nbytes == 0) return nullptr;
    std::size_t rounded = (nbytes + 63) / 64 * 64;
    void* p = std::aligned_alloc(64, rounded);
    HYDRA_CHECK_ENV(p != nullptr, "cpu allocator: out of memory allocating {} bytes", nbytes);
    return p;
  }
  void deallocate(void* ptr, std::size_t) override { std::free(ptr); }
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
