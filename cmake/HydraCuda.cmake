# Decides whether the CUDA backend is built (HYDRA_CUDA = AUTO | ON | OFF).
# AUTO builds it whenever nvcc is found; ON fails the configure step without it; OFF never builds it.
# Architectures: HYDRA_CUDA_GENCODE (default sm_90a), passed verbatim to nvcc; CMAKE_CUDA_ARCHITECTURES is
# switched off so that CMake adds no architecture of its own.
set(HYDRA_HAS_CUDA OFF)
set(HYDRA_HAS_NCCL OFF)
if(NOT HYDRA_CUDA STREQUAL "OFF")
  include(CheckLanguage)
  if(NOT CMAKE_CUDA_COMPILER AND EXISTS /usr/local/cuda/bin/nvcc)
    set(CMAKE_CUDA_COMPILER /usr/local/cuda/bin/nvcc)
  endif()
  check_language(CUDA)
  if(CMAKE_CUDA_COMPILER)
    set(CMAKE_CUDA_ARCHITECTURES OFF)
    enable_language(CUDA)
    find_package(CUDAToolkit REQUIRED)
    separate_arguments(_hydra_gencode UNIX_COMMAND "${HYDRA_CUDA_GENCODE}")
    # CMake 3.25 does not know nvcc's C++20 dialect flag, so it is given here directly.
    set(HYDRA_CUDA_FLAGS ${_hydra_gencode} -std=c++20 --expt-relaxed-constexpr --extended-lambda -lineinfo)
    set(HYDRA_HAS_CUDA ON)
    find_path(NCCL_INCLUDE_DIR nccl.h HINTS ${CUDAToolkit_INCLUDE_DIRS} /usr/local/include)
    find_library(NCCL_LIBRARY nccl HINTS ${CUDAToolkit_LIBRARY_DIR} /usr/local/lib)
    if(NCCL_INCLUDE_DIR AND NCCL_LIBRARY)
      set(HYDRA_HAS_NCCL ON)
    endif()
  elseif(HYDRA_CUDA STREQUAL "ON")
    message(FATAL_ERROR "HYDRA_CUDA=ON but no CUDA compiler (nvcc) was found; install the CUDA toolkit or "
                        "configure with -DHYDRA_CUDA=OFF")
  else()
    message(STATUS "HydraLM: nvcc not found, building the CPU-only project (HYDRA_CUDA=AUTO)")
  endif()
endif()
