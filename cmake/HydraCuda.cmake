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
    # FMT_USE_CONSTEXPR=1: fmt 9 turns constexpr off under nvcc, which then breaks its C++20 is_constant_evaluated.
    set(HYDRA_CUDA_FLAGS ${_hydra_gencode} --expt-relaxed-constexpr --extended-lambda -lineinfo -DFMT_USE_CONSTEXPR=1)
    # CUDA sources are C++20. CMake before 3.26 has no CUDA20 dialect flag for nvcc: there the CUDA17 level
    # is asked for and its flag set to -std=c++20.
    if(DEFINED CMAKE_CUDA20_STANDARD_COMPILE_OPTION)
      set(CMAKE_CUDA_STANDARD 20)
    else()
      set(CMAKE_CUDA_STANDARD 17)
      set(CMAKE_CUDA17_STANDARD_COMPILE_OPTION "-std=c++20")
      set(CMAKE_CUDA17_EXTENSION_COMPILE_OPTION "-std=c++20")
    endif()
    set(CMAKE_CUDA_STANDARD_REQUIRED ON)
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
