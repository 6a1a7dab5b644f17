#pragma once
// Storage: one reference-counted block of device memory. Tensors (and their views) share a Storage through
// std::shared_ptr; the block goes back to its allocator when the last view is gone.
//
// Allocator is the one interface every device implements: the CPU allocator is 64-byte aligned malloc; the
// CUDA backend registers its caching allocator for each cuda:N device (tensor/cuda/). allocator_for(device)
// throws a clear error for a device this build or machine cannot serve.
#include <cstddef>
#include <memory>

#include "tensor/device.h"

namespace hydra {

class Allocator {
 public:
  virtual ~Allocator() = default;
  virtual void* allocate(std::size_t nbytes) = 0;
  virtual void deallocate(void* ptr, std::size_t nbytes) = 0;
  // Byte copies inside this allocator's device / between host and device. The CPU allocator's are memcpy.
  virtual void copy_within(void* dst, const void* src, std::size_t nbytes) = 0;
  virtual void copy_to_host(void* host_dst, const void* src, std::size_t nbytes) = 0;
  virtual void copy_from_host(void* dst, const void* host_src, std::size_t nbytes) = 0;
};

Allocator& allocator_for(const Device& device);

class Storage {
 public:
  Storage(std::size_t nbytes, Device device);
  ~Storage();
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;

  void* data() { return data_; }
  const void* data() const { return data_; }
  std::size_t nbytes() const { return nbytes_; }
  const Device& device() const { return device_; }

 private:
  void* data_ = nullptr;
  std::size_t nbytes_ = 0;
  Device device_;
  Allocator* allocator_ = nullptr;
};

}  // namespace hydra
